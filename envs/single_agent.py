"""The market as a single-agent ``gymnasium.Env``: one learner, everyone else by rule.

``single_agent_env(scenario, agent=None, **env_kwargs)`` builds the same
:class:`~envs.core.MarketCore` as :func:`envs.parallel_env` (one copy) and exposes one of
its learning units -- ``agent``, default the first of ``possible_agents`` -- as a plain
Gymnasium environment, so single-agent libraries (Stable-Baselines3, CleanRL, ...) can
train a bidder against a fixed, rule-bidding rest of the market.

==================  ============================================================
Observation         the learner's observation, exactly as in the ParallelEnv
                    (``Box(float32, (3*foresight + 2,))``)
Action              the learner's action space (plant ``Box(-1, 1, (2,))``,
                    storage / renewable ``Box(-1, 1, (1,))``), clipped to [-1, 1]
Reward              the learner's reward, exactly as in the ParallelEnv
Episode             the scenario horizon (or ``max_cycles``); ``truncated`` at the
                    end, ``terminated`` never
``info``            the learner's info dict of the ParallelEnv (``profit``,
                    ``clearing_price``, ``accepted_volume``, ...) and ``agent``
==================  ============================================================

The other learning units of the scenario ("opponents") bid by rule every hour, through
the same action path as the learner (see :func:`rule_actions`):

* **plants** and **renewables** bid their whole available capacity at their marginal
  cost: both price actions are ``mc / max_bid_price``. They are *not* clipped to
  [-1, 1], so a unit whose marginal cost lies above ``max_bid_price`` still bids its
  marginal cost (the market clips bids to its ``[floor, cap]`` as for every bid), and the
  opponents behave exactly like the scenario's rule-bidding (``*_naive``) units;
* **storage** units follow the rule-storage strategy of the core
  (:meth:`~envs.core.MarketCore.rule_storage_direction`): with ``p`` the mean price
  forecast of the next 24 hours, they bid to charge at ``p`` when this hour's forecast
  is at most ``p`` (action ``-|p| / max_bid_price``) and offer to discharge at ``p``
  otherwise (action ``+|p| / max_bid_price``), with their actual state of charge.

So with every unit bidding by rule, the market clears exactly where a scenario with no
learners at all would clear (up to storage, which then holds its own state of charge).

``env_kwargs`` are those of :func:`envs.parallel_env` (``study_case``, ``max_cycles``,
``start``, ``max_bid_price``, ``foresight``, ``regret_scale``, ``reward_scale``,
``render_mode``, ``record``).

Example::

    import envs
    env = envs.single_agent_env("tiny")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .core import MarketCore
from .parallel import INFO_KEYS, make_core

__all__ = ["ENV_ID", "SingleAgentMarketEnv", "rule_actions", "single_agent_env"]


def rule_actions(core: MarketCore, out: np.ndarray | None = None) -> np.ndarray:
    """Actions ``(B, n, max_act)`` with which every learning unit of ``core`` bids by rule
    in the current hour (see the module docstring): plants and renewables their marginal
    cost (``mc / max_bid_price``, not clipped), storage the rule-storage price and
    direction. Pass them to :meth:`MarketCore.step` directly (not through an env's
    clipping ``step``) to bid marginal costs above ``max_bid_price`` exactly."""
    if out is None:
        out = np.zeros((core.B, core.n, core.max_act))
    t = min(core.hour, core.T - 1)
    sc = core.scenario
    m = core.max_bid_price
    if len(core.lp):
        out[:, core.sl_plant, :2] = (sc.plants.marginal_cost[t, core.lp] / m)[None, :, None]
    if len(core.lr):
        out[:, core.sl_ren, 0] = sc.renewables.marginal_cost[core.lr] / m
    if len(core.ls):
        mean, charge = core.rule_storage_direction(t)
        a = max(abs(mean) / m, 1e-9)
        if core.storage_bids == "two_sided":  # the rule's one bid; the other side at the range's end
            p = float(np.clip(2.0 * mean / m - 1.0, -1.0, 1.0))
            out[:, core.sl_storage, :2] = (p, 1.0) if charge else (-1.0, p)
        else:
            out[:, core.sl_storage, 0] = -a if charge else a
    return out


class SingleAgentMarketEnv(gym.Env):
    """One learning unit of the market as a ``gymnasium.Env`` (see the module docstring)."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 2, "name": "marketzoo_single_v0"}

    def __init__(
        self,
        scenario="default",
        agent: str | None = None,
        *,
        study_case: str = "base",
        render_mode: str | None = None,
        max_cycles: int | None = None,
        record: bool = False,
        **options: Any,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.core = core = make_core(scenario, study_case=study_case, num_envs=1, max_cycles=max_cycles, **options)
        core.recording = bool(record)
        if core.n == 0:
            raise ValueError(
                f"{core.scenario.summary()}: no unit is marked as learning, so there is no agent to control. "
                "Mark a unit as learning (a bidding strategy containing 'learning')."
            )
        self.possible_agents = list(core.agents)
        if agent is None:
            agent = self.possible_agents[0]
        if agent not in self.possible_agents:
            raise ValueError(f"unknown agent {agent!r}; the learning units of this scenario are {self.possible_agents}")
        self.agent = agent
        self.index = self.possible_agents.index(agent)
        self.kind = core.agent_kind[self.index]
        self.act_dim = int(core.act_dims[self.index])
        self.render_mode = render_mode
        self.observation_space = spaces.Box(core.obs_low, core.obs_high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.act_dim,), dtype=np.float32)
        self._actions = np.zeros((1, core.n, core.max_act))
        self._last: dict[str, Any] | None = None

    @property
    def unit(self) -> str:
        """Scenario name of the learner's unit."""
        return self.core.agent_unit[self.index]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.core.reset(self.np_random)[0, self.index]
        self._last = None
        info = {k: 0.0 for k in INFO_KEYS}
        info["hour"] = float(self.core.hour)
        info["agent"] = self.agent
        return obs.copy(), info

    def step(self, action):
        core = self.core
        if core.done:
            raise RuntimeError("step() called after the episode ended: call reset() first")
        a = np.asarray(action, dtype=np.float64)
        d = self.act_dim
        if a.shape != (d,) and not (d == 1 and a.shape == ()):
            raise ValueError(f"action for {self.agent!r} has shape {a.shape}; expected ({d},)")
        a = a.reshape(d)
        if not np.isfinite(a).all():
            raise ValueError(f"action is not finite: {a.tolist()}; actions must be numbers in [-1, 1]")
        acts = rule_actions(core, self._actions)
        acts[0, self.index, :] = 0.0
        acts[0, self.index, :d] = np.clip(a, -1.0, 1.0)
        t = core.hour
        out, obs_all = core.step_observe(acts)  # the fused single-copy path when it applies
        i = self.index
        obs = obs_all[0, i].copy()
        if self.kind == "plant":
            mc = float(core.scenario.plants.marginal_cost[t, core.lp[i - core.sl_plant.start]])
        elif self.kind == "storage":
            mc = float(core.scenario.storages.additional_cost_discharge[core.ls[i - core.sl_storage.start]])
        else:
            mc = float(core.scenario.renewables.marginal_cost[core.lr[i - core.sl_ren.start]])
        info = {
            "profit": float(out.profit[0, i]), "accepted_volume": float(out.accepted[0, i]),
            "clearing_price": float(out.price[0]), "regret": float(out.regret[0, i]),
            "bid_price_0": float(out.bid_price[0, i, 0]), "bid_price_1": float(out.bid_price[0, i, 1]),
            "marginal_cost": mc, "scarcity": float(out.scarcity[0]), "hour": float(t), "agent": self.agent,
        }
        self._last = {"hour": t, "outcome": out}
        if self.render_mode == "human":
            self.render()
        return obs, float(out.reward[0, i]), False, bool(core.done), info

    def episode_record(self):
        """Bids and results of the episode so far (env made with ``record=True``)."""
        return self.core.episode_record(0)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; create the env with render_mode='human' or 'rgb_array'")
            return None
        from .render import render_rgb, render_text

        if self.render_mode == "human":
            print(render_text(self))
            return None
        return render_rgb(self)


def single_agent_env(scenario="default", agent: str | None = None, **env_kwargs) -> SingleAgentMarketEnv:
    """One learning unit (``agent``, default the first) as a ``gymnasium.Env``; every other
    learning unit bids by rule (see :mod:`envs.single_agent`)."""
    return SingleAgentMarketEnv(scenario, agent, **env_kwargs)


#: Gymnasium id of the single-agent view: ``gymnasium.make(ENV_ID, scenario="tiny")``.
ENV_ID = "marketzoo/SingleAgentMarket-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.single_agent:SingleAgentMarketEnv")
