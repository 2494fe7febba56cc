"""The agents of the mango runtime: market, learning units and the worker's unit host.

* :class:`MarketAgent` owns a :class:`envs.MarketCore` (the training market, ``B``
  copies) and a one-copy evaluation core. For every episode the runtime calls
  :meth:`MarketAgent.begin_episode`; the market then clears one hour per simulated hour
  of mango's clock: it sends every unit its observation, waits for all bids, steps the
  core and sends the transition to the learning agent. Evaluation episodes run the
  :func:`agents.evaluation.evaluation_episode` with the units' (noise-free) bids.
* :class:`UnitAgent` holds the actor of one learning unit (an
  :class:`agents.learning_utils.Actor` loaded with the learner's weights) and answers
  every observation with its bid: uniform random in initial exploration, actor plus
  Gaussian noise from its own generator (``run_generators(seed, n).agents[index]``, the
  same draws as the plain training loop) in training, the bare actor in evaluation.
* :class:`UnitHostAgent` lives in each worker process and creates unit agents on request.

Handlers never raise into mango: malformed or unexpected messages are logged and
dropped. Failures inside scheduled tasks (a unit that does not answer, an unreachable
agent) are kept in ``failure`` for the runtime, which stops the run with that error.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from dateutil import rrule
from mango import Agent, AgentAddress, sender_addr

from envs import MarketCore, Scenario

from ..learning_utils import Actor, NormalActionNoise
from ..matd3 import MATD3
from .protocol import (
    HOST,
    MARKET,
    MODES,
    POLICY,
    TRAINING,
    MessageError,
    Recurrence,
    UnitSpec,
    array_of,
    describe,
    field_of,
    from_timestamp,
    is_message,
)
from ..evaluation import EvalResult, evaluation_episode
from ..learner import EpisodeStats
from ..seeding import agent_generators, run_generators

logger = logging.getLogger("agents.mango")


def env_generator(seed: int) -> np.random.Generator:
    """The training market's reset generator for a run seed
    (:func:`agents.seeding.run_generators`)."""
    return run_generators(seed, 0).env


class _SafeHandler:
    """Mixin: dispatch ``handle_message`` to ``_on_<type>`` methods, log and drop
    everything malformed or unexpected (never raise into mango's inbox loop)."""

    contexts: tuple[str, ...] = ()
    dropped_messages: int = 0

    def on_register(self) -> None:
        self.suspendable_tasks = False  # nothing suspends these agents' tasks; skip the wrapper

    def handle_message(self, content: Any, meta: dict) -> None:
        try:
            if not any(is_message(content, c) for c in self.contexts):
                raise MessageError(f"not a message for {type(self).__name__} (contexts {self.contexts})")
            kind = field_of(content, "type", str)
            handler = getattr(self, f"_on_{kind}", None)
            if handler is None:
                raise MessageError(f"unknown message type {kind!r}")
            handler(content, meta)
        except Exception as exc:  # noqa: BLE001 - a handler must never raise into mango
            self.dropped_messages += 1
            logger.warning("%s %s: dropped message %s from %s: %s", type(self).__name__, getattr(self, "aid", "?"),
                           describe(content), meta.get("sender_id") if isinstance(meta, dict) else None, exc)


# --------------------------------------------------------------------------- units


class UnitAgent(_SafeHandler, Agent):
    """One learning unit: holds its actor and answers observations with bids.

    Args:
        spec: sizes, position among the learners, noise and seed (:class:`UnitSpec`).

    With ``spec.exact`` (default) the deterministic action is computed with the same
    batched kernel as :meth:`agents.matd3.MATD3.act` (a stack of this actor and, when
    there are several learners, one zero dummy), which makes the bids bitwise identical to
    the plain training loop's; ``Actor.forward`` (``nn.Linear``) differs from that kernel
    by about 1e-8.
    """

    contexts = (MARKET, POLICY)

    def __init__(self, spec: UnitSpec) -> None:
        super().__init__()
        self.spec = s = spec
        if not 0 <= s.index < s.n_agents or not 1 <= s.act_dim <= s.max_act:
            raise ValueError(f"UnitAgent {s.name}: inconsistent spec {s}")
        self.rng = agent_generators(s.seed, s.n_agents)[s.index]
        self.noise = NormalActionNoise(s.num_envs * s.max_act, mu=0.0, sigma=s.noise_sigma, scale=1.0, dt=1.0,
                                       rng=self.rng)
        with torch.random.fork_rng(devices=[]):  # placeholder weights; never touch the global generator
            self.actor = Actor(s.obs_dim, s.act_dim, torch.float32, hidden_sizes=tuple(s.actor_hidden_sizes))
        self._k = 1 if s.n_agents == 1 else 2
        self._stack = None
        self._x = torch.zeros(s.num_envs, self._k, s.obs_dim)  # slot 0: the observations, slot 1: zero dummy
        if s.exact:
            dims = [s.act_dim] if self._k == 1 else [s.act_dim, s.max_act]
            self._stack = MATD3(self._k, s.obs_dim, dims, 0, actor_hidden_sizes=s.actor_hidden_sizes,
                                critic_hidden_sizes=(1,), seed=0)
            self._stack.load_agent(0, actor=self.actor.state_dict())
        self.mask = (np.arange(s.max_act) < s.act_dim).astype(np.float64)
        self._shift = self._scale = None  # the learner's observation standardisation (obs_normalization)
        if (s.obs_shift is None) != (s.obs_scale is None):
            raise ValueError(f"UnitAgent {s.name}: obs_shift and obs_scale must be given together")
        if s.obs_shift is not None:
            self._shift = torch.tensor(s.obs_shift, dtype=torch.float32)
            self._scale = torch.tensor(s.obs_scale, dtype=torch.float32)
            if self._shift.shape != (s.obs_dim,) or self._scale.shape != (s.obs_dim,) or not (self._scale > 0).all():
                raise ValueError(f"UnitAgent {s.name}: obs_shift and obs_scale must be {s.obs_dim} values, scale > 0")
        self.version = 0
        """Version of the actor weights in use (0: not yet received from the learner)."""
        self.bids = 0

    # ---- acting
    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        """Actor output for observations ``(B, obs_dim)``, padded to ``(B, max_act)``, float64."""
        s = self.spec
        x = torch.from_numpy(np.asarray(obs, dtype=np.float32))
        if self._shift is not None:  # the same operation as MATD3's standardisation
            x = (x - self._shift) / self._scale
        if self._stack is not None:
            if self._x.shape[0] != x.shape[0]:
                self._x = torch.zeros(x.shape[0], self._k, s.obs_dim)
            self._x[:, 0] = x
            return self._stack.act(self._x)[:, 0].numpy().astype(np.float64)
        out = np.zeros((x.shape[0], s.max_act))
        with torch.no_grad():
            out[:, : s.act_dim] = self.actor(x).cpu().numpy()
        return out

    def bid(self, obs: np.ndarray, mode: str, noise_scale: float) -> np.ndarray:
        """The action ``(B, max_act)`` for observations ``(B, obs_dim)``: uniform random
        in ``explore``, actor + noise (clipped to [-1, 1]) in ``train``, actor in ``eval``;
        padded dimensions are 0."""
        B, m = self.spec.num_envs, self.spec.max_act
        if mode == "eval":
            return self.deterministic_action(obs) * self.mask
        if mode == "explore":
            return self.rng.uniform(-1.0, 1.0, size=(B, m)) * self.mask
        a = self.deterministic_action(obs)
        self.noise.scale = float(noise_scale)
        a = a + self.noise.noise().reshape(B, m)
        np.clip(a, -1.0, 1.0, out=a)
        return a * self.mask

    def load_actor(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Take new actor weights; keys and shapes are checked before anything is written."""
        own = self.actor.state_dict()
        if set(state_dict) != set(own) or any(tuple(state_dict[k].shape) != tuple(v.shape) for k, v in own.items()):
            raise MessageError(f"actor weights for {self.spec.name!r} do not fit its actor "
                               f"(keys {sorted(state_dict)[:6]}...)")
        if self._stack is not None:
            self._stack.load_agent(0, actor=state_dict)
        self.actor.load_state_dict(state_dict)
        self.version = int(version)

    # ---- messages
    def _on_observation(self, content: dict, meta: dict) -> None:
        s = self.spec
        mode = field_of(content, "mode", str)
        if mode not in MODES:
            raise MessageError(f"unknown mode {mode!r}")
        raw = field_of(content, "obs", np.ndarray)
        rows = raw.shape[0] if mode == "eval" and raw.ndim == 2 else s.num_envs  # evaluation: one market copy
        obs = array_of(content, "obs", (max(rows, 1), s.obs_dim))
        scale = field_of(content, "noise_scale", float)
        if not np.isfinite(scale) or scale < 0:
            raise MessageError(f"noise_scale must be finite and >= 0, got {scale}")
        action = self.bid(obs, mode, scale)
        self.bids += 1
        reply = {"context": MARKET, "type": "bid", "unit": s.name, "episode": content.get("episode"),
                 "hour": content.get("hour"), "version": self.version, "action": action}
        self.schedule_instant_message(reply, sender_addr(meta))

    def _on_actor_weights(self, content: dict, meta: dict) -> None:
        unit = field_of(content, "unit", str)
        if unit != self.spec.name:
            raise MessageError(f"actor weights for {unit!r} sent to {self.spec.name!r}")
        version = field_of(content, "version", int)
        sd = field_of(content, "state_dict", dict)
        if not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise MessageError("state_dict values must be tensors")
        self.load_actor(sd, version)
        ack = {"context": TRAINING, "type": "actor_ack", "unit": self.spec.name, "version": version}
        self.schedule_instant_message(ack, sender_addr(meta))


class UnitHostAgent(_SafeHandler, Agent):
    """Creates :class:`UnitAgent` s in its container on a ``create_units`` request (one per
    worker process; the runtime sends the specs, so a worker needs no scenario)."""

    contexts = (HOST,)

    def __init__(self) -> None:
        super().__init__()
        self.units: dict[str, UnitAgent] = {}

    def _on_create_units(self, content: dict, meta: dict) -> None:
        specs = field_of(content, "units", list)
        try:
            made = []
            parsed = [UnitSpec.from_dict(d) for d in specs]
            for spec in parsed:
                if spec.name in self.units:
                    raise MessageError(f"unit {spec.name!r} exists already")
                unit = UnitAgent(spec)
                self.context.register(unit, spec.name)
                if unit.aid != spec.name:
                    raise MessageError(f"aid {spec.name!r} is not available (got {unit.aid!r})")
                self.units[spec.name] = unit
                made.append(spec.name)
            reply = {"context": HOST, "type": "units_created", "units": made}
        except Exception as exc:  # noqa: BLE001 - reported to the requester
            logger.error("unit host: cannot create units: %s", exc)
            reply = {"context": HOST, "type": "error", "error": f"{type(exc).__name__}: {exc}"}
        self.schedule_instant_message(reply, sender_addr(meta))


# --------------------------------------------------------------------------- market


@dataclass
class EpisodeOutcome:
    """What the market reports when an episode is over."""

    episode: int
    mode: str
    hours: int
    stats: dict[str, float] = field(default_factory=dict)  # training episodes
    evaluation: EvalResult | None = None  # evaluation episodes
    wall_seconds: float = 0.0


@dataclass
class _Episode:
    episode: int
    mode: str
    start: _dt.datetime
    noise_scales: np.ndarray  # (hours,) scale of each hour's noise draw
    learning_rate: float | None
    hour: int = 0
    obs: np.ndarray | None = None
    gen: Any = None
    acc: EpisodeStats | None = None
    t0: float = 0.0


class MarketAgent(_SafeHandler, Agent):
    """The market: owns the cores and clears one hour per simulated hour (module docstring).

    Args:
        scenario: the scenario.
        num_envs: copies of the training market (``learning_config.num_envs``).
        seed: run seed (the training market's reset generator is :func:`env_generator`).
        env_options: :class:`MarketCore` options (foresight, max_cycles, max_bid_price, ...).
        core, eval_core: the training and evaluation cores, when the runtime built them
            (otherwise built here from ``env_options``).
        analysis: run the best-response analysis in evaluation episodes.
        bid_timeout: seconds (wall clock) to wait for all bids of an hour.
    """

    contexts = (MARKET,)

    def __init__(self, scenario: Scenario, *, num_envs: int, seed: int, env_options: dict[str, Any] | None = None,
                 analysis: bool = True, bid_timeout: float = 60.0, core: MarketCore | None = None,
                 eval_core: MarketCore | None = None) -> None:
        super().__init__()
        self.scenario = scenario
        self.seed = int(seed)
        self.core = core if core is not None else MarketCore(scenario, num_envs=num_envs, **(env_options or {}))
        self.eval_core = eval_core if eval_core is not None else MarketCore(scenario, num_envs=1, **(env_options or {}))
        self.eval_core.recording = True
        self.rng = env_generator(seed)
        self.analysis = analysis
        self.bid_timeout = float(bid_timeout)
        self.unit_addresses: dict[str, AgentAddress] = {}
        self.learner_addr: AgentAddress | None = None
        self.current: _Episode | None = None
        self.outcomes: list[EpisodeOutcome] = []
        self.failure: BaseException | None = None
        self._bids: dict[str, np.ndarray] = {}
        self._bids_ready: asyncio.Future | None = None
        self.hours_cleared = 0

    @property
    def hours(self) -> int:
        """Hours per episode."""
        return self.core.max_cycles

    def connect(self, units: dict[str, AgentAddress], learner: AgentAddress) -> None:
        """Where the unit agents (in the core's agent order) and the learning agent are."""
        missing = [a for a in self.core.agents if a not in units]
        if missing:
            raise ValueError(f"MarketAgent.connect: no address for units {missing}")
        self.unit_addresses = {a: units[a] for a in self.core.agents}
        self.learner_addr = learner

    def begin_episode(self, episode: int, mode: str, start: _dt.datetime, *, noise_scale: float | np.ndarray = 0.0,
                      learning_rate: float | None = None) -> None:
        """Schedule an episode: one market clearing per hour from ``start`` (tz-aware,
        after the current clock time) for :attr:`hours` hours. ``noise_scale``: one value
        for every hour, or one per hour (:meth:`agents.learner.Learner.noise_scales`)."""
        if mode not in MODES:
            raise ValueError(f"MarketAgent.begin_episode: unknown mode {mode!r}")
        if self.current is not None:
            raise RuntimeError(f"MarketAgent.begin_episode: episode {self.current.episode} is still running")
        if start.timestamp() <= self.current_timestamp:
            raise ValueError("MarketAgent.begin_episode: the episode must start after the current clock time")
        scales = np.broadcast_to(np.asarray(noise_scale, dtype=np.float64), (self.hours,))
        self.current = _Episode(episode, mode, start, scales, learning_rate)
        rule = Recurrence(rrule.HOURLY, dtstart=start, count=self.hours)
        self.schedule_recurrent_task(self._clear_hour, rule)

    async def _clear_hour(self) -> None:
        ep = self.current
        if ep is None or self.failure is not None:
            return
        try:
            await self._clear(ep)
        except Exception as exc:  # noqa: BLE001 - kept for the runtime
            logger.error("market: hour %d of episode %d failed: %s: %s", ep.hour, ep.episode, type(exc).__name__, exc)
            self.failure = exc

    async def _clear(self, ep: _Episode) -> None:
        n = self.core.n
        if ep.hour == 0:
            ep.t0 = time.perf_counter()
            if ep.mode == "eval":
                ep.gen = evaluation_episode(self.eval_core, self.scenario, seed=self.seed, analysis=self.analysis)
                ep.obs = next(ep.gen)
            else:
                ep.obs = self.core.reset(self.rng)
                ep.acc = EpisodeStats(n)
            await self._send_learner({"context": TRAINING, "type": "episode_start", "episode": ep.episode,
                                      "mode": ep.mode, "learning_rate": ep.learning_rate,
                                      "time": from_timestamp(self.current_timestamp)})
        actions = await self._collect_bids(ep)
        ep.hour += 1
        self.hours_cleared += 1
        if ep.mode == "eval":
            try:
                ep.obs = ep.gen.send(actions)
            except StopIteration as stop:
                self._finish(ep, evaluation=stop.value)
            return
        obs = ep.obs
        out, ep.obs = self.core.step_observe(actions)  # step + observe (fused for one copy)
        ep.acc.add(out)
        await self._send_learner({"context": TRAINING, "type": "transition", "episode": ep.episode, "hour": ep.hour - 1,
                                  "time": from_timestamp(self.current_timestamp),
                                  "obs": obs, "actions": actions, "reward": out.reward})
        if self.core.done:
            await self._send_learner({"context": TRAINING, "type": "episode_end", "episode": ep.episode,
                                      "final_obs": ep.obs})
            lr = float(ep.learning_rate) if ep.learning_rate is not None else float("nan")
            self._finish(ep, stats=ep.acc.result(ep.noise_scales[0], lr))

    def _finish(self, ep: _Episode, *, stats: dict | None = None, evaluation: EvalResult | None = None) -> None:
        self.outcomes.append(EpisodeOutcome(ep.episode, ep.mode, ep.hour, stats or {}, evaluation,
                                            time.perf_counter() - ep.t0))
        self.current = None

    async def _send_learner(self, msg: dict) -> None:
        if not await self.send_message(msg, self.learner_addr):
            raise ConnectionError(f"market: cannot reach the learning agent at {self.learner_addr}")

    async def _collect_bids(self, ep: _Episode) -> np.ndarray:
        obs = ep.obs  # (B, n, obs_dim)
        self._bids = {}
        loop = asyncio.get_running_loop()
        self._bids_ready = loop.create_future()
        now = from_timestamp(self.current_timestamp)
        for i, (unit, addr) in enumerate(self.unit_addresses.items()):
            msg = {"context": MARKET, "type": "observation", "episode": ep.episode, "hour": ep.hour, "time": now,
                   "mode": ep.mode, "noise_scale": float(ep.noise_scales[min(ep.hour, len(ep.noise_scales) - 1)]), "obs": np.ascontiguousarray(obs[:, i])}
            if not await self.send_message(msg, addr):
                raise ConnectionError(f"market: cannot reach unit agent {unit!r} at {addr}")
        if len(self._bids) < len(self.unit_addresses):
            # a bare future with a timer: cheaper than asyncio.wait_for, which wraps it in a task
            timer = loop.call_later(self.bid_timeout, self._bids_timeout, self._bids_ready)
            try:
                await self._bids_ready
            finally:
                timer.cancel()
        actions = np.stack([self._bids[u] for u in self.unit_addresses], axis=1)  # (B, n, m)
        self._bids_ready = None
        return actions

    def _on_bid(self, content: dict, meta: dict) -> None:
        ep = self.current
        unit = field_of(content, "unit", str)
        if unit not in self.unit_addresses:
            raise MessageError(f"bid from unknown unit {unit!r}")
        if ep is None or self._bids_ready is None or content.get("episode") != ep.episode or content.get("hour") != ep.hour:
            raise MessageError(f"stale or unexpected bid (episode {content.get('episode')}, hour {content.get('hour')})")
        if unit in self._bids:
            raise MessageError(f"second bid of {unit!r} for the same hour")
        rows = self.eval_core.B if ep.mode == "eval" else self.core.B
        action = array_of(content, "action", (rows, self.core.max_act))
        if np.abs(action).max(initial=0.0) > 1.0:
            raise MessageError(f"bid of {unit!r} outside [-1, 1]")
        self._bids[unit] = action.astype(np.float64, copy=False)
        if len(self._bids) == len(self.unit_addresses) and not self._bids_ready.done():
            self._bids_ready.set_result(True)

    def _bids_timeout(self, fut: asyncio.Future) -> None:
        if not fut.done():
            missing = [u for u in self.unit_addresses if u not in self._bids]
            fut.set_exception(TimeoutError(f"market: no bid from units {missing} within {self.bid_timeout:g} s "
                                           "(process died or network down?)"))
