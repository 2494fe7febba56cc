"""``VectorMarketEnv``: ``B`` copies of the market stepped at once, as arrays.

The same :class:`~envs.core.MarketCore` as the PettingZoo env, with ``B = num_envs``
copies that are always at the same hour (they share the scenario's time series and the
rule-bidding units' supply curve; they differ by the agents' actions and hence the
storage states). Heterogeneous action sizes are padded to ``max_act``; padded entries
are ignored. Shapes:

* ``reset(seed) -> (obs, infos)`` with ``obs`` ``(B, n_agents, obs_dim)`` float32;
* ``step(actions)`` with ``actions`` ``(B, n_agents, max_act)`` in [-1, 1] ->
  ``(obs, rewards (B, n), terminations (B, n) bool, truncations (B, n) bool, infos)``
  where ``infos`` is a dict of arrays: ``profit``, ``accepted_volume``, ``regret``
  ``(B, n)`` and ``clearing_price``, ``scarcity`` ``(B,)``;
* ``state() -> (B, state_dim)`` float32.

Zonal and nodal markets (``scenario.network``, :mod:`envs.network`): the ``B`` copies of
an hour are cleared as ONE block-diagonal linear program (one HiGHS call per step, not
``B``); ``clearing_price`` is then the demand-weighted mean of the zone/bus prices and
``infos`` add ``node_price`` ``(B, Z)`` and ``agent_price`` ``(B, n)``. What is not
batched: the LP is solved by HiGHS on the CPU, so its cost grows with ``B`` (no GPU
path), and the solver runs once per step rather than once per episode (hours are cleared
in order because storage and observations depend on the previous hour).

When the episode ends (``truncations`` all true) call ``reset()`` before stepping again,
or let the env reset itself (``autoreset_mode``, below).

Gymnasium 1.x vector conventions, where they apply to a multi-agent batch:

* ``metadata["autoreset_mode"]`` is a :class:`gymnasium.vector.AutoresetMode`:
  ``DISABLED`` (default: stepping after the end raises), ``NEXT_STEP`` (the step after
  the end resets every copy, ignores its actions and returns the first observation
  with zero rewards and all flags false; ``autoreset=True`` is the old name for it) or
  ``SAME_STEP`` (the final step already returns the next episode's first observation;
  the final one is in ``infos["final_obs"]`` and that step's infos in
  ``infos["final_info"]``, with ``infos["_final_obs"]``/``["_final_info"]`` true for
  every copy). All copies end together (they share the hourly window), so the masks
  are all true or all false.
* ``num_envs``, ``observation_space``/``action_space`` (batched,
  ``(B, n_agents, dim)``), ``single_observation_space``/``single_action_space`` (one
  copy, ``(n_agents, dim)``), ``reset(seed=None, options=None) -> (obs, infos)``,
  ``step -> (obs, rewards, terminations, truncations, infos)`` with ``infos`` a dict of
  arrays, ``np_random``, ``close()``, ``closed``, ``unwrapped``.
* Where they do not apply: rewards, terminations and truncations are ``(B, n_agents)``
  (one per agent, not one per copy), so this is not a ``gymnasium.vector.VectorEnv``
  subclass (its wrappers assume ``(B,)``); ``reset(seed=[...])`` with different seeds
  per copy is refused, because the copies share the episode window and its noise (one
  seed decides them); ``render()`` is not offered (render a ``ParallelEnv``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

try:  # Gymnasium >= 1.1
    from gymnasium.vector import AutoresetMode
except ImportError:  # older Gymnasium: the same names and values
    from enum import Enum

    class AutoresetMode(Enum):
        """Stand-in for ``gymnasium.vector.AutoresetMode`` (Gymnasium < 1.1)."""

        NEXT_STEP = "NextStep"
        SAME_STEP = "SameStep"
        DISABLED = "Disabled"

from .parallel import _numeric_action, make_core
from .validate import check_seed


class VectorMarketEnv:
    """``num_envs`` synchronised copies of one scenario's market (see module docstring)."""

    metadata = {"name": "marketzoo_vector_v0", "autoreset_mode": AutoresetMode.DISABLED}

    def __init__(self, scenario="default", num_envs: int = 8, *, study_case: str = "base",
                 autoreset: bool = False, autoreset_mode: AutoresetMode | str | None = None,
                 record: bool = False, **options: Any):
        if autoreset_mode is None:
            mode = AutoresetMode.NEXT_STEP if autoreset else AutoresetMode.DISABLED
        else:
            try:
                mode = AutoresetMode(autoreset_mode)
            except ValueError:
                raise ValueError(
                    f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of "
                    f"{[m.value for m in AutoresetMode]}, got {autoreset_mode!r}"
                ) from None
            if autoreset and mode is AutoresetMode.DISABLED:
                raise ValueError("autoreset=True contradicts autoreset_mode=DISABLED; give one of them")
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.core = make_core(scenario, study_case=study_case, num_envs=num_envs, **options)
        self.core.recording = bool(record)
        core = self.core
        if core.n == 0:
            raise ValueError(
                f"{core.scenario.summary()}: no learning units, so there are no agents; pick some with "
                "learning_units=['unit name', ...]"
            )
        self.num_envs = core.B
        self.agents = list(core.agents)
        self.n_agents = core.n
        self.obs_dim = core.obs_dim
        self.max_act = core.max_act
        self.act_dims = core.act_dims.copy()
        self.action_mask = np.arange(core.max_act)[None, :] < core.act_dims[:, None]  # (n, max_act)
        self.autoreset = mode is not AutoresetMode.DISABLED
        # one agent's observation; one copy's observation and action
        self.agent_observation_space = spaces.Box(core.obs_low, core.obs_high, dtype=np.float32)
        self.single_observation_space = spaces.Box(
            np.broadcast_to(core.obs_low, (core.n, core.obs_dim)), np.broadcast_to(core.obs_high, (core.n, core.obs_dim)),
            dtype=np.float32,
        )
        self.single_action_space = spaces.Box(-1.0, 1.0, (core.n, core.max_act), dtype=np.float32)
        self.observation_space = spaces.Box(
            np.broadcast_to(core.obs_low, (core.B, core.n, core.obs_dim)),
            np.broadcast_to(core.obs_high, (core.B, core.n, core.obs_dim)), dtype=np.float32,
        )
        self.action_space = spaces.Box(-1.0, 1.0, (core.B, core.n, core.max_act), dtype=np.float32)
        self.state_space = spaces.Box(
            np.broadcast_to(core.state_low, (core.B, core.state_dim)).astype(np.float32),
            np.broadcast_to(core.state_high, (core.B, core.state_dim)).astype(np.float32), dtype=np.float32,
        )
        self._rng = np.random.default_rng()
        self._needs_reset = True
        self.closed = False
        self.spec = None

    @property
    def np_random(self) -> np.random.Generator:
        """The generator that draws the episodes (start hour, noise); seeded by ``reset(seed)``."""
        return self._rng

    @property
    def unwrapped(self) -> VectorMarketEnv:
        return self

    def reset(self, seed: int | list | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple, np.ndarray)):
            vals = {None if s is None else int(s) for s in seed}
            if len(seed) != self.num_envs or len(vals) != 1:
                raise ValueError(
                    f"reset(seed={list(seed)}): the {self.num_envs} copies share one episode window and its noise, "
                    "so one seed decides them all; pass a single int (or a list of one repeated value)"
                )
            seed = vals.pop()
        if seed is not None:
            seed = check_seed(seed)
            self._rng = np.random.default_rng(seed)
            # seeded from ``seed`` itself, not drawn from ``self._rng``: the core's generator
            # then sees exactly what the ParallelEnv's sees (same seed -> same start hour)
            self.action_space.seed(int(seed))
        obs = self.core.reset(self._rng)
        self._needs_reset = False
        B, n = self.num_envs, self.n_agents
        infos = {
            "profit": np.zeros((B, n)), "accepted_volume": np.zeros((B, n)), "regret": np.zeros((B, n)),
            "clearing_price": np.zeros(B), "scarcity": np.zeros(B, dtype=bool),
        }
        return obs, infos

    def step(self, actions):
        if self._needs_reset:
            if self.autoreset_mode is AutoresetMode.NEXT_STEP and self.core.step_count > 0:
                return (*self.reset()[:1], *self._empty_step())
            raise RuntimeError("call reset() before step() (the episode is over or was never started)")
        a = np.asarray(actions)
        if a.dtype.kind != "f":
            a = _numeric_action("the actions array", a, "(num_envs, n_agents, max_act)")
        a = a.astype(np.float64, copy=False)
        want = (self.num_envs, self.n_agents, self.max_act)
        if a.shape != want:
            if self.max_act == 1 and a.shape == want[:2]:
                a = a[..., None]
            else:
                raise ValueError(f"actions must have shape {want} (num_envs, n_agents, max_act), got {a.shape}")
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0].tolist()
            raise ValueError(f"actions contain NaN/inf (first at index {bad}); actions must be numbers in [-1, 1]")
        a = np.clip(a, -1.0, 1.0)  # a fresh array: the caller's is never modified
        out = self.core.step(a)
        obs = self.core.observe()
        done = self.core.done
        B, n = self.num_envs, self.n_agents
        trunc = np.full((B, n), done)
        if done:
            self._needs_reset = True
        infos = {
            "profit": out.profit, "accepted_volume": out.accepted, "regret": out.regret,
            "clearing_price": out.price, "scarcity": out.scarcity,
        }
        if out.node_price is not None:  # zonal/nodal market: (B, Z) price per zone/bus, (B, n) each agent's
            infos["node_price"] = out.node_price
            infos["agent_price"] = out.node_price[:, self.core.agent_node]
        if done and self.autoreset_mode is AutoresetMode.SAME_STEP:
            final_obs, final_info = obs, dict(infos)
            obs, infos = self.reset()
            every = np.ones(B, dtype=bool)
            infos.update({"final_obs": final_obs, "_final_obs": every, "final_info": final_info, "_final_info": every})
        return obs, out.reward.astype(np.float32), np.zeros((B, n), dtype=bool), trunc, infos

    def _empty_step(self):
        B, n = self.num_envs, self.n_agents
        z = np.zeros((B, n))
        return (np.zeros((B, n), np.float32), np.zeros((B, n), bool), np.zeros((B, n), bool),
                {"profit": z, "accepted_volume": z, "regret": z, "clearing_price": np.zeros(B),
                 "scarcity": np.zeros(B, bool)})

    def state(self) -> np.ndarray:
        return self.core.state()

    def episode_record(self, copy: int = 0):
        """Bids and results of copy ``copy`` (env made with ``record=True``)."""
        return self.core.episode_record(copy)

    def close(self) -> None:
        self._needs_reset = True
        self.closed = True
