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
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

MAX_EQUILIBRIUM_AGENTS = 5
"""Most learning agents for which the final summary computes the equilibrium."""

EQUILIBRIUM_TIME_LIMIT_S = 120.0
"""Wall-clock limit of that computation (Unix main thread; elsewhere unlimited); past it
the reference is skipped with a note (default scenario: about 15-35 s)."""


class _TimeUp(Exception):
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
                              time_limit_s: float | None = EQUILIBRIUM_TIME_LIMIT_S) -> dict[str, Any]:
    """Add ``verdict``, ``equilibrium`` (converged, reason, distances, seconds) and each
    agent's ``equilibrium_profit`` to ``summary`` (in place; also returned); draw
    ``plots_dir/prices_vs_equilibrium.png`` when ``plots_dir`` is given."""
    ex = getattr(ev, "analysis_result", None)
    if ex is not None:
        from envs.analysis import deviation_verdict

        summary["verdict"] = deviation_verdict(ex)
    rec = ev.record
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

    echo(f"computing the equilibrium reference over {rec.n_hours} hours (at most {time_limit_s:g} s; "
         "learning_config equilibrium_reference: false skips it) ...")
    t0 = time.perf_counter()
    try:
        eq = _with_time_limit(lambda: equilibrium(scenario, hours=rec.n_hours, max_bid_price=config.max_bid_price),
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
        "price_rmse": dist.price_rmse, "price_mae": dist.price_mae, "wall_time_s": round(time.perf_counter() - t0, 3),
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
