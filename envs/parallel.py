"""marketzoo_v0 — an hourly electricity wholesale market as a PettingZoo ``ParallelEnv``.

Power plants, storage units and renewables bid into a uniform-price (pay-as-clear)
day-ahead style market, one market clearing per hour. Units marked as learning in the
scenario are the agents; all other units bid by rule (plants and renewables at marginal
cost, inelastic demand at the price cap, rule-based storage against the price forecast).

=================  ===============================================================
Import             ``import envs; env = envs.parallel_env("default")``
Agents             one per learning unit: ``plant_<unit>``, ``storage_<unit>``,
                   ``renewable_<unit>`` (``_``/spaces in unit names become ``-``)
Parallel API       yes (AEC via ``envs.env(...)``)
Action space       ``Box(-1, 1, (2,), float32)`` plants, ``Box(-1, 1, (1,), float32)``
                   storage and renewables
                   (``uniform_spaces=True``: ``Box(-1, 1, (2,), float32)`` for all)
Observation space  ``Box(low, high, (3*foresight + 2,), float32)``, same for all agents
                   (``uniform_spaces=True``: 3 more entries, the agent kind one-hot)
State space        ``Box(float32, (3*foresight + 2*n_agents,))``
Episode            the scenario horizon (or ``episode_hours`` hours, at a start drawn
                   from the reset seed with ``random_start``); truncation only
=================  ===============================================================

Actions (``a`` in [-1, 1], ``m = max_bid_price``, default 100 EUR/MWh; values outside
[-1, 1] are clipped, NaN/inf raise; anything but real numbers -- text, complex, bool,
None -- raises ``TypeError`` naming the agent). ``reset(seed=...)`` takes ``None`` or an
integer in ``[0, 2**64 - 1]``; other seeds raise instead of being truncated:

* plant: two prices ``a*m``; the lower one is bid for the inflexible ``min_power`` part,
  the higher one for the flexible ``max_power - min_power`` (available capacity).
  With ``plant_bids="undercut"`` each price is then raised to 0.01 EUR/MWh below the
  cheapest rule-bidding offer at or above it in that hour (kept where none lies within
  ``m``); see :class:`envs.MarketCore`. With ``tie_below_cost=True`` as well, a price
  that would go a tick under a rule offer priced below the plant's marginal cost goes to
  that offer's own price instead (a tie, split pro rata). With ``grid_learner_costs=True``
  the grid also holds every learning plant's marginal cost (an offer can go a tick under a
  rival learner's cost). With ``start_up_markup_hours=H`` a plant with a start-up cost
  that did not run the hour before offers no lower than its marginal cost
  plus its start-up cost over ``H`` hours at minimum power (before the grid above). With
  ``min_power_rule="raise"`` a plant dispatched for less than its ``min_power`` runs its
  ``min_power``, paid for the accepted part only (ASSUME's rule; default ``"partial"``).
  With ``cost_snap=B`` a price within ``B`` EUR/MWh of the plant's marginal cost is read
  as exactly that cost (first of all these steps; a learning renewable's price too).
* storage: one signed price. ``a >= 0``: offer to discharge at ``a*m`` (as much as the
  state of charge and power allow within the hour); ``a < 0``: bid to charge at ``|a|*m``.
  With ``storage_bids="two_sided"`` two entries instead: a charge bid at
  ``(min(a0, a1) + 1) * m / 2`` and a discharge offer at ``(max(a0, a1) + 1) * m / 2`` in
  the same hour, both for what the state of charge and power allow within the hour.
  With ``storage_prices="undercut"`` as well, the offer is raised as a plant's price is
  (above) and the charge bid moved to 0.01 EUR/MWh above the dearest rule-bidding offer at
  or below it; with ``storage_prices="behind"`` the offer sits 0.005 EUR/MWh below the
  rule offer instead, behind a learning plant's offer on the plants' grid; see
  :class:`envs.MarketCore`.
* renewable: one price ``a*m`` for the available capacity.
* An agent left out of the action dict submits no bid that hour (its volumes are 0).

Observation of every agent (``F = foresight`` hours, default 12), in ASSUME's layout:

===========================  ==================================================
``[0, F)``                   residual load forecast (demand − available
                             renewables) for hours ``t .. t+F-1`` / max demand
``[F, 2F)``                  price forecast for hours ``t .. t+F-1`` / ``m``
                             (every plant and renewable bidding marginal cost)
``[2F, 3F)``                 realised clearing prices of hours ``t-F .. t-1`` / ``m``
                             (the forecast stands in before the episode start)
``3F``                       plant/renewable: dispatch last hour / capacity;
                             storage: state of charge / capacity
``3F + 1``                   plant: marginal cost / ``m``; storage: average cost of
                             the stored energy / ``m``; renewable: availability
===========================  ==================================================

All entries are clipped to the space bounds (prices to ``[floor, cap] / m``).

Uniform spaces (``uniform_spaces=True``), for libraries and shared policies that need
every agent to have the same spaces (SuperSuit's vectorisation, Tianshou, one SB3
policy for all agents):

* every action space is ``Box(-1, 1, (2,), float32)``: plants (and storage with
  ``storage_bids="two_sided"``) use both entries as above; renewables and storage with
  signed bids use entry 0 only and **ignore entry 1** (any finite value; it changes
  nothing);
* every observation has 3 more entries ``[3F + 2, 3F + 5)``: the agent's kind as a
  one-hot over ``("plant", "storage", "renewable")`` (bounds 0 and 1), so one policy
  can tell the kinds apart (``env.agent_kind`` maps agent -> kind);
* rewards, infos, state and everything else are unchanged.

Reward of agent ``i`` in an hour::

    reward = (profit - regret_scale * regret) / (capacity * m) * reward_scale

with ``profit`` in EUR (plant: revenue − marginal cost × dispatch − start-up cost when it
starts; storage: revenue from discharging − cost of charging − per-MWh additional costs;
renewable: revenue − marginal cost × dispatch), ``regret`` ASSUME's opportunity cost
``max(price − marginal cost, 0) × unsold available capacity`` (0 for storage),
``capacity`` the unit's max power and defaults ``regret_scale = 0``, ``reward_scale = 10``
(with ``m = 100`` this equals ASSUME's ``0.1 × profit / max_power``).

``infos[agent]`` (same keys at reset and every step, floats): ``profit`` (EUR),
``accepted_volume`` (MW, + sold, − bought), ``clearing_price`` (EUR/MWh), ``regret``
(EUR), ``bid_price_0``/``bid_price_1`` (EUR/MWh; equal for one-price units, 0 when the
agent did not bid), ``marginal_cost``,
``scarcity`` (1.0 if demand at the cap went unserved), ``hour`` (scenario hour index).
In a zonal/nodal market (:mod:`envs.network`) ``clearing_price`` is the demand-weighted
mean of the zone/bus prices and ``node_price`` is the price of the agent's own zone/bus.

Episodes that depend on the seed (all off by default, so that ``reset(seed=s)`` gives
the same episode for every ``s``, as before these options existed):

* ``episode_hours=168, random_start=True``: a window of 168 hours starting at an hour
  drawn from the reset generator (``max_cycles``/``start="random"`` are the old names);
* ``demand_noise=0.05, availability_noise=0.05``: demand and renewables' availability
  of the episode's hours times log-normal factors with mean 1 and these standard
  deviations, drawn at every reset (availability clipped to [0, 1]; the forecasts in the
  observation stay noise-free);
* ``holdout_hours=H``: episodes stay within the hours before the last ``H``; with
  ``eval_window=True`` they run on those last ``H`` hours instead (train on three
  weeks, evaluate on the fourth). :func:`envs.episode_options` builds both sets of
  options from a ``learning_config``.

Arguments of :func:`parallel_env` (and :func:`env`, :class:`~envs.vector.VectorMarketEnv`):
``scenario`` (built-in name, folder path or :class:`~envs.data.Scenario`; default
``"default"``), ``study_case`` (``"base"``), ``render_mode`` (``None``, ``"human"``,
``"rgb_array"``), ``max_cycles``/``episode_hours`` (episode hours; default the horizon), ``start``
(``"begin"`` or ``"random"``)/``random_start``, ``demand_noise``, ``availability_noise``,
``holdout_hours``, ``eval_window``, ``max_bid_price``, ``foresight``, ``regret_scale``,
``reward_scale``, ``record`` (keep every bid for :meth:`episode_record` and
:mod:`envs.analysis`), ``uniform_spaces`` (see above; ``False`` by default).

Speed: a step goes through the fused single-copy path of :mod:`envs.fast` (the same
results as the array path of :class:`~envs.core.MarketCore`, tested equal) unless the
env records bids, the market is pay-as-bid or the hour has more than 512 bids;
``env.use_fast_path = False`` forces the array path.

Version history: v0 — first release (later options are off by default and leave it as it was).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from .core import ACT_DIMS, KINDS, MarketCore
from .data import Scenario
from .fast import FastStep
from .validate import check_env_options, check_seed, validate_scenario

UNIFORM_ACT_DIM = max(ACT_DIMS.values())
"""Action width of every agent with ``uniform_spaces=True`` (the widest kind: plants' 2 prices)."""

INFO_KEYS = (
    "profit", "accepted_volume", "clearing_price", "regret", "bid_price_0", "bid_price_1",
    "marginal_cost", "scarcity", "hour",
)


def _resolve_scenario(scenario, study_case: str) -> Scenario:
    if isinstance(scenario, Scenario):
        return validate_scenario(scenario)  # loaded ones are checked by load_scenario
    from .scenario import load_scenario

    return load_scenario(scenario, study_case=study_case)


def make_core(scenario="default", *, study_case: str = "base", num_envs: int = 1, **options) -> MarketCore:
    """Build a :class:`MarketCore` from a scenario name/path/object and env options."""
    check_env_options({"num_envs": num_envs, **options})
    return MarketCore(_resolve_scenario(scenario, study_case), num_envs=num_envs, **options)


def _numeric_action(what: str, a: np.ndarray, shape: str) -> np.ndarray:
    """The slow path of action checking: integer actions as float64; anything that is
    not a real number (text, complex, bool, None, objects) raises naming ``what`` (the
    agent)."""
    if a.dtype.kind in "iu":
        return a.astype(np.float64)
    kind = {"c": "complex", "b": "bool", "U": "text", "S": "bytes", "O": "object"}.get(a.dtype.kind, str(a.dtype))
    shown = repr(a.tolist()) if a.size <= 8 else f"array of shape {a.shape}"
    raise TypeError(f"{what} is of type {kind} ({shown}); expected real numbers in [-1, 1] of shape {shape}")


class MarketParallelEnv(ParallelEnv):
    """The market as a PettingZoo ``ParallelEnv``; see the module docstring for the spec."""

    metadata = {
        "name": "marketzoo_v0",
        "render_modes": ["human", "rgb_array"],
        "is_parallelizable": True,
        "render_fps": 2,
    }

    def __init__(
        self,
        scenario="default",
        *,
        study_case: str = "base",
        render_mode: str | None = None,
        max_cycles: int | None = None,
        record: bool = False,
        uniform_spaces: bool = False,
        **options: Any,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.core = make_core(scenario, study_case=study_case, num_envs=1, max_cycles=max_cycles, **options)
        self.core.recording = bool(record)
        self.render_mode = render_mode
        core = self.core
        if core.n == 0:
            raise ValueError(
                f"{core.scenario.summary()}: no unit is marked as learning, so the environment has no agents. "
                "Mark units as learning (a learning strategy such as powerplant_energy_learning) or name them: "
                "parallel_env(scenario, learning_units=['unit name', ...])."
            )
        self.possible_agents = list(core.agents)
        self.agents: list[str] = []
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self.uniform_spaces = bool(uniform_spaces)
        # every agent's own action size, and the size it must send (the padded width when uniform)
        self._act_dim = {a: int(d) for a, d in zip(self.possible_agents, core.act_dims)}
        if self.uniform_spaces:
            # the agent's kind as a one-hot over KINDS, appended to the core observation
            n_k = len(KINDS)
            self._kind_onehot = np.zeros((core.n, n_k), dtype=np.float32)
            self._kind_onehot[np.arange(core.n), [KINDS.index(k) for k in core.agent_kind]] = 1.0
            obs_space = spaces.Box(
                np.concatenate([core.obs_low, np.zeros(n_k, np.float32)]),
                np.concatenate([core.obs_high, np.ones(n_k, np.float32)]), dtype=np.float32,
            )
            width = max(UNIFORM_ACT_DIM, core.max_act)
            act_space = spaces.Box(-1.0, 1.0, (width,), dtype=np.float32)
            self.action_spaces = {a: act_space for a in self.possible_agents}
            self._send_dim = {a: width for a in self.possible_agents}
        else:
            self._kind_onehot = None
            obs_space = spaces.Box(core.obs_low, core.obs_high, dtype=np.float32)
            act = {d: spaces.Box(-1.0, 1.0, (d,), dtype=np.float32) for d in set(core.act_dims.tolist())}
            self.action_spaces = {a: act[int(d)] for a, d in zip(self.possible_agents, core.act_dims)}
            self._send_dim = dict(self._act_dim)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.state_space = spaces.Box(core.state_low.astype(np.float32), core.state_high.astype(np.float32), dtype=np.float32)
        self._rng = np.random.default_rng()
        self._actions = np.zeros((1, core.n, core.max_act))
        self._last: dict[str, Any] | None = None
        self._mc_col = np.zeros(core.n)
        # the fused single-copy step (envs/fast.py); False forces the generic array path
        self.use_fast_path = True
        self._fast = FastStep(core)
        self._fast.obs_tail = self._kind_onehot
        self._send_list = [self._send_dim[a] for a in self.possible_agents]
        self._used_list = [self._act_dim[a] for a in self.possible_agents]
        self._zero_acts = [[0.0] * d for d in self._used_list]
        self._closed = False

    # -- spaces: the same object on every call ------------------------------------
    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[agent]

    @property
    def agent_kind(self) -> dict[str, str]:
        """Kind of every agent: ``"plant"``, ``"storage"`` or ``"renewable"``."""
        return dict(zip(self.possible_agents, self.core.agent_kind))

    @property
    def action_dims(self) -> dict[str, int]:
        """Number of action entries each agent's bid uses (2 for plants, 1 otherwise);
        with ``uniform_spaces=True`` the entries after these are ignored."""
        return dict(self._act_dim)

    def _with_kind(self, obs: np.ndarray) -> np.ndarray:
        """``(n, obs_dim)`` core observations, plus the kind one-hot when uniform."""
        if self._kind_onehot is None:
            return obs
        return np.concatenate([obs, self._kind_onehot], axis=1)

    @property
    def unit_of(self) -> dict[str, str]:
        """Scenario unit name of every agent."""
        return dict(zip(self.possible_agents, self.core.agent_unit))

    # -- episode --------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(check_seed(seed))
        obs = self._with_kind(self.core.reset(self._rng)[0])
        self.agents = list(self.possible_agents)
        self._last = None
        zero = {k: 0.0 for k in INFO_KEYS}
        zero["hour"] = float(self.core.hour)
        if self.core.net is not None:  # zonal/nodal market: also the agent's own zone/bus price
            zero["node_price"] = 0.0
        infos = {a: dict(zero) for a in self.agents}
        return {a: obs[i] for i, a in enumerate(self.agents)}, infos

    def _actions_from_dict(self, actions: dict) -> tuple[np.ndarray, np.ndarray | None]:
        core = self.core
        buf = self._actions
        buf.fill(0.0)
        active = None
        if len(actions) != core.n:
            active = np.zeros(core.n, dtype=bool)
        for agent, act in actions.items():
            i = self._index.get(agent)
            if i is None or agent not in self.agents:
                raise KeyError(
                    f"unknown agent {agent!r} in the action dict; the agents are {self.agents} "
                    "(after the episode ends there are none: call reset())"
                )
            d = self._send_dim[agent]
            a = np.asarray(act)
            if a.dtype.kind != "f":  # ints are converted; text, complex, bool, None refused
                a = _numeric_action(f"action for {agent!r}", a, f"({d},)")
            if a.shape != (d,) and not (d == 1 and a.shape == ()):
                raise ValueError(
                    f"action for {agent!r} has shape {a.shape}; expected ({d},) (a 0-d array or scalar "
                    f"is accepted when the action has one element)"
                )
            a = a.reshape(d)
            if not np.isfinite(a).all():
                raise ValueError(f"action for {agent!r} is not finite: {a.tolist()}; actions must be numbers in [-1, 1]")
            u = self._act_dim[agent]
            buf[0, i, :u] = a[:u]  # with uniform spaces, the padding entries are ignored
            if active is not None:
                active[i] = True
        np.minimum(np.maximum(buf, -1.0, out=buf), 1.0, out=buf)
        return buf, active

    def _action_lists(self, actions: dict) -> tuple[list, list | None]:
        """The fast path's form of the action dict: per agent a list of its used entries,
        validated and clipped exactly as :meth:`_actions_from_dict` does."""
        n = self.core.n
        acts = self._zero_acts[:]  # agents left out keep zeros (they do not bid anyway)
        active = None if len(actions) == n else [False] * n
        index, send, used = self._index, self._send_list, self._used_list
        for agent, act in actions.items():
            i = index.get(agent)
            if i is None:
                raise KeyError(
                    f"unknown agent {agent!r} in the action dict; the agents are {self.agents} "
                    "(after the episode ends there are none: call reset())"
                )
            d = send[i]
            if type(act) is np.ndarray and act.shape == (d,) and act.dtype.kind == "f":
                vals = act.tolist()
            else:
                a = np.asarray(act)
                if a.dtype.kind != "f":  # ints are converted; text, complex, bool, None refused
                    a = _numeric_action(f"action for {agent!r}", a, f"({d},)")
                a = a.astype(np.float64, copy=False)
                if a.shape != (d,) and not (d == 1 and a.shape == ()):
                    raise ValueError(
                        f"action for {agent!r} has shape {a.shape}; expected ({d},) (a 0-d array or scalar "
                        f"is accepted when the action has one element)"
                    )
                vals = a.reshape(d).tolist()
            for x in vals:
                if x - x != 0.0:  # NaN or +-inf
                    raise ValueError(f"action for {agent!r} is not finite: {vals}; actions must be numbers in [-1, 1]")
            acts[i] = [-1.0 if x < -1.0 else (1.0 if x > 1.0 else float(x)) for x in vals[: used[i]]]
            if active is not None:
                active[i] = True
        return acts, active

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() called with no agents: the episode is over or reset() was not called")
        if self.use_fast_path and self._fast.supported():
            return self._step_fast(actions)
        acts, active = self._actions_from_dict(actions)
        core = self.core
        t = core.hour
        out = core.step(acts, active)
        obs = self._with_kind(core.observe()[0])
        done = core.done
        rew = out.reward[0].tolist()
        profit = out.profit[0].tolist()
        acc = out.accepted[0].tolist()
        reg = out.regret[0].tolist()
        bp = out.bid_price[0].tolist()
        price = float(out.price[0])
        scar = float(out.scarcity[0])
        mc = self._marginal_costs(t)
        agents = self.agents
        observations = {a: obs[i] for i, a in enumerate(agents)}
        rewards = {a: rew[i] for i, a in enumerate(agents)}
        terminations = {a: False for a in agents}
        truncations = {a: done for a in agents}
        infos = {
            a: {
                "profit": profit[i], "accepted_volume": acc[i], "clearing_price": price, "regret": reg[i],
                "bid_price_0": bp[i][0], "bid_price_1": bp[i][1], "marginal_cost": mc[i], "scarcity": scar,
                "hour": float(t),
            }
            for i, a in enumerate(agents)
        }
        if out.node_price is not None:  # zonal/nodal market: each agent's own zone/bus price
            for i, a in enumerate(agents):
                infos[a]["node_price"] = float(out.node_price[0, self.core.agent_node[i]])
        self._last = {"hour": t, "outcome": out}
        if done:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def _step_fast(self, actions: dict):
        """:meth:`step` through the fused single-copy path (:mod:`envs.fast`); the same
        results as the generic path, several times fewer NumPy calls."""
        acts, active = self._action_lists(actions)
        out = self._fast.step(acts, active)
        obs = out.obs
        agents = self.agents
        done = self.core.done
        observations = dict(zip(agents, obs))
        rewards = dict(zip(agents, out.reward))
        terminations = dict.fromkeys(agents, False)
        truncations = dict.fromkeys(agents, done)
        price = out.price
        scar = 1.0 if out.scarcity else 0.0
        hour = float(out.hour)
        keys = INFO_KEYS
        infos = {
            a: dict(zip(keys, (p, q, price, g, b[0], b[1], m, scar, hour)))
            for a, p, q, g, b, m in zip(agents, out.profit, out.accepted, out.regret, out.bid_price, out.marginal_cost)
        }
        self._last = {"hour": out.hour, "fast": out}
        if done:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    @property
    def _last(self) -> dict[str, Any] | None:
        """The last cleared hour ``{"hour", "outcome"}`` (for rendering)."""
        raw = self._last_raw
        if raw is not None and "fast" in raw:
            raw = self._last_raw = {"hour": raw["hour"], "outcome": raw["fast"].to_outcome(self.core)}
        return raw

    @_last.setter
    def _last(self, value) -> None:
        self._last_raw = value

    def _marginal_costs(self, t: int) -> list[float]:
        core = self.core
        sc = core.scenario
        mc = self._mc_col
        if len(core.lp):
            mc[core.sl_plant] = sc.plants.marginal_cost[t, core.lp]
        if len(core.ls):
            mc[core.sl_storage] = sc.storages.additional_cost_discharge[core.ls]
        if len(core.lr):
            mc[core.sl_ren] = sc.renewables.marginal_cost[core.lr]
        return mc.tolist()

    def state(self) -> np.ndarray:
        return self.core.state()[0]

    def episode_record(self):
        """The bids and results of the episode so far (env made with ``record=True``)."""
        return self.core.episode_record(0)

    # -- rendering --------------------------------------------------------------------
    def render(self):
        if self.render_mode is None:
            import warnings

            warnings.warn("render() called without render_mode; create the env with render_mode='human' or 'rgb_array'")
            return None
        from .render import render_rgb, render_text

        if self.render_mode == "human":
            print(render_text(self))
            return None
        return render_rgb(self)

    def close(self):
        self._closed = True
        self.agents = []


def parallel_env(scenario="default", study_case: str = "base", **kwargs) -> MarketParallelEnv:
    """A fresh, independent :class:`MarketParallelEnv` (see the module docstring)."""
    return MarketParallelEnv(scenario, study_case=study_case, **kwargs)


def env(scenario="default", study_case: str = "base", **kwargs):
    """The same environment in PettingZoo's AEC form (via ``parallel_to_aec``)."""
    return parallel_to_aec(parallel_env(scenario, study_case, **kwargs))


raw_env = functools.partial(parallel_env)
