"""Text and picture views of the last cleared hour (used by ``env.render()``)."""

from __future__ import annotations

import numpy as np


def _last_hour_bids(env):
    """Supply bids ``(price, volume, owner)`` of the last cleared hour, sorted by price."""
    core = env.core
    last = env._last
    if last is None:
        return None
    t, out = last["hour"], last["outcome"]
    res = out.clearing
    prices = list(core.static_price[t])
    vols = list(core.static_volume[t])
    owners = list(core.static_names)
    # learners' and storage bids as they were submitted (from the core's own bid builder)
    n_lp = len(core.lp)
    sc = core.scenario
    bp = out.bid_price[0]
    for j, i in enumerate(core.lp):
        lo, hi = bp[j]
        avail = sc.plants.max_power[i] * sc.plants.availability[t, i]
        inflex = min(sc.plants.min_power[i], avail)
        prices += [lo, hi]
        vols += [inflex, avail - inflex]
        owners += [core.agents[j]] * 2
    for k, i in enumerate(core.lr):
        a = core.sl_ren.start + k
        prices.append(bp[a][0])
        vols.append(sc.renewables.capacity[i] * sc.renewables.availability[t, i])
        owners.append(core.agents[a])
    del n_lp
    p = np.nan_to_num(np.asarray(prices, dtype=float), nan=core.cap)
    v = np.asarray(vols, dtype=float)
    order = np.argsort(p, kind="stable")
    return t, p[order], v[order], [owners[i] for i in order], float(res.price[0]), float(core.fixed_demand[t])


def render_text(env) -> str:
    """A few lines: hour, price, demand, and every agent's bids and result."""
    core = env.core
    last = env._last
    if last is None:
        return f"[marketzoo] hour {core.hour} ({str(core.scenario.times[min(core.hour, core.T - 1)])[:16]}): not cleared yet"
    t, out = last["hour"], last["outcome"]
    lines = [
        f"[marketzoo] hour {t} {str(core.scenario.times[t])[:16]}  price {out.price[0]:8.2f} EUR/MWh  "
        f"demand {out.demand[0]:9.1f} MW  traded {out.volume[0]:9.1f} MW" + ("  SCARCITY" if out.scarcity[0] else "")
    ]
    for i, a in enumerate(core.agents):
        b = out.bid_price[0, i]
        bids = ", ".join(f"{x:7.2f}" for x in b if np.isfinite(x))
        lines.append(
            f"  {a:<28s} bids [{bids}]  accepted {out.accepted[0, i]:8.1f} MW  profit {out.profit[0, i]:11.1f} EUR"
        )
    return "\n".join(lines)


def render_rgb(env, width: int = 640, height: int = 400) -> np.ndarray:
    """The merit order of the last cleared hour as an RGB array ``(height, width, 3)``:
    the supply curve (agents' bids highlighted), the demand and the clearing price."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    data = _last_hour_bids(env)
    if data is None:
        ax.set_title("marketzoo: no hour cleared yet")
    else:
        t, p, v, owners, price, demand = data
        x0 = 0.0
        agents = set(env.core.agents)
        for pi, vi, o in zip(p, v, owners):
            if vi <= 0:
                continue
            color = "tab:orange" if o in agents else "tab:blue"
            ax.bar(x0, pi, width=vi, align="edge", color=color, edgecolor="k", linewidth=0.3)
            x0 += vi
        ax.axvline(demand, color="tab:red", lw=1.5, label=f"demand {demand:.0f} MW")
        ax.axhline(price, color="k", ls="--", lw=1, label=f"price {price:.2f} EUR/MWh")
        top = max(np.max(p[np.isfinite(p)], initial=0.0), price) * 1.15 + 1
        ax.set_ylim(min(0.0, np.min(p, initial=0.0)) * 1.1, min(top, env.core.cap))
        ax.set_xlabel("cumulative supply (MW)")
        ax.set_ylabel("bid price (EUR/MWh)")
        ax.set_title(f"hour {t}: {str(env.core.scenario.times[t])[:16]} (orange: learning agents)")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
    return img
