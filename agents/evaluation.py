"""Tables of an evaluated episode: ``market.csv`` and ``orders.csv`` (DESIGN.md format)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from envs.record import EpisodeRecord


def market_frame(record: EpisodeRecord) -> pd.DataFrame:
    """Per hour: ``time, clearing_price, demand, supply_volume`` (MW)."""
    return pd.DataFrame(
        {
            "time": pd.to_datetime(record.times),
            "clearing_price": record.clearing_price,
            "demand": record.fixed_demand + record.demand_accepted.sum(axis=1),
            "supply_volume": record.supply_accepted.sum(axis=1),
        }
    )


def orders_frame(record: EpisodeRecord) -> pd.DataFrame:
    """One row per bid and hour: ``time, unit, price, volume, accepted_volume,
    clearing_price, marginal_cost``; demand volumes are negative. Zero-volume bids are
    left out."""
    H = record.n_hours
    units = np.asarray(record.units, dtype=object)
    parts = []
    for price, vol, acc, cost, owner, sign in (
        (record.supply_price, record.supply_volume, record.supply_accepted, record.supply_cost, record.supply_unit, 1.0),
        (record.demand_price, record.demand_volume, record.demand_accepted, record.demand_cost, record.demand_unit, -1.0),
    ):
        nb = price.shape[1]
        if nb == 0:
            continue
        parts.append(pd.DataFrame({
            "time": np.repeat(pd.to_datetime(record.times).values, nb),
            "unit": np.tile(units[owner], H),
            "price": price.reshape(-1),
            "volume": sign * vol.reshape(-1),
            "accepted_volume": sign * acc.reshape(-1),
            "clearing_price": np.repeat(record.clearing_price, nb),
            "marginal_cost": cost.reshape(-1),
        }))
    # inelastic demand at the cap
    parts.append(pd.DataFrame({
        "time": pd.to_datetime(record.times), "unit": "demand", "price": record.price_cap,
        "volume": -record.fixed_demand,
        "accepted_volume": -(record.supply_accepted.sum(axis=1) - record.demand_accepted.sum(axis=1)),
        "clearing_price": record.clearing_price, "marginal_cost": np.nan,
    }))
    df = pd.concat(parts, ignore_index=True)
    df = df[df["volume"] != 0].sort_values(["time", "unit"], kind="stable").reset_index(drop=True)
    return df


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value):
    """``value`` with a leading ``'`` when it is text that a spreadsheet would run as a
    formula (starts with ``= + - @``, tab or carriage return); other values unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names are :func:`neutralise_cell`-ed
    (numbers untouched: a negative volume stays a number), against CSV formula injection
    through unit names."""
    out = df.rename(columns=neutralise_cell)
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise_cell)
    return out


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    neutralise_frame(df).to_csv(tmp, index=False)
    os.replace(tmp, path)


def write_market_csvs(out: str | os.PathLike, record: EpisodeRecord, scenario=None) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m, o = out / "market.csv", out / "orders.csv"
    _atomic_csv(market_frame(record), m)
    _atomic_csv(orders_frame(record), o)
    return m, o
