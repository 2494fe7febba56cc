"""The equilibrium reference in a run's final summary (issue 9, item 5).

At the end of ``train.py`` (and of ``train.py evaluate``) each learning agent's profit in
the evaluation episode is set beside its best-response profit (what it could earn by
deviating alone) and its profit at the market's equilibrium
(:func:`envs.equilibrium.equilibrium`, iterated exact best responses), with one plain
verdict line (:func:`envs.analysis.deviation_verdict`), the distance of the learned
prices to the equilibrium prices (mean difference, RMSE, MAE) in ``summary.json`` and
the figure ``plots/prices_vs_equilibrium.png``.

The equilibrium is computed only when it is cheap: ``learning_config.equilibrium_reference``
on (the default) and at most :data:`MAX_EQUILIBRIUM_AGENTS` learning agents, over the
same hours as the evaluation episode (a held-out window that does not start at the first
hour is skipped); otherwise one note says why it is skipped.

During training the reference is computed alongside the run: :class:`PendingEquilibrium`
starts it in a separate process when training starts (on a machine with at least two
usable cores, for runs of at least :data:`BACKGROUND_MIN_TRAINING_HOURS` training hours;
the trainer uses one torch thread for small networks, so the search runs on an otherwise
idle core), and the final summary only waits for what is left of it. The
result is the same as computing it at the end (the search is deterministic); where the
process cannot start or fails, the summary computes it itself, as before.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

MAX_EQUILIBRIUM_AGENTS = 40
"""Most learning agents for which the final summary computes the equilibrium (within
:data:`EQUILIBRIUM_TIME_LIMIT_S`). Measured: 24 plants over 168 hours (`many`) 6.6 s,
ten over 744 hours (`like_02c`) 1.7 s; the search grows with the agents like the
evaluations' analysis, whose default limit (``analysis_max_agents``) it shares."""

BACKGROUND_MIN_TRAINING_HOURS = 2000
"""Least training (episodes x hours per episode, from where a run starts) for which
``train.py`` computes the reference alongside training: starting the separate process
takes about a second, longer than a short run's whole search (e.g. ``tiny``: 0.02 s)."""

EQUILIBRIUM_TIME_LIMIT_S = 120.0
"""Wall-clock limit of that computation (Unix main thread; elsewhere unlimited); past it
the reference is skipped with a note (default scenario: about 15-35 s)."""


class _TimeUp(Exception):
    pass


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def start_process(proc) -> None:
    """Start the ``spawn`` process ``proc`` without running the caller's script again in
    it. A spawned process normally imports the main script first (as ``__mp_main__``), so
    a script that trains at its top level, without ``if __name__ == "__main__":``, would
    start training again there. Our processes run functions of ``envs`` only, so the main
    module is hidden from the start-up for that moment.

    Ctrl-C (SIGINT, sent to the whole process group) is the caller's to handle: the
    process starts with it ignored (an ignored signal stays ignored in the new
    interpreter), so that it neither dies half-started nor prints a traceback of its own;
    the caller stops it."""
    import signal
    import sys
    import threading
    import types

    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    handler = None
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
        if main is not None:
            sys.modules["__main__"] = main


class PendingEquilibrium:
    """The equilibrium reference of ``hours`` from the first hour, computed in a separate
    process (``spawn``: NumPy only, no torch) while the caller goes on; see the module
    docstring. :meth:`result` waits for it, at most until ``time_limit_s`` after the start;
    :meth:`close` stops the process (also on garbage collection). Use :meth:`start`, which
    returns None where a separate process does not help or cannot start."""

    def __init__(self, scenario, hours: int, max_bid_price: float, time_limit_s: float | None,
                 min_power_rule: str = "partial"):
        import multiprocessing as mp

        from envs.equilibrium import _equilibrium_in_process

        ctx = mp.get_context("spawn")
        self.hours, self.max_bid_price = int(hours), float(max_bid_price)
        self.min_power_rule = str(min_power_rule)
        self.time_limit_s = time_limit_s
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_equilibrium_in_process, name="marketzoo-equilibrium-reference", daemon=True,
                                 args=(send, scenario, {"hours": self.hours, "max_bid_price": self.max_bid_price,
                                                       "min_power_rule": self.min_power_rule}))
        self.t0 = time.perf_counter()
        try:
            start_process(self._proc)
        finally:
            send.close()
        self._msg = None

    @classmethod
    def start(cls, scenario, config, n_agents: int, hours: int, first_hour: int,
              time_limit_s: float | None = None) -> "PendingEquilibrium | None":
        """Start the reference that :func:`add_equilibrium_reference` will need for an
        evaluation episode of ``hours`` from ``first_hour`` with ``n_agents`` learning
        agents, or return None: when it will not be computed (``equilibrium_reference``
        off, too many agents, a window that does not start at the first hour), on a
        machine with one usable core, or when the process cannot start."""
        limit = EQUILIBRIUM_TIME_LIMIT_S if time_limit_s is None else time_limit_s
        if (not getattr(config, "equilibrium_reference", True) or n_agents > MAX_EQUILIBRIUM_AGENTS
                or int(first_hour) != 0 or _usable_cores() < 2):
            return None
        try:
            return cls(scenario, hours, config.max_bid_price, limit, getattr(config, "min_power_rule", "partial"))
        except Exception:  # noqa: BLE001 -- e.g. a scenario that cannot be pickled: computed at the end instead
            return None

    def matches(self, hours: int, max_bid_price: float, min_power_rule: str = "partial") -> bool:
        return (int(hours) == self.hours and float(max_bid_price) == self.max_bid_price
                and str(min_power_rule) == self.min_power_rule)

    def result(self):
        """``("ok", EquilibriumResult)``, ``("value_error", message)`` or ``("error",
        message)``; raises :class:`_TimeUp` (and stops the process) when the time limit
        since the start passes first."""
        if self._msg is None:
            left = None if not self.time_limit_s else max(0.0, self.time_limit_s - (time.perf_counter() - self.t0))
            try:
                ready = self._recv.poll(left)
            except (EOFError, OSError):
                ready = True
            if not ready:
                self.close()
                raise _TimeUp
            try:
                self._msg = self._recv.recv()
            except (EOFError, OSError) as exc:  # the process died without an answer
                self._msg = ("error", f"the equilibrium process ended without a result ({type(exc).__name__})")
            self.close()
        return self._msg

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=5)
        self._recv.close()
        self._proc = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass


def _with_time_limit(fn: Callable[[], Any], seconds: float | None) -> Any:
    import signal
    import threading

    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn()

    def on_alarm(*_):
        raise _TimeUp

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def add_equilibrium_reference(summary: dict[str, Any], scenario, config, ev, *, plots_dir: Path | None = None,
                              echo: Callable[[str], None] = print,
                              time_limit_s: float | None = EQUILIBRIUM_TIME_LIMIT_S,
                              pending: PendingEquilibrium | None = None) -> dict[str, Any]:
    """Add ``verdict``, ``equilibrium`` (converged, reason, distances, seconds) and each
    agent's ``equilibrium_profit`` to ``summary`` (in place; also returned); draw
    ``plots_dir/prices_vs_equilibrium.png`` when ``plots_dir`` is given. ``pending``: the
    same reference started earlier (:meth:`PendingEquilibrium.start`); used when it covers
    the same hours and action scale (its own time limit counts from its start), else
    stopped and computed here."""
    try:
        return _add_equilibrium_reference(summary, scenario, config, ev, plots_dir=plots_dir, echo=echo,
                                          time_limit_s=time_limit_s, pending=pending)
    finally:
        if pending is not None:  # stops the process when the summary did not need it
            pending.close()


def _add_equilibrium_reference(summary: dict[str, Any], scenario, config, ev, *, plots_dir: Path | None = None,
                              echo: Callable[[str], None] = print,
                              time_limit_s: float | None = EQUILIBRIUM_TIME_LIMIT_S,
                              pending: PendingEquilibrium | None = None) -> dict[str, Any]:
    ex = getattr(ev, "analysis_result", None)
    rec = ev.record
    if ex is not None:
        from envs.analysis import deviation_verdict

        summary["verdict"] = deviation_verdict(ex, revenue=rec.agent_revenue() if rec is not None else None)
    if not getattr(config, "equilibrium_reference", True) or rec is None:
        return summary
    n = len(rec.agents)
    if n > MAX_EQUILIBRIUM_AGENTS:
        note = (f"equilibrium reference skipped: {n} learning agents > {MAX_EQUILIBRIUM_AGENTS} (too slow to compute "
                "at the end of a run; `python train.py equilibrium --scenario ...` computes it on its own)")
        echo("note: " + note)
        summary["equilibrium"] = {"skipped": note}
        return summary
    hours = [int(h) for h in rec.hours]
    if hours and hours[0] != 0:
        note = (f"equilibrium reference skipped: the evaluation episode starts at hour {hours[0]} (held-out window); "
                "the equilibrium reference covers episodes from the first hour")
        echo("note: " + note)
        summary["equilibrium"] = {"skipped": note}
        return summary
    from envs.equilibrium import distance_to_equilibrium, equilibrium

    t0 = time.perf_counter()
    msg = None
    if pending is not None and pending.matches(rec.n_hours, config.max_bid_price,
                                               getattr(config, "min_power_rule", "partial")):
        limit = pending.time_limit_s
        echo(f"equilibrium reference over {rec.n_hours} hours: computed alongside training (at most {limit:g} s "
             "from the start; learning_config equilibrium_reference: false skips it) ...")
        try:
            msg = pending.result()
        except _TimeUp:
            note = f"equilibrium reference skipped: not found within {limit:g} s"
            echo("note: " + note)
            summary["equilibrium"] = {"skipped": note}
            return summary
        if msg[0] == "value_error":  # as the search here would have raised
            note = f"equilibrium reference skipped: {msg[1]}"
            echo("note: " + note)
            summary["equilibrium"] = {"skipped": note}
            return summary
        if msg[0] != "ok":
            echo(f"note: the equilibrium reference alongside training failed ({msg[1]}); computing it now")
            msg = None
    elif pending is not None:
        pending.close()
    try:
        if msg is not None:
            eq = msg[1]
        else:
            echo(f"computing the equilibrium reference over {rec.n_hours} hours (at most {time_limit_s:g} s; "
                 "learning_config equilibrium_reference: false skips it) ...")
            eq = _with_time_limit(lambda: equilibrium(scenario, hours=rec.n_hours, max_bid_price=config.max_bid_price,
                                                      min_power_rule=getattr(config, "min_power_rule", "partial")),
                                  time_limit_s)
        dist = distance_to_equilibrium(rec, eq)
    except _TimeUp:
        note = f"equilibrium reference skipped: not found within {time_limit_s:g} s"
        echo("note: " + note)
        summary["equilibrium"] = {"skipped": note}
        return summary
    except ValueError as exc:  # e.g. a market the equilibrium search does not cover
        note = f"equilibrium reference skipped: {exc}"
        echo("note: " + note)
        summary["equilibrium"] = {"skipped": note}
        return summary
    summary["equilibrium"] = {
        "converged": bool(eq.converged), "reason": eq.reason, "verdict": eq.verdict(),
        "mean_price": float(eq.prices.mean()), "mean_price_difference": dist.mean_price_difference,
        "price_rmse": dist.price_rmse, "price_mae": dist.price_mae, "wall_time_s": round(float(eq.wall_time), 3),
        "waited_s": round(time.perf_counter() - t0, 3), "alongside_training": msg is not None,
    }
    for k, a in enumerate(eq.agents):
        if a in summary.get("agents", {}):
            summary["agents"][a]["equilibrium_profit"] = float(eq.profit[k])
    if plots_dir is not None:
        from envs.plots_analysis import plot_prices_vs_equilibrium

        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        path = plot_prices_vs_equilibrium(rec, eq, Path(plots_dir) / "prices_vs_equilibrium.png")
        summary["equilibrium"]["plot"] = str(path)
    return summary


def print_reference(summary: dict[str, Any], echo: Callable[[str], None] = print) -> None:
    """The verdict and the distance-to-equilibrium line of :func:`add_equilibrium_reference`."""
    if "verdict" in summary:
        echo(summary["verdict"])
    e = summary.get("equilibrium") or {}
    if "price_rmse" in e:
        state = "" if e["converged"] else f" (not converged: {e['reason']}; a reference only)"
        echo(f"learned vs equilibrium prices: mean difference {e['mean_price_difference']:+.2f} EUR/MWh, "
             f"RMSE {e['price_rmse']:.2f} EUR/MWh (equilibrium mean price {e['mean_price']:.2f}){state}")
        if "plot" in e:
            echo(f"plot: {e['plot']}")
