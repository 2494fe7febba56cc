"""A recorded episode: every bid of every unit in every hour, and what cleared.

:class:`EpisodeRecord` is what :mod:`envs.analysis` reads to compute best responses,
and what ``train.py evaluate`` writes to ``orders.csv``/``market.csv``. Build one with
``env.episode_record()`` after an episode run with ``record=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpisodeRecord:
    """All bids of one market copy over ``H`` recorded hours.

    Supply bids are the columns of ``supply_*`` ``(H, Nb)``; ``supply_unit[j]`` is the
    index into ``units`` of the unit that owns bid ``j`` (a plant owns two bids when it
    learns: inflexible then flexible part). Demand bids (storage charging) likewise; the
    inelastic demand is ``fixed_demand`` (MW at the price cap).
    """

    hours: np.ndarray  # (H,) scenario hour index
    times: np.ndarray  # (H,) datetime64[ns]
    units: tuple[str, ...]
    unit_kind: tuple[str, ...]  # "plant" | "renewable" | "storage"
    supply_price: np.ndarray  # (H, Nb) EUR/MWh
    supply_volume: np.ndarray  # (H, Nb) MW
    supply_cost: np.ndarray  # (H, Nb) EUR/MWh variable cost of the bid's energy
    supply_unit: np.ndarray  # (Nb,) int
    demand_price: np.ndarray  # (H, Md)
    demand_volume: np.ndarray  # (H, Md)
    demand_cost: np.ndarray  # (H, Md) EUR/MWh extra cost of bought energy (storage charge cost)
    demand_unit: np.ndarray  # (Md,) int
    fixed_demand: np.ndarray  # (H,) MW
    clearing_price: np.ndarray  # (H,)
    supply_accepted: np.ndarray  # (H, Nb)
    demand_accepted: np.ndarray  # (H, Md)
    agents: tuple[str, ...]
    agent_unit: np.ndarray  # (n,) int index into units
    agent_kind: tuple[str, ...]
    agent_profit: np.ndarray  # (H, n) EUR, as the environment paid it
    agent_prev_dispatch: np.ndarray  # (H, n) MW dispatched in the hour before
    agent_start_up_cost: np.ndarray  # (n,) EUR per start (0 for non-plants)
    max_bid_price: float
    price_cap: float
    price_floor: float
    mechanism: str
    dt: float = 1.0  # hours per recorded step: energy = MW * dt, profit in EUR per step
    # (n,) MW an agent produces at least once dispatched, paid only for what was accepted
    # (a plant under the env's min_power_rule="raise", capped by the volume it offers in
    # the hour); None: every agent produces what was accepted
    agent_min_output: np.ndarray | None = None

    @property
    def n_hours(self) -> int:
        return len(self.hours)

    def agent_supply_columns(self, i: int) -> np.ndarray:
        """Indices of agent ``i``'s supply bids."""
        return np.flatnonzero(self.supply_unit == self.agent_unit[i])

    def agent_demand_columns(self, i: int) -> np.ndarray:
        """Indices of agent ``i``'s demand bids."""
        return np.flatnonzero(self.demand_unit == self.agent_unit[i])

    def agent_revenue(self) -> np.ndarray:
        """``(n,)`` EUR each agent was paid for the energy it sold over the record: accepted
        supply x price x ``dt`` (the clearing price; the bid price under pay-as-bid).
        Storage purchases are not subtracted. A scale for gains where profits are near
        zero (a competitive market)."""
        pay = self.supply_price if self.mechanism == "pay_as_bid" else self.clearing_price[:, None]
        paid = self.supply_accepted * pay * self.dt  # (H, Nb)
        return np.array([paid[:, self.agent_supply_columns(i)].sum() for i in range(len(self.agents))])
