"""Read a scenario folder in the ASSUME format into a :class:`envs.data.Scenario`.

A scenario folder holds ``config.yaml`` (study cases) and CSV tables of units and time
series; ``envs/SCENARIOS.md`` documents the format as read here. The two public
functions are :func:`load_scenario` and :func:`list_builtin_scenarios`.

Everything is parsed and checked first; the :class:`Scenario` is only built once every
input is valid, so a bad input raises one :class:`ScenarioError` and returns nothing.
Each message names the file, the row (line number and unit) or column, what is wrong
and how to fix it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from .data import Demands, Exchanges, MarketConfig, Plants, Renewables, Scenario, ScenarioError, Storages
from .network import NETWORK_MECHANISMS, load_network

__all__ = ["load_scenario", "list_builtin_scenarios", "with_learning_units", "scenario_device"]

BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"

CONFIG_FILE = "config.yaml"
POWERPLANT_FILE = "powerplant_units.csv"
STORAGE_FILE = "storage_units.csv"
DEMAND_UNITS_FILE = "demand_units.csv"
DEMAND_SERIES_FILE = "demand_df.csv"
FUEL_FILE = "fuel_prices_df.csv"
AVAILABILITY_FILE = "availability_df.csv"
EXCHANGE_UNITS_FILE = "exchange_units.csv"
EXCHANGE_SERIES_FILE = "exchanges_df.csv"
_KNOWN_FILES = (
    CONFIG_FILE,
    POWERPLANT_FILE,
    STORAGE_FILE,
    DEMAND_UNITS_FILE,
    DEMAND_SERIES_FILE,
    FUEL_FILE,
    AVAILABILITY_FILE,
    "buses.csv",  # network markets (envs/network.py)
    "lines.csv",
)

RENEWABLE_FUEL = "renewable"
DEFAULT_STUDY_CASE = "base"
MECHANISMS = ("pay_as_clear", "pay_as_bid")

_NS_PER_HOUR = 3_600 * 10**9
_NS_PER_UNIT = {
    "s": 10**9, "sec": 10**9, "second": 10**9, "seconds": 10**9,
    "t": 60 * 10**9, "m": 60 * 10**9, "min": 60 * 10**9, "mins": 60 * 10**9,
    "minute": 60 * 10**9, "minutes": 60 * 10**9,
    "h": _NS_PER_HOUR, "hr": _NS_PER_HOUR, "hour": _NS_PER_HOUR, "hours": _NS_PER_HOUR,
    "d": 24 * _NS_PER_HOUR, "day": 24 * _NS_PER_HOUR, "days": 24 * _NS_PER_HOUR,
    "w": 168 * _NS_PER_HOUR, "week": 168 * _NS_PER_HOUR, "weeks": 168 * _NS_PER_HOUR,
}


# --------------------------------------------------------------------------- public


def list_builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``envs/scenarios/`` (folders with a
    ``config.yaml``), sorted."""
    if not BUILTIN_DIR.is_dir():
        return []
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def load_scenario(path_or_name: str | os.PathLike[str], study_case: str = "base") -> Scenario:
    """Load one study case of a scenario.

    ``path_or_name`` is a scenario folder (``str`` or ``Path``) or the name of a built-in
    scenario (see :func:`list_builtin_scenarios`); a plain string without a path
    separator that names a built-in scenario resolves to the built-in one. The result is
    cached on (folder, study case, file modification times); every call returns fresh
    copies of the arrays and of ``learning_config``, so callers may modify them.

    Raises :class:`ScenarioError` for any bad input.
    """
    folder, name = _resolve(path_or_name)
    if not isinstance(study_case, str) or not study_case:
        raise ScenarioError(f"study_case must be a non-empty string, got {study_case!r}")
    scenario = _load_cached(str(folder), name, study_case, _fingerprint(folder))
    return _fresh_copy(scenario)


def with_learning_units(scenario: Scenario, names: Iterable[str] | str) -> Scenario:
    """A copy of ``scenario`` in which the named units learn, in addition to the units
    whose strategy already is a learning one: plants get ``powerplant_energy_learning``
    (two prices), renewables ``renewable_energy_learning_single_bid``, storage
    ``storage_energy_learning``. Unknown names raise :class:`ScenarioError` listing the
    units there are."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    tables = {"plant": scenario.plants, "renewable": scenario.renewables, "storage": scenario.storages}
    strategy = {"plant": "powerplant_energy_learning", "renewable": "renewable_energy_learning_single_bid",
                "storage": "storage_energy_learning"}
    where = {n: (kind, i) for kind, t in tables.items() for i, n in enumerate(t.names)}
    unknown = [n for n in names if n not in where]
    if unknown:
        avail = list(where)
        shown = ", ".join(map(repr, avail[:40])) + (f", ... ({len(avail)} units)" if len(avail) > 40 else "")
        raise ScenarioError(
            f"learning_units: unknown unit(s) {', '.join(map(repr, unknown))} in scenario {scenario.name!r} "
            f"(study case {scenario.study_case!r}); units that can learn (plants, renewables, storage): {shown}"
        )
    changes: dict[str, Any] = {}
    for kind, table in tables.items():
        picked = [where[n][1] for n in names if where[n][0] == kind]
        if not picked:
            continue
        learning = table.learning.copy()
        bidding = list(table.bidding)
        for i in picked:
            if not learning[i]:
                learning[i] = True
                bidding[i] = strategy[kind]
        extra: dict[str, Any] = {}
        if kind == "plant" and table.single_bid is None:
            extra["single_bid"] = np.zeros(len(table), dtype=bool)
        key = {"plant": "plants", "renewable": "renewables", "storage": "storages"}[kind]
        changes[key] = dataclasses.replace(table, learning=learning, bidding=tuple(bidding), **extra)
    return dataclasses.replace(scenario, **changes) if changes else scenario


def perturb_scenario(scenario: Scenario, seed: int, strength: float = 1.0) -> Scenario:
    """A seeded variant of ``scenario`` with the same units, hours and configuration but
    different numbers, for checking that a method generalises beyond the market it was
    tuned on (``benchmarks/bench_quality.py --variants``).

    Every factor is drawn once per unit (constant over the horizon) from
    ``numpy.random.default_rng(seed)``, as ``1 + strength * u`` with ``u`` uniform in the
    range given:

    * plants: marginal cost ``[-0.15, 0.15]``; maximum and minimum power ``[-0.2, 0.2]``
      (one factor for both, so the must-run share stays); start-up cost ``[-0.5, 0.5]``;
    * storage: energy capacity, charging power and discharging power ``[-0.3, 0.3]`` each;
      each efficiency ``[-0.05, 0.03]`` (at most 1);
    * renewables: capacity ``[-0.2, 0.2]``;
    * demand: volume ``[-0.1, 0.1]``.

    The learning units, bidding strategies, market rules, ``learning_config`` and
    time series shapes stay; the name gets ``~v{seed}``. ``strength`` 0 returns an equal
    copy. Raises ``ValueError`` for a negative or non-finite ``strength`` or one of 3 or
    more (factors could reach zero)."""
    strength = float(strength)
    if not (np.isfinite(strength) and 0.0 <= strength < 3.0):
        raise ValueError(f"perturb_scenario: strength must be in [0, 3), got {strength}")
    rng = np.random.default_rng(seed)

    def factor(n: int, lo: float, hi: float) -> np.ndarray:
        return 1.0 + strength * rng.uniform(lo, hi, n)

    sc = _fresh_copy(scenario)
    pl, st, rn, dm = sc.plants, sc.storages, sc.renewables, sc.demands
    P, S, R, D = len(pl), len(st), len(rn), len(dm)
    cost, power, start = factor(P, -0.15, 0.15), factor(P, -0.2, 0.2), factor(P, -0.5, 0.5)
    plants = dataclasses.replace(
        pl, marginal_cost=pl.marginal_cost * cost[None, :], max_power=pl.max_power * power,
        min_power=pl.min_power * power, start_up_cost=pl.start_up_cost * start)
    cap, pch, pdis = factor(S, -0.3, 0.3), factor(S, -0.3, 0.3), factor(S, -0.3, 0.3)
    ech, edis = factor(S, -0.05, 0.03), factor(S, -0.05, 0.03)
    storages = dataclasses.replace(
        st, capacity=st.capacity * cap, max_power_charge=st.max_power_charge * pch,
        max_power_discharge=st.max_power_discharge * pdis,
        efficiency_charge=np.minimum(st.efficiency_charge * ech, 1.0),
        efficiency_discharge=np.minimum(st.efficiency_discharge * edis, 1.0))
    renewables = dataclasses.replace(rn, capacity=rn.capacity * factor(R, -0.2, 0.2))
    demands = dataclasses.replace(dm, volume=dm.volume * factor(D, -0.1, 0.1)[None, :])
    return dataclasses.replace(
        sc, name=f"{scenario.name}~v{seed}", plants=plants, storages=storages,
        renewables=renewables, demands=demands)


def scenario_device(requested: str | None, *, from_scenario: bool, cuda_available: bool,
                    source: str = "learning_config") -> str | None:
    """The torch device to train on. A GPU asked for by a scenario file (ASSUME's
    ``learning_config.device: cuda:0``, as in example_03a) falls back to ``"cpu"`` with
    one warning line when no GPU is there; a GPU asked for on the command line
    (``from_scenario=False``) is returned unchanged, so that the trainer fails clearly.
    Pure logic (no torch import): pass ``torch.cuda.is_available()``; ``source`` (e.g.
    the scenario's config.yaml) starts the warning line."""
    if requested is None:
        return None
    dev = str(requested).strip()
    if from_scenario and dev.lower().startswith("cuda") and not cuda_available:
        # warn_explicit with line 0: the warning prints as one line (no source line below it)
        warnings.warn_explicit(
            f"the scenario's learning_config asks for device {dev!r} but no CUDA GPU is available; training on cpu",
            UserWarning, str(source), 0,
        )
        return "cpu"
    return dev


# --------------------------------------------------------------------------- resolving


def _resolve(path_or_name: Any) -> tuple[Path, str]:
    builtins = list_builtin_scenarios()
    hint = f"built-in scenarios: {', '.join(builtins) or '(none)'}"
    if isinstance(path_or_name, str):
        if not path_or_name.strip():
            raise ScenarioError(f"empty scenario name; give a folder path or one of the {hint}")
        is_bare = os.sep not in path_or_name and "/" not in path_or_name
        if is_bare and path_or_name in builtins:
            return BUILTIN_DIR / path_or_name, path_or_name
        path = Path(path_or_name)
    elif isinstance(path_or_name, os.PathLike):
        path = Path(path_or_name)
        bare = str(path)
        if not path.exists() and bare in builtins:  # Path("tiny") with no such folder here
            return BUILTIN_DIR / bare, bare
    else:
        raise ScenarioError(
            f"scenario must be a folder path or a built-in name, got {type(path_or_name).__name__}; {hint}"
        )
    path = path.expanduser()
    if not path.exists():
        raise ScenarioError(
            f"unknown scenario {str(path_or_name)!r}: no such folder and not a built-in name; {hint}"
        )
    if not path.is_dir():
        raise ScenarioError(f"scenario {str(path)!r} is not a folder; give the folder that holds {CONFIG_FILE}; {hint}")
    path = path.resolve()
    if not (path / CONFIG_FILE).is_file():
        raise ScenarioError(f"{path / CONFIG_FILE}: missing file; a scenario folder needs {CONFIG_FILE} with study cases")
    return path, path.name


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    # study cases may name other input files (``powerplant_units: other.csv``), so every
    # CSV file of the folder takes part, not only the default names
    names = set(_KNOWN_FILES) | {p.name for p in folder.glob("*.csv")}
    for fname in sorted(names):
        try:
            st = (folder / fname).stat()
        except OSError:
            continue
        out.append((fname, st.st_mtime_ns, st.st_size))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _load_cached(folder: str, name: str, study_case: str, fingerprint: tuple) -> Scenario:
    from .validate import validate_scenario  # every number finite and bounded (issue 10)

    with np.errstate(over="ignore", invalid="ignore"):  # overflows are reported by validate_scenario
        scenario = _Loader(Path(folder), name, study_case).load()
    return validate_scenario(scenario)


def _fresh_copy(sc: Scenario) -> Scenario:
    def copy_table(table: Any) -> Any:
        changes = {
            f.name: getattr(table, f.name).copy()
            for f in dataclasses.fields(table)
            if isinstance(getattr(table, f.name), np.ndarray)
        }
        return dataclasses.replace(table, **changes)

    return dataclasses.replace(
        sc,
        times=sc.times.copy(),
        plants=copy_table(sc.plants),
        renewables=copy_table(sc.renewables),
        storages=copy_table(sc.storages),
        demands=copy_table(sc.demands),
        learning_config=copy.deepcopy(sc.learning_config),
        exchanges=copy_table(sc.exchanges) if sc.exchanges is not None else None,
    )


# --------------------------------------------------------------------------- helpers


def _fmt_ns(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


def _fmt_step(ns: int) -> str:
    ns = int(ns)
    for unit, size in (("d", 24 * _NS_PER_HOUR), ("h", _NS_PER_HOUR), ("min", 60 * 10**9), ("s", 10**9)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return str(pd.Timedelta(ns, unit="ns"))


def _parse_time_step(value: Any) -> int | None:
    """Time step in ns, or None if unparsable."""
    if isinstance(value, bool) or not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", value)
    if m and m.group(2).lower() in _NS_PER_UNIT:
        ns = float(m.group(1)) * _NS_PER_UNIT[m.group(2).lower()]
        return int(round(ns))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(pd.Timedelta(value).value)
    except (ValueError, TypeError):
        return None


def _parse_date(value: Any) -> int | None:
    """Naive timestamp in ns since the epoch, or None if unparsable; raises _TzAware for
    timestamps with a time zone."""
    if value is None or isinstance(value, bool) or isinstance(value, (int, float)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts = pd.Timestamp(value if not isinstance(value, str) else value.strip())
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT or pd.isna(ts):
        return None
    if ts.tzinfo is not None:
        raise _TzAware()
    return int(ts.as_unit("ns").value)


class _TzAware(Exception):
    pass


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, skipinitialspace=True, **kwargs)
    except pd.errors.EmptyDataError:
        raise ScenarioError(f"{path}: the file is empty; it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ScenarioError(f"{path}: cannot be parsed as CSV ({exc}); check the separators (comma) and quoting") from None
    df.columns = [str(c).strip() for c in df.columns]
    dup = [c for c in set(df.columns) if list(df.columns).count(c) > 1]
    if dup:
        raise ScenarioError(f"{path}: column {dup[0]!r} appears more than once; keep one column per name")
    return df


def _line(i: int) -> int:
    """File line number of data row ``i`` (header is line 1)."""
    return i + 2


# --------------------------------------------------------------------------- ASSUME features

# Market mechanisms ASSUME 0.6 knows and the feature each stands for, for the message
# that refuses the ones this environment does not clear.
_MECHANISM_FEATURE = {
    "pay_as_clear_advanced": "block and linked orders (pay_as_clear_advanced)",
    "complex_clearing": (
        "complex_clearing without a network (no param_dict.network_path), ASSUME's day-ahead market with block and "
        "linked orders,"
    ),
    "pay_as_clear_complex": "zonal clearing (pay_as_clear_complex)",
    "nodal_clearing": "nodal clearing (nodal_clearing)",
    "nodal": "nodal clearing (nodal)",
    "redispatch": "redispatch (market_mechanism redispatch)",
    "contract": "contract markets",
}


def _check_market_features(path: Path, study_case: str, markets: dict[str, Any]) -> None:
    """One energy market cleared pay-as-clear or pay-as-bid; anything else is refused
    with one line naming the unsupported feature."""
    where = f"{path}: study case {study_case!r}, markets_config"
    names = list(markets)
    for name, spec in markets.items():
        spec = spec if isinstance(spec, dict) else {}
        ptype = str(spec.get("product_type", "energy"))
        if ptype != "energy":
            raise ScenarioError(
                f"{where}.{name}: reserve/capacity markets (product_type {ptype!r}) are not supported; "
                "keep only the energy market in markets_config"
            )
        mech = spec.get("market_mechanism", "pay_as_clear")
        params = spec.get("param_dict") if isinstance(spec.get("param_dict"), dict) else {}
        if mech in NETWORK_MECHANISMS and "network_path" in params:
            continue  # zonal/nodal market: envs/network.py reads and checks the grid
        if mech not in MECHANISMS:
            feature = _MECHANISM_FEATURE.get(str(mech), f"market_mechanism {mech!r}")
            if mech in NETWORK_MECHANISMS and mech != "complex_clearing":
                feature = f"{mech!r} without a network (no param_dict.network_path: buses.csv, lines.csv)"
            raise ScenarioError(
                f"{where}.{name}, key 'market_mechanism': {feature} is not supported; "
                f"use one of {', '.join(MECHANISMS)}"
            )
    if len(names) > 1:
        raise ScenarioError(
            f"{where}: {len(names)} markets ({', '.join(map(str, names))}); sequential markets (e.g. a long-term or "
            "second energy market) are not supported; keep one energy market"
        )


# Bidding strategies of ASSUME 0.6 (assume/strategies/__init__.py): how this environment
# treats each. "plant" = two prices (inflexible part, flexible part), "plant_single" = one
# price for all available capacity, "renewable" = one price, "storage" = one signed price;
# "rule" = bids by rule (marginal cost; rule storage against the price forecast).
LEARNING_STRATEGIES = {
    "powerplant_energy_learning": "plant",
    "powerplant_energy_learning_single_bid": "plant_single",
    "renewable_energy_learning_single_bid": "renewable",
    "storage_energy_learning": "storage",
    # deprecated aliases kept by ASSUME 0.6
    "pp_learning": "plant",
    "learning_advanced_orders": "plant",
    "storage_learning": "storage",
    "renewable_eom_learning": "renewable",
}
RULE_STRATEGIES = (
    "powerplant_energy_naive", "powerplant_energy_heuristic_flexable", "powerplant_energy_naive_profile",
    "powerplant_energy_optimization_dmas", "storage_energy_heuristic_flexable", "storage_energy_optimization_dmas",
    "demand_energy_naive", "exchange_energy_naive", "powerplant_energy_naive_balancing", "demand_energy_naive_balancing",
    # deprecated aliases
    "naive_eom", "flexable_eom", "flexable_eom_storage", "naive_exchange",
)
# Block/linked-order heuristics bid their marginal cost hourly here (one warning): a market
# that clears block orders (complex_clearing without a network) is refused by the market
# check, so these strategies only reach an hourly (or zonal/nodal) market.
_HOURLY_APPROX_STRATEGIES = {
    "powerplant_energy_heuristic_block": "block orders",
    "flexable_eom_block": "block orders",
    "powerplant_energy_heuristic_linked": "linked orders",
    "flexable_eom_linked": "linked orders",
}
_REFUSED_STRATEGIES = {
    "demand_energy_heuristic_elastic": "elastic demand",
    "elastic_demand": "elastic demand",
    "powerplant_energy_naive_otc": "OTC (long-term) trading",
    "demand_energy_naive_otc": "OTC (long-term) trading",
    "otc_strategy": "OTC (long-term) trading",
    "powerplant_energy_interactive": "interactive bidding",
    "portfolio_learning": "operator-level (portfolio) learning",
    "units_operator_energy_heuristic_cournot": "operator-level (portfolio) strategies",
    "units_operator_direct": "operator-level (portfolio) strategies",
}
for _kind in ("powerplant", "storage", "household", "industry", "demand"):
    for _what in ("capacity_heuristic_balancing_pos", "capacity_heuristic_balancing_neg", "energy_naive_redispatch"):
        _REFUSED_STRATEGIES.setdefault(f"{_kind}_{_what}", "reserve markets / redispatch")
for _old in ("naive_neg_reserve", "naive_pos_reserve", "flexable_neg_crm", "flexable_pos_crm", "flexable_neg_crm_storage",
             "flexable_pos_crm_storage", "pos_crm_dsm", "neg_crm_dsm", "naive_redispatch", "naive_redispatch_dsm"):
    _REFUSED_STRATEGIES[_old] = "reserve markets / redispatch"
for _dsm in ("household_energy_optimization", "industry_energy_optimization", "naive_da_dsm"):
    _REFUSED_STRATEGIES[_dsm] = "demand-side management units"
KNOWN_STRATEGIES = tuple(
    sorted(set(LEARNING_STRATEGIES) | set(RULE_STRATEGIES) | set(_HOURLY_APPROX_STRATEGIES) | set(_REFUSED_STRATEGIES))
)


def strategy_kind(name: str, where: str) -> str:
    """``"rule"`` or the learning kind of an ASSUME strategy name; raises
    :class:`ScenarioError` for unknown names (listing the known ones) and for strategies
    of features this environment does not have."""
    key = name.strip()
    if key in LEARNING_STRATEGIES:
        return LEARNING_STRATEGIES[key]
    if key in RULE_STRATEGIES:
        return "rule"
    if key in _HOURLY_APPROX_STRATEGIES:
        warnings.warn(
            f"strategy {key!r} ({_HOURLY_APPROX_STRATEGIES[key]}) is approximated by hourly bids at marginal cost "
            "(block and linked orders are not modelled)",
            stacklevel=2,
        )
        return "rule"
    if key in _REFUSED_STRATEGIES:
        hint = (
            "; give each unit a unit-level learning strategy (e.g. powerplant_energy_learning) or pick learners with "
            "learning_units=[...]" if "learning" in key else "; use powerplant_energy_naive or a learning strategy"
        )
        raise ScenarioError(f"{where}: strategy {key!r} needs {_REFUSED_STRATEGIES[key]}, which is not supported{hint}")
    raise ScenarioError(
        f"{where}: unknown bidding strategy {key!r}; known ASSUME 0.6 strategies: learning: "
        f"{', '.join(sorted(LEARNING_STRATEGIES))}; rule: {', '.join(sorted(RULE_STRATEGIES))}"
    )


# --------------------------------------------------------------------------- unit tables


class _UnitTable:
    """A unit CSV read as text, with checked accessors that report file/line/unit/column."""

    def __init__(self, path: Path, required: Iterable[str], kind: str):
        self.path = path
        self.kind = kind
        df = _read_csv(path, dtype=str, keep_default_na=False)
        df = df.apply(lambda col: col.str.strip())
        self.df = df
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise ScenarioError(
                f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                f"(columns present: {', '.join(df.columns)}); add the column(s) to the header and a value in every row"
            )
        self.names = tuple(self._text_raw("name"))
        for i, n in enumerate(self.names):
            if not n:
                raise ScenarioError(f"{path}: line {_line(i)}, column 'name': empty unit name; give every unit a unique name")

    def __len__(self) -> int:
        return len(self.df)

    def where(self, i: int, col: str) -> str:
        return f"{self.path}: line {_line(i)}, unit {self.names[i]!r}, column {col!r}"

    def _text_raw(self, col: str) -> list[str]:
        return [str(v) for v in self.df[col].tolist()]

    def text(self, col: str) -> tuple[str, ...]:
        vals = self._text_raw(col)
        for i, v in enumerate(vals):
            if v == "" or v.lower() in ("nan", "none", "null", "na", "n/a"):
                raise ScenarioError(f"{self.where(i, col)}: empty cell; fill in a value")
        return tuple(vals)

    def num(self, col: str, default: float | None = None) -> np.ndarray:
        """Float column. A missing column or an empty cell gives ``default`` when one is
        given (optional column), else an error."""
        if col not in self.df.columns:
            if default is None:
                raise ScenarioError(f"{self.path}: missing column {col!r}; add it to the header")
            return np.full(len(self), float(default))
        out = np.empty(len(self))
        for i, v in enumerate(self._text_raw(col)):
            if v == "" or v.lower() in ("nan", "none", "null", "na", "n/a"):
                if default is None:
                    raise ScenarioError(f"{self.where(i, col)}: empty cell; fill in a number")
                out[i] = default
                continue
            try:
                x = float(v)
            except ValueError:
                raise ScenarioError(f"{self.where(i, col)}: {v!r} is not a number; write a plain number such as 1.5") from None
            if not np.isfinite(x):
                raise ScenarioError(f"{self.where(i, col)}: {v!r} is not a finite number; write a plain number")
            out[i] = x
        return out

    def check(self, values: np.ndarray, col: str, ok: np.ndarray, problem: str, fix: str) -> None:
        bad = np.flatnonzero(~ok)
        if bad.size:
            i = int(bad[0])
            raise ScenarioError(f"{self.where(i, col)}: {problem} (got {values[i]:g}); {fix}")

    def bidding_column(self, market: str) -> str:
        cols = [c for c in self.df.columns if c.startswith("bidding_")]
        preferred = f"bidding_{market}"
        if preferred in cols:
            return preferred
        if "bidding_EOM" in cols:
            return "bidding_EOM"
        if len(cols) == 1:
            return cols[0]
        if not cols:
            example = "storage_energy_naive" if self.kind == "storage" else "powerplant_energy_naive"
            raise ScenarioError(
                f"{self.path}: missing column {preferred!r}; add a bidding strategy column for the energy market "
                f"(e.g. {example!r}, or a name containing 'learning' for learning units)"
            )
        raise ScenarioError(
            f"{self.path}: several bidding columns ({', '.join(cols)}) and none named {preferred!r}; "
            f"name the energy-market column {preferred!r}"
        )


def _warn_line(path: Path, message: str) -> None:
    """A UserWarning about an input file that prints as one line: ``<file>:0: UserWarning: ...``."""
    warnings.warn_explicit(message, UserWarning, str(path), 0)


def _warn_ignored_plural(table: _UnitTable, columns: Iterable[str]) -> None:
    """Columns such as ``additional_costs`` (example_03a/03b) are no ASSUME unit parameter:
    ASSUME passes them on unread, so the parameter keeps its default. Same here, said once."""
    found = [c for c in columns if c in table.df.columns]
    if found:
        _warn_line(table.path, f"column(s) {', '.join(found)} are not ASSUME unit parameters and are ignored, as "
                   f"ASSUME ignores them (their singular form, e.g. {found[0][:-1]!r}, is the parameter)")


# --------------------------------------------------------------------------- time series


class _Horizon:
    def __init__(self, start_ns: int, end_ns: int, step_ns: int):
        self.start = start_ns
        self.end = end_ns
        self.step = step_ns
        self.times_ns = np.arange(start_ns, end_ns, step_ns, dtype=np.int64)
        self.n = len(self.times_ns)

    def describe(self) -> str:
        return f"{_fmt_ns(self.start)} .. {_fmt_ns(self.end)} (end exclusive, step {_fmt_step(self.step)})"


def _parse_index(path: Path, raw: pd.Series) -> np.ndarray:
    """First column of a series file -> int64 ns, with errors naming the line."""
    col = raw.name
    text = raw.astype(str).str.strip()
    empty = raw.isna().to_numpy() | (text == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise ScenarioError(f"{path}: line {_line(i)}, column {col!r}: empty timestamp; every row needs a date and time")
    parsed = None
    for kwargs in ({}, {"format": "ISO8601"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cand = pd.to_datetime(text, errors="coerce", **kwargs)
            except (ValueError, TypeError):
                continue
        if not isinstance(cand.dtype, pd.DatetimeTZDtype) and cand.dtype == object:
            continue
        if parsed is None or cand.isna().sum() < parsed.isna().sum():
            parsed = cand
        if not parsed.isna().any():
            break
    if parsed is None:
        raise ScenarioError(f"{path}: column {col!r}: the first column must hold timestamps such as 2019-01-01 00:00:00")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        raise ScenarioError(
            f"{path}: column {col!r}: timestamps with a time zone are not supported; write naive local timestamps "
            "such as 2019-01-01 00:00:00"
        )
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"{path}: line {_line(i)}, column {col!r}: cannot parse {text.iloc[i]!r} as a date; "
            "write timestamps such as 2019-01-01 00:00:00"
        )
    return parsed.dt.as_unit("ns").to_numpy().astype(np.int64)


def _load_series(path: Path, columns: list[str], hz: _Horizon, what: str) -> dict[str, np.ndarray]:
    """Read a time-series CSV (datetime first column) and return ``{column: (T,)}`` for
    ``columns`` on the horizon grid: finer data averaged over each time step, coarser
    data repeated (step function). Checks dates, regularity (no gaps), coverage, NaNs."""
    df = _read_csv(path)
    if df.shape[1] < 2:
        raise ScenarioError(f"{path}: needs a datetime column followed by one column per {what}")
    if len(df) < 2:
        raise ScenarioError(f"{path}: needs at least two rows to determine its time resolution")
    ns = _parse_index(path, df.iloc[:, 0])
    tcol = df.columns[0]
    diffs = np.diff(ns)
    nonpos = np.flatnonzero(diffs <= 0)
    if nonpos.size:
        j = int(nonpos[0])
        kind = "duplicate" if diffs[j] == 0 else "out-of-order"
        raise ScenarioError(
            f"{path}: line {_line(j + 1)}, column {tcol!r}: {kind} timestamp {_fmt_ns(ns[j + 1])} after "
            f"{_fmt_ns(ns[j])}; timestamps must be strictly increasing"
        )
    step = int(diffs.min())
    irregular = np.flatnonzero(diffs != step)
    if irregular.size:
        j = int(irregular[0])
        raise ScenarioError(
            f"{path}: gap in column {tcol!r}: missing timestamps between {_fmt_ns(ns[j])} (line {_line(j)}) and "
            f"{_fmt_ns(ns[j + 1])} (line {_line(j + 1)}); the file must have a row every {_fmt_step(step)} without gaps"
        )
    first, stop = int(ns[0]), int(ns[-1]) + step
    covers = f"{_fmt_ns(first)} .. {_fmt_ns(ns[-1])} (every {_fmt_step(step)})"
    if hz.start < first or hz.end > stop:
        raise ScenarioError(
            f"{path}: the file covers {covers} but the study case needs {hz.describe()}; "
            "extend the file or change start_date/end_date in config.yaml"
        )
    if step <= hz.step:
        if hz.step % step:
            raise ScenarioError(
                f"{path}: time resolution {_fmt_step(step)} does not divide the time step {_fmt_step(hz.step)}; "
                "not supported, resample the file to a divisor of the time step"
            )
        if (hz.start - first) % step:
            raise ScenarioError(
                f"{path}: timestamps ({covers}) are not aligned with start_date {_fmt_ns(hz.start)}; "
                "shift the timestamps or the start date"
            )
        k = hz.step // step
        i0 = (hz.start - first) // step
        rows = np.arange(i0, i0 + hz.n * k)
    else:
        if step % hz.step:
            raise ScenarioError(
                f"{path}: time resolution {_fmt_step(step)} is not a multiple of the time step {_fmt_step(hz.step)}; "
                "not supported, resample the file"
            )
        k = 1
        rows = (hz.times_ns - first) // step

    out: dict[str, np.ndarray] = {}
    for col in columns:
        series = df[col]
        if not pd.api.types.is_numeric_dtype(series.dtype):
            conv = pd.to_numeric(series, errors="coerce")
            bad = (conv.isna() & series.notna()).to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ScenarioError(
                    f"{path}: line {_line(i)}, column {col!r}: {series.iloc[i]!r} is not a number; write plain numbers"
                )
            series = conv
        vals = series.to_numpy(dtype=float)[rows]
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(rows[np.flatnonzero(bad)[0]])
            raise ScenarioError(
                f"{path}: line {_line(i)}, column {col!r}: empty or NaN value at {_fmt_ns(ns[i])}; "
                "fill in every value in the study case's horizon"
            )
        out[col] = vals.reshape(hz.n, k).mean(axis=1) if k > 1 else vals.astype(float)
    return out


# --------------------------------------------------------------------------- the loader


class _Loader:
    def __init__(self, folder: Path, name: str, study_case: str):
        self.folder = folder
        self.name = name
        self.study_case = study_case
        self.case: dict[str, Any] | None = None

    def file(self, fname: str) -> Path:
        """Path of an input file: the study case may name another file for it under the
        file's key (``powerplant_units: powerplant_units_single.csv``), as ASSUME's
        ``load_file`` allows for every input; ``key: null`` means "no such file"
        (returned as a path that does not exist)."""
        if fname == CONFIG_FILE or self.case is None:
            return self.folder / fname
        key = fname[:-4] if fname.endswith(".csv") else fname
        if key in self.case:
            value = self.case[key]
            if value is None:
                return self.folder / f"<{key}: null>"
            if not isinstance(value, str) or not value.strip():
                raise ScenarioError(
                    f"{self.folder / CONFIG_FILE}: study case {self.study_case!r}, key {key!r}: expected a file name "
                    f"(e.g. {fname}) or null, got {value!r}"
                )
            return self.folder / value.strip()
        return self.folder / fname

    # -- config ----------------------------------------------------------------------

    def read_config(self) -> dict[str, Any]:
        path = self.file(CONFIG_FILE)
        try:
            with open(path, encoding="utf-8") as fh:
                cfg = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{path}: invalid YAML ({exc}); fix the syntax") from None
        if not isinstance(cfg, dict) or not cfg:
            raise ScenarioError(f"{path}: expected study cases at the top level (e.g. 'base:' with start_date, end_date, ...)")
        cases = [str(k) for k, v in cfg.items() if isinstance(v, dict)]
        if self.study_case == DEFAULT_STUDY_CASE and self.study_case not in cfg and len(cases) == 1:
            # the default study case asked for and the file has exactly one other: use it
            # (ASSUME takes the first study case when none is named)
            self.study_case = cases[0]
        if self.study_case not in cfg or not isinstance(cfg[self.study_case], dict):
            raise ScenarioError(
                f"{path}: unknown study case {self.study_case!r}; available study cases: {', '.join(cases) or '(none)'}"
            )
        return cfg[self.study_case]

    def horizon(self, case: dict[str, Any]) -> _Horizon:
        path = self.file(CONFIG_FILE)
        where = f"{path}: study case {self.study_case!r}"
        dates = {}
        for key in ("start_date", "end_date"):
            if key not in case:
                raise ScenarioError(f"{where}: missing key {key!r}; add e.g. '{key}: 2019-03-01 00:00'")
            try:
                ns = _parse_date(case[key])
            except _TzAware:
                raise ScenarioError(f"{where}, key {key!r}: time zones are not supported; write a naive date such as 2019-03-01 00:00") from None
            if ns is None:
                raise ScenarioError(f"{where}, key {key!r}: cannot parse {case[key]!r} as a date; write e.g. 2019-03-01 00:00")
            dates[key] = ns
        raw_step = case.get("time_step", "1h")
        step = _parse_time_step(raw_step)
        if step is None or step <= 0:
            raise ScenarioError(f"{where}, key 'time_step': cannot parse {raw_step!r} as a positive duration; write e.g. 1h")
        if step % _NS_PER_HOUR and _NS_PER_HOUR % step:
            raise ScenarioError(
                f"{where}, key 'time_step': {raw_step!r} is not supported; use whole hours (1h, 2h, ...) or a divisor "
                "of an hour (30min, 15min, 5min, ...)"
            )
        start, end = dates["start_date"], dates["end_date"]
        if end <= start:
            raise ScenarioError(f"{where}: end_date {_fmt_ns(end)} must be after start_date {_fmt_ns(start)}")
        if (end - start) % step:
            raise ScenarioError(
                f"{where}: end_date - start_date ({_fmt_step(end - start)}) is not a whole number of time steps "
                f"({raw_step}); adjust end_date"
            )
        return _Horizon(start, end, step)

    def market(self, case: dict[str, Any]) -> MarketConfig:
        path = self.file(CONFIG_FILE)
        mc = case.get("markets_config")
        if mc is None:
            return MarketConfig()
        if not isinstance(mc, dict) or not mc:
            raise ScenarioError(f"{path}: study case {self.study_case!r}, key 'markets_config': expected a mapping of markets (e.g. EOM: ...)")
        name, spec = next(iter(mc.items()))
        spec = spec or {}
        where = f"{path}: study case {self.study_case!r}, markets_config.{name}"
        if not isinstance(spec, dict):
            raise ScenarioError(f"{where}: expected a mapping of market settings")
        default = MarketConfig()

        def number(key: str, fallback: float) -> float:
            v = spec.get(key, fallback)
            if v is None:
                return fallback
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise ScenarioError(f"{where}, key {key!r}: {v!r} is not a number") from None
            if not np.isfinite(x):
                raise ScenarioError(f"{where}, key {key!r}: {v!r} is not a finite number")
            return x

        # keys left out of a market entry take ASSUME's defaults (loader_csv.make_market_config)
        cap = number("maximum_bid_price", 3000.0)
        floor = number("minimum_bid_price", -3000.0)
        vol = number("maximum_bid_volume", 1e6)
        mech = spec.get("market_mechanism", default.mechanism)
        _check_market_features(path, self.study_case, mc)
        if cap <= floor:
            raise ScenarioError(f"{where}: maximum_bid_price {cap:g} must be above minimum_bid_price {floor:g}")
        if vol <= 0:
            raise ScenarioError(f"{where}, key 'maximum_bid_volume': must be positive (got {vol:g})")
        return MarketConfig(name=str(name), price_cap=cap, price_floor=floor, mechanism=mech, max_bid_volume=vol)

    def seed(self, case: dict[str, Any]) -> int | None:
        s = case.get("seed")
        if s is None:
            return None
        if isinstance(s, bool) or not isinstance(s, int):
            raise ScenarioError(f"{self.file(CONFIG_FILE)}: study case {self.study_case!r}, key 'seed': {s!r} is not an integer (or null)")
        return s

    def learning_config(self, case: dict[str, Any]) -> dict[str, Any]:
        lc = case.get("learning_config")
        if lc is None:
            return {}
        if not isinstance(lc, dict):
            raise ScenarioError(f"{self.file(CONFIG_FILE)}: study case {self.study_case!r}, key 'learning_config': expected a mapping")
        return copy.deepcopy(lc)

    # -- units -----------------------------------------------------------------------

    def require(self, fname: str, what: str) -> Path:
        path = self.file(fname)
        if not path.is_file():
            named = "" if path.name == fname else f" (named by the study case's key {fname[:-4]!r})"
            raise ScenarioError(f"{path}: missing file{named}; every scenario needs {fname} ({what})")
        return path

    def load(self) -> Scenario:
        case = self.read_config()
        self.case = case
        hz = self.horizon(case)
        market = self.market(case)
        self.case_market_name = market.name
        seed = self.seed(case)
        learning_config = self.learning_config(case)
        T = hz.n

        # ---- power plants and renewables
        pp_path = self.require(POWERPLANT_FILE, "the power plants, one row per unit")
        pp = _UnitTable(
            pp_path,
            ["name", "technology", "fuel_type", "max_power", "unit_operator"],
            "power plant",
        )
        bid_col = pp.bidding_column(market.name)
        technology = pp.text("technology")
        fuel_type = pp.text("fuel_type")
        operator = pp.text("unit_operator")
        bidding = pp.text(bid_col)
        max_power = pp.num("max_power")
        # optional columns: ASSUME 0.6's PowerPlant defaults (see envs/SCENARIOS.md)
        min_power = pp.num("min_power", default=0.0)
        efficiency = pp.num("efficiency", default=1.0)
        emission = pp.num("emission_factor", default=0.0)
        add_cost = pp.num("additional_cost", default=0.0)
        _warn_ignored_plural(pp, ("additional_costs", "hot_start_costs"))
        if "start_up_cost" in pp.df.columns:  # this project's column: EUR per start
            su_col = "start_up_cost"
            start_up = pp.num(su_col, default=0.0)
        elif "hot_start_cost" in pp.df.columns:  # ASSUME's: EUR per MW of max_power per start
            su_col = "hot_start_cost"
            start_up = pp.num(su_col, default=0.0) * max_power
        else:
            su_col = "start_up_cost"
            start_up = np.zeros(len(pp))
        pp.check(max_power, "max_power", max_power > 0, "max_power must be positive", "give the installed capacity in MW")
        pp.check(min_power, "min_power", min_power >= 0, "min_power must not be negative", "use 0 or a positive MW value")
        pp.check(min_power, "min_power", min_power <= max_power, "min_power is above max_power",
                 "min_power must be between 0 and max_power")
        pp.check(efficiency, "efficiency", (efficiency > 0) & (efficiency <= 1), "efficiency must be in (0, 1]",
                 "write it as a fraction, e.g. 0.45 for 45 %")
        pp.check(emission, "emission_factor", emission >= 0, "emission_factor must not be negative",
                 "give t CO2 per MWh of fuel (0 for none)")
        pp.check(start_up, su_col, start_up >= 0, f"{su_col} must not be negative", "give EUR per start (0 for none)")

        is_ren = np.array([f.strip().lower() == RENEWABLE_FUEL for f in fuel_type], dtype=bool)
        ren_idx = np.flatnonzero(is_ren)
        th_idx = np.flatnonzero(~is_ren)
        pp_kind = [strategy_kind(b, pp.where(i, bid_col)) for i, b in enumerate(bidding)]
        learning_pp = np.array([k != "rule" for k in pp_kind], dtype=bool)
        # a renewable single-bid strategy on a thermal plant is a single-bid plant too
        single_pp = np.array([k in ("plant_single", "renewable") for k in pp_kind], dtype=bool)
        for i, k in enumerate(pp_kind):
            if k == "storage":
                raise ScenarioError(
                    f"{pp.where(i, bid_col)}: storage strategy {bidding[i]!r} for a power plant; move the unit to "
                    "storage_units.csv or use powerplant_energy_learning"
                )
        # ---- storage (optional)
        st_path = self.file(STORAGE_FILE)
        storages: dict[str, Any] | None = None
        st: _UnitTable | None = None
        if st_path.is_file():
            st = _UnitTable(
                st_path,
                ["name", "technology", "max_power_charge", "max_power_discharge", "capacity", "unit_operator"],
                "storage",
            )
            sbid = st.bidding_column(market.name)
            s = {
                "technology": st.text("technology"),
                "operator": st.text("unit_operator"),
                "bidding": st.text(sbid),
                "max_power_charge": np.abs(st.num("max_power_charge")),
                "max_power_discharge": np.abs(st.num("max_power_discharge")),
                # optional columns: ASSUME 0.6's Storage defaults (see envs/SCENARIOS.md)
                "efficiency_charge": st.num("efficiency_charge", default=1.0),
                "efficiency_discharge": st.num("efficiency_discharge", default=1.0),
                "min_soc": st.num("min_soc", default=0.0),
                "max_soc": st.num("max_soc", default=1.0),
                "capacity": st.num("capacity"),
                "initial_soc": st.num("initial_soc", default=np.nan),
                "additional_cost_charge": st.num("additional_cost_charge", default=0.0),
                "additional_cost_discharge": st.num("additional_cost_discharge", default=0.0),
            }
            # no initial_soc (column or cell): ASSUME starts the storage empty (0), here at
            # min_soc, the emptiest state allowed (the same when min_soc is 0, as in all examples)
            s["initial_soc"] = np.where(np.isnan(s["initial_soc"]), s["min_soc"], s["initial_soc"])
            for col in ("max_power_charge", "max_power_discharge"):
                st.check(s[col], col, s[col] > 0, f"{col} must be non-zero", "give the power in MW")
            st.check(s["capacity"], "capacity", s["capacity"] > 0, "capacity must be positive", "give the energy capacity in MWh")
            for col in ("efficiency_charge", "efficiency_discharge"):
                st.check(s[col], col, (s[col] > 0) & (s[col] <= 1), f"{col} must be in (0, 1]", "write it as a fraction, e.g. 0.9")
            soc_fix = "state of charge is a fraction of capacity in [0, 1] (divide MWh values by capacity)"
            for col in ("min_soc", "max_soc", "initial_soc"):
                st.check(s[col], col, (s[col] >= 0) & (s[col] <= 1), f"{col} must be in [0, 1]", soc_fix)
            st.check(s["max_soc"], "max_soc", s["max_soc"] >= s["min_soc"], "max_soc is below min_soc", "need min_soc <= max_soc")
            st.check(s["initial_soc"], "initial_soc", (s["initial_soc"] >= s["min_soc"]) & (s["initial_soc"] <= s["max_soc"]),
                     "initial_soc is outside [min_soc, max_soc]", "set initial_soc between min_soc and max_soc")
            s_kind = [strategy_kind(b, st.where(i, sbid)) for i, b in enumerate(s["bidding"])]
            for i, k in enumerate(s_kind):
                if k not in ("rule", "storage"):
                    raise ScenarioError(
                        f"{st.where(i, sbid)}: strategy {s['bidding'][i]!r} is for power plants or renewables; "
                        "storage units learn with storage_energy_learning"
                    )
            s["learning"] = np.array([k == "storage" for k in s_kind], dtype=bool)
            storages = s

        # ---- demand units
        du = _UnitTable(self.require(DEMAND_UNITS_FILE, "the demand units, one row per unit"), ["name", "technology"], "demand")
        if len(du) == 0:
            raise ScenarioError(f"{du.path}: no demand units; add at least one row")
        d_tech = du.text("technology")
        # ASSUME's Demand bids its volume at `price` (default 3000 EUR/MWh); capped at the market's cap
        d_price = np.minimum(du.num("price", default=3000.0), market.price_cap)

        # ---- duplicate names across all unit files
        seen: dict[str, str] = {}
        tables = [t for t in (pp, st, du) if t is not None]
        for table in tables:
            for i, n in enumerate(table.names):
                here = f"{table.path.name} line {_line(i)}"
                if n in seen:
                    raise ScenarioError(
                        f"{table.path}: line {_line(i)}, column 'name': duplicate unit name {n!r} (also at {seen[n]}); "
                        "unit names must be unique across powerplant_units.csv, storage_units.csv and demand_units.csv"
                    )
                seen[n] = here

        # ---- demand series
        ds_path = self.require(DEMAND_SERIES_FILE, "the demand time series, one column per demand unit")
        ds_cols = _read_csv(ds_path, nrows=0).columns.tolist()
        for i, n in enumerate(du.names):
            if n not in ds_cols[1:]:
                raise ScenarioError(
                    f"{ds_path}: no column for demand unit {n!r} (from {du.path.name} line {_line(i)}); "
                    f"add a column named {n!r} (columns present: {', '.join(ds_cols)})"
                )
        dseries = _load_series(ds_path, list(du.names), hz, "demand unit")
        volume = np.abs(np.stack([dseries[n] for n in du.names], axis=1))

        # ---- inputs of unit types this environment does not model
        for key in ("industrial_dsm_units", "residential_dsm_units", "electrolyser_units", "hydrogen_units"):
            path = self.file(f"{key}.csv")
            if path.is_file():
                _warn_line(path, f"{key} (demand-side units) are not modelled by marketzoo and are left out of the market")

        # ---- operator-level strategies (unit_operators.csv)
        self.unit_operators()

        # ---- exchange units (optional)
        exchanges = self.exchanges(hz, seen)

        # ---- fuel prices -> marginal costs
        th_names = [pp.names[i] for i in th_idx]
        fuel_path = self.file(FUEL_FILE)
        mc = np.zeros((T, len(th_idx)))
        if len(th_idx):
            if not fuel_path.is_file():
                raise ScenarioError(
                    f"{fuel_path}: missing file; plants {', '.join(th_names[:5])}{' ...' if len(th_names) > 5 else ''} "
                    f"in {POWERPLANT_FILE} need fuel prices (fuel_type other than 'renewable')"
                )
            def check_fuels(fuels_in_file: Iterable[str]) -> None:
                have = set(fuels_in_file)
                for i in th_idx:
                    if fuel_type[i].strip().lower() not in have:
                        avail = ", ".join(k for k in fuels_in_file if k != "co2")
                        raise ScenarioError(
                            f"{pp.where(int(i), 'fuel_type')}: unknown fuel {fuel_type[i]!r}: {fuel_path} has no price "
                            f"for it (fuels there: {avail}); add a {fuel_type[i]!r} column to {FUEL_FILE} or fix the "
                            "fuel_type"
                        )

            prices = self.fuel_prices(
                fuel_path, hz, {fuel_type[i].strip().lower() for i in th_idx},
                needs_co2=bool((emission[th_idx] > 0).any()), check_fuels=check_fuels,
            )
            for j, i in enumerate(th_idx):
                key = fuel_type[i].strip().lower()
                co2 = prices.get("co2", np.zeros(T))
                mc[:, j] = (prices[key] + emission[i] * co2) / efficiency[i] + add_cost[i]

        # ---- availability (optional)
        p_avail = np.ones((T, len(th_idx)))
        r_avail = np.ones((T, len(ren_idx)))
        av_path = self.file(AVAILABILITY_FILE)
        if av_path.is_file():
            av_cols = _read_csv(av_path, nrows=0).columns.tolist()[1:]
            pos = {pp.names[i]: ("plant", j) for j, i in enumerate(th_idx)}
            pos.update({pp.names[i]: ("renewable", j) for j, i in enumerate(ren_idx)})
            used = [c for c in av_cols if c in pos]
            ignored = [c for c in av_cols if c not in pos]
            if ignored:
                warnings.warn(
                    f"{av_path}: columns {', '.join(ignored)} match no power plant or renewable unit and are ignored",
                    stacklevel=3,
                )
            if used:
                av = _load_series(av_path, used, hz, "unit")
                for c in used:
                    v = av[c]
                    bad = np.flatnonzero((v < 0) | (v > 1))
                    if bad.size:
                        t = int(bad[0])
                        raise ScenarioError(
                            f"{av_path}: column {c!r}: availability {v[t]:g} at {_fmt_ns(hz.times_ns[t])} is outside [0, 1]; "
                            "availability is a fraction of max_power"
                        )
                    kind, j = pos[c]
                    (p_avail if kind == "plant" else r_avail)[:, j] = v

        # ---- build everything
        def pick(seq: tuple[str, ...], idx: np.ndarray) -> tuple[str, ...]:
            return tuple(seq[i] for i in idx)

        plants = Plants(
            names=pick(pp.names, th_idx),
            technology=pick(technology, th_idx),
            fuel_type=pick(fuel_type, th_idx),
            operator=pick(operator, th_idx),
            bidding=pick(bidding, th_idx),
            max_power=max_power[th_idx],
            min_power=min_power[th_idx],
            efficiency=efficiency[th_idx],
            emission_factor=emission[th_idx],
            additional_cost=add_cost[th_idx],
            start_up_cost=start_up[th_idx],
            marginal_cost=mc,
            availability=p_avail,
            learning=learning_pp[th_idx],
            single_bid=single_pp[th_idx],
        )
        renewables = Renewables(
            names=pick(pp.names, ren_idx),
            technology=pick(technology, ren_idx),
            operator=pick(operator, ren_idx),
            bidding=pick(bidding, ren_idx),
            capacity=max_power[ren_idx],
            availability=r_avail,
            marginal_cost=add_cost[ren_idx],
            learning=learning_pp[ren_idx],
        )
        if storages is not None and st is not None:
            storage_table = Storages(names=st.names, **storages)
        else:
            empty = np.zeros(0)
            storage_table = Storages(
                names=(), technology=(), operator=(), bidding=(),
                max_power_charge=empty, max_power_discharge=empty.copy(), efficiency_charge=empty.copy(),
                efficiency_discharge=empty.copy(), min_soc=empty.copy(), max_soc=empty.copy(), capacity=empty.copy(),
                initial_soc=empty.copy(), additional_cost_charge=empty.copy(), additional_cost_discharge=empty.copy(),
                learning=np.zeros(0, dtype=bool),
            )
        demands = Demands(
            names=du.names,
            technology=d_tech,
            volume=volume,
            price=d_price,
        )
        sc = Scenario(
            name=self.name,
            study_case=self.study_case,
            source=str(self.folder),
            times=hz.times_ns.astype("datetime64[ns]"),
            time_step_hours=hz.step / _NS_PER_HOUR,
            plants=plants,
            renewables=renewables,
            storages=storage_table,
            demands=demands,
            market=market,
            learning_config=learning_config,
            seed=seed,
            exchanges=exchanges,
        )
        if market.mechanism in NETWORK_MECHANISMS:  # zonal/nodal: envs/network.py reads the grid
            sc = dataclasses.replace(sc, network=load_network(self.folder, case, sc))
        return sc

    # -- operators -------------------------------------------------------------------

    def unit_operators(self) -> None:
        """``unit_operators.csv`` names operator-level (portfolio) strategies. A learning
        one (``portfolio_learning``) is refused; others are ignored with a warning: here
        every unit bids for itself."""
        path = self.file("unit_operators.csv")
        if not path.is_file():
            return
        ops = _UnitTable(path, ["name"], "operator")
        for col in [c for c in ops.df.columns if c.startswith("bidding_")]:
            for i, b in enumerate(ops._text_raw(col)):
                if "learning" in b.lower():
                    raise ScenarioError(
                        f"{ops.where(i, col)}: operator-level learning ({b!r}) is not supported; give the operator's "
                        "units a unit-level learning strategy (e.g. powerplant_energy_learning) or pick learners "
                        "with learning_units=[...]"
                    )
        _warn_line(path, "operator-level (portfolio) strategies are not modelled; every unit bids for itself")

    # -- exchanges -------------------------------------------------------------------

    def exchanges(self, hz: _Horizon, seen: dict[str, str]) -> Exchanges | None:
        """Exchange units: ``exchange_units.csv`` (or the study case's ``exchange_units``
        key; ``null`` = none) and their volumes in ``exchanges_df.csv`` (columns
        ``<name>_import``, ``<name>_export``; a missing one is 0, as in ASSUME)."""
        path = self.file(EXCHANGE_UNITS_FILE)
        if not path.is_file():
            if self.case is not None and self.case.get("exchange_units"):
                raise ScenarioError(f"{path}: missing file (named by the study case's key 'exchange_units')")
            return None
        ex = _UnitTable(path, ["name"], "exchange")
        if len(ex) == 0:
            return None
        for i, n in enumerate(ex.names):
            if n in seen:
                raise ScenarioError(f"{ex.where(i, 'name')}: duplicate unit name {n!r} (also at {seen[n]}); unit names must be unique")
        bid_cols = [c for c in ex.df.columns if c.startswith("bidding_")]
        if bid_cols:
            col = ex.bidding_column(self.case_market_name)
            for i, b in enumerate(ex.text(col)):
                if strategy_kind(b, ex.where(i, col)) != "rule" or "exchange" not in b:
                    raise ScenarioError(f"{ex.where(i, col)}: exchange units bid with exchange_energy_naive, got {b!r}")
        operator = ex.text("unit_operator") if "unit_operator" in ex.df.columns else tuple("" for _ in ex.names)
        price_import = ex.num("price_import", default=0.0)  # ASSUME Exchange defaults
        price_export = ex.num("price_export", default=2999.0)
        flows = self.file(EXCHANGE_SERIES_FILE)
        if not flows.is_file():
            raise ScenarioError(
                f"{flows}: missing file; the exchange units in {path.name} ({', '.join(ex.names)}) need their import "
                f"and export volumes (columns {ex.names[0]}_import, {ex.names[0]}_export); add the file or set "
                "'exchange_units: null' in the study case"
            )
        head = _read_csv(flows, nrows=0).columns.tolist()[1:]
        cols = {}
        for n in ex.names:
            have = [c for c in (f"{n}_import", f"{n}_export") if c in head]
            if not have:
                raise ScenarioError(
                    f"{flows}: no column for exchange unit {n!r} (from {path.name}); add {n}_import and/or {n}_export "
                    f"(columns present: {', '.join(head)})"
                )
            cols[n] = have
        series = _load_series(flows, [c for v in cols.values() for c in v], hz, "exchange flow")
        T, X = hz.n, len(ex)
        vi, ve = np.zeros((T, X)), np.zeros((T, X))
        for j, n in enumerate(ex.names):
            if f"{n}_import" in series:
                vi[:, j] = np.abs(series[f"{n}_import"])
            if f"{n}_export" in series:
                ve[:, j] = np.abs(series[f"{n}_export"])
        return Exchanges(
            names=ex.names, operator=operator, price_import=price_import, price_export=price_export,
            volume_import=vi, volume_export=ve,
        )

    # -- fuel prices -----------------------------------------------------------------

    def fuel_prices(
        self, path: Path, hz: _Horizon, needed: set[str], needs_co2: bool, check_fuels: Any
    ) -> dict[str, np.ndarray]:
        """``{fuel (lower case): (T,) price}``, ``co2`` included when present.
        ``check_fuels(names in the file)`` raises for plants whose fuel is missing."""
        head = _read_csv(path, nrows=0).columns.tolist()
        if not head:
            raise ScenarioError(f"{path}: empty header; expected 'fuel,<fuel names>...' or 'datetime,<fuel names>...'")
        T = hz.n
        out: dict[str, np.ndarray] = {}
        if head[0].strip().lower() == "fuel":
            df = _read_csv(path, dtype=str, keep_default_na=False)
            df = df.apply(lambda col: col.str.strip())
            keys = [str(v).lower() for v in df.iloc[:, 0]]
            if len(df.columns) == 2 and df.columns[1].lower() == "price" and "price" not in keys:
                # long form: fuel,price / uranium,0.9 / ...
                items = [(str(df.iloc[i, 0]), df.iloc[i, 1], i, "price") for i in range(len(df))]
            else:
                # ASSUME's wide form: fuel,uranium,...,co2 / price,0.9,...
                if "price" in keys:
                    r = keys.index("price")
                elif len(df) == 1:
                    r = 0
                else:
                    raise ScenarioError(f"{path}: several rows and none named 'price'; keep one row 'price,<values>'")
                items = [(c, df.iloc[r, k], r, c) for k, c in enumerate(df.columns) if k > 0]
            for fuel, raw, r, col in items:
                where = f"{path}: line {_line(r)}, column {col!r}"
                if raw == "" or raw.lower() in ("nan", "none", "null"):
                    raise ScenarioError(f"{where}: empty price for fuel {fuel!r}; fill in a price in EUR/MWh")
                try:
                    x = float(raw)
                except ValueError:
                    raise ScenarioError(f"{where}: {raw!r} is not a number; write the price in EUR/MWh") from None
                key = fuel.strip().lower()
                if key in out:
                    raise ScenarioError(f"{where}: fuel {fuel!r} appears twice; keep one price per fuel")
                out[key] = np.full(T, x)
            check_fuels(list(out))
        else:
            lower = {c.strip().lower(): c for c in head[1:]}
            if len(lower) != len(head) - 1:
                raise ScenarioError(f"{path}: fuel columns differ only in upper/lower case; keep one column per fuel")
            check_fuels(list(lower))
            cols = [lower[k] for k in sorted(needed | {"co2"}) if k in lower]
            series = _load_series(path, cols, hz, "fuel")
            out = {c.strip().lower(): v for c, v in series.items()}
        if needs_co2 and "co2" not in out:
            raise ScenarioError(
                f"{path}: missing column 'co2'; plants with emission_factor > 0 need a CO2 price (EUR/t); add a 'co2' column"
            )
        return out
