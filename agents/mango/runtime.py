"""MATD3 training as a mango-agents system (``train.py --runtime mango``).

Agents (see :mod:`agents.mango.agents`, :mod:`agents.learning_role`):

* ``market`` -- :class:`~agents.mango.agents.MarketAgent`: owns the market cores and
  clears one hour per simulated hour of mango's clock;
* one :class:`~agents.mango.agents.UnitAgent` per learning unit (aid = the agent name,
  e.g. ``plant_ccgt-1``): holds its actor, answers observations with bids;
* ``learner`` -- a ``RoleAgent`` with the :class:`~agents.learning_role.Learning` role:
  replay buffer and MATD3, updates every ``train_freq`` simulated hours, sends new actor
  weights to the units.

Clock and episodes. All episodes lie on one simulated timeline in UTC that starts at
the scenario's first hour: a training episode takes ``H`` hours (the episode length), an
evaluation episode ``ceil(H / train_freq) * train_freq`` hours (so the learner's
``train_freq`` rhythm stays aligned with the training hours). The market clears at the
full hour; the learner's recurrent update fires at half past, after that hour's
transition arrived and before the next hour's observations go out. The runtime steps the
clock event by event (``ExternalClock.get_next_activity``) and waits for quiescence after
every step. The role's :class:`agents.learner.Learner` is the one learner core of the
run (as in the plain loop); the runtime keeps the books with an
:class:`agents.recorder.RunRecorder` on it (``compare_and_save_policies``,
``policies/last``, history, TensorBoard, early stopping) and ends with
:func:`agents.recorder.finish_run`.

Containers. ``containers=1`` (default): one mango ``ExternalSchedulingContainer`` in this
process. ``containers=N > 1``: a TCP container in this process (market, learner and
mango's ``DistributedClockManager``) and ``N - 1`` worker processes on ``host``, each a TCP
container on a free port with a ``DistributedClockAgent`` and a unit host that creates
the unit agents it is sent (round robin). Workers on other machines: start
``python -m agents.mango worker --bind HOST:PORT`` there and pass
``workers=["HOST:PORT", ...]`` (see ``docs/MANGO.md``).

With one container and the same seed the run produces the same transitions, weights,
evaluations and run folder as ``Trainer.train`` (tested bitwise). With several processes it is
deterministic too (the learner waits for the units' acknowledgements of new weights, the
market for all bids), but the path is slower. Every wait is bounded: a worker that dies,
a port that is taken or an agent that stops answering ends the run with an error, and the
worker processes are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import logging
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from envs import Scenario

from ..config import LearningConfig
from ..recorder import evaluation_due
from .protocol import HOST, UnitSpec, dead_inbox_loops, guard_container, make_codec, timestamp

logger = logging.getLogger("agents.mango")

UPDATE_OFFSET = _dt.timedelta(minutes=30)
"""Offset of the learner's updates from the full hour at which the market clears."""


@dataclass
class Timeouts:
    """Wall-clock limits (seconds) of the runtime's waits."""

    start: float = 120.0  # worker processes up and listening; units created
    step: float = 300.0  # one clock step, including a policy update and its acknowledgements
    bids: float = 60.0  # all bids of one hour
    acks: float = 60.0  # all units acknowledged new weights
    shutdown: float = 20.0


@dataclass
class MangoRunResult:
    """What :func:`train_mango` returns (the objects live in this process)."""

    learner: Any  # agents.learner.Learner: the role's networks, buffer and counters
    recorder: Any  # agents.recorder.RunRecorder: history, best policies, run folder
    role: Any  # agents.learning_role.Learning
    market: Any  # agents.mango.agents.MarketAgent
    episodes: int
    stopped_early: bool
    wall_time: float
    hours: int  # simulated hours cleared (training and evaluation)
    containers: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stay_out_report: str | None = None  # stay_out_fallback's line, when it tried
    markup_report: str | None = None  # start_up_markup_fallback's line, when it tried
    tie_report: str | None = None  # tie_below_cost_fallback's line, when it tried
    mix_report: str | None = None  # actor_mix_fallback's line, when it tried
    search_report: str | None = None  # profile_search_fallback's line, when it tried


# --------------------------------------------------------------------------- timeline


def scenario_start(scenario: Scenario) -> _dt.datetime:
    """The scenario's first hour as an aware UTC datetime (scenario times are UTC)."""
    t = np.datetime64(scenario.times[0], "s").astype("int64")
    return _dt.datetime.fromtimestamp(int(t), tz=_dt.timezone.utc)


class Timeline:
    """Where the episodes lie on the clock (see the module docstring)."""

    def __init__(self, start: _dt.datetime, hours: int, train_freq: int, total: int,
                 initial: int, evaluation_due: Callable[[int, int], bool]) -> None:
        self.start = start
        self.H = int(hours)
        self.f = int(train_freq)
        self.eval_hours = math.ceil(self.H / self.f) * self.f
        self.total = int(total)
        self.initial = int(initial)
        self.evaluation_due = evaluation_due

    def slot_hours(self, mode: str) -> int:
        return self.eval_hours if mode == "eval" else self.H

    def end(self) -> _dt.datetime:
        """After the last slot of a run without early stopping."""
        hours = self.total * self.H + sum(self.eval_hours for ep in range(self.total) if self.evaluation_due(ep, self.total))
        return self.start + _dt.timedelta(hours=hours + 1)

    def first_update(self) -> _dt.datetime:
        """Time of the learner's first update: the plain loop updates after training hour
        ``g_first = max(initial * H + 1, train_freq)`` (its hour counter also runs during
        initial exploration) and then every ``train_freq`` training hours."""
        g_first = max(self.initial * self.H + 1, self.f)
        t, g = self.start, 0
        for ep in range(self.total):
            if g + self.H >= g_first:
                return t + _dt.timedelta(hours=g_first - g - 1) + UPDATE_OFFSET
            g += self.H
            t += _dt.timedelta(hours=self.H)
            if self.evaluation_due(ep, self.total):
                t += _dt.timedelta(hours=self.eval_hours)
        return self.end()  # no update in this run


# --------------------------------------------------------------------------- workers


async def serve_units(bind: tuple[str, int], *, ready: Callable[[tuple[str, int]], None] | None = None,
                      alive: Callable[[], bool] | None = None, poll: float = 0.5) -> None:
    """Run one worker container: a TCP container on ``bind`` (port 0: a free port) with
    mango's ``DistributedClockAgent`` (aid ``clock_agent``) and a unit host (aid
    ``unit_host``). Returns when the clock manager broadcasts ``stop`` or ``alive()``
    turns false (the parent process died)."""
    from mango import DistributedClockAgent, ExternalClock, create_tcp_container

    from .agents import UnitHostAgent

    container = guard_container(create_tcp_container(bind, codec=make_codec(), clock=ExternalClock(0)))
    clock_agent = DistributedClockAgent()  # creates a Future: inside the running loop
    container.register(clock_agent, "clock_agent")
    container.register(UnitHostAgent(), "unit_host")
    await container.start()
    try:
        container.on_ready()
        if ready is not None:
            ready(tuple(container.addr))
        while not clock_agent.stopped.done():
            await asyncio.wait([clock_agent.stopped], timeout=poll)
            dead = dead_inbox_loops(container)
            if dead:  # the process exits with this error; the main process sees a dead worker at once
                raise RuntimeError(f"mango worker {container.addr}: the inbox loop of {', '.join(dead)} ended; "
                                   "those agents would never answer again")
            if alive is not None and not alive():
                logger.error("mango worker %s: the main process is gone; stopping", container.addr)
                break
        await asyncio.sleep(0.05)  # let the last replies leave
    finally:
        await asyncio.wait_for(container.shutdown(), 20)


def _worker_process(conn, host: str, port: int, threads: int) -> None:
    """Entry point of a spawned worker process."""
    try:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        parent = mp.parent_process()

        def ready(addr):
            conn.send(("ready", addr))

        asyncio.run(serve_units((host, port), ready=ready, alive=(parent.is_alive if parent else None)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:  # noqa: BLE001
            pass
        raise SystemExit(1)


class _Workers:
    """Worker processes spawned on this machine."""

    def __init__(self) -> None:
        self.procs: list[Any] = []
        self.addrs: list[tuple[str, int]] = []

    def start(self, count: int, host: str, timeout: float, threads: int = 1) -> None:
        ctx = mp.get_context("spawn")
        conns = []
        for i in range(count):
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker_process, args=(child, host, 0, threads), daemon=True,
                            name=f"marketzoo-mango-worker-{i + 1}")
            p.start()
            child.close()
            self.procs.append(p)
            conns.append(parent)
        deadline = time.monotonic() + timeout
        for i, (p, conn) in enumerate(zip(self.procs, conns)):
            while not conn.poll(0.1):
                if not p.is_alive():
                    raise RuntimeError(f"mango worker {i + 1} exited (code {p.exitcode}) before it was ready")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mango worker {i + 1} was not ready within {timeout:g} s")
            try:
                kind, payload = conn.recv()
            except EOFError:
                raise RuntimeError(f"mango worker {i + 1} exited (code {p.exitcode}) before it was ready") from None
            if kind != "ready":
                raise RuntimeError(f"mango worker {i + 1} failed to start:\n{payload}")
            self.addrs.append(tuple(payload))
            conn.close()

    def check(self) -> None:
        for i, p in enumerate(self.procs):
            if p.exitcode is not None:
                raise RuntimeError(f"mango worker process {i + 1} (pid {p.pid}) died with exit code {p.exitcode}")

    def stop(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)


def _parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {text!r} must be HOST:PORT")
    return host, int(port)


# --------------------------------------------------------------------------- the run


class _SetupAgent:
    """Built lazily (mango import): sends requests to worker unit hosts and awaits replies."""

    @staticmethod
    def make():
        from mango import Agent

        class SetupAgent(Agent):
            def __init__(self):
                super().__init__()
                self._futures: dict[tuple, asyncio.Future] = {}

            async def request(self, addr, content, timeout):
                fut = asyncio.get_running_loop().create_future()
                self._futures[tuple(addr.protocol_addr)] = fut
                if not await self.send_message(content, addr):
                    raise ConnectionError(f"cannot reach {addr.aid} at {addr.protocol_addr}")
                return await asyncio.wait_for(fut, timeout)

            def handle_message(self, content, meta):
                try:
                    fut = self._futures.pop(tuple(meta["sender_addr"]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(content)
                    else:
                        logger.warning("setup agent: unexpected message %r", content)
                except Exception as exc:  # noqa: BLE001
                    logger.warning("setup agent: dropped message: %s", exc)

        return SetupAgent()


class _Run:
    def __init__(self, scenario: Scenario, cfg: LearningConfig, *, seed: int | None, run_dir, containers: int,
                 workers: list[str] | None, host: str, port: int, env_options: dict[str, Any] | None,
                 progress: bool, tensorboard: bool, analysis: bool, exact: bool, timeouts: Timeouts) -> None:
        from envs import MarketCore

        from ..learner import configure_torch_threads, train_freq_steps, warm_start_path
        from ..learning_role import Learning
        from ..recorder import RunRecorder
        from ..trainer import analysis_allowed, core_run_info, env_options_for, resolve_seed, scenario_info

        if not cfg.learning_mode:
            raise ValueError("learning_mode is false: nothing to train; `python train.py` (without --runtime mango) "
                             "runs the loaded policies")
        self.seed = resolve_seed(seed, cfg, scenario)
        self.cfg = cfg = cfg.with_overrides({"seed": self.seed}) if cfg.seed != self.seed else cfg
        configure_torch_threads(cfg)
        self.timeouts = timeouts
        self.progress = progress
        self.exact = exact
        self.host, self.port = host, int(port)
        self.remote = [_parse_addr(w) for w in workers] if workers else []
        self.env_options = env_options_for(cfg, env_options, scenario=scenario)
        # the market's cores (the market agent steps them; the runtime reads their sizes
        # and runs the final evaluation on the evaluation core)
        self.core = core = MarketCore(scenario, num_envs=cfg.num_envs, **self.env_options)
        self.eval_core = MarketCore(scenario, num_envs=1, **env_options_for(cfg, env_options, evaluation=True, scenario=scenario))
        self.eval_core.recording = True
        if self.eval_core.max_cycles != core.max_cycles:
            raise ValueError(
                f"the mango runtime needs evaluation episodes as long as training episodes ({core.max_cycles} h), but "
                f"learning_config episode_hours/holdout_hours give {self.eval_core.max_cycles} h evaluation episodes; "
                "use the plain loop (without --runtime mango), or set episode_hours equal to holdout_hours")
        if core.n == 0:
            raise ValueError(f"{scenario.summary()}: no learning units to train")
        self.agents = list(core.agents)
        n = len(self.agents)
        if self.remote:
            self.n_workers = len(self.remote)
        else:
            if int(containers) < 1:
                raise ValueError(f"containers must be >= 1, got {containers}")
            self.n_workers = min(int(containers) - 1, n)
            if int(containers) - 1 > n:
                print(f"note: {n} learning unit(s): using {self.n_workers + 1} containers instead of {containers}",
                      file=sys.stderr)
        self.total = cfg.training_episodes
        # the mango clock clears one market step per clock hour: train_freq in steps (sub-hourly dt)
        freq = train_freq_steps(cfg, scenario.time_step_hours)
        role_cfg = cfg if freq == cfg.train_freq else cfg.with_overrides({"train_freq": freq, "gradient_steps": cfg.gradient_steps})
        self.timeline = Timeline(scenario_start(scenario), core.max_cycles, freq, self.total,
                                 cfg.episodes_collecting_initial_experience,
                                 lambda ep, total: evaluation_due(cfg, ep, total, core.n))
        self.role = Learning(role_cfg, self.timeline.start, self.timeline.end(), first_update=self.timeline.first_update(),
                             seed=self.seed, ack_timeout=timeouts.acks)
        from ..resources import check_training_memory, estimate_for_config

        # cuda without a GPU and a configuration that cannot fit: one line before allocating
        from ..learner import replay_capacity

        max_transitions = self.total * core.max_cycles * core.B  # as the plain loop (replay_capacity)
        sized = cfg.with_overrides({"replay_buffer_size": replay_capacity(cfg, max_transitions)})
        check_training_memory(estimate_for_config(sized, n, core.obs_dim, core.act_dims.tolist()), cfg.resolved_device())
        self.role.register_units(self.agents, core.obs_dim, core.act_dims.tolist(), num_envs=core.B)
        self.role.max_transitions = max_transitions
        self.role.create_actors_and_critics()
        self.learner = self.role.learner
        self.learner.apply_unit_roles(core)
        if self.learner.teacher_weight > 0:
            print("note: the mango runtime does not refresh the best-response teacher (best_response_teacher "
                  f"{cfg.best_response_teacher!r}); it trains without it (the plain loop, without --runtime mango, "
                  "uses it)")
        if self.learner.equilibrium_teacher_wanted(core):
            print("note: the mango runtime does not use the equilibrium teacher (equilibrium_teacher "
                  f"{cfg.equilibrium_teacher!r}); it trains without it (the plain loop uses it)")
        path = warm_start_path(cfg)
        if path is not None:
            self.role.load_params(path)
        self.recorder = RunRecorder(
            cfg, self.learner, run_dir=run_dir, tensorboard=tensorboard and run_dir is not None,
            run_info=core_run_info(core),
            scenario_info=scenario_info(scenario, cfg),
            agent_kind=list(core.agent_kind),
        )
        self.scenario = scenario
        self.analysis = analysis and analysis_allowed(cfg, len(self.agents))
        self._worker_next: float | None = None
        self._step_deadline: float | None = None
        self._watchdog_error: BaseException | None = None
        self.workers = _Workers()

    # ---- pieces
    def unit_specs(self) -> list[UnitSpec]:
        cfg, core = self.cfg, self.core
        return [UnitSpec(name=a, index=i, n_agents=core.n, obs_dim=core.obs_dim, act_dim=int(core.act_dims[i]),
                         max_act=core.max_act, num_envs=core.B, actor_hidden_sizes=list(cfg.actor_hidden_sizes),
                         critic_hidden_sizes=list(cfg.critic_hidden_sizes), noise_sigma=cfg.noise_sigma,
                         seed=self.seed, exact=self.exact, **self._obs_norm(i)) for i, a in enumerate(self.agents)]

    def _obs_norm(self, i: int) -> dict[str, Any]:
        algo = self.learner.algo
        if algo.obs_shift is None:
            return {}
        return {"obs_shift": algo.obs_shift[i].tolist(), "obs_scale": algo.obs_scale[i].tolist()}

    def _check(self) -> None:
        for who, failure in (("market", self.market.failure), ("learning agent", self.role.failure)):
            if failure is not None:
                raise RuntimeError(f"mango runtime: the {who} failed: {type(failure).__name__}: {failure}") from failure
        dead = dead_inbox_loops(self.c0) if getattr(self, "c0", None) is not None else []
        if dead:
            raise RuntimeError(f"mango runtime: the inbox loop of agent(s) {', '.join(dead)} ended (see the log above); "
                               "they would never answer again, so the run stops now")
        self.workers.check()

    async def _guard(self, coro, timeout: float, what: str):
        """Await ``coro`` within ``timeout`` s, checking agents and worker processes twice a second."""
        task = asyncio.ensure_future(coro)
        deadline = time.monotonic() + timeout
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=0.5)
                if done:
                    return task.result()
                self._check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mango runtime: {what} did not finish within {timeout:g} s")
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001
                    pass

    async def _settle(self) -> None:
        """Wait until every agent is done with the current clock time (and, with workers,
        push the time to them and collect their next activities). Bounded by the watchdog."""
        from mango.util.termination_detection import tasks_complete_or_sleeping

        self._step_deadline = time.monotonic() + self.timeouts.step
        if self.manager is None:
            await tasks_complete_or_sleeping(self.c0)
        else:
            nxt = await self.manager.distribute_time()
            self._worker_next = nxt if nxt is not None and nxt > self.clock.time else None
        self._step_deadline = None
        self._check()

    async def _watchdog(self, main: asyncio.Task) -> None:
        """Twice a second: agent failures, dead workers, a clock step over its time limit
        -> keep the error and cancel the run (cheaper than a timeout around every step)."""
        while True:
            await asyncio.sleep(0.5)
            try:
                self._check()
                if self._step_deadline is not None and time.monotonic() > self._step_deadline:
                    raise TimeoutError(f"mango runtime: a clock step did not finish within {self.timeouts.step:g} s "
                                       "(an agent stopped answering?)")
            except Exception as exc:  # noqa: BLE001 - handed to the run
                self._watchdog_error = exc
                main.cancel()
                return

    def _next_activity(self) -> float | None:
        times = [t for t in (self.clock.get_next_activity(), self._worker_next) if t is not None]
        return min(times) if times else None

    async def _run_until(self, end_ts: float) -> None:
        while True:
            nxt = self._next_activity()
            if nxt is None or nxt >= end_ts:
                return
            self.clock.set_time(nxt)
            self._worker_next = None
            await self._settle()

    # ---- main
    async def run(self) -> MangoRunResult:
        from mango import (AgentAddress, DistributedClockManager, ExternalClock, agent_composed_of,
                           create_ec_container, create_tcp_container)

        from .agents import MarketAgent, UnitAgent

        to = self.timeouts
        distributed = self.n_workers > 0
        t0 = timestamp(self.timeline.start)
        self.clock = ExternalClock(start_time=t0 - 3600.0)
        codec = make_codec()
        if distributed:
            self.c0 = create_tcp_container((self.host, self.port), codec=codec, clock=self.clock)
        else:
            self.c0 = create_ec_container(codec=codec, clock=self.clock, addr="marketzoo")
        guard_container(self.c0)  # hostile meta is dropped before mango's inbox loops see it
        self.market = MarketAgent(self.scenario, num_envs=self.cfg.num_envs, seed=self.seed, analysis=self.analysis,
                                  bid_timeout=to.bids, core=self.core, eval_core=self.eval_core)
        self.c0.register(self.market, "market")
        learner = agent_composed_of(self.role, register_in=self.c0, suggested_aid="learner")
        learner.suspendable_tasks = False
        specs = self.unit_specs()
        self.manager = None
        setup = None
        if distributed:
            setup = _SetupAgent.make()
            self.c0.register(setup, "setup")
        else:
            for spec in specs:
                self.c0.register(UnitAgent(spec), spec.name)
        try:
            await asyncio.wait_for(self.c0.start(), to.start)
        except OSError as exc:
            raise RuntimeError(f"mango runtime: cannot open the main container on {self.host}:{self.port}: {exc}") from exc
        try:
            if distributed:  # after the main container listens: a taken port fails before processes start
                if not self.remote:
                    await asyncio.get_running_loop().run_in_executor(
                        None, lambda: self.workers.start(self.n_workers, self.host, to.start))
                    worker_addrs = self.workers.addrs
                else:
                    worker_addrs = self.remote
                self.manager = DistributedClockManager(
                    receiver_clock_addresses=[AgentAddress(a, "clock_agent") for a in worker_addrs])
                self.c0.register(self.manager, "clock_manager")
                units = {}
                for w, addr in enumerate(worker_addrs):
                    mine = [s for j, s in enumerate(specs) if j % len(worker_addrs) == w]
                    if not mine:
                        continue
                    reply = await self._guard(
                        setup.request(AgentAddress(addr, "unit_host"),
                                      {"context": HOST, "type": "create_units", "units": [s.to_dict() for s in mine]},
                                      to.start),
                        to.start + 5, f"creating units on worker {addr}")
                    if not isinstance(reply, dict) or reply.get("type") != "units_created":
                        raise RuntimeError(f"mango runtime: worker {addr} could not create units: {reply}")
                    units.update({s.name: AgentAddress(addr, s.name) for s in mine})
            else:
                units = {s.name: AgentAddress(self.c0.addr, s.name) for s in specs}
            self.market.connect(units, learner.addr)
            self.role.set_unit_addresses(units)
            self.c0.on_ready()
            watchdog = asyncio.ensure_future(self._watchdog(asyncio.current_task()))
            try:
                await self._settle()  # workers online, initial weights delivered
                return await self._episodes()
            except asyncio.CancelledError:
                if self._watchdog_error is not None:
                    raise self._watchdog_error from None
                raise
            finally:
                watchdog.cancel()
        finally:
            await self._shutdown()

    async def _episodes(self) -> MangoRunResult:
        cfg, role, market, learner, recorder = self.cfg, self.role, self.market, self.learner, self.recorder
        from tqdm.auto import tqdm

        from ..recorder import early_stop_message

        bar = tqdm(total=self.total, desc="training (mango)", unit="ep", disable=not self.progress, dynamic_ncols=True)
        start_wall = time.perf_counter()
        slot = self.timeline.start
        pending = None  # (episode, stats, wall_time) waiting for its evaluation
        stopped = False
        ep = 0
        episodes = 0
        try:
            while True:
                if pending is not None:
                    episode, mode = pending[0], "eval"
                    market.begin_episode(episode, "eval", slot)
                elif ep < self.total and not stopped:
                    episode = ep
                    mode = learner.mode(ep)
                    market.begin_episode(ep, mode, slot, noise_scale=learner.noise_scales(ep, market.hours),
                                         learning_rate=learner.learning_rate(ep))
                else:
                    break
                await self._settle()  # the market's hourly task starts and goes to sleep
                slot_end = slot + _dt.timedelta(hours=self.timeline.slot_hours(mode))
                await self._run_until(timestamp(slot_end))
                if not market.outcomes:
                    raise RuntimeError(f"mango runtime: episode {episode} ({mode}) did not finish in its time slot")
                out = market.outcomes.pop(0)
                slot = slot_end
                if mode == "eval":
                    ep_, stats, wall = pending
                    pending = None
                    row, stopped = recorder.record_episode(ep_, stats, out.evaluation, wall)
                    self._progress(bar, row)
                    continue
                stats = learner.episode_stats(out.stats, wall_seconds=out.wall_seconds, transitions=out.hours * self.core.B)
                wall = time.perf_counter() - start_wall
                ep += 1
                episodes = ep
                if recorder.evaluation_due(episode, self.total):
                    pending = (episode, stats, wall)
                else:
                    row, stopped = recorder.record_episode(episode, stats, None, wall)
                    self._progress(bar, row)
        finally:
            bar.close()
            recorder.flush()
        if stopped:
            print(early_stop_message(cfg, episodes - 1, recorder), file=sys.stderr)
        return MangoRunResult(learner, recorder, role, market, episodes, stopped, time.perf_counter() - start_wall,
                              market.hours_cleared, self.n_workers + 1, recorder.history)

    @staticmethod
    def _progress(bar, row: dict[str, Any]) -> None:
        postfix = {"reward": f"{row.get('train/reward', float('nan')):.3f}",
                   "price": f"{row.get('train/mean_price', float('nan')):.1f}"}
        if "eval/br_share" in row:
            postfix["br"] = f"{row['eval/br_share']:.2f}"
        bar.update(1)
        bar.set_postfix(postfix)

    async def _shutdown(self) -> None:
        if self.manager is not None:
            for fut in list(self.manager.futures.values()):  # a dead worker must not hang the exit
                if not fut.done():
                    fut.set_result(True)
        try:
            await asyncio.wait_for(self.c0.shutdown(), self.timeouts.shutdown)
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - best effort; must not mask the
            # error that ended the run (a cancelled agent task can surface here); processes are stopped below
            logger.warning("mango runtime: container shutdown: %s: %s", type(exc).__name__, exc)
        if self.workers.procs:
            await asyncio.get_running_loop().run_in_executor(None, self.workers.stop, self.timeouts.shutdown)


def train_mango(scenario: Scenario, cfg: LearningConfig, *, seed: int | None = 0,
                run_dir: str | os.PathLike | None = None, containers: int = 1, workers: list[str] | None = None,
                host: str = "127.0.0.1", port: int = 0, env_options: dict[str, Any] | None = None,
                progress: bool = False, tensorboard: bool = True, analysis: bool = True, exact: bool = True,
                timeouts: Timeouts | None = None) -> MangoRunResult:
    """Train with the mango runtime and return the learner, recorder, role and market.

    Args:
        scenario, cfg, seed: as for :class:`agents.trainer.Trainer` (``seed=None``:
            ``cfg.seed``, else the scenario's, else drawn from the OS).
        run_dir: run folder (config, policies, history.csv, TensorBoard); ``None``: nothing written.
        containers: 1 = one container in this process; N > 1 = this process plus N - 1
            worker processes (at most one per learning unit) talking TCP on ``host``.
        workers: ``HOST:PORT`` of already running workers
            (``python -m agents.mango worker --bind HOST:PORT``) instead of
            spawning them; ``containers`` is then ignored.
        host, port: address of this process's TCP container (port 0: a free port). With
            workers on other machines use an address they can reach (not 0.0.0.0).
        env_options: :class:`envs.MarketCore` options (foresight, max_cycles, ...).
        exact: units compute actions with MATD3's batched kernel (bitwise equal to the loop).
        timeouts: wall-clock limits of every wait (:class:`Timeouts`).

    The recorder is left open (its TensorBoard writer); :func:`run_mango_training`
    closes it, other callers call ``result.recorder.close()``.
    """
    run = _Run(scenario, cfg, seed=seed, run_dir=run_dir, containers=containers, workers=workers, host=host,
               port=port, env_options=env_options, progress=progress, tensorboard=tensorboard, analysis=analysis,
               exact=exact, timeouts=timeouts or Timeouts())
    try:
        res = asyncio.run(run.run())
        # after the containers stopped: the same end of training as the plain loop's
        from ..trainer import (actor_mix_fallback, profile_search_fallback, start_up_markup_fallback,
                               stay_out_fallback, tie_below_cost_fallback)

        _, res.stay_out_report = stay_out_fallback(res.learner, res.recorder, scenario, res.market.eval_core,
                                                   analysis=res.market.analysis, progress=progress)
        _, res.markup_report = start_up_markup_fallback(res.learner, res.recorder, scenario, res.market.eval_core,
                                                        analysis=res.market.analysis, progress=progress)
        _, res.tie_report = tie_below_cost_fallback(res.learner, res.recorder, scenario, res.market.eval_core,
                                                    analysis=res.market.analysis, progress=progress)
        _, res.mix_report = actor_mix_fallback(res.learner, res.recorder, scenario, res.market.eval_core,
                                               analysis=res.market.analysis, progress=progress)
        _, res.search_report = profile_search_fallback(res.learner, res.recorder, scenario, res.market.eval_core,
                                                       analysis=res.market.analysis, progress=progress)
        return res
    except BaseException:
        run.workers.stop(2.0)
        run.recorder.close()
        raise


def run_mango_training(scenario: Scenario, cfg: LearningConfig, out: str | os.PathLike, *, seed: int | None = 0,
                       containers: int = 1, progress: bool = True, workers: list[str] | None = None,
                       host: str = "127.0.0.1", port: int = 0, plots: bool = True,
                       timeouts: Timeouts | None = None) -> int:
    """``train.py --runtime mango``: train, then :func:`agents.recorder.finish_run` as the
    plain loop does (config.yaml, policies/{best,best_profit,best_regret,last},
    history.csv, tb/, summary.json, plots). Returns the exit code."""
    from ..checkpoint import CheckpointError
    from ..recorder import TrainResult, finish_run

    out = Path(out)
    try:
        res = train_mango(scenario, cfg, seed=seed, run_dir=out, containers=containers, workers=workers, host=host,
                          port=port, progress=progress, timeouts=timeouts)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last complete episode is saved in {out / 'policies' / 'last'}", file=sys.stderr)
        return 130
    except (CheckpointError, ValueError) as exc:  # the user's input (config, scenario, checkpoint, addresses)
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, OSError) as exc:  # the run failed (dead worker, taken port, ...)
        print(f"error: mango runtime: {exc}", file=sys.stderr)
        return 1
    try:
        result = TrainResult(out, res.episodes, res.wall_time, dict(res.recorder.best), res.history, None,
                             res.stopped_early)
        runtime = {"kind": "mango", "containers": res.containers, "simulated_hours": res.hours,
                   "simulated_hours_per_s": round(res.hours / max(res.wall_time, 1e-9), 1)}
        extra = {"runtime": runtime}
        if res.stay_out_report is not None:
            extra["stay_out"] = res.stay_out_report
        if res.markup_report is not None:
            extra["start_up_markup"] = res.markup_report
        if res.tie_report is not None:
            extra["tie_below_cost_fallback"] = res.tie_report
        if res.mix_report is not None:
            extra["actor_mix_fallback"] = res.mix_report
        if res.search_report is not None:
            extra["profile_search"] = res.search_report
        finish_run(res.learner, res.recorder, scenario, res.market.eval_core, result, analysis=res.market.analysis, plots=plots,
                   extra=extra)
    finally:
        res.recorder.close()
    return 0


# --------------------------------------------------------------------------- CLI (workers)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.mango worker --bind HOST:PORT``: a worker for runs whose
    main process is started with ``workers=[...]``."""
    p = argparse.ArgumentParser(prog="python -m agents.mango")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="serve unit agents for a mango training run on another machine")
    w.add_argument("--bind", required=True, help="HOST:PORT to listen on; HOST must be reachable by the main process "
                   "(it is also the address replies come from), PORT 0 picks a free port")
    w.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def ready(addr):
        print(f"mango worker listening on {addr[0]}:{addr[1]}", flush=True)

    try:
        asyncio.run(serve_units(_parse_addr(args.bind), ready=ready))
    except OSError as exc:
        print(f"error: cannot listen on {args.bind}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
