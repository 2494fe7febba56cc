"""Every number that enters the market is finite and bounded; seeds and options are checked.

The scenario loader parses the files; this module is the last gate before the numbers are
used. :func:`validate_scenario` walks a whole :class:`~envs.data.Scenario` (every
numeric array of every table, including derived ones such as the plants' marginal costs)
and raises one :class:`~envs.data.ScenarioError` for the first value that is NaN,
infinite or outside the range in :data:`BOUNDS`. The message names the file, the line and
the column the value came from (for a derived value, the input cell that caused it) and
the allowed range. The bounds are generous physical limits: they exist so that products
such as ``price x volume`` and ratios such as ``profit / capacity`` stay finite in
float64 and the observations stay finite in float32, so the environment never returns
``inf``/``nan`` rewards.

:func:`check_finite` is the same check for a raw table, for loaders that want to refuse a
bad cell where it is read. :func:`check_seed` and :func:`check_env_options` check the
arguments of ``reset`` and of the environment constructors.

Nothing here imports torch, mango or PettingZoo.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import numbers
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .data import ScenarioError

__all__ = [
    "BOUNDS", "check_finite", "validate_scenario", "check_seed", "check_env_options", "SEED_MAX",
]

POWER_MAX = 1e8  # MW (100 TW): above any real system
ENERGY_MAX = 1e10  # MWh
PRICE_MAX = 1e6  # EUR/MWh (or EUR/t CO2) for input prices and costs
COST_MAX = 1e9  # EUR/MWh for derived marginal costs (price / efficiency + costs)
START_COST_MAX = 1e12  # EUR per start
CAPACITY_MIN = 1e-6  # MW / MWh: a capacity that rewards and fill levels are divided by
SEED_MAX = 2**64 - 1

# (table, field) -> (lo, hi, physical unit). Numeric fields of a table that are not listed
# only need to be finite and below GENERIC_MAX in magnitude.
BOUNDS: dict[tuple[str, str], tuple[float, float, str]] = {
    ("plants", "max_power"): (CAPACITY_MIN, POWER_MAX, "MW"),
    ("plants", "min_power"): (0.0, POWER_MAX, "MW"),
    ("plants", "efficiency"): (1e-4, 1.0, "fraction"),
    ("plants", "emission_factor"): (0.0, 1e3, "t CO2/MWh"),
    ("plants", "additional_cost"): (-PRICE_MAX, PRICE_MAX, "EUR/MWh"),
    ("plants", "start_up_cost"): (0.0, START_COST_MAX, "EUR per start"),
    ("plants", "marginal_cost"): (-COST_MAX, COST_MAX, "EUR/MWh"),
    ("plants", "availability"): (0.0, 1.0, "fraction"),
    ("renewables", "capacity"): (CAPACITY_MIN, POWER_MAX, "MW"),
    ("renewables", "availability"): (0.0, 1.0, "fraction"),
    ("renewables", "marginal_cost"): (-PRICE_MAX, PRICE_MAX, "EUR/MWh"),
    ("storages", "max_power_charge"): (CAPACITY_MIN, POWER_MAX, "MW"),
    ("storages", "max_power_discharge"): (CAPACITY_MIN, POWER_MAX, "MW"),
    ("storages", "efficiency_charge"): (1e-4, 1.0, "fraction"),
    ("storages", "efficiency_discharge"): (1e-4, 1.0, "fraction"),
    ("storages", "min_soc"): (0.0, 1.0, "fraction"),
    ("storages", "max_soc"): (0.0, 1.0, "fraction"),
    ("storages", "initial_soc"): (0.0, 1.0, "fraction"),
    ("storages", "capacity"): (CAPACITY_MIN, ENERGY_MAX, "MWh"),
    ("storages", "additional_cost_charge"): (-PRICE_MAX, PRICE_MAX, "EUR/MWh"),
    ("storages", "additional_cost_discharge"): (-PRICE_MAX, PRICE_MAX, "EUR/MWh"),
    ("demands", "volume"): (0.0, POWER_MAX, "MW"),
    ("demands", "price"): (-PRICE_MAX, PRICE_MAX, "EUR/MWh"),
}
# fallback for numeric fields not listed (new columns of future loaders): finite and below
# this magnitude
GENERIC_MAX = 1e12

# where a (table, field) comes from: file and column in it (None: the column is the
# unit's name, as in time-series files)
_SOURCES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("plants", "max_power"): ("powerplant_units.csv", "max_power"),
    ("plants", "min_power"): ("powerplant_units.csv", "min_power"),
    ("plants", "efficiency"): ("powerplant_units.csv", "efficiency"),
    ("plants", "emission_factor"): ("powerplant_units.csv", "emission_factor"),
    ("plants", "additional_cost"): ("powerplant_units.csv", "additional_cost"),
    ("plants", "start_up_cost"): ("powerplant_units.csv", "start_up_cost"),
    ("plants", "availability"): ("availability_df.csv", None),
    ("renewables", "capacity"): ("powerplant_units.csv", "max_power"),
    ("renewables", "marginal_cost"): ("powerplant_units.csv", "additional_cost"),
    ("renewables", "availability"): ("availability_df.csv", None),
    ("demands", "volume"): ("demand_df.csv", None),
}
for _f in ("max_power_charge", "max_power_discharge", "efficiency_charge", "efficiency_discharge", "min_soc",
           "max_soc", "initial_soc", "capacity", "additional_cost_charge", "additional_cost_discharge"):
    _SOURCES[("storages", _f)] = ("storage_units.csv", _f)


# --------------------------------------------------------------------------- raw tables


def _describe_range(lo: float, hi: float, unit: str = "") -> str:
    u = f" {unit}" if unit and unit != "fraction" else ""
    return f"[{lo:g}, {hi:g}]{u}"


def check_finite(df: pd.DataFrame, file: str | Path, columns: Iterable[str], lo: float, hi: float, *,
                 unit: str = "", allow_empty: bool = False, first_line: int = 2) -> None:
    """Raise :class:`ScenarioError` for the first cell of ``df[columns]`` that is not a
    finite number in ``[lo, hi]``.

    ``df`` is a table as read from ``file`` (data row ``i`` is line ``first_line + i``;
    the header is line 1). Cells may be numbers or text. With ``allow_empty`` empty
    cells (``""``, NaN from an empty field) are skipped; a written ``nan``/``inf`` is
    always refused. The message names the file, the line, the column (and the unit name
    when the table has a ``name`` column), the value and the allowed range.
    """
    names = df["name"].astype(str).tolist() if "name" in df.columns else None
    for col in columns:
        if col not in df.columns:
            continue
        raw = df[col]
        if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
            vals = raw.to_numpy(dtype=float)
            text = None
        else:
            text = raw.astype(str).str.strip()
            vals = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        if allow_empty:
            empty = raw.isna().to_numpy() | ((text == "").to_numpy() if text is not None else False)
        else:
            empty = np.zeros(len(vals), dtype=bool)
        with np.errstate(invalid="ignore"):
            bad = ~empty & ~(np.isfinite(vals) & (vals >= lo) & (vals <= hi))
        if not bad.any():
            continue
        i = int(np.flatnonzero(bad)[0])
        shown = raw.iloc[i] if text is None else text.iloc[i]
        unit_part = f", unit {names[i]!r}" if names is not None else ""
        where = f"{file}: line {first_line + i}{unit_part}, column {col!r}"
        v = vals[i]
        if np.isnan(v) and text is not None and text.iloc[i].lower() not in ("nan", "") and not raw.isna().iloc[i]:
            raise ScenarioError(f"{where}: {shown!r} is not a number; write a plain number in {_describe_range(lo, hi, unit)}")
        if not np.isfinite(v):
            raise ScenarioError(
                f"{where}: {shown!r} is not a finite number; write a plain number in {_describe_range(lo, hi, unit)}"
            )
        raise ScenarioError(
            f"{where}: {v:g} is outside the allowed range {_describe_range(lo, hi, unit)}; check the value and its unit"
        )


# --------------------------------------------------------------------------- whole scenario


def _fmt_time(sc: Any, t: int) -> str:
    try:
        return str(np.asarray(sc.times)[t].astype("datetime64[m]")).replace("T", " ")
    except Exception:  # noqa: BLE001 - only used in a message
        return f"hour {t}"


def _unit_line(path: Path, name: str) -> int | None:
    """Line number of the unit ``name`` in a unit CSV (None if not found)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header = [h.strip() for h in next(reader)]
            k = header.index("name")
            for line, row in enumerate(reader, start=2):
                if len(row) > k and row[k].strip() == name:
                    return line
    except (OSError, ValueError, StopIteration, csv.Error, UnicodeDecodeError):
        return None
    return None


def _series_cell(path: Path, column: str, lo: float, hi: float) -> tuple[int, str] | None:
    """(line, text) of the first cell of ``column`` in a time-series CSV that is not a
    finite number in [lo, hi]; None if the file cannot be read or every cell is fine."""
    try:
        df = pd.read_csv(path, skipinitialspace=True, dtype=str, keep_default_na=False)
    except Exception:  # noqa: BLE001 - only used to locate an error
        return None
    df.columns = [str(c).strip() for c in df.columns]
    lower = {c.lower(): c for c in df.columns}
    col = column if column in df.columns else lower.get(column.lower())
    if col is None:
        return None
    text = df[col].str.strip()
    vals = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(vals) & (vals >= lo) & (vals <= hi))
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return i + 2, text.iloc[i]


def _fuel_cell(path: Path, fuel: str) -> tuple[str, str] | None:
    """(where, text) of a fuel price cell in fuel_prices_df.csv that is not a finite
    number within +-PRICE_MAX; handles the wide/long 'fuel' forms and the time series."""
    try:
        df = pd.read_csv(path, skipinitialspace=True, dtype=str, keep_default_na=False)
    except Exception:  # noqa: BLE001 - only used to locate an error
        return None
    df.columns = [str(c).strip() for c in df.columns]
    if not len(df.columns):
        return None

    def bad(text: str) -> bool:
        try:
            v = float(text)
        except ValueError:
            return True
        return not (math.isfinite(v) and abs(v) <= PRICE_MAX)

    if df.columns[0].lower() == "fuel":
        keys = [str(v).strip().lower() for v in df.iloc[:, 0]]
        if len(df.columns) == 2 and df.columns[1].lower() == "price" and fuel in keys:
            r = keys.index(fuel)
            cell = df.iloc[r, 1].strip()
            return (f"{path}: line {r + 2}, column 'price' (fuel {fuel!r})", cell) if bad(cell) else None
        r = keys.index("price") if "price" in keys else 0
        for k, c in enumerate(df.columns):
            if k and c.strip().lower() == fuel:
                cell = df.iloc[r, k].strip()
                return (f"{path}: line {r + 2}, column {c!r}", cell) if bad(cell) else None
        return None
    hit = _series_cell(path, fuel, -PRICE_MAX, PRICE_MAX)
    if hit is None:
        return None
    lower = {c.lower(): c for c in df.columns}
    return f"{path}: line {hit[0]}, column {lower.get(fuel, fuel)!r}", hit[1]


def _first_bad(values: np.ndarray, lo: float, hi: float) -> tuple | None:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values) & (values >= lo) & (values <= hi)
    if ok.all():
        return None
    return tuple(int(x) for x in np.argwhere(~ok)[0])


def _problem(v: float, lo: float, hi: float, unit: str) -> str:
    if not np.isfinite(v):
        return f"{v} is not a finite number (allowed {_describe_range(lo, hi, unit)})"
    return f"{v:g} is outside the allowed range {_describe_range(lo, hi, unit)}"


def validate_scenario(sc: Any) -> Any:
    """Check every numeric array of ``sc`` (a :class:`~envs.data.Scenario`); return ``sc``.

    Raises :class:`ScenarioError` naming the file, line and column of the first value
    that is NaN, infinite or outside :data:`BOUNDS` (fields not listed there only need to
    be finite and below ``1e12`` in magnitude). A derived marginal cost that overflows is
    traced back to the fuel price (or plant parameter) that caused it. Also checks the
    market settings (price cap and floor, maximum bid volume). The cost is one pass over
    the arrays.
    """
    folder = Path(getattr(sc, "source", "") or ".")
    market = getattr(sc, "market", None)
    if market is not None:
        where = f"{folder / 'config.yaml'}: study case {getattr(sc, 'study_case', '?')!r}, markets_config"
        for key, value, lo, hi in (
            ("maximum_bid_price", market.price_cap, -PRICE_MAX, PRICE_MAX),
            ("minimum_bid_price", market.price_floor, -PRICE_MAX, PRICE_MAX),
            ("maximum_bid_volume", market.max_bid_volume, CAPACITY_MIN, POWER_MAX),
        ):
            v = float(value)
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ScenarioError(f"{where}, key {key!r}: {_problem(v, lo, hi, '')}")
    for table_name in [f.name for f in dataclasses.fields(sc)]:
        table = getattr(sc, table_name)
        if not dataclasses.is_dataclass(table) or isinstance(table, type):
            continue
        if table_name == "network":  # checked by envs.network.load_network (NaN reactance = zonal, no x)
            continue
        names = getattr(table, "names", ())
        for f in dataclasses.fields(table):
            arr = getattr(table, f.name)
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu" or arr.size == 0:
                continue
            lo, hi, unit = BOUNDS.get((table_name, f.name), (-GENERIC_MAX, GENERIC_MAX, ""))
            pos = _first_bad(arr, lo, hi)
            if pos is None:
                continue
            _raise_for(sc, folder, table_name, f.name, arr, pos, names, lo, hi, unit)
    return sc


def _raise_for(sc: Any, folder: Path, table: str, field: str, arr: np.ndarray, pos: tuple, names: Any,
               lo: float, hi: float, unit: str) -> None:
    v = float(arr[pos])
    j = pos[-1]
    name = names[j] if j < len(names) else None
    t = pos[0] if arr.ndim == 2 else None
    at = f" at {_fmt_time(sc, t)}" if t is not None else ""
    problem = _problem(v, lo, hi, unit)
    if (table, field) == ("plants", "marginal_cost"):
        plants = sc.plants
        fuel = str(plants.fuel_type[j]).strip().lower()
        fuel_path = folder / "fuel_prices_df.csv"
        hit = _fuel_cell(fuel_path, fuel) if fuel_path.is_file() else None
        if hit is None and plants.emission_factor[j] > 0 and fuel_path.is_file():
            hit = _fuel_cell(fuel_path, "co2")
        if hit is not None:
            where, text = hit
            raise ScenarioError(
                f"{where}: {text!r} is not a finite fuel price within +-{PRICE_MAX:g} EUR/MWh; it gives plant {name!r} "
                f"a marginal cost of {v:g} EUR/MWh{at}; write a plain price in EUR/MWh"
            )
        line = _unit_line(folder / "powerplant_units.csv", str(name))
        where = f"{folder / 'powerplant_units.csv'}: " + (f"line {line}, " if line else "") + f"unit {name!r}"
        raise ScenarioError(
            f"{where}: marginal cost (fuel price + emission_factor x co2 price) / efficiency + additional_cost is "
            f"{problem}{at}; check efficiency ({plants.efficiency[j]:g}), emission_factor, additional_cost and the "
            "fuel prices"
        )
    src = _SOURCES.get((table, field))
    if src is None:
        who = f", unit {name!r}" if name is not None else ""
        raise ScenarioError(
            f"{folder}: scenario table {table!r}, field {field!r}{who}{at}: {problem}; fix the input it was read from"
        )
    fname, column = src
    path = folder / fname
    if column is None:  # a time-series file with one column per unit
        col = str(name)
        hit = _series_cell(path, col, lo, hi) if path.is_file() else None
        if hit is not None:
            raise ScenarioError(f"{path}: line {hit[0]}, column {col!r}: {_problem(_num(hit[1]), lo, hi, unit)}; "
                                "write plain numbers")
        raise ScenarioError(f"{path}: column {col!r}{at}: {problem}")
    line = _unit_line(path, str(name)) if path.is_file() else None
    where = f"{path}: " + (f"line {line}, " if line else "") + f"unit {name!r}, column {column!r}"
    raise ScenarioError(f"{where}: {problem}; check the value and its unit")


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


# --------------------------------------------------------------------------- env arguments


def check_seed(seed: Any) -> int | None:
    """``seed`` as an ``int`` in ``[0, 2**64 - 1]``, or ``None``; anything else raises
    one line naming the value (floats, strings, bools and negative or huge numbers are
    refused rather than truncated or hashed)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"reset(seed=...): the seed must be a non-negative integer or None, got {type(seed).__name__} {seed!r}; "
            "e.g. reset(seed=42)"
        )
    s = int(seed)
    if not 0 <= s <= SEED_MAX:
        raise ValueError(f"reset(seed=...): the seed must be in [0, 2**64 - 1], got {s}; e.g. reset(seed=42)")
    return s


_FLOAT_OPTIONS = {
    "max_bid_price": (1e-3, PRICE_MAX),
    "regret_scale": (0.0, 1e6),
    "reward_scale": (-1e9, 1e9),
    "start_up_markup_hours": (0.0, 1e6),
    "cost_snap": (0.0, 1e6),
}
_INT_OPTIONS = {"foresight": (1, 10_000), "num_envs": (1, 1_000_000), "max_cycles": (1, 10**9)}


def check_env_options(options: dict[str, Any]) -> None:
    """Refuse non-finite, out-of-range or wrongly typed environment options (one line
    naming the option). ``None`` means "the default" and passes."""
    for key, value in options.items():
        if value is None:
            continue
        if key == "storage_bids":
            from .core import STORAGE_BIDS

            if value not in STORAGE_BIDS:
                raise ValueError(f"environment option storage_bids={value!r}: expected one of {STORAGE_BIDS}")
        elif key == "plant_bids":
            from .core import PLANT_BIDS

            if value not in PLANT_BIDS:
                raise ValueError(f"environment option plant_bids={value!r}: expected one of {PLANT_BIDS}")
        elif key == "storage_prices":
            from .core import STORAGE_PRICES

            if value not in STORAGE_PRICES:
                raise ValueError(f"environment option storage_prices={value!r}: expected one of {STORAGE_PRICES}")
        elif key == "min_power_rule":
            from .core import MIN_POWER_RULES

            if value not in MIN_POWER_RULES:
                raise ValueError(f"environment option min_power_rule={value!r}: expected one of {MIN_POWER_RULES}")
        elif key in ("tie_below_cost", "grid_learner_costs"):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"environment option {key}={value!r}: expected true or false")
        elif key in _FLOAT_OPTIONS:
            lo, hi = _FLOAT_OPTIONS[key]
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"environment option {key}={value!r}: expected a number in [{lo:g}, {hi:g}]")
            v = float(value)
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"environment option {key}={value!r}: expected a finite number in [{lo:g}, {hi:g}]")
        elif key in _INT_OPTIONS:
            lo, hi = _INT_OPTIONS[key]
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise TypeError(f"environment option {key}={value!r}: expected an integer in [{lo}, {hi}]")
            if not lo <= int(value) <= hi:
                raise ValueError(f"environment option {key}={value!r}: expected an integer in [{lo}, {hi}]")
