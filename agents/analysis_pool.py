"""The best-response analysis of an evaluation episode on two cores.

Every evaluation during training is scored with the exact best response of each learning
agent (:func:`envs.analysis.exploitability`). The agents' best responses are independent
of each other, and while they are computed the trainer waits, so on a machine with two or
more usable cores :class:`AnalysisPool` hands part of the agents to one worker process
and computes the rest itself, at the same time. The result is the same as computing them
one after the other (each best response is a deterministic function of the record), only
sooner.

The worker is a ``spawn`` process that imports NumPy and ``envs`` only (no torch, and not
the caller's script: see :func:`agents.reference.start_process`). It is started after the
first analysis that took at least :data:`MIN_ANALYSIS_SECONDS` (short analyses, e.g. the
``tiny`` scenario's, are not worth a process) and lives until :meth:`AnalysisPool.close`.
The agents are split by the time each took at the previous analysis (longest first, each
to the side with less work so far). A storage unit on the worker's side is itself split in
two (:func:`envs.analysis.storage_response_part`): the worker computes its off-grid
programmes (and keeps the whole-volume one for the teacher's storage targets), this
process its programme on the state-of-charge grid, and the two are joined into the same
best response (``default``'s pumped storage: 0.63 s of work, about 0.2 s of it here).
:meth:`AnalysisPool.call` hands the worker one other function of ``envs.analysis`` (the
best-response teacher's storage targets) to compute while the caller goes on. Where the
worker cannot start or fails, its agents are computed here and the pool stops using it
(:attr:`AnalysisPool.failure` says why).
"""

from __future__ import annotations

import time

from .reference import _usable_cores, start_process

MIN_ANALYSIS_SECONDS = 0.5
"""Least wall time of an analysis (computed here) before the worker process is started:
starting it takes about a second, which its first use waits for."""

# first guesses of the relative cost of one best response by unit kind, before any timing
_KIND_COST = {"storage": 4.0, "plant": 1.0, "renewable": 0.5}


class AnalysisPool:
    """Computes :func:`envs.analysis.exploitability` of a record with the best responses
    split between this process and one worker process (see the module docstring).

    Args:
        enabled: False computes everything here (as does a machine with one usable core).
        min_seconds: default :data:`MIN_ANALYSIS_SECONDS`.
    """

    def __init__(self, *, enabled: bool = True, min_seconds: float | None = None):
        self.enabled = bool(enabled) and _usable_cores() >= 2
        self.min_seconds = float(MIN_ANALYSIS_SECONDS if min_seconds is None else min_seconds)
        self._proc = None
        self._conn = None
        self._seconds: dict[str, float] = {}  # each agent's last measured time
        self.used = 0  # analyses split with the worker
        self.failure: str | None = None  # why the worker stopped being used
        self._pending: PendingCall | None = None  # a call whose answer is still in the pipe
        self._last_record = None  # the record of the worker's last best-response job

    @property
    def running(self) -> bool:
        """Whether the worker process is in use."""
        return self._proc is not None

    def exploitability(self, record, scenario=None, *, while_waiting=None):
        """The :class:`envs.analysis.Exploitability` of ``record`` (best responses with
        ``scenario`` for the exact storage analysis), as :func:`envs.analysis.exploitability`
        with its default keywords returns it. ``while_waiting(record)``, when given, runs
        here after this process's share of the best responses and before the worker's
        answer is collected (only when the worker has a share): other work on the same
        record that would otherwise wait (e.g. the teacher's plant targets)."""
        from envs.analysis import exploitability_from

        return exploitability_from(record, self.best_responses(record, record.agents, scenario,
                                                               while_waiting=while_waiting))

    def best_responses(self, record, agents, scenario=None, *, while_waiting=None) -> dict:
        """:func:`envs.analysis.best_response` of each of ``agents`` (names) to ``record``,
        split between this process and the worker as :meth:`exploitability` splits all of
        them; returns ``{agent: BestResponse}``."""
        from envs.analysis import best_responses, storage_parts_apply, storage_response_join, storage_response_part

        agents = list(agents)
        kw = {"scenario": scenario}
        if not agents:
            return {}
        if self._proc is None or len(agents) < 2:
            t0 = time.perf_counter()
            responses, seconds = best_responses(record, agents, **kw)
            self._seconds.update(seconds)
            if (self.enabled and self._proc is None and self.failure is None and len(agents) >= 2
                    and time.perf_counter() - t0 >= self.min_seconds):
                self._start()  # used from the next analysis on
            return responses
        mine, theirs = self._split(agents, record)
        # a storage unit of the worker's share: its off-grid programmes there, its grid's here
        split = [a for a in theirs if storage_parts_apply(record, a, **kw)]
        sent = self._send((record, theirs, {**kw, "parts": dict.fromkeys(split, "off_grid")} if split else kw))
        self._last_record = record if sent else None
        responses, seconds = best_responses(record, mine if sent else agents, **kw)
        if sent:
            grid: dict = {}
            try:
                for a in split:
                    t0 = time.perf_counter()
                    grid[a] = storage_response_part(record, a, "grid", **kw)
                    seconds[a] = time.perf_counter() - t0
                if while_waiting is not None:
                    while_waiting(record)
            finally:  # the worker's answer is taken even where that failed: the pipe stays in step
                answer = self._receive()
            if answer is None:  # the worker failed: its agents here
                answer = best_responses(record, theirs, **kw)
            else:
                self.used += 1
                for a in split:  # the two parts of each storage unit's best response
                    answer[0][a] = storage_response_join(record, a, grid[a], answer[0][a], **kw)
                    answer[1][a] += seconds.pop(a)
            responses.update(answer[0])
            seconds.update(answer[1])
        self._seconds.update(seconds)
        return responses

    def call(self, name: str, *args, **kw) -> "PendingCall":
        """Start the function ``name`` of :data:`envs.analysis._WORKER_CALLS` (e.g.
        ``"storage_response_bids"``) with these arguments in the worker process, when it
        is in use, and return at once; :meth:`PendingCall.result` gives its value
        (computed here where the worker is not in use or fails: the same value, the
        functions are deterministic). The next job sent to the worker collects an answer
        left uncollected first."""
        from envs.analysis import _LAST_RECORD, _WORKER_CALLS

        fn = _WORKER_CALLS[name]
        # the record the worker has already (its last analysis) is not sent again
        wire = tuple(_LAST_RECORD if self._last_record is not None and a is self._last_record else a for a in args)
        sent = self._proc is not None and self._send(("call", name, wire, kw))
        pending = PendingCall(self, fn, args, kw, sent)
        if sent:
            self._pending = pending
        return pending

    def close(self) -> None:
        """Stop the worker process (the pool then computes everything here)."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._last_record = None
        if self._pending is not None:  # its answer is lost with the worker: computed here
            self._pending.sent = False
            self._pending = None
        if proc is None:
            return
        try:
            conn.send(None)
        except (OSError, ValueError):
            pass
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        conn.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass

    # ------------------------------------------------------------------ internals
    def _start(self) -> None:
        import multiprocessing as mp

        from envs.analysis import _best_responses_server

        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_best_responses_server, args=(child,), name="marketzoo-analysis", daemon=True)
        try:
            start_process(proc)
        except Exception as exc:  # noqa: BLE001 -- no worker: everything here
            self.failure = f"the analysis process did not start ({type(exc).__name__}: {exc})"
            conn.close()
            return
        finally:
            child.close()
        self._proc, self._conn = proc, conn

    def _send(self, job) -> bool:
        if self._pending is not None:  # an answer nobody collected comes first
            self._pending.result()
        if self._proc is None:
            return False
        try:
            self._conn.send(job)
            return True
        except Exception as exc:  # noqa: BLE001 -- e.g. the worker died
            self._fail(f"{type(exc).__name__}: {exc}")
            return False

    def _receive(self):
        try:
            status, value = self._conn.recv()
        except Exception as exc:  # noqa: BLE001 -- the worker died
            self._fail(f"the analysis process ended without an answer ({type(exc).__name__})")
            return None
        if status != "ok":
            self._fail(value)
            return None
        return value

    def _fail(self, why: str) -> None:
        self.failure = why
        self.close()

    def _split(self, agents: list[str], record) -> tuple[list[str], list[str]]:
        """Agents for this process and for the worker: longest first, each to the side
        with less work so far (the worker gets the first; with two or more agents each
        side gets at least one)."""
        kinds = dict(zip(record.agents, record.agent_kind))
        cost = {a: self._seconds.get(a, _KIND_COST.get(kinds.get(a), 1.0)) for a in agents}
        mine: list[str] = []
        theirs: list[str] = []
        load = [0.0, 0.0]  # here, worker
        for a in sorted(agents, key=lambda a: -cost[a]):
            side = 1 if load[1] <= load[0] else 0
            (theirs if side else mine).append(a)
            load[side] += cost[a]
        return mine, theirs


class PendingCall:
    """A function call that :meth:`AnalysisPool.call` handed to the worker process (or
    will compute here): :meth:`result` waits for its value."""

    def __init__(self, pool: AnalysisPool, fn, args: tuple, kw: dict, sent: bool):
        self._pool, self._fn, self._args, self._kw = pool, fn, args, kw
        self.sent = bool(sent)  # whether the worker computes it
        self._done = False
        self._value = None

    def result(self):
        """The function's value: the worker's answer, else computed here."""
        if not self._done:
            value = None
            if self.sent:
                pool = self._pool
                pool._pending = None
                value = pool._receive()
            if value is None:  # not sent, or the worker failed (the pool then stops using it)
                value = self._fn(*self._args, **self._kw)
            self._value, self._done = value, True
            self._args = self._kw = None
        return self._value
