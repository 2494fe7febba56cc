"""Zonal and nodal clearing: one price per zone or bus from a linear program.

ASSUME's network markets, as marketzoo reads them:

* **Zonal** (``market_mechanism: complex_clearing`` with ``param_dict.zones_identifier``,
  and ``pay_as_clear_complex``): every bus of ``buses.csv`` belongs to the zone named in
  its ``zones_identifier`` column; each line of ``lines.csv`` that joins two different
  zones carries at most ``s_nom * s_max_pu`` MW (``s_max_pu`` defaults to 1) in either
  direction, lines inside a zone are ignored. A transport model: flows obey only the
  line limits (no reactances). ``complex_clearing`` without ``zones_identifier`` is the
  same with every bus its own zone; so is a ``zones_identifier`` that names a column
  ``buses.csv`` lacks (example_04a ``zonal_case``; ASSUME 0.6 stops there with a
  KeyError), with a warning.
* **Nodal** (``nodal_clearing``, ``nodal``): a DC power flow on the buses. Every line
  carries ``f = (theta_from - theta_to) / x_pu`` with ``x_pu = x / v_nom**2`` (PyPSA's
  per-unit reactance; ``v_nom`` of the line's first bus, 1 when absent), bounded by
  ``s_nom * s_max_pu``. ``zones_identifier`` plays no part (prices are per bus, as in
  ASSUME's ``NodalClearingRole``).

The clearing of one hour maximises welfare: minimise ``sum(supply price * accepted MW)
- sum(demand price * accepted MW)`` subject to one energy balance per zone/bus (supply -
demand + imports = 0), the bid volumes and the line limits. It is solved by HiGHS
through ``highspy`` (a core dependency; without it, through
``scipy.optimize.linprog(method="highs")``, which bundles HiGHS). The price of a zone/bus is the dual of
its balance constraint (EUR/MWh), as in ASSUME: not clipped to the price limits (a
nodal price in a meshed network can lie outside them); bid prices are clipped to
``[price_floor, price_cap]`` before clearing, as ASSUME's order validation does.

Ties: the LP's own vertex decides how much the bids at a zone's price get; marketzoo then
shares that volume among all bids of that zone at exactly the zone's price pro rata to
their volumes (supply and demand separately), so the outcome does not depend on bid
order. Balances and flows are unchanged by this. Between zones that end up at the same
price (no congestion), how tied bids split is the LP's vertex, as in ASSUME. When the dual itself is not unique (a
zone's supply curve steps exactly at its demand), every demand bid is cut by
``DEMAND_EPS`` = 1e-6 MW before solving, which makes the price that of the highest
accepted offer (marketzoo's single-market convention; on example_01d ASSUME 0.6 returns
the same in all 48 such zone-hours), independent of the solver's vertex and of how many
hours are solved together. Accepted demand is therefore up to 1e-6 MW below the bid.

``B`` copies of one hour are solved as one block-diagonal LP (the blocks do not
interact), so a vector env pays for one solver call per step, not ``B``.

Public API: :class:`Network`, :func:`load_network`, :func:`clear_network`,
:class:`NetworkResult`, :func:`reclear_with_bid`, :func:`best_response_on_grid`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import ScenarioError

__all__ = [
    "ZONAL_MECHANISMS", "NODAL_MECHANISMS", "NETWORK_MECHANISMS", "Network", "NetworkResult", "load_network",
    "clear_network", "reclear_with_bid", "best_response_on_grid", "network_exploitability", "NetworkExploitability",
    "marginal_cost_prices", "default_grid",
]

ZONAL_MECHANISMS = ("complex_clearing", "pay_as_clear_complex")
NODAL_MECHANISMS = ("nodal_clearing", "nodal")
NETWORK_MECHANISMS = ZONAL_MECHANISMS + NODAL_MECHANISMS

# bids at a price within this of the zone price count as tied (EUR/MWh)
PRICE_TOL = 1e-7
# MW taken off every demand bid before solving. Where a zone's supply steps exactly at its
# demand the balance dual is not unique (any price between the last accepted and the next
# offer clears); this tiny cut makes the last accepted offer marginal, so the price is
# that offer's (the convention of envs.market and what ASSUME 0.6's HiGHS solve returned
# on every such hour of example_01d), whatever the solver's vertex and the batch size.
DEMAND_EPS = 1e-6


@dataclass(frozen=True)
class Network:
    """The network of a scenario: pricing areas (zones or buses), lines, unit locations.

    ``nodes`` are the pricing areas: zones for a zonal market, buses for a nodal one.
    Unit locations are indices into ``nodes``, in the order of the scenario's tables.
    """

    kind: str  # "zonal" or "nodal"
    mechanism: str  # the market_mechanism as written in config.yaml
    pricing: str  # "pay_as_clear" or "pay_as_bid" (param_dict.pricing_mechanism)
    nodes: tuple[str, ...]
    buses: tuple[str, ...]
    bus_node: np.ndarray  # (n_buses,) node index of every bus
    line_names: tuple[str, ...]  # lines that take part (zonal: between zones)
    line_from: np.ndarray  # (L,) node index (zonal) or bus index (nodal)
    line_to: np.ndarray
    line_capacity: np.ndarray  # (L,) MW, s_nom * s_max_pu
    line_x: np.ndarray  # (L,) per-unit reactance (nodal only; zonal: nan)
    plant_node: np.ndarray  # (P,) node index of every plant of scenario.plants
    renewable_node: np.ndarray  # (R,)
    storage_node: np.ndarray  # (S,)
    demand_node: np.ndarray  # (D,)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def summary(self) -> str:
        return (f"{self.kind} network ({self.mechanism}, {self.pricing}): {len(self.nodes)} "
                f"{'zones' if self.kind == 'zonal' else 'buses'} {', '.join(self.nodes)}; {len(self.line_names)} lines")


@dataclass(frozen=True)
class NetworkResult:
    """Outcome of clearing ``B`` copies of one hour."""

    price: np.ndarray  # (B, Z) EUR/MWh per zone/bus
    supply_accepted: np.ndarray  # (B, N) MW
    demand_accepted: np.ndarray  # (B, M) MW
    flow: np.ndarray  # (B, L) MW, positive from line_from to line_to
    supply_price: np.ndarray  # (B, N) bid prices after clipping
    demand_price: np.ndarray  # (B, M)


# --------------------------------------------------------------------------- loading


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False).apply(lambda c: c.str.strip())
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ScenarioError(f"{path}: cannot read the file ({exc}); it must be a comma-separated table") from None


def _num(df: pd.DataFrame, path: Path, col: str, default: float | None, first_col: str) -> np.ndarray:
    if col not in df.columns:
        if default is None:
            raise ScenarioError(f"{path}: missing column {col!r} (columns present: {', '.join(df.columns)}); add it")
        return np.full(len(df), float(default))
    out = np.empty(len(df))
    for i, v in enumerate(df[col].tolist()):
        if v == "" and default is not None:
            out[i] = default
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise ScenarioError(
                f"{path}: line {i + 2}, {first_col} {df.iloc[i, 0]!r}, column {col!r}: {v!r} is not a number"
            ) from None
        if not np.isfinite(out[i]):
            raise ScenarioError(f"{path}: line {i + 2}, column {col!r}: {v!r} is not a finite number")
    return out


def load_network(folder: str | Path, study_case_cfg: dict[str, Any], scenario: Any) -> Network:
    """Read ``buses.csv``/``lines.csv`` and the units' ``node`` column for a network market.

    Args:
        folder: the scenario folder.
        study_case_cfg: the study case's mapping from ``config.yaml``.
        scenario: the loaded :class:`~envs.data.Scenario` (its unit tables give the order).

    The files come from ``param_dict.network_path`` of the energy market (relative to the
    scenario folder); without that key the market is refused (ASSUME's ``complex_clearing``
    without a network is its block/linked-order day-ahead market, not modelled here). A unit without a ``node`` entry sits in
    the first zone/bus, with one warning (ASSUME does the same); a node that is not a bus
    of ``buses.csv`` is an error.
    """
    folder = Path(folder)
    cfg = Path(folder) / "config.yaml"
    markets = study_case_cfg.get("markets_config") or {}
    name, spec = next(iter(markets.items()))
    spec = spec or {}
    mech = str(spec.get("market_mechanism"))
    where = f"{cfg}: study case {scenario.study_case!r}, markets_config.{name}"
    if mech not in NETWORK_MECHANISMS:
        raise ScenarioError(f"{where}, key 'market_mechanism': {mech!r} is not a network mechanism "
                            f"({', '.join(NETWORK_MECHANISMS)})")
    pdict = spec.get("param_dict") or {}
    if not isinstance(pdict, dict):
        raise ScenarioError(f"{where}, key 'param_dict': expected a mapping")
    pricing = str(pdict.get("pricing_mechanism", pdict.get("payment_mechanism", "pay_as_clear")))
    if pricing not in ("pay_as_clear", "pay_as_bid"):
        raise ScenarioError(f"{where}, key 'param_dict.pricing_mechanism': {pricing!r} is not supported; "
                            "use pay_as_clear or pay_as_bid")
    if "network_path" not in pdict:
        raise ScenarioError(
            f"{where}: {mech!r} without a network (no param_dict.network_path) is ASSUME's day-ahead market with block "
            "and linked orders, which marketzoo does not model; use market_mechanism: pay_as_clear for one price area "
            "with hourly bids, or give param_dict.network_path (buses.csv, lines.csv) for a zonal/nodal market"
        )
    net_dir = folder / str(pdict.get("network_path", "."))
    bus_path, line_path = net_dir / "buses.csv", net_dir / "lines.csv"
    for p, what in ((bus_path, "the buses (name, v_nom, ...)"), (line_path, "the lines (bus0, bus1, s_nom, x)")):
        if not p.is_file():
            raise ScenarioError(f"{p}: missing file; the {mech} market of {where} needs {p.name} with {what} "
                                "(param_dict.network_path names its folder)")
    buses = _read(bus_path)
    if buses.shape[1] == 0 or len(buses) == 0:
        raise ScenarioError(f"{bus_path}: no buses; add rows 'name,v_nom,...'")
    bus_names = tuple(buses.iloc[:, 0].tolist())
    if len(set(bus_names)) != len(bus_names):
        dup = sorted({b for b in bus_names if bus_names.count(b) > 1})
        raise ScenarioError(f"{bus_path}: duplicate bus name(s) {dup}; every bus needs a unique name")
    bus_idx = {b: i for i, b in enumerate(bus_names)}
    kind = "nodal" if mech in NODAL_MECHANISMS else "zonal"
    zid = pdict.get("zones_identifier")
    if kind == "zonal" and zid:
        if zid in buses.columns:
            zone_of_bus = buses[zid].tolist()
            for i, z in enumerate(zone_of_bus):
                if z == "":
                    raise ScenarioError(f"{bus_path}: line {i + 2}, bus {bus_names[i]!r}, column {zid!r}: empty zone; "
                                        "name the zone of every bus")
        else:
            warnings.warn(f"{bus_path}: no column {zid!r} (param_dict.zones_identifier of {where}); every bus is "
                          "its own zone", stacklevel=2)
            zone_of_bus = list(bus_names)
    else:
        zone_of_bus = list(bus_names)
    if kind == "zonal":
        nodes = tuple(dict.fromkeys(zone_of_bus))  # first appearance order, as ASSUME's unique()
        node_idx = {z: i for i, z in enumerate(nodes)}
        bus_node = np.array([node_idx[z] for z in zone_of_bus], dtype=np.int64)
    else:
        nodes = bus_names
        bus_node = np.arange(len(bus_names), dtype=np.int64)
    v_nom = _num(buses, bus_path, "v_nom", 1.0, "bus")

    lines = _read(line_path)
    for col in ("bus0", "bus1", "s_nom"):
        if col not in lines.columns:
            raise ScenarioError(f"{line_path}: missing column {col!r} (columns present: {', '.join(lines.columns)}); "
                                "lines need bus0, bus1, s_nom (and x for nodal clearing)")
    lnames = tuple(lines.iloc[:, 0].tolist())
    s_nom = _num(lines, line_path, "s_nom", None, "line")
    s_max_pu = _num(lines, line_path, "s_max_pu", 1.0, "line")
    cap = s_nom * s_max_pu
    ends = []
    for col in ("bus0", "bus1"):
        idx = []
        for i, b in enumerate(lines[col].tolist()):
            if b not in bus_idx:
                raise ScenarioError(f"{line_path}: line {i + 2}, line {lnames[i]!r}, column {col!r}: unknown bus {b!r}; "
                                    f"buses in {bus_path.name}: {', '.join(bus_names)}")
            idx.append(bus_idx[b])
        ends.append(np.array(idx, dtype=np.int64))
    bad = np.flatnonzero(cap < 0)
    if bad.size:
        i = int(bad[0])
        raise ScenarioError(f"{line_path}: line {i + 2}, line {lnames[i]!r}: s_nom * s_max_pu = {cap[i]:g} is negative")
    if kind == "nodal":
        if "x" not in lines.columns:
            raise ScenarioError(f"{line_path}: missing column 'x' (line reactance); nodal clearing ({mech}) is a DC "
                                "power flow and needs it")
        x = _num(lines, line_path, "x", None, "line")
        bad = np.flatnonzero(x <= 0)
        if bad.size:
            i = int(bad[0])
            raise ScenarioError(f"{line_path}: line {i + 2}, line {lnames[i]!r}, column 'x': reactance {x[i]:g} must be "
                                "positive")
        x_pu = x / v_nom[ends[0]] ** 2
        keep = ends[0] != ends[1]
        lf, lt = ends[0][keep], ends[1][keep]
    else:
        x_pu = np.full(len(lnames), np.nan)
        lf, lt = bus_node[ends[0]], bus_node[ends[1]]
        keep = lf != lt  # lines inside a zone take no part
        lf, lt = lf[keep], lt[keep]

    # unit locations from the unit files (study-case keys may name other files)
    def unit_nodes(key: str, default_file: str, names: tuple[str, ...]) -> np.ndarray:
        out = np.zeros(len(names), dtype=np.int64)
        if not names:
            return out
        path = folder / str(study_case_cfg.get(key) or default_file)
        if not path.suffix:
            path = path.with_suffix(".csv")
        df = _read(path) if path.is_file() else pd.DataFrame()
        node_of = {}
        if "node" in df.columns and "name" in df.columns:
            for i, (n, b) in enumerate(zip(df["name"].tolist(), df["node"].tolist())):
                if b == "":
                    continue
                if b not in bus_idx:
                    raise ScenarioError(f"{path}: line {i + 2}, unit {n!r}, column 'node': unknown bus {b!r}; "
                                        f"buses in {bus_path.name}: {', '.join(bus_names)}")
                node_of[n] = int(bus_node[bus_idx[b]])
        missing = [n for n in names if n not in node_of]
        if missing:
            warnings.warn(f"{path}: no 'node' for unit(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''};"
                          f" they are placed at the first {'zone' if kind == 'zonal' else 'bus'} {nodes[0]!r}",
                          stacklevel=3)
        for j, n in enumerate(names):
            out[j] = node_of.get(n, 0)
        return out

    return Network(
        kind=kind, mechanism=mech, pricing=pricing, nodes=nodes, buses=bus_names, bus_node=bus_node,
        line_names=tuple(n for n, k in zip(lnames, keep) if k), line_from=lf, line_to=lt,
        line_capacity=cap[keep], line_x=x_pu[keep],
        plant_node=unit_nodes("powerplant_units", "powerplant_units.csv", scenario.plants.names),
        renewable_node=unit_nodes("powerplant_units", "powerplant_units.csv", scenario.renewables.names),
        storage_node=unit_nodes("storage_units", "storage_units.csv", scenario.storages.names),
        demand_node=unit_nodes("demand_units", "demand_units.csv", scenario.demands.names),
    )


# --------------------------------------------------------------------------- clearing


_STRUCT: dict[tuple, tuple] = {}


@dataclass(frozen=True)
class _CSC:
    """A sparse matrix in compressed-column form (what HiGHS takes)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]


def _structure(net: Network, s_node: np.ndarray, d_node: np.ndarray, B: int):
    """Sparse equality matrix, variable layout and reference buses for ``B`` blocks."""
    key = (id(net), s_node.tobytes(), d_node.tobytes(), B)
    hit = _STRUCT.get(key)
    if hit is not None and hit[0] is net:
        return hit[1]
    N, M, L, Z = len(s_node), len(d_node), len(net.line_from), net.n_nodes
    nodal = net.kind == "nodal"
    nth = Z if nodal else 0
    nv = N + M + L + nth  # variables per block: supply, demand, flows, angles
    ne = Z + (L if nodal else 0)  # rows per block: balances, then flow definitions
    r, c, v = [s_node, d_node], [np.arange(N), N + np.arange(M)], [np.ones(N), -np.ones(M)]
    # line l leaves line_from (-1) and enters line_to (+1), as ASSUME's incidence matrix
    r += [net.line_from, net.line_to]
    c += [N + M + np.arange(L)] * 2
    v += [-np.ones(L), np.ones(L)]
    if nodal:
        b = 1.0 / net.line_x
        lr = Z + np.arange(L)
        r += [lr, lr, lr]
        c += [N + M + np.arange(L), N + M + L + net.line_from, N + M + L + net.line_to]
        v += [np.ones(L), -b, b]
    r1, c1, v1 = np.concatenate(r), np.concatenate(c), np.concatenate(v)
    rr = (r1[None, :] + ne * np.arange(B)[:, None]).ravel()
    cc = (c1[None, :] + nv * np.arange(B)[:, None]).ravel()
    vv = np.tile(v1, B)
    order = np.lexsort((rr, cc))  # column-major (CSC), as HiGHS takes it
    counts = np.bincount(cc, minlength=nv * B)
    A = _CSC(indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int32), indices=rr[order].astype(np.int32),
             data=vv[order], shape=(ne * B, nv * B))
    ref = np.zeros(0, dtype=np.int64)
    if nodal:  # one reference angle per island
        parent = list(range(Z))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, bb in zip(net.line_from, net.line_to):
            parent[find(int(a))] = find(int(bb))
        ref = np.array(sorted({min(i for i in range(Z) if find(i) == root) for root in {find(i) for i in range(Z)}}))
    out = (A, nv, ne, ref)
    _STRUCT[key] = (net, out)
    if len(_STRUCT) > 64:
        _STRUCT.pop(next(iter(_STRUCT)))
    return out


def clear_network(
    net: Network,
    supply_price,
    supply_volume,
    supply_node,
    demand_price,
    demand_volume,
    demand_node,
    *,
    price_cap: float = 3000.0,
    price_floor: float = -500.0,
) -> NetworkResult:
    """Clear ``B`` copies of one hour of a zonal or nodal market with HiGHS.

    Args:
        net: the :class:`Network`.
        supply_price, supply_volume: ``(B, N)`` (or ``(N,)``) EUR/MWh and MW >= 0.
        supply_node: ``(N,)`` node index (into ``net.nodes``) of every supply bid.
        demand_price, demand_volume, demand_node: likewise ``(B, M)``, ``(M,)``.
        price_cap, price_floor: bid prices are clipped to these.

    Returns:
        :class:`NetworkResult` with the price of every zone/bus (balance duals).
    """
    sp = np.atleast_2d(np.asarray(supply_price, np.float64))
    sv = np.atleast_2d(np.asarray(supply_volume, np.float64))
    dp = np.atleast_2d(np.asarray(demand_price, np.float64))
    dv = np.atleast_2d(np.asarray(demand_volume, np.float64))
    s_node = np.asarray(supply_node, np.int64).reshape(-1)
    d_node = np.asarray(demand_node, np.int64).reshape(-1)
    B, N = sp.shape
    M = dp.shape[1] if dp.size else len(d_node)
    if dp.shape[0] != B:
        dp, dv = dp.reshape(B, M), dv.reshape(B, M)
    if sv.shape != sp.shape or dv.shape != dp.shape or len(s_node) != N or len(d_node) != M:
        raise ValueError(f"bid arrays disagree: supply {sp.shape}/{sv.shape}/{s_node.shape}, demand "
                         f"{dp.shape}/{dv.shape}/{d_node.shape}")
    if (sv < 0).any() or (dv < 0).any():
        raise ValueError("bid volumes must be >= 0 MW")
    sp = np.clip(sp, price_floor, price_cap)
    dp = np.clip(dp, price_floor, price_cap)
    A, nv, ne, ref = _structure(net, s_node, d_node, B)
    L, Z = len(net.line_from), net.n_nodes
    cost = np.zeros((B, nv))
    cost[:, :N] = sp
    cost[:, N:N + M] = -dp
    lo = np.zeros((B, nv))
    hi = np.zeros((B, nv))
    hi[:, :N] = sv
    hi[:, N:N + M] = np.maximum(dv - DEMAND_EPS, 0.0)  # see DEMAND_EPS
    lo[:, N + M:N + M + L] = -net.line_capacity
    hi[:, N + M:N + M + L] = net.line_capacity
    if net.kind == "nodal":
        lo[:, N + M + L:] = -np.inf
        hi[:, N + M + L:] = np.inf
        lo[:, N + M + L + ref] = 0.0
        hi[:, N + M + L + ref] = 0.0
    xs, ys = _solve(cost.ravel(), A, ne * B, lo.ravel(), hi.ravel())
    x = xs.reshape(B, nv)
    duals = ys.reshape(B, ne)
    price = duals[:, :Z] + 0.0  # + 0.0 turns -0.0 into 0.0
    s_acc = _share_ties(x[:, :N].copy(), sp, sv, s_node, price)
    d_acc = _share_ties(x[:, N:N + M].copy(), dp, dv, d_node, price)
    return NetworkResult(price=price, supply_accepted=s_acc, demand_accepted=d_acc, flow=x[:, N + M:N + M + L].copy(),
                         supply_price=sp, demand_price=dp)


def _solve(c: np.ndarray, A, n_rows: int, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``c @ x`` s.t. ``A x = 0``, ``lo <= x <= hi`` with HiGHS; returns the
    primal solution and the duals of the rows (d objective / d right-hand side).

    Uses ``highspy`` when installed (a fresh model per call, so the answer does not
    depend on earlier calls), else ``scipy.optimize.linprog(method="highs")``, which
    bundles the same solver but adds a few milliseconds of input checking per call."""
    if SOLVER == "highspy":
        import highspy

        h = _HIGHS.get("h")
        if h is None:  # one instance (its banner printed once, muted); every call passes a fresh model
            h = _HIGHS["h"] = _quiet(highspy.Highs)
            h.setOptionValue("output_flag", False)
        h.clearSolver()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(c), n_rows
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = c, lo, hi
        lp.row_lower_ = lp.row_upper_ = np.zeros(n_rows)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
        h.passModel(lp)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"network clearing: HiGHS did not solve the LP ({h.modelStatusToString(h.getModelStatus())})")
        sol = h.getSolution()
        return np.asarray(sol.col_value), np.asarray(sol.row_dual)
    from scipy import sparse
    from scipy.optimize import linprog

    A = sparse.csc_matrix((A.data, A.indices, A.indptr), shape=A.shape)
    res = linprog(c, A_eq=A, b_eq=np.zeros(n_rows), bounds=np.stack([lo, hi], axis=1), method="highs")
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"network clearing: HiGHS did not solve the LP ({res.message})")
    return res.x, res.eqlin.marginals


def _quiet(make):
    """``make()`` with the C-level stdout muted (HiGHS prints a banner when created)."""
    import os
    import sys

    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout: nothing to mute
        return make()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        return make()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _default_solver() -> str:
    try:
        import highspy  # noqa: F401
    except ImportError:
        return "scipy"
    return "highspy"


_HIGHS: dict = {}
# "highspy" or "scipy" (scipy.optimize.linprog, method="highs"); set at import, may be changed
SOLVER = _default_solver()


def _share_ties(acc: np.ndarray, p: np.ndarray, v: np.ndarray, node: np.ndarray, price: np.ndarray) -> np.ndarray:
    """Accepted volumes with the bids at exactly their node's price sharing pro rata."""
    acc = np.clip(acc, 0.0, v)
    acc[acc < 1e-9] = 0.0
    if acc.shape[1] == 0:
        return acc
    at = np.abs(p - price[:, node]) <= PRICE_TOL  # (B, N)
    if not at.any():
        return acc
    Z = price.shape[1]
    tot = np.zeros((acc.shape[0], Z))
    vol = np.zeros((acc.shape[0], Z))
    for z in range(Z):
        m = at & (node == z)[None, :]
        tot[:, z] = (acc * m).sum(axis=1)
        vol[:, z] = (v * m).sum(axis=1)
    share = np.where(vol > 0, tot / np.maximum(vol, 1e-300), 0.0)
    return np.where(at, v * share[:, node], acc)


# --------------------------------------------------------------------------- analysis


def reclear_with_bid(
    net: Network,
    supply_price,
    supply_volume,
    supply_node,
    demand_price,
    demand_volume,
    demand_node,
    agent_columns,
    new_prices,
    *,
    price_cap: float = 3000.0,
    price_floor: float = -500.0,
) -> NetworkResult:
    """Re-clear one hour with one agent's supply bids replaced, for many candidates at once.

    Args:
        supply_price ... demand_node: the hour's recorded bids, ``(N,)``/``(M,)`` arrays (one
            market, not a batch).
        agent_columns: indices of the agent's supply bids (e.g. its inflexible and flexible part).
        new_prices: ``(G, len(agent_columns))`` candidate bid prices (``(G,)`` when the agent
            has one column); every other bid keeps its recorded price and volume.

    Returns:
        :class:`NetworkResult` of the ``G`` re-cleared markets (one LP with ``G`` blocks).
        The agent's outcome in candidate ``g`` is ``supply_accepted[g, agent_columns]`` at
        ``price[g, supply_node[agent_columns]]``.
    """
    sp = np.asarray(supply_price, np.float64).reshape(-1)
    cols = np.atleast_1d(np.asarray(agent_columns, np.int64))
    newp = np.asarray(new_prices, np.float64).reshape(-1, len(cols))
    G = newp.shape[0]
    sp_g = np.repeat(sp[None, :], G, axis=0)
    sp_g[:, cols] = newp
    sv_g = np.repeat(np.asarray(supply_volume, np.float64).reshape(1, -1), G, axis=0)
    dp_g = np.repeat(np.asarray(demand_price, np.float64).reshape(1, -1), G, axis=0)
    dv_g = np.repeat(np.asarray(demand_volume, np.float64).reshape(1, -1), G, axis=0)
    return clear_network(net, sp_g, sv_g, supply_node, dp_g, dv_g, demand_node, price_cap=price_cap,
                         price_floor=price_floor)


def default_grid(supply_price, demand_price, cost, price_floor: float, price_cap: float, tick: float = 0.01):
    """Candidate offer prices for the network best-response search: every distinct bid
    price (clipped to the limits), each also minus ``tick`` (undercutting a rival instead
    of tying with it), the agent's costs and both price limits."""
    base = np.concatenate([np.clip(np.asarray(supply_price, np.float64).reshape(-1), price_floor, price_cap),
                           np.clip(np.asarray(demand_price, np.float64).reshape(-1), price_floor, price_cap),
                           np.asarray(cost, np.float64).reshape(-1), [price_floor, price_cap]])
    return np.unique(np.clip(np.concatenate([base, base - tick]), price_floor, price_cap))


def best_response_on_grid(
    net: Network,
    supply_price,
    supply_volume,
    supply_node,
    demand_price,
    demand_volume,
    demand_node,
    agent_columns,
    agent_cost,
    *,
    grid=None,
    tick: float = 0.01,
    price_cap: float = 3000.0,
    price_floor: float = -500.0,
    pricing: str = "pay_as_clear",
) -> tuple[float, np.ndarray, float]:
    """Best one-hour response of one agent on a price grid, by re-clearing the network.

    The agent offers every one of its supply columns at one price ``q`` from ``grid``
    (default :func:`default_grid`: every distinct bid price of the hour and that price
    minus ``tick``, the agent's cost, ``price_floor`` and ``price_cap``). Profit of a
    candidate = ``sum(accepted * (paid price - agent_cost))``, paid price the node price
    (pay-as-clear) or ``q`` (pay-as-bid).

    Tolerance: the agent's profit is piecewise linear in ``q`` (prices are duals of an
    LP), so its maximum lies where the LP's basis changes. In a zonal market and in a
    nodal one where the agent's bid only sets its own bus's price, those points are the
    other bids' prices, and the default grid finds the best profit to within ``tick`` x
    the MW sold per hour (0.01 EUR/MWh, as :mod:`envs.analysis`). Where the agent's bid
    also sets other buses' prices through loop flows (a congested meshed network) a
    basis change can fall between grid prices; the gap to the true best is then at most
    ``largest gap between neighbouring grid prices x MW sold`` in that hour. Pass a finer
    ``grid`` to tighten it. The one-price offer does not search separate prices for a
    plant's inflexible and flexible parts.

    Returns:
        ``(best_profit, best_prices (len(agent_columns),), best_q)``.
    """
    sp = np.asarray(supply_price, np.float64).reshape(-1)
    cols = np.atleast_1d(np.asarray(agent_columns, np.int64))
    cost = np.broadcast_to(np.asarray(agent_cost, np.float64), cols.shape)
    if grid is None:
        grid = default_grid(sp, demand_price, cost, price_floor, price_cap, tick)
    grid = np.asarray(grid, np.float64).reshape(-1)
    res = reclear_with_bid(net, sp, supply_volume, supply_node, demand_price, demand_volume, demand_node, cols,
                           np.repeat(grid[:, None], len(cols), axis=1), price_cap=price_cap, price_floor=price_floor)
    node = np.asarray(supply_node, np.int64)[cols]
    acc = res.supply_accepted[:, cols]
    paid = res.price[:, node] if pricing == "pay_as_clear" else np.clip(grid, price_floor, price_cap)[:, None]
    profit = (acc * (paid - cost[None, :])).sum(axis=1)
    g = int(np.argmax(profit))
    return float(profit[g]), np.full(len(cols), grid[g]), float(grid[g])


# --------------------------------------------------------------------------- scenarios


def marginal_cost_bids(scenario: Any) -> tuple[np.ndarray, ...]:
    """Every hour's bids with every plant and renewable at its marginal cost (whole
    available capacity), inelastic demand at its bid price, storage idle.

    Returns ``(supply_price (T, P+R), supply_volume, supply_node (P+R,), demand_price (T, D),
    demand_volume, demand_node (D,))``, plants first, then renewables, in table order."""
    sc, net = scenario, scenario.network
    pl, rn, dm = sc.plants, sc.renewables, sc.demands
    T = sc.n_hours
    sp = np.concatenate([pl.marginal_cost, np.broadcast_to(rn.marginal_cost, (T, len(rn)))], axis=1)
    sv = np.concatenate([pl.max_power * pl.availability, rn.capacity * rn.availability], axis=1)
    s_node = np.concatenate([net.plant_node, net.renewable_node])
    dp = np.broadcast_to(dm.price, (T, len(dm))).copy()
    return sp, sv, s_node, dp, dm.volume.copy(), net.demand_node.copy()


def marginal_cost_prices(scenario: Any) -> np.ndarray:
    """``(T, Z)`` price of every zone/bus and hour when every unit bids its marginal cost
    (the naive forecast of a network scenario; one LP with ``T`` blocks)."""
    sp, sv, s_node, dp, dv, d_node = marginal_cost_bids(scenario)
    m = scenario.market
    return clear_network(scenario.network, sp, sv, s_node, dp, dv, d_node, price_cap=m.price_cap,
                         price_floor=m.price_floor).price


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class NetworkExploitability:
    """Per-agent best responses over a recorded episode of a zonal/nodal market.

    ``recorded_profit``: the agent's profit with every bid as recorded, re-cleared on
    the network (start-up costs left out, as the hour-by-hour search leaves them out);
    ``best_response_profit``: the best of the recorded bids and every one-price offer on
    the grid of :func:`best_response_on_grid`, hour by hour; ``share`` = recorded / best
    (nan when the best response loses money); ``joint`` = sum(gain) / sum(|recorded|), as
    :class:`envs.analysis.Exploitability` defines them. Storage agents are not searched (NaN)."""

    agents: tuple[str, ...]
    recorded_profit: np.ndarray
    best_response_profit: np.ndarray
    share: np.ndarray
    joint: float

    def summary(self) -> str:
        rows = [f"{a}: profit {p:,.0f} EUR, best response {b:,.0f} EUR, share {s:.3f}"
                for a, p, b, s in zip(self.agents, self.recorded_profit, self.best_response_profit, self.share)]
        return "\n".join(rows + [f"joint exploitability {self.joint:.4f} (network re-clearing on a price grid)"])


def _record_nodes(record: Any, scenario: Any) -> tuple[np.ndarray, np.ndarray]:
    net = scenario.network
    where: dict[str, int] = {}
    for names, nodes in ((scenario.plants.names, net.plant_node), (scenario.renewables.names, net.renewable_node),
                         (scenario.storages.names, net.storage_node)):
        where.update({n: int(k) for n, k in zip(names, nodes)})
    unit_node = np.array([where[u] for u in record.units], dtype=np.int64)
    return unit_node[record.supply_unit], unit_node[record.demand_unit]


def network_exploitability(record: Any, scenario: Any, *, grid=None, tick: float = 0.01) -> NetworkExploitability:
    """Best responses of every plant/renewable agent of an :class:`~envs.record.EpisodeRecord`
    of a zonal/nodal scenario, by re-clearing the network (see :func:`best_response_on_grid`
    for the grid and its tolerance). ``scenario`` is the one the record came from (it
    gives unit locations and the demand of every zone/bus)."""
    net = scenario.network
    if net is None:
        raise ValueError("network_exploitability needs a zonal/nodal scenario (scenario.network is None); "
                         "use envs.analysis.exploitability for a single price area")
    s_node, d_node = _record_nodes(record, scenario)
    dm = scenario.demands
    n = len(record.agents)
    rec_p = np.full(n, np.nan)
    br_p = np.full(n, np.nan)
    H = record.n_hours
    dp_h = np.concatenate([np.broadcast_to(dm.price, (H, len(dm))), record.demand_price], axis=1)
    dv_h = np.concatenate([dm.volume[record.hours], record.demand_volume], axis=1)
    dn = np.concatenate([net.demand_node, d_node])
    lo, hi = record.price_floor, record.price_cap
    for k in range(n):
        if record.agent_kind[k] == "storage":
            continue
        cols = record.agent_supply_columns(k)
        cost = record.supply_cost[:, cols]  # (H, c)
        # candidates per hour: the recorded bids first, then one price for all columns
        grids = []
        for h in range(H):
            g = grid if grid is not None else default_grid(record.supply_price[h], dp_h[h], cost[h], lo, hi, tick)
            grids.append(np.asarray(g, np.float64))
        G = 1 + max(len(g) for g in grids)
        cand = np.empty((H, G, len(cols)))
        for h, g in enumerate(grids):
            cand[h, 0] = record.supply_price[h, cols]
            cand[h, 1:1 + len(g)] = g[:, None]
            cand[h, 1 + len(g):] = cand[h, 0]  # padding repeats the recorded bids
        prof = np.empty((H, G))
        per_call = max(1, 2048 // G)  # hours per LP (G blocks each)
        for h0 in range(0, H, per_call):
            hs = np.arange(h0, min(H, h0 + per_call))
            sp = np.repeat(record.supply_price[hs], G, axis=0)
            sp[:, cols] = cand[hs].reshape(-1, len(cols))
            res = clear_network(net, sp, np.repeat(record.supply_volume[hs], G, axis=0), s_node,
                                np.repeat(dp_h[hs], G, axis=0), np.repeat(dv_h[hs], G, axis=0), dn,
                                price_cap=hi, price_floor=lo)
            acc = res.supply_accepted[:, cols]
            paid = np.clip(sp[:, cols], lo, hi) if net.pricing == "pay_as_bid" else res.price[:, s_node[cols]]
            c_rep = np.repeat(cost[hs], G, axis=0)
            prof[hs] = (acc * (paid - c_rep)).sum(axis=1).reshape(len(hs), G)
        rec_p[k], br_p[k] = prof[:, 0].sum(), prof.max(axis=1).sum()
    # the same definitions as envs.analysis.exploitability
    share = np.full(n, np.nan)
    for k in range(n):
        b, r = br_p[k], rec_p[k]
        if b > 1e-9:
            share[k] = r / b
        elif abs(b) <= 1e-9 and abs(r) <= 1e-9:
            share[k] = 1.0
    ok = ~np.isnan(br_p)
    denom, total = float(np.abs(rec_p[ok]).sum()), float((br_p[ok] - rec_p[ok]).sum())
    joint = total / denom if denom > 1e-9 else (0.0 if total <= 1e-9 else float("inf"))
    return NetworkExploitability(agents=tuple(record.agents), recorded_profit=rec_p, best_response_profit=br_p,
                                 share=np.where(ok, share, np.nan), joint=joint)
