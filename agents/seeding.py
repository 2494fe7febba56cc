"""Every random generator of a run, derived from the run seed in one place.

:func:`run_generators` is the only function that turns a run seed into generators and
seeds; the plain training loop (:class:`agents.learner.Learner`), the mango runtime's
market and unit agents and the ``Learning`` role all take theirs from it, which is what
makes both runtimes draw the same numbers.

=================  ==============================================  ==========================
what               drawn from                                      used by
=================  ==============================================  ==========================
``torch``          ``seed``                                        MATD3's generator (initial
                                                                   weights, target noise)
``buffer``         first ``integers(2**31)`` of ``default_rng(seed)``  replay-buffer sampling
``env``            ``default_rng(seed)`` after that draw           market resets of training
                                                                   episodes
``agents[i]``      ``SeedSequence([seed, 1]).spawn(n)[i]``         agent ``i``'s exploration
                                                                   (initial random bids, noise)
``evaluation``     ``seed``                                        reset of every evaluation
                                                                   episode (``default_rng``)
=================  ==============================================  ==========================

:func:`draw_seed` draws a run seed from the operating system (``seed: null``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RunGenerators", "agent_generators", "draw_seed", "run_generators"]


@dataclass
class RunGenerators:
    """The generators and seeds of one run (see the module docstring)."""

    seed: int
    torch: int
    buffer: int
    env: np.random.Generator
    evaluation: int
    agents: list[np.random.Generator] = field(default_factory=list)


def run_generators(seed: int, n_agents: int) -> RunGenerators:
    """All generators of a run with ``n_agents`` learning agents, from the run seed."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"run seed must be >= 0, got {seed}")
    env = np.random.default_rng(seed)
    buffer = int(env.integers(2**31))
    agents = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(int(n_agents))]
    return RunGenerators(seed=seed, torch=seed, buffer=buffer, env=env, evaluation=seed, agents=agents)


def agent_generators(seed: int, n: int) -> list[np.random.Generator]:
    """The ``n`` agents' exploration generators of :func:`run_generators`."""
    return run_generators(seed, n).agents


def draw_seed() -> int:
    """A fresh run seed from the operating system's entropy (31 bits)."""
    return secrets.randbits(31)
