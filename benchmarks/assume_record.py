"""ASSUME's recorded orders of one episode as a marketzoo :class:`envs.record.EpisodeRecord`.

:func:`episode_record_from_assume` reads the rows of ASSUME's ``market_orders`` table (one
row per order: ``start_time``, ``unit_id``, ``bid_id``, ``price``, ``volume``,
``accepted_volume``) and the hourly clearing prices of its ``market_meta`` table
(``product_start``, ``price``), and builds the record :func:`envs.analysis.exploitability`
reads:

* every order of a non-demand unit with a positive volume is a supply bid; its column is
  ``(unit, bid number)`` -- the number after the unit's name in ``bid_id`` (ASSUME's
  learning power plant bids ``<unit>_1`` = inflexible part at ``min(actions)`` and
  ``<unit>_2`` = flexible part at ``max(actions)``, the layout marketzoo's analysis expects);
* demand orders (negative volume) of a demand unit at (or above) the price cap are the
  inelastic ``fixed_demand``; any other negative-volume order is a demand bid;
* a bid's cost is its unit's marginal cost in that hour, from the marketzoo scenario loaded
  from the same folder (``scenario.plants.marginal_cost``; renewables likewise) -- ASSUME
  does not store it with the order;
* the learning units of the scenario are the agents; ``agent_prev_dispatch`` is the agent's
  accepted supply in the previous recorded hour (0 before the first); ``agent_profit`` is
  recomputed with :func:`envs.analysis.recorded_profit` (pay-as-clear: accepted MW times
  clearing price minus cost).

Hours with no order of a column get volume 0 (price 0). Only the ASSUME interpreter writes
the orders; this module needs only numpy, pandas and marketzoo.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np


def _frame(rows):
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame(rows if isinstance(rows, Mapping) else list(rows))


def _bid_number(unit: str, bid_id: str) -> int:
    if bid_id.startswith(unit + "_"):
        tail = bid_id[len(unit) + 1:]
        if tail.isdigit():
            return int(tail)
    m = re.search(r"_(\d+)$", bid_id)
    return int(m.group(1)) if m else 1


def episode_record_from_assume(orders, market_prices, scenario, *, agents: Iterable[str] | None = None):
    """Build an :class:`~envs.record.EpisodeRecord` from ASSUME's orders of one episode.

    Args:
        orders: ``market_orders`` rows (DataFrame, list of dicts or dict of columns) with
            ``start_time``, ``unit_id``, ``bid_id``, ``price``, ``volume``, ``accepted_volume``.
        market_prices: ``market_meta`` rows with ``product_start`` and ``price``.
        scenario: the marketzoo scenario (:func:`envs.load_scenario`) of the same folder:
            start time, time step, units' kinds and marginal costs, learning units,
            ``max_bid_price``, price limits and mechanism.
        agents: names of the agent units (default: the scenario's learning units).
    """
    import pandas as pd

    from envs.analysis import recorded_profit
    from envs.record import EpisodeRecord

    od = _frame(orders).copy()
    mp = _frame(market_prices).copy()
    od["start_time"] = pd.to_datetime(od["start_time"])
    mp["product_start"] = pd.to_datetime(mp["product_start"])
    mp = mp.sort_values("product_start").drop_duplicates("product_start")
    times = mp["product_start"].to_numpy(dtype="datetime64[ns]")
    t0 = np.datetime64(scenario.times[0], "ns")
    step = np.timedelta64(int(round(scenario.time_step_hours * 3600e9)), "ns")
    hours = ((times - t0) // step).astype(np.int64)
    H = len(hours)
    row_of = {t: k for k, t in enumerate(times)}
    od = od[od["start_time"].isin(set(times))]
    od["row"] = od["start_time"].to_numpy(dtype="datetime64[ns]")
    od["row"] = [row_of[t] for t in od["row"].to_numpy()]

    mk = scenario.market
    cap = float(getattr(mk, "price_cap", 3000.0))
    floor = float(getattr(mk, "price_floor", -500.0))
    mechanism = str(getattr(mk, "mechanism", "pay_as_clear"))
    lc = scenario.learning_config or {}
    max_bid_price = float(lc.get("max_bid_price", 100.0))

    pl, rn, st = scenario.plants, scenario.renewables, scenario.storages
    kind_of: dict[str, str] = {}
    cost_of: dict[str, np.ndarray] = {}
    for i, name in enumerate(pl.names):
        kind_of[name] = "plant"
        cost_of[name] = np.asarray(pl.marginal_cost)[hours, i]
    if rn is not None and len(getattr(rn, "names", ())):
        mc = np.asarray(rn.marginal_cost)
        for i, name in enumerate(rn.names):
            kind_of[name] = "renewable"
            cost_of[name] = mc[hours, i] if mc.ndim == 2 else np.full(H, float(mc[i]))
    if st is not None and len(getattr(st, "names", ())):
        for name in st.names:
            kind_of[name] = "storage"
    demand_names = set(getattr(scenario.demands, "names", ()) or ()) if getattr(scenario, "demands", None) else set()

    od["unit_id"] = od["unit_id"].astype(str)
    dup = od.duplicated(["start_time", "bid_id"])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} orders appear twice (same start_time and bid_id): "
                         "pass the orders of one simulation run only")
    od["bid_no"] = [_bid_number(u, str(b)) for u, b in zip(od["unit_id"], od["bid_id"])]
    vol = od["volume"].astype(float).to_numpy()
    is_dem_unit = od["unit_id"].isin(demand_names).to_numpy() | ~od["unit_id"].isin(set(kind_of)).to_numpy()
    fixed_mask = (vol < 0) & is_dem_unit & (od["price"].astype(float).to_numpy() >= cap)
    supply_mask = vol > 0
    demand_mask = (vol < 0) & ~fixed_mask

    fixed = np.zeros(H)
    np.add.at(fixed, od["row"].to_numpy()[fixed_mask], -vol[fixed_mask])

    agent_names = list(agents) if agents is not None else [n for _, n in scenario.learning_units]
    units: list[str] = []
    unit_kind: list[str] = []

    def unit_index(name: str) -> int:
        if name not in units:
            units.append(name)
            unit_kind.append(kind_of.get(name, "demand"))
        return units.index(name)

    def columns(mask, sign):
        sub = od[mask]
        keys = sorted({(u, b) for u, b in zip(sub["unit_id"], sub["bid_no"])},
                      key=lambda k: (k[0] in agent_names, k[0], k[1]))
        col = {k: j for j, k in enumerate(keys)}
        P, V, A, C = (np.zeros((H, len(keys))) for _ in range(4))
        owner = np.array([unit_index(u) for u, _ in keys], dtype=np.int64)
        for j, (u, _) in enumerate(keys):
            if sign > 0 and u in cost_of:
                C[:, j] = cost_of[u]
        r = sub["row"].to_numpy()
        c = np.array([col[k] for k in zip(sub["unit_id"], sub["bid_no"])], dtype=np.int64)
        P[r, c] = sub["price"].astype(float).to_numpy()
        np.add.at(V, (r, c), sign * sub["volume"].astype(float).to_numpy())
        np.add.at(A, (r, c), sign * sub["accepted_volume"].fillna(0).astype(float).to_numpy())
        return P, V, A, C, owner

    for n in agent_names:  # agents own units even when they never bid
        unit_index(n)
    sP, sV, sA, sC, s_unit = columns(supply_mask, +1)
    dP, dV, dA, dC, d_unit = columns(demand_mask, -1)

    agent_unit = np.array([units.index(n) for n in agent_names], dtype=np.int64)
    n = len(agent_names)
    prev = np.zeros((H, n))
    suc = np.zeros(n)
    for k, name in enumerate(agent_names):
        q = sA[:, s_unit == agent_unit[k]].sum(axis=1)
        prev[1:, k] = q[:-1]
        if name in pl.names:
            suc[k] = float(np.asarray(pl.start_up_cost)[list(pl.names).index(name)])

    rec = EpisodeRecord(
        hours=hours, times=times, units=tuple(units), unit_kind=tuple(unit_kind),
        supply_price=sP, supply_volume=sV, supply_cost=sC, supply_unit=s_unit,
        demand_price=dP, demand_volume=dV, demand_cost=dC, demand_unit=d_unit,
        fixed_demand=fixed, clearing_price=mp["price"].astype(float).to_numpy(),
        supply_accepted=sA, demand_accepted=dA,
        agents=tuple(agent_names), agent_unit=agent_unit,
        agent_kind=tuple(kind_of.get(a, "plant") for a in agent_names),
        agent_profit=np.zeros((H, n)), agent_prev_dispatch=prev, agent_start_up_cost=suc,
        max_bid_price=max_bid_price, price_cap=cap, price_floor=floor, mechanism=mechanism,
    )
    profit = np.stack([recorded_profit(rec, k) for k in range(n)], axis=1) if n else np.zeros((H, 0))
    return dataclasses.replace(rec, agent_profit=profit)


def reclear_prices(record) -> np.ndarray:
    """Clearing prices of the record's bids recomputed with :func:`envs.market.clear_market`."""
    from envs.market import clear_market

    res = clear_market(record.supply_price, record.supply_volume, record.demand_price, record.demand_volume,
                       fixed_demand=record.fixed_demand, price_cap=record.price_cap, price_floor=record.price_floor,
                       mechanism=record.mechanism)
    return np.asarray(res.price, dtype=float)
