"""How many CPU threads torch uses for gradient steps: fixed, or chosen by timing.

``torch_threads`` in the learning config either fixes the count for the whole process
(an integer), or is ``None`` ("auto", the default), handled by :class:`ThreadTuner`:

* the market simulation and small networks always run on one thread. A gradient step
  of the default scenario's three agents is a few milliseconds of small matrix products;
  a second thread gains little there and, when another process keeps the second core
  busy, its synchronisation made each step up to 10x slower (measured on the 2-core
  development machine);
* when a gradient step is large (:func:`step_flop` at least :data:`MIN_PARALLEL_FLOP`,
  e.g. example_03a's 143 twin critics: ~54 GFLOP per step), the tuner times steps on one
  thread and on every core the process may use, keeps the faster count (the median of
  each count's last three timed steps; several threads must win by 10 %), and re-times
  the other one every ``reprobe_every`` steps, so that a machine that becomes busy (or
  idle) moves the choice. On the idle 2-core development machine two threads halve 03a's
  gradient step (0.40 s vs 0.79 s); with the other core busy they make it slower
  (1.02 s vs 0.82 s), and the tuner stays on one.

The count does not change a result: MATD3's stacked kernels split their work over agents,
rows and batch entries, and a gradient step gives the same numbers bit for bit on one
thread or two (``tests/test_threads.py`` checks 1, 7 and 40 agents; 143 agents were
checked by hand). Which counts were used is reported in :attr:`ThreadTuner.summary`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["MIN_PARALLEL_FLOP", "ThreadTuner", "step_flop", "usable_cores"]

MIN_PARALLEL_FLOP = 2e9
"""Gradient steps below this many floating-point operations stay on one thread."""

MIN_GAIN = 0.10
"""Share by which several threads must beat one thread's time per step to be used."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def step_flop(n_agents: int, obs_dim: int, max_act: int, unique_obs_len: int, batch_size: int,
              actor_hidden: tuple[int, ...], critic_hidden: tuple[int, ...], policy_delay: int = 2) -> float:
    """Multiply-adds x 2 of one MATD3 gradient step (all agents), as executed by the
    hand-written kernel, averaged over ``policy_delay`` steps: target actor and target
    twin critics forward, twin critics forward and backward, and every ``policy_delay``
    steps the actor forward/backward through critic head 1."""
    n, b = int(n_agents), int(batch_size)
    d = obs_dim + (n - 1) * unique_obs_len + n * max_act  # critic input
    sizes_c = (d, *critic_hidden, 1)
    head = sum(i * o for i, o in zip(sizes_c[:-1], sizes_c[1:]))  # one critic head's multiply-adds
    first = d * critic_hidden[0]
    sizes_a = (obs_dim, *actor_hidden, max_act)
    actor = sum(i * o for i, o in zip(sizes_a[:-1], sizes_a[1:]))
    critic = 2 * head + 2 * (3 * head - first)  # target twins forward; twins forward + backward
    actor_step = 3 * actor + 2 * head - first  # actor fwd/bwd; q1 head forward + input backward
    return 2.0 * n * b * (actor + critic + actor_step / max(1, int(policy_delay)))


class ThreadTuner:
    """Chooses torch's thread count for each gradient step (see the module docstring).

    Args:
        fixed: a fixed count (``torch_threads`` set in the config), or ``None`` for auto.
        flop_per_step: :func:`step_flop` of the run's gradient step.
        cores: cores to use at most in auto mode (default :func:`usable_cores`).
        reprobe_every: gradient steps between two timings of the count not in use.

    Use :meth:`step` around each gradient step; between steps (the simulation) torch runs
    on ``base`` threads (the fixed count, else 1).
    """

    def __init__(self, fixed: int | None, flop_per_step: float, *, cores: int | None = None,
                 reprobe_every: int = 20) -> None:
        self.fixed = None if fixed is None else int(fixed)
        cores = usable_cores() if cores is None else max(1, int(cores))
        self.auto = self.fixed is None and cores > 1 and flop_per_step >= MIN_PARALLEL_FLOP
        self.base = self.fixed or 1
        self.candidates = (1, cores) if self.auto else (self.base,)
        self.reprobe_every = max(2, int(reprobe_every))
        self.recent: dict[int, deque] = {c: deque(maxlen=3) for c in self.candidates}  # seconds per step
        self.steps = {c: 0 for c in self.candidates}
        self.current = self.candidates[-1]
        self._count = 0

    def _next(self) -> int:
        if not self.auto:
            return self.base
        k = self._count
        if k == 0:
            return self.candidates[-1]  # warm-up (allocates buffers), not timed
        untimed = [c for c in self.candidates if not self.recent[c]]
        if untimed:
            return untimed[0]
        best = self.best()
        if k % self.reprobe_every == 0:
            return next(c for c in self.candidates if c != best)
        return best

    @contextmanager
    def step(self) -> Iterator[int]:
        """Runs one gradient step at the chosen count; times it; restores ``base``."""
        threads = self._next()
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        try:
            yield threads
        finally:
            dt = time.perf_counter() - t0
            if self.auto and self._count > 0:
                self.recent[threads].append(dt)
            self.steps[threads] += 1
            self.current = threads
            self._count += 1
            if self.base != threads:
                torch.set_num_threads(self.base)

    def seconds(self, threads: int) -> float | None:
        """Median of the last three timed steps at ``threads`` (None before the first)."""
        r = self.recent[threads]
        return statistics.median(r) if r else None

    def best(self) -> int:
        """The count to run at: more threads only when their median step is at least
        :data:`MIN_GAIN` faster than one thread's (a tie costs a second core for nothing)."""
        one = self.seconds(1)
        many = self.candidates[-1]
        return many if self.seconds(many) < one * (1.0 - MIN_GAIN) else 1

    @property
    def summary(self) -> dict:
        """Mode, candidate counts, gradient steps run at each, and their latest seconds per step."""
        return {"mode": "auto" if self.auto else "fixed", "threads": list(self.candidates),
                "steps": {str(c): s for c, s in self.steps.items()},
                "seconds_per_step": {str(c): (None if self.seconds(c) is None else round(self.seconds(c), 4))
                                     for c in self.candidates}}
