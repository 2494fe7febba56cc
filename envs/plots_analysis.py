"""Pictures of the analysis: learned vs equilibrium prices (matplotlib, Agg, imported
lazily; no torch, no ``agents``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_prices_vs_equilibrium(record, eq, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Hourly clearing prices of ``record`` (a learned policy's evaluation episode) and of
    the equilibrium reference ``eq`` (:class:`envs.equilibrium.EquilibriumResult`) over the
    same hours, with the mean difference and RMSE in the title; written as a PNG
    atomically (temp file, then rename). Returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .equilibrium import distance_to_equilibrium

    d = distance_to_equilibrium(record, eq)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    t = np.asarray(record.times)
    ax.step(t, record.clearing_price, where="post", label="learned", lw=1.0)
    label = "equilibrium" if eq.converged else "best-response iterate (NOT converged)"
    ax.step(t, eq.prices, where="post", label=label, lw=1.0, ls="--")
    ax.set_ylabel("clearing price [EUR/MWh]")
    ax.set_title(title or f"learned vs equilibrium prices: mean difference {d.mean_price_difference:+.2f}, "
                          f"RMSE {d.price_rmse:.2f} EUR/MWh")
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fig.savefig(fh, format="png")
    os.replace(tmp, path)
    return path
