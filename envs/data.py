"""The market as data: frozen tables of units and time series.

A :class:`Scenario` is what :func:`envs.load_scenario` returns and what the market
core consumes. Every table stores one NumPy array per attribute (``(n_units,)`` for
static attributes, ``(T, n_units)`` for time series), so the core can work on whole
columns at once. Physical units are in the names' docstrings: power in MW, energy in
MWh, prices and costs in EUR/MWh, start-up costs in EUR per start.

Nothing here imports torch, mango or PettingZoo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ScenarioError(ValueError):
    """Bad scenario input. The message names the file, the row/column and the fix."""


@dataclass(frozen=True)
class MarketConfig:
    """The energy-only market (ASSUME ``markets_config`` entry)."""

    name: str = "EOM"
    price_cap: float = 3000.0  # maximum_bid_price, EUR/MWh
    price_floor: float = -500.0  # minimum_bid_price, EUR/MWh
    mechanism: str = "pay_as_clear"  # or "pay_as_bid"
    max_bid_volume: float = 100_000.0  # MW per bid


@dataclass(frozen=True)
class Plants:
    """Dispatchable thermal plants, shape ``(P,)`` unless noted."""

    names: tuple[str, ...]
    technology: tuple[str, ...]
    fuel_type: tuple[str, ...]
    operator: tuple[str, ...]
    bidding: tuple[str, ...]
    max_power: np.ndarray  # MW
    min_power: np.ndarray  # MW
    efficiency: np.ndarray  # (0, 1]
    emission_factor: np.ndarray  # t CO2 / MWh fuel
    additional_cost: np.ndarray  # EUR/MWh
    start_up_cost: np.ndarray  # EUR per start
    marginal_cost: np.ndarray  # (T, P) EUR/MWh
    availability: np.ndarray  # (T, P) in [0, 1], multiplies max_power
    learning: np.ndarray  # bool
    # bool, learning plants bidding one price for all their capacity
    # (powerplant_energy_learning_single_bid); None = none does
    single_bid: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Renewables:
    """Variable renewables (wind, solar, ...), shape ``(R,)`` unless noted."""

    names: tuple[str, ...]
    technology: tuple[str, ...]
    operator: tuple[str, ...]
    bidding: tuple[str, ...]
    capacity: np.ndarray  # MW
    availability: np.ndarray  # (T, R) in [0, 1]
    marginal_cost: np.ndarray  # EUR/MWh
    learning: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Storages:
    """Storage units (batteries, pumped hydro), shape ``(S,)``.

    State of charge is a fraction of ``capacity``; ``min_soc``/``max_soc`` bound it and
    ``initial_soc`` is its value at the start of an episode.
    """

    names: tuple[str, ...]
    technology: tuple[str, ...]
    operator: tuple[str, ...]
    bidding: tuple[str, ...]
    max_power_charge: np.ndarray  # MW (positive)
    max_power_discharge: np.ndarray  # MW
    efficiency_charge: np.ndarray  # (0, 1]
    efficiency_discharge: np.ndarray  # (0, 1]
    min_soc: np.ndarray  # fraction of capacity
    max_soc: np.ndarray  # fraction of capacity
    capacity: np.ndarray  # MWh
    initial_soc: np.ndarray  # fraction of capacity
    additional_cost_charge: np.ndarray  # EUR/MWh
    additional_cost_discharge: np.ndarray  # EUR/MWh
    learning: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Demands:
    """Demand units. ``volume`` is ``(T, D)`` MW (positive); ``price`` ``(D,)`` is the
    bid price (inelastic demand bids at the market's price cap)."""

    names: tuple[str, ...]
    technology: tuple[str, ...]
    volume: np.ndarray
    price: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Exchanges:
    """Cross-border exchange units (ASSUME ``exchange_units.csv`` + ``exchanges_df.csv``),
    shape ``(X,)`` unless noted. Each hour an exchange offers its import volume as supply
    at ``price_import`` and bids its export volume as demand at ``price_export``."""

    names: tuple[str, ...]
    operator: tuple[str, ...]
    price_import: np.ndarray  # EUR/MWh
    price_export: np.ndarray  # EUR/MWh
    volume_import: np.ndarray  # (T, X) MW >= 0
    volume_export: np.ndarray  # (T, X) MW >= 0

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Scenario:
    """A loaded study case: units, time series and configuration.

    ``times`` holds the start of every market time step of the horizon (``[start_date,
    end_date)``), as ``datetime64[ns]``; all time series have ``len(times)`` rows;
    ``time_step_hours`` is the step length (1.0, or 0.25 for ``15min``). ``n_hours``
    counts steps.
    """

    name: str
    study_case: str
    source: str
    times: np.ndarray
    time_step_hours: float
    plants: Plants
    renewables: Renewables
    storages: Storages
    demands: Demands
    market: MarketConfig
    learning_config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    # zonal/nodal markets: an envs.network.Network (buses, lines, unit locations); None
    # for a single price area
    network: object | None = None
    exchanges: Exchanges | None = None  # None: no exchange units

    @property
    def n_hours(self) -> int:
        return len(self.times)

    @property
    def learning_units(self) -> list[tuple[str, str]]:
        """``(kind, unit_name)`` of every learning unit, plants first, then storage,
        then renewables, each in file order."""
        out: list[tuple[str, str]] = []
        for kind, table in (("plant", self.plants), ("storage", self.storages), ("renewable", self.renewables)):
            out.extend((kind, n) for n, flag in zip(table.names, table.learning) if flag)
        return out

    def summary(self) -> str:
        """One paragraph describing the scenario, for logs and the CLI."""
        t0, t1 = str(self.times[0])[:16], str(self.times[-1])[:16]
        if self.time_step_hours == 1.0:
            steps = f"{self.n_hours} hours"
        elif self.time_step_hours < 1.0:
            steps = f"{self.n_hours} steps of {self.time_step_hours * 60:g} min"
        else:
            steps = f"{self.n_hours} steps of {self.time_step_hours:g} h"
        return (
            f"scenario {self.name!r} (study case {self.study_case!r}): {steps} "
            f"{t0} .. {t1}; {len(self.plants)} plants, {len(self.storages)} storage, "
            f"{len(self.renewables)} renewables, {len(self.demands)} demand; "
            f"{len(self.learning_units)} learning units; price cap {self.market.price_cap:g}, "
            f"floor {self.market.price_floor:g} EUR/MWh ({self.market.mechanism})"
        )
