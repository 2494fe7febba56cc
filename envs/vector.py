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

When the episode ends (``truncations`` all true) call ``reset()`` before stepping again,
or create the env with ``autoreset=True`` to have it reset itself on the next step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .parallel import make_core


class VectorMarketEnv:
    """``num_envs`` synchronised copies of one scenario's market (see module docstring)."""

    metadata = {"name": "marketzoo_vector_v0"}

    def __init__(self, scenario="default", num_envs: int = 8, *, study_case: str = "base",
                 autoreset: bool = False, record: bool = False, **options: Any):
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
        self.autoreset = bool(autoreset)
        self.single_observation_space = spaces.Box(core.obs_low, core.obs_high, dtype=np.float32)
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

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
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
            if self.autoreset and self.core.step_count > 0:
                return (*self.reset()[:1], *self._empty_step())
            raise RuntimeError("call reset() before step() (the episode is over or was never started)")
        a = np.asarray(actions, dtype=np.float64)
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
