"""PNG figures of a training run (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _figure(w: float = 9, h: float = 5):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110)


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def learning_curves(history: list[dict[str, Any]], path: Path, final: float | None = None) -> Path:
    """Training and evaluation rewards, and the evaluations' share of the best-response
    profit; ``final``: the share of the policy the run keeps and summarises
    (``policies/best`` after the fallbacks and the profile search, which may be none of
    the evaluations plotted), marked after the last episode."""
    return _save(_learning_figure(history, final), path)


def _learning_figure(history: list[dict[str, Any]], final: float | None = None):
    fig = _figure()
    ax1, ax2 = fig.subplots(1, 2)
    ep = [r["episode"] for r in history]
    ax1.plot(ep, [r.get("train/reward", np.nan) for r in history], label="training (with noise)")
    ev = [(r["episode"], r["eval/reward"]) for r in history if "eval/reward" in r]
    if ev:
        ax1.plot(*zip(*ev), "o-", label="evaluation (deterministic)")
    ax1.set_xlabel("episode")
    ax1.set_ylabel("mean reward per agent-hour")
    ax1.legend()
    ax1.set_title("learning curve")
    br = [(r["episode"], r["eval/br_share"]) for r in history if "eval/br_share" in r]
    if br:
        ax2.plot(*zip(*br), "o-", color="tab:green", label="evaluations")
        ax2.axhline(1.0, color="k", lw=0.8, ls=":")
        if final is not None and np.isfinite(final):
            ax2.plot([br[-1][0] + 1], [final], "*", color="tab:red", ms=12,
                     label=f"kept policy (summary): {final:.3f}")
            ax2.legend(loc="lower right")
        ax2.set_ylabel("share of best-response profit")
        ax2.set_title("profit / best-response profit (evaluation)")
    else:
        ax2.plot(ep, [r.get("train/mean_price", np.nan) for r in history])
        ax2.set_ylabel("mean price EUR/MWh")
        ax2.set_title("mean clearing price (training)")
    ax2.set_xlabel("episode")
    fig.tight_layout()
    return fig


def bids_vs_cost(ev, agents: list[str], path: Path, hours: int = 336) -> Path:
    fig = _figure(10, 2.2 + 1.8 * len(agents))
    axes = fig.subplots(len(agents), 1, squeeze=False)[:, 0]
    H = min(hours, len(ev.prices))
    x = np.arange(H)
    for i, (ax, a) in enumerate(zip(axes, agents)):
        two = not np.allclose(ev.bids[:H, i, 0], ev.bids[:H, i, 1])
        if a.startswith("storage_"):  # two-sided: charge bid, discharge offer; signed: sign = direction
            labels = ("discharge offer", "charge bid") if two else ("signed price (< 0: charge bid at |p|)", "")
        else:
            labels = ("bid price (flexible / only)", "bid price (inflexible)")
        ax.plot(x, ev.bids[:H, i, 1], lw=1, label=labels[0])
        if two:
            ax.plot(x, ev.bids[:H, i, 0], lw=1, label=labels[1])
        ax.plot(x, ev.marginal_cost[:H, i], "k--", lw=1, label="marginal cost")
        ax.plot(x, ev.prices[:H], color="tab:red", lw=0.8, alpha=0.7, label="clearing price")
        ax.set_ylabel("EUR/MWh")
        ax.set_title(a, fontsize=9)
    for i, (ax, a) in enumerate(zip(axes, agents)):
        if i == 0 or a.startswith("storage_"):  # storage bids are labelled differently
            ax.legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1].set_xlabel("hour of the evaluation episode")
    fig.tight_layout()
    return _save(fig, path)


def price_duration(ev, path: Path) -> Path:
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    p = np.sort(ev.prices)[::-1]
    ax.plot(np.arange(1, len(p) + 1), p)
    ax.set_xlabel("hours (sorted)")
    ax.set_ylabel("clearing price EUR/MWh")
    ax.set_title("price duration curve (evaluation episode)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def profit_vs_best_response(ev, agents: list[str], path: Path) -> Path:
    fig = _figure(max(6, 1.2 * len(agents) + 3), 4.5)
    ax = fig.subplots()
    x = np.arange(len(agents))
    ax.bar(x - 0.2, ev.agent_profit, 0.4, label="learned policy")
    if ev.br_profit is not None:
        ax.bar(x + 0.2, ev.br_profit, 0.4, label="best response (others fixed)")
        for xi, s in zip(x, ev.br_share):
            ax.text(xi, 0, f"{s:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, agents, rotation=20, fontsize=8)
    ax.set_ylabel("profit over the episode (EUR)")
    ax.set_title("profit vs exact best-response profit")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def on_off_vs_best_response(ev, path: Path) -> Path | None:
    """For each learning plant with start-up costs: the hours it was dispatched in the
    evaluation episode against the on/off schedule of its exact best response (the
    others' bids fixed), with the clearing price behind. None (no file) when the
    evaluation has no analysis or no such plant."""
    from envs.analysis import dispatched

    from .evaluation import on_off_line, on_off_rows

    rows = on_off_rows(ev)
    if not rows:
        return None
    rec, responses = ev.record, ev.analysis_result.responses
    fig = _figure(10, 1.2 + 1.7 * len(rows))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    t = np.arange(rec.n_hours) * rec.dt
    for ax, (a, o) in zip(axes, rows.items()):
        br = responses[a]
        ax.fill_between(t, 1.1, 2.0, where=dispatched(rec, br.agent_index), step="post", color="tab:blue",
                        label="learned policy: running")
        ax.fill_between(t, 0.0, 0.9, where=br.best_on, step="post", color="tab:green", label="best response: running")
        ax.set_yticks([0.45, 1.55], ["best response", "learned"], fontsize=8)
        ax.set_ylim(-0.1, 2.7)  # a free band above the bars for the legend
        ax.set_title(f"{a}: {on_off_line(o)}", fontsize=9)
        tw = ax.twinx()
        tw.plot(t, rec.clearing_price, color="tab:red", lw=0.7, alpha=0.6)
        tw.set_ylabel("price EUR/MWh", fontsize=8, color="tab:red")
    axes[0].legend(fontsize=7, ncol=2, loc="upper left", frameon=False)
    axes[-1].set_xlabel("hour of the evaluation episode")
    fig.tight_layout()
    return _save(fig, path)


def gain_by_hour_type(ev, path: Path) -> Path | None:
    """One bar per analysed learner: its gain from deviating alone (EUR) split by hour
    type (:func:`envs.analysis.gain_by_hours`), gains to the right, losses (hours where
    the best response earns less, e.g. running through a dip to save a start) to the
    left, each segment labelled with its hours. None (no file) without the analysis."""
    from envs.analysis import SELLER_HOUR_TYPES, STORAGE_HOUR_TYPES

    from .evaluation import gain_by_hours_rows

    rows = gain_by_hours_rows(ev)
    if not rows:
        return None
    labels = {**SELLER_HOUR_TYPES, **STORAGE_HOUR_TYPES}
    kinds = [k for k in labels if k != "both_idle"]
    fig = _figure(10, 1.6 + 0.55 * len(rows) + 0.25 * len(kinds))
    ax = fig.add_subplot(1, 1, 1)
    colors = {k: f"C{j}" for j, k in enumerate(kinds)}
    names = list(rows)
    used = set()
    span = max(sum(abs(v["gain"]) for v in r.values()) for r in rows.values()) / 1e3 or 1.0
    for y, a in enumerate(names):
        left_pos = left_neg = 0.0
        for k in kinds:
            part = rows[a].get(k)
            if part is None or part["gain"] == 0.0:
                continue
            g = part["gain"] / 1e3
            x0 = left_pos if g > 0 else left_neg
            ax.barh(y, g, left=x0, color=colors[k], label=None if k in used else labels[k], edgecolor="white")
            used.add(k)
            if abs(g) >= 0.06 * span:  # room for the label
                ax.text(x0 + g / 2, y, f"{part['hours']:g} h", ha="center", va="center", fontsize=7)
            if g > 0:
                left_pos += g
            else:
                left_neg += g
    ax.axvline(0.0, color="black", lw=0.8)
    return _finish_gain_bars(fig, ax, names, path, "gain from deviating alone, k EUR (by hour type; hours in the bars)",
                             "where each learner's gain lies: its hours against its exact best response's", -0.2, 2)


def _finish_gain_bars(fig, ax, names, path: Path, xlabel: str, title: str, legend_y: float, ncol: int) -> Path:
    """Labels, legend below the axes, and save: the end of the horizontal gain-bar figures."""
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, legend_y), ncol=ncol, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def gain_by_price_needed(rows: dict, path: Path) -> Path | None:
    """One bar per learning plant on the env's offer grid: its gain from deviating alone
    (EUR) split by the prices its best response needs (the summary's rows, see
    :func:`agents.evaluation.off_grid_line`): within the grid (what training left), a tick
    under another learner's offer (the race between learners at a shared price), other
    prices off the grid. None (no file) without such plants."""
    from .evaluation import plant_gain_split

    parts = plant_gain_split(rows)
    if not parts:
        return None
    labels = ("within the env's offer grid (training's shortfall)",
              "a tick under another learner's offer (shared price)",
              "other prices off the grid (a tie with or a tick above a rule offer)")
    fig = _figure(9, 2.3 + 0.5 * len(parts))
    ax = fig.add_subplot(1, 1, 1)
    names = list(parts)
    for y, a in enumerate(names):
        left = 0.0
        for j, g in enumerate(parts[a]):
            g = max(g, 0.0) / 1e3
            ax.barh(y, g, left=left, color=f"C{j}", label=labels[j] if y == 0 else None, edgecolor="white")
            left += g
    return _finish_gain_bars(fig, ax, names, path, "gain from deviating alone, k EUR",
                             "where each plant's gain lies: the prices its exact best response needs", -0.35, 1)


def make_plots(run_dir: str | os.PathLike, history, ev, agents: list[str], rows: dict | None = None) -> list[Path]:
    """Write all figures into ``run_dir/plots``; returns their paths (the on/off
    schedules only for a run with plants with start-up costs and the analysis, the gain
    by hour type only with the analysis, the gain by the price it needs only with the
    summary's ``rows`` of plants on the env's grid)."""
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        learning_curves(history, out / "learning_curves.png", final=ev.metrics().get("br_share")),
        bids_vs_cost(ev, agents, out / "bids_vs_marginal_cost.png"),
        price_duration(ev, out / "price_duration_curve.png"),
        profit_vs_best_response(ev, agents, out / "profit_vs_best_response.png"),
    ]
    on_off = on_off_vs_best_response(ev, out / "on_off_vs_best_response.png")
    by_hours = gain_by_hour_type(ev, out / "gain_by_hour_type.png")
    by_price = gain_by_price_needed(rows, out / "gain_by_price_needed.png") if rows else None
    return paths + [p for p in (on_off, by_hours, by_price) if p is not None]
