"""Best-response analysis of a recorded episode: how close are the learned bids to an
equilibrium?

For one learning agent, every other bid of every hour of an
:class:`~envs.record.EpisodeRecord` is held fixed as recorded, and the agent's own bids
are chosen to maximise its profit over the whole episode:

* a learning **plant** chooses two prices ``p_in <= p_fx`` per hour for its inflexible
  and its flexible part (the env bids ``min(a0, a1)`` and ``max(a0, a1)`` times
  ``max_bid_price``), each in ``[-max_bid_price, max_bid_price]``; its volumes stay as
  recorded. Start-up costs link the hours: the best response is the exact optimum over
  on/off schedules (a dynamic programme over the two states "dispatched in the hour
  before" / "not dispatched"), a start-up being charged, as :class:`envs.core.MarketCore`
  charges it, when the plant is dispatched after an hour with zero dispatch (before the
  first recorded hour: the record's ``agent_prev_dispatch[0]``);
* a learning **renewable** chooses one price per hour in ``[-max_bid_price, max_bid_price]``;
* a learning **storage** unit chooses its schedule: a net injection ``q`` per hour (MW,
  ``+`` sold, ``-`` bought) and a price in ``[0, max_bid_price]`` for it, by dynamic
  programming over its state of charge (see below). This needs the unit's parameters
  (``scenario=`` or ``storage=``); without them the old per-hour approximation is used
  (``exact=False``, see Limits).

Profit, as :meth:`envs.core.MarketCore.step` pays it, per step of ``record.dt`` hours::

    profit = dt * (sum_j acc_j * (pay_j - cost_j)            # own supply bids
                   - sum_k acc_k * (pay_k + cost_k))         # own demand bids (storage charging)
           - start_up_cost * [q > 0 and prev_dispatch <= 0]  # plants only, EUR per start

with ``pay`` the clearing price (``pay_as_clear``) or the bid's own price clipped to the
price limits (``pay_as_bid``), ``cost`` the record's ``supply_cost``/``demand_cost``
(storage: its additional costs of discharging/charging) and ``q`` the agent's accepted
supply.

Exactness of one hour. With all other bids fixed, the market outcome depends on the
agent's own price only through its position in the merit order, which changes only at
the *breakpoints*: the other live supply prices, the live demand prices and the ends of
the bid range. On each open interval between two breakpoints the agent's profit is
constant or increasing in its own supply price (pay-as-clear: while its bid is the
highest accepted one it sets the price; pay-as-bid: it is paid its own price) and
constant or decreasing in its own demand price. At a breakpoint itself the bids tie and
share pro rata. So the supremum of the profit is attained at a breakpoint or approached
just below one (just above one for a demand bid), and it suffices to evaluate the
candidates

    {b} U {b - min(tick, gap_below/2)} U {b + min(tick, gap_above/2)} U {recorded prices}

for every breakpoint ``b`` (``gap_below``/``gap_above``: distance to the neighbouring
distinct breakpoint, so every interval keeps a representative even when it is narrower
than ``tick``). The "+" candidates are used for storage agents only (their charge bid is a
demand bid). A plant evaluates every pair ``p_in <= p_fx`` of candidates. The result is
exact up to ``tick``: where the supremum is approached below a breakpoint ``b`` (the
agent sets the price, or is paid its bid), the reported best price is ``b - tick`` and the
reported profit is at most ``tick * accepted MWh`` below the supremum, which no bid
attains (bidding ``b`` itself ties with the bid at ``b``).

Storage. The state of charge lives on a grid of ``soc_points`` levels spaced
``(soc_max - soc_min) / (soc_points - 1)`` MWh apart, shifted so that the initial state
of charge (``initial_soc * capacity``, where every env episode starts) is a level
(:func:`soc_grid`). A move of ``k`` levels down is a discharge of ``q = k * step *
eff_dis / dt`` MW, ``k`` levels up a charge of ``q = k * step / (eff_ch * dt)`` MW, as
the env moves its state of charge; moves beyond the power limits or the state-of-charge
limits are not allowed. The profit of a net injection ``q`` in an hour comes from the
residual curve of the other bids: the storage offers (bids) exactly ``|q|`` MW at one
price, the price is chosen among the candidates above, and only prices at which the
whole ``|q|`` is accepted count (the clearing price as a function of the storage's own
net injection; under pay-as-bid its own price). The dynamic programme over (hour, level)
then gives the best schedule from the initial level, with no value for energy left at the
end (as in the env). The result is exact for schedules on the grid (up to ``tick * |q|``
per hour); a finer grid can only find more when it contains the coarser one.
The storage may sell less than it could (withholding).

Off the grid (``storage_off_grid=True``, the default). A grid of ``soc_points`` levels
only holds moves that are whole numbers of level steps, so it misses the power limits
themselves (e.g. 150 MW at 91 % efficiency is 164.8 MWh, 6.6 steps of 25 MWh: the grid
moves at most 6 steps, 136.5 MW) and the volume the residual demand leaves to a storage
bid that sets the price. On ASSUME's example_02e this costs the 201-level grid 4-10 % of
the best-response profit. So a second dynamic programme runs over the same levels with
moves that may end between levels (the value there interpolated linearly between the
two neighbouring levels): idle; the whole feasible volume offered (bid) at one of the
candidate prices, accepted in full or, where the bid sets the price, in part (exactly
the env's storage action); or ``j/12`` of the power limit (``j = 1..12``, each way)
accepted in full. A forward pass from the initial state of charge then takes, hour by
hour, the best of these moves at the exact (off-grid) state of charge and books the
profit the market really pays for it. A second programme and pass use the whole-volume
moves alone, exactly as the env's action allows them (waiting only where some price on
each side trades nothing; no offer at the bottom of the range or charge bid at its top,
which would leave the other side of a two-sided bid no price that keeps it out):
interpolated values do not make the larger move set always find more, and
``storage_moves="full"`` is this pass. That schedule is feasible and its profit exact, so
it is a lower bound of the true (continuous) best response, as the grid's is; the
analysis reports the better of the two (``BestResponse.off_grid`` says which). With the
off-grid search, the break-even prices are those of the whole feasible volume by its
value function. The equilibrium search plays on the grid unless asked otherwise
(``equilibrium(..., storage_off_grid=True)``).

All candidates of all hours are cleared together by :func:`envs.market.clear_market`
(rows = hours x candidate price vectors, in chunks of at most ``MAX_ROWS`` rows), or
placed on the others' merit order and demand curve sorted once per hour (pay-as-clear:
every plant and renewable candidate, :func:`_evaluate_residual`; every storage candidate,
one bid on one side: :func:`_own_bid_outcomes`); the dynamic programmes are
vectorised over states.

Limits:

* Other units' bids are held as recorded in every hour, also where they depend on the
  past (a rule storage unit's volume depends on its state of charge, which the agent's
  bids may have changed).
* **Storage without parameters** (``exact=False``): the state of charge is held as
  recorded; only the recorded direction and volume of each hour are considered and the
  profit is the hour's cash flow. Pass ``scenario=`` for the exact response.
* A storage charge bid at price exactly 0 is not an env action (``a = 0`` means
  discharge at 0); the analysis allows it as the limit ``a -> 0-``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .market import VOLUME_TOL, clear_market, reference_clear
from .record import EpisodeRecord

__all__ = [
    "BestResponse",
    "Exploitability",
    "best_response",
    "best_responses",
    "storage_response_bids",
    "exploitability",
    "StorageParams",
    "brute_force_best_response",
    "br_share",
    "agent_rows",
    "deviation_verdict",
    "storage_break_even_prices",
    "StorageResponsePolicy",
    "max_relative_gain",
    "exploitability_from",
    "equilibrium",
    "EquilibriumResult",
    "distance_to_equilibrium",
    "recorded_profit",
    "soc_grid",
    "gain_by_hours",
    "gain_by_hours_line",
    "cold_offer_map",
    "undercut_learners_map",
    "MAX_ROWS",
]

# largest batch handed to clear_market in one call
MAX_ROWS = 200_000
# withholding volumes of the off-grid storage search: j / OFF_GRID_VOLUME_STEPS of the
# power limit, j = 1..OFF_GRID_VOLUME_STEPS, each way
OFF_GRID_VOLUME_STEPS = 12


@dataclass(frozen=True)
class BestResponse:
    """One agent's per-hour best response to the recorded bids of everyone else.

    Prices are EUR/MWh, profits EUR per hour; arrays are over the record's ``H`` hours.
    """

    agent: str
    agent_index: int
    kind: str  # "plant" | "renewable" | "storage"
    exact: bool  # False for storage (see the module docstring)
    tick: float
    mechanism: str
    hours: np.ndarray  # (H,) scenario hour index
    best_profit_per_hour: np.ndarray  # (H,)
    best_price: np.ndarray  # (H, 2): plant (p_in, p_fx); renewable/storage (p, nan)
    best_action: np.ndarray  # (H, 2) env actions in [-1, 1] giving best_price (nan: unused)
    recorded_profit_per_hour: np.ndarray  # (H,) recomputed from the record
    recorded_price: np.ndarray  # (H, 2) the agent's recorded bid prices, same layout
    direction: np.ndarray  # (H,) int8: +1 sells (supply bid), -1 buys (storage charge), 0 no volume
    n_candidates: int  # price vectors evaluated per hour (exact storage: net injections per hour)
    best_volume: np.ndarray | None = None  # (H,) exact storage: net injection MW (+ sold, - bought)
    # (H,) exact storage: the signed volume bid at ``best_price`` (MW) that gets
    # ``best_volume`` accepted: the same on the grid; off the grid, the whole feasible
    # volume where the bid sets the price and is accepted in part
    bid_volume: np.ndarray | None = None
    soc: np.ndarray | None = None  # (H+1,) exact storage: state of charge MWh along the best response
    soc_points: int = 0  # exact storage: levels of the state-of-charge grid
    # exact storage, per hour and level of the state-of-charge grid (``soc_levels``, MWh):
    # the break-even prices (EUR/MWh) of the largest move by the value the best response
    # puts on stored energy (its value function over the rest of the episode, "water
    # values"): discharging the largest move at ``offer_threshold`` (+inf when empty) or
    # charging it at ``bid_threshold`` (-inf when full) earns exactly what holding on is
    # worth; ``recorded_soc`` (H+1,): the state of charge the recorded bids led to.
    # See :func:`storage_break_even_prices`.
    soc_levels: np.ndarray | None = None  # (G,)
    offer_threshold: np.ndarray | None = None  # (H, G)
    bid_threshold: np.ndarray | None = None  # (H, G)
    recorded_soc: np.ndarray | None = None  # (H+1,)
    # exact storage: True when the schedule above (profits, volumes, prices, ``soc``) is
    # the off-grid one (see "Off the grid" in the module docstring). Whenever the off-grid
    # search ran (``storage_off_grid``), the break-even prices are those of the whole
    # feasible volume (the env's storage bid) by its value function; else those of the
    # grid's largest move by the grid's
    off_grid: bool = False
    # plants: (H,) bool, dispatched in the hour under the best response (with start-up
    # costs: the on/off schedule of the episode's dynamic programme); None for other kinds
    best_on: np.ndarray | None = None

    @property
    def best_profit(self) -> float:
        """Episode total of the per-hour best-response profits."""
        return float(self.best_profit_per_hour.sum())

    @property
    def recorded_profit(self) -> float:
        return float(self.recorded_profit_per_hour.sum())

    @property
    def gain_per_hour(self) -> np.ndarray:
        return self.best_profit_per_hour - self.recorded_profit_per_hour

    @property
    def gain(self) -> float:
        """Best-response profit minus recorded profit (>= 0 up to float rounding)."""
        return self.best_profit - self.recorded_profit

    @property
    def share(self) -> float:
        """Recorded profit as a share of the best-response profit (see :func:`_share`)."""
        return _share(self.recorded_profit, self.best_profit)


@dataclass(frozen=True)
class Exploitability:
    """Best responses of every learning agent of a record.

    ``joint = sum(gain) / sum(|recorded_profit|)``; when every recorded profit is zero it
    is 0 if no agent can gain and ``inf`` otherwise.
    """

    agents: tuple[str, ...]
    kinds: tuple[str, ...]
    recorded_profit: np.ndarray  # (n,) EUR over the episode
    best_response_profit: np.ndarray  # (n,)
    gain: np.ndarray  # (n,) best_response_profit - recorded_profit
    share: np.ndarray  # (n,) recorded / best response ("share of best-response profit")
    exact: np.ndarray  # (n,) bool
    joint: float
    responses: dict[str, BestResponse] = field(repr=False)

    def summary(self) -> str:
        """A small text table."""
        lines = [f"{'agent':<28} {'recorded':>14} {'best resp.':>14} {'gain':>12} {'share':>7}"]
        for k, a in enumerate(self.agents):
            mark = "" if self.exact[k] else " *"
            lines.append(
                f"{a:<28} {self.recorded_profit[k]:>14.1f} {self.best_response_profit[k]:>14.1f} "
                f"{self.gain[k]:>12.1f} {self.share[k]:>7.3f}{mark}"
            )
        lines.append(f"joint exploitability = sum(gain) / sum(|recorded|) = {self.joint:.4f}")
        lines.append(deviation_verdict(self))
        if not self.exact.all():
            lines.append("* approximate (storage: per-hour, state of charge held as recorded)")
        return "\n".join(lines)


def _share(recorded: float, best: float, tol: float = 1e-9) -> float:
    """``recorded / best`` when the best response earns money; 1 when both are ~0;
    nan otherwise (the best response loses money, the ratio means nothing)."""
    if best > tol:
        return recorded / best
    if abs(best) <= tol and abs(recorded) <= tol:
        return 1.0
    return float("nan")


# ---------------------------------------------------------------------------- helpers
def _agent_index(record: EpisodeRecord, agent: int | str) -> int:
    if isinstance(agent, str):
        if agent not in record.agents:
            raise KeyError(f"unknown agent {agent!r}; the record's agents are {list(record.agents)}")
        return record.agents.index(agent)
    i = int(agent)
    if not 0 <= i < len(record.agents):
        raise IndexError(f"agent index {i} out of range for {len(record.agents)} agents")
    return i


@dataclass(frozen=True)
class _Slots:
    i: int
    kind: str
    s_cols: np.ndarray  # own supply columns (plant: inflexible, flexible)
    d_cols: np.ndarray  # own demand columns
    lo: float
    hi: float


def _slots(record: EpisodeRecord, i: int) -> _Slots:
    kind = record.agent_kind[i]
    s_cols = record.agent_supply_columns(i)
    d_cols = record.agent_demand_columns(i)
    mbp = float(record.max_bid_price)
    lo = 0.0 if kind == "storage" else -mbp
    lo, hi = max(lo, record.price_floor), min(mbp, record.price_cap)
    if kind == "plant" and not 1 <= len(s_cols) <= 2:
        raise ValueError(f"a plant agent owns 1 or 2 supply bids, agent {record.agents[i]!r} owns {len(s_cols)}")
    if kind == "renewable" and len(s_cols) != 1:
        raise ValueError(f"a renewable agent owns 1 supply bid, agent {record.agents[i]!r} owns {len(s_cols)}")
    if kind == "storage" and (len(s_cols) > 1 or len(d_cols) > 1):
        raise ValueError(f"a storage agent owns at most one offer and one bid, agent {record.agents[i]!r} "
                         f"owns {len(s_cols)} and {len(d_cols)}")
    return _Slots(i, kind, s_cols, d_cols, lo, hi)


def _payments(record: EpisodeRecord, price: np.ndarray) -> np.ndarray:
    if record.mechanism == "pay_as_bid":
        return np.clip(price, record.price_floor, record.price_cap)
    return np.broadcast_to(record.clearing_price[:, None], price.shape)


def _min_output(record: EpisodeRecord, sl: _Slots, h0: int = 0, h1: int | None = None):
    """For a plant that produces at least ``record.agent_min_output`` once dispatched (the
    env's ``min_power_rule="raise"``): ``(floor, cost)`` per hour ``h0:h1``, the output
    (MW, capped by the volume it offers in the hour) and its marginal cost (EUR/MWh);
    ``None`` where every agent produces what was accepted."""
    m = record.agent_min_output
    if m is None or sl.kind != "plant" or not float(m[sl.i]) > 0:
        return None
    h1 = record.n_hours if h1 is None else h1
    offered = record.supply_volume[h0:h1, sl.s_cols].sum(axis=1)
    return np.minimum(float(m[sl.i]), offered), record.supply_cost[h0:h1, sl.s_cols[0]]


def _unpaid_output_cost(q: np.ndarray, floor_cost) -> np.ndarray:
    """EUR/h a plant dispatched for ``q`` MW (``(h, ...)``) pays for the output it runs
    beyond that, unpaid, up to its floor (:func:`_min_output`; 0 without one)."""
    if floor_cost is None:
        return np.zeros(np.shape(q))
    floor, cost = floor_cost
    shape = (-1,) + (1,) * (np.ndim(q) - 1)
    return np.maximum(floor.reshape(shape) - q, 0.0) * (q > 0) * cost.reshape(shape)


def recorded_profit(record: EpisodeRecord, agent: int | str) -> np.ndarray:
    """The agent's profit per hour ``(H,)`` recomputed from the record's accepted volumes
    and prices (equals ``record.agent_profit[:, i]`` for a record made by the env)."""
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    s, d = sl.s_cols, sl.d_cols
    acc_s = record.supply_accepted[:, s]
    acc_d = record.demand_accepted[:, d]
    pay_s = _payments(record, record.supply_price[:, s])
    pay_d = _payments(record, record.demand_price[:, d])
    profit = (acc_s * (pay_s - record.supply_cost[:, s])).sum(axis=1)
    profit -= (acc_d * (pay_d + record.demand_cost[:, d])).sum(axis=1)
    profit -= _unpaid_output_cost(acc_s.sum(axis=1), _min_output(record, sl))
    profit *= record.dt
    if sl.kind == "plant":
        started = (acc_s.sum(axis=1) > 0) & (record.agent_prev_dispatch[:, i] <= 0)
        profit -= started * record.agent_start_up_cost[i]
    return profit


def _rec_prices(record: EpisodeRecord, sl: _Slots, direction: np.ndarray) -> np.ndarray:
    """Recorded own prices ``(H, 2)`` in the BestResponse layout."""
    H = record.n_hours
    out = np.full((H, 2), np.nan)
    if sl.kind == "storage":
        sp = record.supply_price[:, sl.s_cols[0]] if len(sl.s_cols) else np.full(H, np.nan)
        dp = record.demand_price[:, sl.d_cols[0]] if len(sl.d_cols) else np.full(H, np.nan)
        out[:, 0] = np.where(direction < 0, dp, sp)
    else:
        out[:, : len(sl.s_cols)] = record.supply_price[:, sl.s_cols]
    return out


def _storage_direction(record: EpisodeRecord, sl: _Slots) -> np.ndarray:
    H = record.n_hours
    sv = record.supply_volume[:, sl.s_cols[0]] if len(sl.s_cols) else np.zeros(H)
    dv = record.demand_volume[:, sl.d_cols[0]] if len(sl.d_cols) else np.zeros(H)
    return np.where(sv > VOLUME_TOL, 1, np.where(dv > VOLUME_TOL, -1, 0)).astype(np.int8)


def _prev_distinct(S: np.ndarray) -> np.ndarray:
    """For rows sorted ascending: the largest value strictly below each entry (the entry
    itself where there is none)."""
    H, K = S.shape
    idx = np.arange(K)
    new = np.ones((H, K), dtype=bool)
    new[:, 1:] = S[:, 1:] > S[:, :-1]
    first = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    return np.take_along_axis(S, np.maximum(first - 1, 0), axis=1)


def _mapped(C: np.ndarray, record: EpisodeRecord, price_map) -> np.ndarray:
    """Candidate prices ``C`` ``(H, c)`` with each hour's row mapped by ``price_map(row,
    hour)`` (``best_response``'s ``plant_prices``) and sorted again; ``C`` itself without
    a map."""
    if price_map is None:
        return C
    hours = np.asarray(record.hours)
    out = np.stack([np.asarray(price_map(C[h], int(hours[h])), dtype=float) for h in range(C.shape[0])])
    return np.sort(out, axis=1)


def _mapped_rows(own: np.ndarray, record: EpisodeRecord, price_map) -> np.ndarray:
    """Own price vectors ``own`` ``(H, P, k)`` with every price of each hour mapped by
    ``price_map(prices, hour)`` (a non-decreasing map, so each vector stays sorted)."""
    hours = np.asarray(record.hours)
    H, P, k = own.shape
    return np.stack([np.asarray(price_map(own[h].ravel(), int(hours[h])), dtype=float).reshape(P, k)
                     for h in range(H)])


def cold_offer_map(core, agent: int, price_map=None):
    """The offer prices a learning plant of ``core`` (an :class:`envs.core.MarketCore`;
    ``agent`` its agent index) bids after an hour without dispatch under the env's
    ``start_up_markup_hours``, as a map ``(prices, hour) -> prices`` for
    :func:`best_response`'s ``cold_prices``: raised to at least the plant's marginal cost
    plus its markup, then through ``price_map`` (e.g. ``core.undercut``; ``None``: as
    they are). ``None`` when the plant has no markup."""
    k = int(agent) - int(core.sl_plant.start or 0)  # learning plants come first
    if not (0 <= k < len(core.lp)):
        raise ValueError(f"agent {agent} is not a learning plant of this market")
    mk = float(core.start_up_markup[k]) if core.start_up_markup_hours > 0 else 0.0
    if mk <= 0.0:
        return None
    mc = core.scenario.plants.marginal_cost[:, core.lp[k]]

    def cold(price, hour):
        p = np.maximum(np.asarray(price, dtype=float), mc[hour] + mk)
        return p if price_map is None else price_map(p, hour)
    return cold


def undercut_learners_map(record: EpisodeRecord, agent: int | str, price_map, *, tick: float = 0.01):
    """A map ``(prices, hour) -> prices`` for :func:`best_response`'s ``plant_prices``:
    ``price_map`` (e.g. an env's grid, :meth:`envs.MarketCore.undercut`) widened by the
    prices at most ``tick`` below another learning agent's offer of that hour (offers
    with volume, as recorded), which it keeps as they are.

    Between the grid's best response and the unrestricted one it measures the
    Bertrand-Edgeworth part of a learner's gain: where two learners offer at the same
    price and split the volume pro rata, or one is marginal just above the other, each
    gains by going a tick under the other, a price no grid of fixed points offers to
    both. ``tick``: the one the best response uses (its candidates lie ``tick`` under
    each other bid, or half way to the next bid below where that is closer)."""
    i = _agent_index(record, agent)
    if not tick > 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    cols = [c for j in range(len(record.agents)) if j != i for c in _slots(record, j).s_cols]
    P = record.supply_price[:, cols] if cols else np.zeros((record.n_hours, 0))
    P = np.where(record.supply_volume[:, cols] > VOLUME_TOL, P, np.nan) if cols else P
    row = {int(h): k for k, h in enumerate(np.asarray(record.hours))}

    def widened(price, hour):
        price = np.asarray(price, dtype=float)
        out = np.asarray(price if price_map is None else price_map(price, hour), dtype=float)
        offers = P[row[int(hour)]]
        offers = offers[np.isfinite(offers)]
        if not offers.size:
            return out
        d = offers[None, :] - price.reshape(-1, 1)  # how far under each offer
        keep = ((d > 0) & (d <= tick + 1e-9)).any(axis=1).reshape(price.shape)
        return np.where(keep, price, out)
    return widened


def _candidates(record: EpisodeRecord, sl: _Slots, tick: float, extra: np.ndarray) -> np.ndarray:
    """Candidate own prices ``(H, C)`` (see the module docstring); ``extra`` ``(H, e)``
    are added as they are (the recorded prices), clipped to the range."""
    H = record.n_hours
    lo, hi = sl.lo, sl.hi
    s_other = np.ones(record.supply_price.shape[1], dtype=bool)
    s_other[sl.s_cols] = False
    d_other = np.ones(record.demand_price.shape[1], dtype=bool)
    d_other[sl.d_cols] = False
    sp = record.supply_price[:, s_other]
    dp = record.demand_price[:, d_other]
    bp = np.concatenate(
        [
            np.where(record.supply_volume[:, s_other] > VOLUME_TOL, sp, hi),
            np.where(record.demand_volume[:, d_other] > VOLUME_TOL, dp, hi),
            np.full((H, 1), lo),
            np.full((H, 1), hi),
        ],
        axis=1,
    )
    # other bids are clipped to the market's limits, then to the agent's range
    S = np.clip(np.clip(bp, record.price_floor, record.price_cap), lo, hi)
    S.sort(axis=1)
    parts = [S, S - np.minimum(tick, (S - _prev_distinct(S)) / 2)]
    if sl.kind == "storage":  # demand bids: approach from above
        R = -S[:, ::-1]
        parts.append((-(R - np.minimum(tick, (R - _prev_distinct(R)) / 2)))[:, ::-1])
    ex = np.where(np.isnan(extra), hi, extra)
    parts.append(np.clip(ex, lo, hi))
    C = np.concatenate(parts, axis=1)
    # drop duplicates: sort, push repeats to +inf, sort again and cut to the widest row
    C.sort(axis=1)
    dup = np.zeros(C.shape, dtype=bool)
    dup[:, 1:] = C[:, 1:] == C[:, :-1]
    C[dup] = np.inf
    C.sort(axis=1)
    width = int((~dup).sum(axis=1).max())
    C = C[:, :width]
    return np.where(np.isinf(C), hi, C)


def _cols(pay: np.ndarray, shape: tuple[int, int], cols: np.ndarray) -> np.ndarray:
    """Columns ``cols`` of a payment array that may be ``(B, N)`` or one broadcasting
    ``(B, 1)`` column (pay-as-clear)."""
    return np.broadcast_to(pay, shape)[:, cols]


def _evaluate(
    record: EpisodeRecord, sl: _Slots, h0: int, h1: int, s_price: np.ndarray, d_price: np.ndarray,
    *, via_clearing: bool = False,
) -> np.ndarray:
    """Profit ``(h, P)`` (EUR per step, without start-up costs) of the agent in hours
    ``h0:h1`` for ``P`` own price vectors per hour, and whether its supply is accepted
    ``(h, P)``: ``s_price`` ``(h, P, len(s_cols))``, ``d_price`` ``(h, P, len(d_cols))``.
    One batched clearing of ``h * P`` markets."""
    h = h1 - h0
    P = s_price.shape[1]
    if not via_clearing and record.mechanism == "pay_as_clear" and not len(sl.d_cols) and len(sl.s_cols):
        return _evaluate_residual(record, sl, h0, h1, s_price)
    rep = lambda a: np.repeat(a[h0:h1], P, axis=0)  # noqa: E731
    sp, sv = rep(record.supply_price), rep(record.supply_volume)
    dp, dv = rep(record.demand_price), rep(record.demand_volume)
    s, d = sl.s_cols, sl.d_cols
    if len(s):
        sp[:, s] = s_price.reshape(h * P, len(s))
    if len(d):
        dp[:, d] = d_price.reshape(h * P, len(d))
    res = clear_market(
        sp, sv, dp, dv,
        fixed_demand=rep(record.fixed_demand),
        price_cap=record.price_cap, price_floor=record.price_floor, mechanism=record.mechanism,
    )
    acc_s = res.supply_accepted[:, s]
    pay_s = _cols(res.supply_payment, res.supply_accepted.shape, s)
    profit = (acc_s * (pay_s - rep(record.supply_cost[:, s]))).sum(axis=1)
    if len(d):
        pay_d = _cols(res.demand_payment, res.demand_accepted.shape, d)
        profit -= (res.demand_accepted[:, d] * (pay_d + rep(record.demand_cost[:, d]))).sum(axis=1)
    q = acc_s.sum(axis=1).reshape(h, P)
    profit = profit.reshape(h, P) - _unpaid_output_cost(q, _min_output(record, sl, h0, h1))
    # energy = MW * dt; start-up costs (EUR per start) are charged by the caller
    return profit * record.dt, q > 0


COUNT_COLUMNS_MAX = 24
"""Longest rows that :func:`_count_below` counts column by column (longer ones: one
bisection per row). Measured: `default`'s 16 other offers per hour, 336 hours at once,
columns 2x faster than hour-by-hour bisections; `many`'s 55, bisections 1.2x faster."""


def _count_below(rows: np.ndarray, q: np.ndarray, *, inclusive: bool = False) -> np.ndarray:
    """Per row, how many of ``rows`` ``(R, n)`` (each row ascending) lie below
    (``inclusive``: at or below) each value of ``q`` ``(R, X)``: ``np.searchsorted`` of
    every row, for short rows as one comparison per column of all rows at once (counted in
    ``uint8``: a quarter of the memory traffic of ``intp``)."""
    n = rows.shape[1]
    if n == 0:
        return np.zeros(np.shape(q), dtype=np.intp)
    if n > COUNT_COLUMNS_MAX:  # long rows: a bisection per row (e.g. the 55 offers of `many`)
        side = "right" if inclusive else "left"
        return np.stack([np.searchsorted(r, x, side=side) for r, x in zip(rows, q)]).reshape(np.shape(q))
    op = np.less_equal if inclusive else np.less
    out = op(rows[:, :1], q)
    out = out.astype(np.uint8) if n < 256 else out.astype(np.intp)
    for j in range(1, n):
        out += op(rows[:, j:j + 1], q)
    return out


def _gather(a: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``a`` ``(R, n)`` at column ``j[r, x]`` of each row ``r``: ``(R, X)``."""
    return a[np.arange(a.shape[0])[:, None], j]


def _evaluate_residual(
    record: EpisodeRecord, sl: _Slots, h0: int, h1: int, s_price: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_evaluate` for the common case of a pay-as-clear market and an agent with
    supply bids only (a plant or renewable): the others' merit order and their demand
    curve are sorted once per hour and every own price vector is placed on them, instead
    of clearing ``h * P`` whole markets (the 24 learners of ``many``: 8 s instead of 70 s
    for one evaluation). All hours at once: each hour's bids sorted in a row of its own
    (bids without volume last, at +inf), a search in them a count over the row's columns
    (:func:`_count_below`); the sums are taken in the order of a one-hour computation, so
    the figures do not depend on which hours are computed together (a CCGT of
    ``default``: 0.06 s for 336 hours and 497 price vectors, 0.14 s hour by hour). Same
    rules as :func:`envs.market.clear_market` (bids clipped to the price limits, bids of at
    most ``VOLUME_TOL`` MW ignored; the first supply price ``p`` at which the supply
    offered at or below it covers the demand willing to pay ``p`` sets the price, unless
    that demand is already covered by the supply below ``p``, when the next lower offer
    sets it and the supply below ``p`` is traded; the bids at the price share the rest pro
    rata; scarcity at the cap); the tests compare the two on random markets with ties and
    demand bids."""
    R, P, k = s_price.shape
    cap, floor = record.price_cap, record.price_floor
    tol = VOLUME_TOL
    s_cols = np.asarray(sl.s_cols)
    others = np.ones(record.supply_price.shape[1], dtype=bool)
    others[s_cols] = False
    fixed = np.asarray(record.fixed_demand[h0:h1], dtype=float)[:, None]  # (R, 1)
    # the demand bids ascending and the demand willing to pay at least each: fixed + a suffix sum
    dv = record.demand_volume[h0:h1]
    m = dv.shape[1]
    d_live = dv > tol
    dkey = np.where(d_live, np.minimum(np.maximum(record.demand_price[h0:h1], floor), cap), np.inf)
    d_order = dkey.argsort(axis=1, kind="stable")
    dps = np.take_along_axis(dkey, d_order, axis=1)
    tail = np.zeros((R, m + 1))
    if m:
        d_sorted = np.take_along_axis(np.where(d_live, dv, 0.0), d_order, axis=1)
        tail[:, :m] = np.cumsum(d_sorted[:, ::-1], axis=1)[:, ::-1]
    elastic = d_live.any(axis=1)  # (R,) hours with demand bids
    idle = fixed[:, 0] + tail[:, 0] <= tol  # no demand at any price: nothing is traded, no profit

    def demand_at(q: np.ndarray) -> np.ndarray:
        return fixed + _gather(tail, _count_below(dps, q)) if m else np.broadcast_to(fixed, np.shape(q))

    # the others' offers ascending; the supply offered before index j
    ov = record.supply_volume[h0:h1][:, others]
    n = ov.shape[1]
    live = ov > tol
    okey = np.where(live, np.minimum(np.maximum(record.supply_price[h0:h1][:, others], floor), cap), np.inf)
    order = okey.argsort(axis=1, kind="stable")
    lv = np.take_along_axis(okey, order, axis=1)  # (R, n)
    n_lv = live.sum(axis=1)[:, None]
    cum = np.zeros((R, n + 1))
    np.cumsum(np.take_along_axis(np.where(live, ov, 0.0), order, axis=1), axis=1, out=cum[:, 1:])
    # supply through each of the others' steps minus the demand at its price: non-
    # decreasing, so the first step covering the demand is a count of those below
    g = np.where(lv < np.inf, cum[:, 1:] - demand_at(lv), np.inf)
    av = record.supply_volume[h0:h1][:, s_cols]
    a_live = av > tol
    av = np.where(a_live, av, 0.0)
    # the own prices column by column, (R, P) each; a bid without volume is no offer
    A = [np.where(a_live[:, i:i + 1], np.minimum(np.maximum(s_price[:, :, i], floor), cap), np.inf) for i in range(k)]
    avc = [av[:, i:i + 1] for i in range(k)]
    none = np.full((R, P), np.inf)

    def own_below(q: np.ndarray, inclusive: bool = False):
        op, out = (np.less_equal if inclusive else np.less), 0.0
        for a, v in zip(A, avc):
            out = out + op(a, q) * v
        return out

    def offered_below(q: np.ndarray) -> np.ndarray:
        return _gather(cum, _count_below(lv, q)) + own_below(q)

    def offered_at_or_below(q: np.ndarray) -> np.ndarray:
        return _gather(cum, _count_below(lv, q, inclusive=True)) + own_below(q, True)

    def lv_at(j: np.ndarray) -> np.ndarray:
        return np.where(j < n_lv, _gather(lv, np.minimum(j, n - 1)), np.inf) if n else none

    # the first price level covering demand: in each interval between own prices the
    # first of the others' steps that does (with the own volume below it), and each own price
    A3 = np.stack(A, axis=2) if k else np.zeros((R, P, 0))
    srt = np.argsort(A3, axis=2)
    As = np.take_along_axis(A3, srt, axis=2)
    added = np.cumsum(np.take_along_axis(np.broadcast_to(av[:, None, :], A3.shape), srt, axis=2), axis=2)
    level = none
    for i in range(k + 1):
        j = _count_below(g, np.broadcast_to(-tol - (added[:, :, i - 1] if i else 0.0), (R, P)))
        if i:
            j = np.maximum(j, _count_below(lv, As[:, :, i - 1]))
        q = lv_at(j)
        level = np.where((q < (As[:, :, i] if i < k else none)) & (q < level), q, level)
    for a in A:
        fin = np.isfinite(a)
        a0 = np.where(fin, a, 0.0)
        ok = fin & (offered_at_or_below(a0) >= demand_at(a0) - tol)
        level = np.where(ok & (a < level), a, level)
    cross = np.isfinite(level)
    total = cum[:, -1:] + av.sum(axis=1)[:, None]
    # fixed demand only: the supply below the first covering level never covers the
    # demand (a lower level would have), so that level sets the price; without one,
    # everything offered is sold and the price is the cap (scarcity)
    price = np.where(cross, level, cap)
    volume = np.where(cross, fixed, total)
    if elastic.any():  # the hours with demand bids
        lev0 = np.where(cross, level, 0.0)
        jl = _count_below(lv, lev0)
        below_lev = _gather(cum, jl) + own_below(lev0)
        d_lev = demand_at(lev0)
        marginal = d_lev > below_lev + tol  # the level's own bids are (partly) needed
        # the next lower offer (others' or own) where the level's bids are not needed
        prev = np.where(jl > 0, _gather(lv, np.maximum(jl, 1) - 1), -np.inf) if n else -none
        top = (np.where(n_lv > 0, _gather(lv, np.maximum(n_lv, 1) - 1), -np.inf) if n else -none[:, :1])
        for a in A:
            prev = np.maximum(prev, np.where(a < lev0, a, -np.inf))
            top = np.maximum(top, np.where(np.isfinite(a), a, -np.inf))
        e_vol = np.where(marginal, d_lev, below_lev)
        e_price = np.where(marginal, lev0, prev)
        # nothing below the level: no trade (the price is the cheapest offer, the level)
        traded = e_vol > tol
        e_price = np.where(traded, e_price, lev0)
        e_vol = e_vol * traded
        # no crossing: everything offered is sold at the dearest offer
        e_price = np.where(cross, e_price, np.where(np.isfinite(top), top, cap))
        e_vol = np.where(cross, e_vol, total)
        scarce = demand_at(np.full((R, 1), cap)) - e_vol > tol
        e_price = np.where(scarce, cap, e_price)
        price = np.where(elastic[:, None], e_price, price)
        volume = np.where(elastic[:, None], e_vol, volume)
    below = offered_below(price)
    v_at = offered_at_or_below(price) - below
    share = np.clip((volume - below) / np.maximum(v_at, tol), 0.0, 1.0) * (v_at > tol)
    cost = record.supply_cost[h0:h1][:, s_cols]
    q, profit = 0.0, 0.0
    for i, (a, v) in enumerate(zip(A, avc)):
        acc = (a < price) * v + (a == price) * (v * share)
        q = q + acc
        profit = profit + acc * (price - cost[:, i:i + 1])
    profit = profit * record.dt
    floor_cost = _min_output(record, sl, h0, h1)
    if floor_cost is not None:  # min_power_rule="raise": the unpaid output up to the floor
        fl, mc = floor_cost
        profit = profit - np.maximum(fl[:, None] - q, 0.0) * (q > 0) * mc[:, None] * record.dt
    profit = np.array(np.broadcast_to(profit, (R, P)), dtype=float)
    on = np.array(np.broadcast_to(np.greater(q, 0), (R, P)))
    profit[idle] = 0.0
    on[idle] = False
    return profit, on


# ---------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class StorageParams:
    """What the storage best response needs beyond the record (all in MW / MWh).

    ``soc_min``/``soc_max``/``soc_initial`` are absolute energies (MWh), as
    :class:`envs.core.MarketCore` keeps them (``min_soc * capacity`` etc.). The additional
    costs come from the record (``supply_cost``/``demand_cost`` of the storage's bids)."""

    max_power_charge: float
    max_power_discharge: float
    efficiency_charge: float
    efficiency_discharge: float
    soc_min: float
    soc_max: float
    soc_initial: float

    @classmethod
    def from_scenario(cls, scenario, unit: str) -> "StorageParams":
        st = scenario.storages
        if unit not in st.names:
            raise KeyError(f"storage unit {unit!r} is not in scenario {scenario.name!r} (storage units: {list(st.names)})")
        k = st.names.index(unit)
        cap = float(st.capacity[k])
        return cls(
            max_power_charge=float(st.max_power_charge[k]), max_power_discharge=float(st.max_power_discharge[k]),
            efficiency_charge=float(st.efficiency_charge[k]), efficiency_discharge=float(st.efficiency_discharge[k]),
            soc_min=float(st.min_soc[k]) * cap, soc_max=float(st.max_soc[k]) * cap,
            soc_initial=float(st.initial_soc[k]) * cap,
        )


def _storage_params(record: EpisodeRecord, i: int, scenario, storage) -> StorageParams | None:
    unit = record.units[int(record.agent_unit[i])]
    if storage is not None:
        if isinstance(storage, StorageParams):
            return storage
        if record.agents[i] in storage:
            return storage[record.agents[i]]
        if unit in storage:
            return storage[unit]
    if scenario is not None:
        return StorageParams.from_scenario(scenario, unit)
    return None


def soc_grid(params: StorageParams, soc_points: int) -> tuple[np.ndarray, int]:
    """The state-of-charge grid of the storage best response: ``soc_points`` levels
    spaced ``(soc_max - soc_min) / (soc_points - 1)`` MWh apart, shifted so that the
    initial state of charge is a grid level (levels outside ``[soc_min, soc_max]`` are
    dropped). Returns ``(levels (G,), index of the initial level)``."""
    if int(soc_points) < 2:
        raise ValueError(f"soc_points must be >= 2, got {soc_points}")
    lo, hi, s0 = params.soc_min, params.soc_max, params.soc_initial
    if not lo - 1e-9 <= s0 <= hi + 1e-9:
        raise ValueError(f"initial state of charge {s0} MWh lies outside [{lo}, {hi}]")
    if hi - lo <= 1e-9:
        return np.array([s0]), 0
    step = (hi - lo) / (int(soc_points) - 1)
    k_lo = int(np.floor((s0 - lo) / step + 1e-9))
    k_hi = int(np.floor((hi - s0) / step + 1e-9))
    levels = s0 + step * np.arange(-k_lo, k_hi + 1)
    return levels, k_lo


def _storage_moves(params: StorageParams, levels: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid moves ``k`` (levels down = discharge, ``k > 0``) allowed by the power limits,
    and the net injection ``q`` (MW, + sold) each one means, like the env:
    discharging ``q`` MW for ``dt`` h takes ``q * dt / eff_dis`` MWh out, charging
    ``|q|`` MW puts ``|q| * eff_ch * dt`` MWh in."""
    if len(levels) < 2:
        return np.array([0]), np.array([0.0])
    step = float(levels[1] - levels[0])
    tol = 1e-9 * max(1.0, params.max_power_charge, params.max_power_discharge)
    G = len(levels)
    ks, qs = [0], [0.0]
    for k in range(1, G):
        q = k * step * params.efficiency_discharge / dt
        if q > params.max_power_discharge + tol:
            break
        ks.append(k), qs.append(q)
    for k in range(1, G):
        q = k * step / params.efficiency_charge / dt
        if q > params.max_power_charge + tol:
            break
        ks.append(-k), qs.append(-q)
    return np.array(ks), np.array(qs)


def changed_hours(record: EpisodeRecord, old: EpisodeRecord) -> np.ndarray:
    """The hours (indices, ascending) in which some bid of ``record`` (price, volume or
    cost, supply or demand) or the inelastic demand differs from ``old``'s, two records
    of the same market and hours."""
    diff = record.fixed_demand != old.fixed_demand
    for name in ("supply_price", "supply_volume", "supply_cost", "demand_price", "demand_volume", "demand_cost"):
        diff |= (getattr(record, name) != getattr(old, name)).any(axis=1)
    return np.flatnonzero(diff)


class StorageTables:
    """The per-hour tables of one storage agent's exact best response (the outcomes of
    its bids in each hour, the others' bids fixed), kept for its next best response on
    another record of the same market: an hour whose bids are those of the last record
    keeps its rows, the others are computed (a search over bid profiles changes a few
    hours at a time). The results are those of a best response without it, to the bit:
    each hour's outcomes depend on that hour's bids only, and the candidate prices of an
    hour are the same whatever the other hours' (the tables are padded to the widest hour
    with copies of the top price's column, as a full computation pads them).

    Pass one instance per storage agent as ``tables=`` to :func:`best_response` or
    :class:`StorageResponsePolicy`."""

    def __init__(self):
        self._record = None
        self._agent = None
        self._tables: dict = {}
        self._old: dict = {}
        self.hours: np.ndarray | None = None  # the hours computed in the current best response (None: all)

    def begin(self, record: EpisodeRecord, agent: int) -> None:
        """Start a best response of ``agent`` on ``record``."""
        old = self._record
        same = (old is not None and self._agent == agent and old.supply_price.shape == record.supply_price.shape
                and old.demand_price.shape == record.demand_price.shape and np.array_equal(old.hours, record.hours))
        self.hours = changed_hours(record, old) if same else None
        self._old = self._tables if same else {}
        self._tables = {}
        self._record, self._agent = record, agent

    def rows(self, key, compute):
        """The arrays ``compute(hours)`` returns (each ``(H, ...)``, filled at the rows
        ``hours``, all when None), the other rows taken from the last record's arrays of
        ``key`` (when it had them); kept as this record's."""
        old = self._old.get(key)
        if key in self._tables:
            return self._tables[key]
        if old is None or self.hours is None:
            out = compute(None)
        else:
            out = compute(self.hours)
            keep = np.ones(out[0].shape[0], dtype=bool)
            keep[self.hours] = False
            for new, prev in zip(out, old):
                if new.ndim == 3 and prev.shape[2] != new.shape[2]:  # another widest hour: re-pad
                    w = new.shape[2]
                    prev = prev[:, :, :w] if prev.shape[2] > w else np.concatenate(
                        [prev, np.repeat(prev[:, :, -1:], w - prev.shape[2], axis=2)], axis=2)
                new[keep] = prev[keep]
        self._tables[key] = out
        return out


def _storage_hour_values(record: EpisodeRecord, sl: _Slots, qs: np.ndarray, tick: float,
                         tables: "StorageTables | None" = None):
    """Best profit (EUR per step) for selling exactly ``qs[m]`` MW (``< 0``: buying) in
    every hour, the others' bids fixed: ``(H, Q)`` values (``-inf`` where no own price gets
    the volume accepted in full) and the price ``(H, Q)`` that achieves it.

    The storage bids ``|q|`` at one price; its profit for a fully accepted ``q`` does not
    fall as its supply price rises (falls as its demand price rises) between
    breakpoints, so the candidates of :func:`_candidates` find the supremum up to
    ``tick * |q|``. With ``tables``, the hours that bid as the tables' last record keep
    its rows."""
    if tables is not None:
        return tables.rows(("hour values", np.asarray(qs, dtype=float).tobytes(), float(tick)),
                           lambda hours: _storage_hour_values_at(record, sl, qs, tick, hours))
    return _storage_hour_values_at(record, sl, qs, tick, None)


def _hour_chunks(hours: np.ndarray | None, H: int, step: int):
    """``(h0, h1)`` chunks of at most ``step`` hours covering ``hours`` (ascending; None:
    all ``H``), each within one run of consecutive hours."""
    if hours is None:
        hours = np.arange(H)
    hours = np.asarray(hours, dtype=np.int64)
    if not len(hours):
        return
    for run in np.split(hours, np.flatnonzero(np.diff(hours) != 1) + 1):
        for h0 in range(int(run[0]), int(run[-1]) + 1, step):
            yield h0, min(int(run[-1]) + 1, h0 + step)


def _storage_hour_values_at(record: EpisodeRecord, sl: _Slots, qs: np.ndarray, tick: float, hours):
    H = record.n_hours
    Q = len(qs)
    s, d = sl.s_cols, sl.d_cols
    if not len(s) or not len(d):
        raise ValueError(f"storage agent {record.agents[sl.i]!r} needs one supply and one demand bid in the record")
    C = _candidates(record, sl, tick, np.full((H, 1), np.nan))
    Cn = C.shape[1]
    values = np.full((H, Q), -np.inf)
    prices = np.full((H, Q), np.nan)
    values[:, qs == 0] = 0.0
    prices[:, qs == 0] = 0.0
    live = np.flatnonzero(qs != 0)
    if not len(live):
        return values, prices
    ql = qs[live]
    tol = 1e-7 * (1.0 + np.abs(ql))
    step = max(1, MAX_ROWS // (len(live) * Cn))
    for h0, h1 in _hour_chunks(hours, H, step):
        h = h1 - h0
        acc = np.zeros((h, len(live), Cn))
        profit = np.zeros((h, len(live), Cn))
        for side in (1, -1):  # one clearing per side: the own offer, or the own charge bid
            m = ql > 0 if side > 0 else ql < 0
            if m.any():
                acc[:, m], profit[:, m] = _whole_volume_outcomes(record, sl, side, np.abs(ql[m]), C, h0, h1)
        full = np.abs(acc - ql[None, :, None]) <= tol[None, :, None]
        profit = np.where(full, profit, -np.inf)
        # among equally good prices: the lowest offer, but the HIGHEST charge bid (a
        # demand bid does not set the price, so bidding higher costs nothing and is the
        # robust choice; the lowest one would invite an outbidding race by one tick)
        best = np.where((ql < 0)[None, :], Cn - 1 - profit[:, :, ::-1].argmax(axis=2), profit.argmax(axis=2))
        top = np.take_along_axis(profit, best[:, :, None], axis=2)[:, :, 0]
        values[h0:h1, live] = top
        prices[h0:h1, live] = np.where(np.isfinite(top), np.take_along_axis(
            np.broadcast_to(C[h0:h1, None, :], (h, len(live), Cn)), best[:, :, None], axis=2)[:, :, 0], np.nan)
    return values, prices


def _storage_best_response(record: EpisodeRecord, sl: _Slots, params: StorageParams, tick: float,
                           soc_points: int, moves: str = "any", off_grid: bool = False,
                           tables: "StorageTables | None" = None) -> BestResponse:
    """Episode best response of a storage agent by dynamic programming over its state of
    charge (see the module docstring); ``moves="full"`` allows only idling, the largest
    charge or discharge move of the grid and moves onto the grid's end levels. With
    ``off_grid`` the off-grid schedule of :class:`_OffGridDP` (``moves="full"``: its
    whole-volume moves only, no withholding) replaces the grid's when it earns more.
    The two programmes are independent: :func:`_storage_grid_part`,
    :func:`_storage_off_grid_part` and :func:`_storage_join` (two processes may compute
    the parts, :class:`agents.analysis_pool.AnalysisPool`)."""
    if tables is not None:
        tables.begin(record, sl.i)
    grid = _storage_grid_part(record, sl, params, tick, soc_points, moves, tables)
    off = _storage_off_grid_part(record, sl, params, tick, soc_points, moves, tables) if off_grid else None
    return _storage_join(record, sl, params, tick, grid, off)


def _storage_grid_part(record: EpisodeRecord, sl: _Slots, params: StorageParams, tick: float, soc_points: int,
                       moves: str = "any", tables: "StorageTables | None" = None) -> dict:
    """The state-of-charge grid's programme of :func:`_storage_best_response`: its
    schedule (profit, accepted volume, price, bid volume, state of charge), break-even
    thresholds and number of moves, as a dict for :func:`_storage_join`."""
    H = record.n_hours
    levels, g0 = soc_grid(params, soc_points)
    G = len(levels)
    ks, qs = _storage_moves(params, levels, record.dt)
    r, pr = _storage_hour_values(record, sl, qs, tick, tables)  # (H, K)
    # V[h, g]: best profit from hour h on, starting hour h at level g
    nxt = np.arange(G)[:, None] - ks[None, :]  # (G, K) level after the move
    ok = (nxt >= 0) & (nxt < G)
    if moves == "full":  # what a one-price bid of the whole feasible volume does when accepted in full
        k = ks[None, :]
        ok &= (k == 0) | (k == ks.max()) | (k == ks.min()) | ((k > 0) & (nxt == 0)) | ((k < 0) & (nxt == G - 1))
    nxt_c = np.clip(nxt, 0, G - 1)
    V = np.zeros(G)
    Vs = np.zeros((H + 1, G))  # Vs[h]: the value from the start of hour h on
    choice = np.empty((H, G), dtype=np.int64)
    zero = int(np.flatnonzero(ks == 0)[0])
    for h in range(H - 1, -1, -1):
        tot = np.where(ok, r[h][None, :] + V[nxt_c], -np.inf)  # (G, K)
        best = tot.argmax(axis=1)
        top = tot[np.arange(G), best]
        # prefer staying idle among ties (deterministic, fewer cycles)
        idle = tot[:, zero] >= top - 1e-9 * (1.0 + np.abs(top))
        choice[h] = np.where(idle, zero, best)
        V = tot[np.arange(G), choice[h]]
        Vs[h] = V
    g = g0
    soc = np.empty(H + 1)
    soc[0] = levels[g]
    m = np.empty(H, dtype=np.int64)
    for h in range(H):
        m[h] = choice[h, g]
        g = int(nxt[g, m[h]])
        soc[h + 1] = levels[g]
    hours_idx = np.arange(H)
    q = qs[m]
    return {"profit": r[hours_idx, m], "q": q, "price": np.where(q != 0, pr[hours_idx, m], np.nan), "bid": q,
            "soc": soc, "thresholds": _storage_thresholds(record, sl, ks, qs, Vs), "moves": int(len(qs)),
            "levels": levels}


def _storage_off_grid_part(record: EpisodeRecord, sl: _Slots, params: StorageParams, tick: float, soc_points: int,
                           moves: str = "any", tables: "StorageTables | None" = None) -> dict | None:
    """The off-grid programmes of :func:`_storage_best_response` (None on a one-level
    grid): the env's action (whole volumes) and, with ``moves="any"``, also with
    withholding; their forward schedules (the better one is taken: interpolated values
    do not make a larger move set always find more) and the whole-volume programme's
    thresholds, as a dict for :func:`_storage_join`."""
    levels, _ = soc_grid(params, soc_points)
    if len(levels) <= 1:
        return None
    dps = [_whole_volume_dp(record, sl, params, levels, tick, tables)]
    if moves == "any":
        dps.append(_OffGridDP(record, sl, params, levels, tick, OFF_GRID_VOLUME_STEPS, whole=dps[0].whole,
                              tables=tables))
    return {"thresholds": dps[0].thresholds(), "forward": [dp.forward() for dp in dps]}


def _storage_join(record: EpisodeRecord, sl: _Slots, params: StorageParams, tick: float, grid: dict,
                  off: dict | None) -> BestResponse:
    """The storage best response from its programmes' parts (:func:`_storage_grid_part`,
    :func:`_storage_off_grid_part` or None): an off-grid schedule replaces the grid's
    where it earns more, in the parts' order."""
    H = record.n_hours
    mbp = float(record.max_bid_price)
    best_profit, q, p, bid, soc = grid["profit"], grid["q"], grid["price"], grid["bid"], grid["soc"]
    offer_thr, bid_thr = grid["thresholds"]
    off_grid = False
    if off is not None:
        offer_thr, bid_thr = off["thresholds"]
        for profit_o, q_o, p_o, bid_o, soc_o in off["forward"]:
            if profit_o.sum() > best_profit.sum() + 1e-9 * (1.0 + abs(best_profit.sum())):
                best_profit, q, soc, off_grid = profit_o, q_o, soc_o, True
                bid = np.where(q_o != 0, bid_o, 0.0)
                p = np.where(q_o != 0, p_o, np.nan)
    direction = np.sign(q).astype(np.int8)
    best_price = np.full((H, 2), np.nan)
    best_price[:, 0] = p
    best_action = np.full((H, 2), np.nan)
    best_action[:, 0] = np.where(q < 0, -1.0, 1.0) * p / mbp
    rec_dir = _storage_direction(record, sl)
    return BestResponse(
        agent=record.agents[sl.i], agent_index=sl.i, kind="storage", exact=True, tick=float(tick),
        mechanism=record.mechanism, hours=np.asarray(record.hours), best_profit_per_hour=best_profit,
        best_price=best_price, best_action=best_action, recorded_profit_per_hour=recorded_profit(record, sl.i),
        recorded_price=_rec_prices(record, sl, rec_dir), direction=direction, n_candidates=grid["moves"],
        best_volume=q, bid_volume=bid, soc=soc, soc_points=len(grid["levels"]), soc_levels=grid["levels"],
        off_grid=off_grid, offer_threshold=offer_thr, bid_threshold=bid_thr,
        recorded_soc=_recorded_soc(record, sl, params),
    )


def _own_bid_outcomes(record: EpisodeRecord, sl: _Slots, side: int, vols: np.ndarray, C: np.ndarray,
                      h0: int, h1: int) -> tuple[np.ndarray, np.ndarray]:
    """The market of hours ``h0:h1`` cleared with the storage's one bid on one side
    (``side > 0``: an offer of ``vols[u]`` MW, ``< 0``: a charge bid of ``vols[u]`` MW) at
    each candidate price ``C[h, c]``, its other side idle and everyone else's bids as
    recorded: the own accepted volume (MW, ``>= 0``) and the price it is paid (the clearing
    price; pay-as-bid: its own bid price), both ``(h1 - h0, U, Cn)``.

    The same outcome as :func:`envs.market.clear_market` on the whole bid arrays (tested
    equal on random markets, ties, scarcity and both mechanisms), without clearing every
    row from scratch: the others' merit order is sorted once per hour, and where one bid
    added to it moves the crossing is found by counting steps on per-hour curves (the
    supply offered and the demand willing at each step price are monotone). Volumes
    agree to rounding (the sums are taken in another order)."""
    tol = VOLUME_TOL
    cap, floor = float(record.price_cap), float(record.price_floor)
    H, U, Cn = h1 - h0, len(vols), C.shape[1]
    j_s, j_d = int(sl.s_cols[0]), int(sl.d_cols[0])
    # the others' bids, per hour
    s_o = np.ones(record.supply_price.shape[1], dtype=bool)
    s_o[j_s] = False
    d_o = np.ones(record.demand_price.shape[1], dtype=bool)
    d_o[j_d] = False
    sp = np.clip(record.supply_price[h0:h1][:, s_o], floor, cap)
    sv = record.supply_volume[h0:h1][:, s_o]
    live = sv > tol
    key = np.where(live, sp, np.inf)
    order = key.argsort(axis=1, kind="stable")
    ks = np.take_along_axis(key, order, axis=1)  # (H, n) ascending, dead bids last at inf
    n = ks.shape[1]
    cpad = np.zeros((H, n + 1))
    np.cumsum(np.take_along_axis(sv * live, order, axis=1), axis=1, out=cpad[:, 1:])
    n_fin = (ks < np.inf).sum(axis=1)  # (H,)
    dp = np.clip(record.demand_price[h0:h1][:, d_o], floor, cap)
    dv = record.demand_volume[h0:h1][:, d_o]
    dvol = dv * (dv > tol)
    fixed = record.fixed_demand[h0:h1].astype(float)
    dem_o = ((dp[:, None, :] >= ks[:, :, None]) * dvol[:, None, :]).sum(axis=2) + fixed[:, None]  # (H, n)
    # supply offered up to step j minus the demand willing at its price: non-decreasing in
    # j (sums of non-negative terms; +inf past the live bids), so "the first step where
    # supply covers demand" is a count of the steps below a threshold
    g = np.where(ks < np.inf, cpad[:, 1:] - dem_o, np.inf)
    p = np.clip(C[h0:h1], floor, cap)  # (H, Cn) own prices
    nlt = _count_below(ks, p).astype(np.intp)  # (H, Cn) others' steps below the own price
    nle = _count_below(ks, p, inclusive=True).astype(np.intp)
    hh = np.arange(H)[:, None]

    def at(a, j):  # a (H, m) gathered at indices j (H, ...) (clipped into range)
        jj = np.clip(j, 0, a.shape[1] - 1)
        return a[hh.reshape((H,) + (1,) * (jj.ndim - 1)), jj]

    v = np.asarray(vols, dtype=float)[None, :, None]  # (1, U, 1)
    own_live = v > tol
    shape = (H, U, Cn)
    P3 = np.broadcast_to(p[:, None, :], shape)
    cap_dem = fixed + ((dp >= cap) * dvol).sum(axis=1)  # (H,)

    def first_at_least(x):  # first step j with g_j >= x; x (H, U, Cn) -> (H, U, Cn)
        return _count_below(g, np.broadcast_to(x, shape).reshape(H, -1)).reshape(shape).astype(np.intp)

    fin = n_fin[:, None, None]
    f0 = (g < -tol).sum(axis=1)  # (H,) first others' step where supply covers demand without the own bid
    top = at(ks, np.broadcast_to((n_fin - 1)[:, None, None], shape))  # the dearest live offer
    if side > 0:
        Dp = ((dp[:, None, :] >= p[:, :, None]) * dvol[:, None, :]).sum(axis=2) + fixed[:, None]  # (H, Cn)
        cl = at(cpad, nlt)  # (H, Cn) others' supply below the own price
        caseA = np.broadcast_to((f0[:, None] < nlt)[:, None, :], shape)
        own_meets = (cl[:, None, :] + v >= Dp[:, None, :] - tol)
        caseB = ~caseA & own_meets
        jC = np.maximum(nlt[:, None, :], first_at_least(-v - tol))
        caseC = ~caseA & ~caseB & (jC < fin)
        cross = caseA | caseB | caseC
        f0b = np.broadcast_to(f0[:, None, None], shape)
        k = np.where(caseA, f0b, jC)  # others' step index (A, C)
        c_prev = np.where(caseA, at(cpad, k), np.where(caseB, cl[:, None, :], at(cpad, k) + v))
        d_k = np.where(caseB, Dp[:, None, :], at(dem_o, k))
        marg = d_k > c_prev + tol
        volume = np.where(cross, np.where(marg, d_k, c_prev), cpad[:, -1][:, None, None] + v)
        kp = at(ks, k)
        prev_o = np.where(caseC & (k == nlt[:, None, :]), P3, at(ks, k - 1))  # merged step before k
        prev_exists = np.where(caseA, k >= 1, np.where(caseB, nlt[:, None, :] >= 1, True))
        prev_B = at(ks, np.broadcast_to(nlt[:, None, :] - 1, shape))
        price = np.where(caseB, np.where(marg, P3, prev_B), np.where(marg, kp, prev_o))
        last_ok = marg | prev_exists
        # no crossing: everything offered is sold; the last finite step sets the price
        last_price = np.where((n_fin[:, None, None] >= 1) & (top >= P3), top, P3)
        price = np.where(cross, price, last_price)
        last_ok = np.where(cross, last_ok, True)
        cheapest = np.minimum(np.broadcast_to(ks[:, :1, None], shape) if n else np.inf, P3)
    else:
        jA = first_at_least(np.broadcast_to(v - tol, shape))
        nle3 = np.broadcast_to(nle[:, None, :], shape)
        jB = np.maximum(nle3, f0[:, None, None])
        useA = jA < nle3
        k = np.where(useA, jA, jB)
        cross = useA | (jB < fin)
        c_prev = at(cpad, k)
        d_k = at(dem_o, k) + np.where(at(ks, k) <= P3, v, 0.0)
        marg = d_k > c_prev + tol
        volume = np.where(cross, np.where(marg, d_k, c_prev), cpad[:, -1][:, None, None])
        price = np.where(marg, at(ks, k), at(ks, k - 1))
        last_ok = marg | (k >= 1)
        price = np.where(cross, price, top)
        last_ok = np.where(cross, last_ok, np.broadcast_to(n_fin[:, None, None] >= 1, shape))
        cheapest = np.broadcast_to((ks[:, :1] if n else np.full((H, 1), np.inf))[:, :, None], shape)
    traded = last_ok & (volume > tol)
    cheapest = np.where(cheapest < np.inf, cheapest, cap)
    price = np.where(traded, price, cheapest)
    volume = volume * traded
    cap_demand = cap_dem[:, None, None] + (np.where(P3 >= cap, v, 0.0) if side < 0 else 0.0)
    price = np.where(cap_demand - volume > tol, cap, price)
    if side > 0:
        below = P3 < price
        tie = P3 == price
        # supply below / at the clearing price (others by their merit order, plus the own offer)
        flat = np.broadcast_to(price, shape).reshape(H, -1)  # ks rows are sorted: counts are bisections
        n_lt = _count_below(ks, flat).reshape(shape).astype(np.intp)
        n_le = _count_below(ks, flat, inclusive=True).reshape(shape).astype(np.intp)
        v_below = at(cpad, n_lt) + np.where(below, v, 0.0)
        v_at = at(cpad, n_le) - at(cpad, n_lt) + np.where(tie, v, 0.0)
        share = np.clip((volume - v_below) / np.maximum(v_at, tol), 0.0, 1.0) * (v_at > tol)
        acc = np.where(below, v, np.where(tie, v * share, 0.0))
    else:
        # demand: the fixed demand at the cap, the others' bids and the own bid; the
        # marginal price group shares what the supply leaves it
        m = dp.shape[1]
        # (price, volume) of each: broadcasting to (H, U, Cn)
        bids = ([(cap, fixed[:, None, None])]
                + [(np.where(dv[:, j] > tol, dp[:, j], -np.inf)[:, None, None], dvol[:, j, None, None])
                   for j in range(m)]
                + [(np.where(own_live, P3, -np.inf), v)])
        if len(bids) < 8:  # one array per bid, each sum in the bids' order (as .sum adds fewer than 8)
            def total(terms):
                out = 0.0
                for t in terms:
                    out = out + t
                return out
            pd_marg = np.full(shape, -np.inf)
            for pi, vi in bids:
                ge = total((pj >= pi) * vj for pj, vj in bids)  # the demand willing at pi or above
                pd_marg = np.maximum(pd_marg, np.where((ge >= volume - tol) & (vi > tol), pi, -np.inf))
            v_above = total((pi > pd_marg) * vi for pi, vi in bids)
            v_dat = total((pi == pd_marg) * vi for pi, vi in bids)
        else:
            a_p = np.stack([np.broadcast_to(pi, shape) for pi, _ in bids], axis=-1)
            a_v = np.stack([np.broadcast_to(vi, shape) for _, vi in bids], axis=-1)
            ge = ((a_p[..., None, :] >= a_p[..., :, None]) * a_v[..., None, :]).sum(axis=-1)
            reach = (ge >= volume[..., None] - tol) & (a_v > tol)
            pd_marg = np.where(reach, a_p, -np.inf).max(axis=-1)
            v_above = ((a_p > pd_marg[..., None]) * a_v).sum(axis=-1)
            v_dat = ((a_p == pd_marg[..., None]) * a_v).sum(axis=-1)
        d_share = np.clip((volume - v_above) / np.maximum(v_dat, tol), 0.0, 1.0) * (v_dat > tol)
        own_p = bids[-1][0]
        acc = np.where(own_p > pd_marg, v, np.where(own_p == pd_marg, v * d_share, 0.0))
    acc = np.where(own_live, acc, 0.0)
    pay = P3 if record.mechanism == "pay_as_bid" else price
    return np.broadcast_to(acc, shape).copy(), np.array(pay, dtype=float)


def _whole_volume_outcomes(record: EpisodeRecord, sl: _Slots, side: int, vols: np.ndarray, C: np.ndarray,
                           h0: int, h1: int) -> tuple[np.ndarray, np.ndarray]:
    """Hours ``h0:h1``: the storage bids the whole volume ``vols[u]`` (MW) on one side
    (``side > 0``: an offer to discharge, ``< 0``: a bid to charge) at each candidate price
    ``C[h, c]``, the others' bids fixed, as the env's storage action does. Returns the net
    injection accepted (MW, ``+`` sold; part of the volume when the bid sets the price)
    and the profit per step, both ``(h1 - h0, U, Cn)``."""
    acc, pay = _own_bid_outcomes(record, sl, side, vols, C, h0, h1)
    if side > 0:
        profit = acc * (pay - record.supply_cost[h0:h1, int(sl.s_cols[0])][:, None, None])
    else:
        acc = -acc
        profit = acc * (pay + record.demand_cost[h0:h1, int(sl.d_cols[0])][:, None, None])
    return acc, profit * record.dt


_DP_CACHE: list = []
"""In the analysis worker process only (:func:`_best_responses_server` switches it on):
the last whole-volume storage programme, ``[(record, agent index, params, levels, tick,
programme)]``, so that the teacher's storage response bids of an evaluation
(:func:`storage_response_bids`) reuse the one its best response built. Records reach the
worker by pickling and are never changed there; elsewhere nothing is kept."""
_DP_CACHE_ON = False


def _whole_volume_dp(record: EpisodeRecord, sl: _Slots, params: StorageParams, levels: np.ndarray,
                     tick: float, tables: "StorageTables | None" = None) -> "_OffGridDP":
    """``_OffGridDP(record, sl, params, levels, tick, 0)``, from :data:`_DP_CACHE` where
    the worker built it for the same record object already (the programme is not changed
    after it is built)."""
    for rec, i, par, lev, tk, dp in _DP_CACHE:
        if rec is record and i == sl.i and par == params and tk == tick and np.array_equal(lev, levels):
            return dp
    dp = _OffGridDP(record, sl, params, levels, tick, 0, tables=tables)
    if _DP_CACHE_ON:
        _DP_CACHE[:] = [(record, sl.i, params, levels, tick, dp)]
    return dp


class _OffGridDP:
    """The off-grid storage programme (see "Off the grid" in the module docstring): a
    dynamic programme over ``levels`` whose moves may end between levels (the value there
    interpolated linearly). Moves: idle; the whole feasible volume offered (bid) at one
    candidate price, accepted in full or in part (the env's storage action); and, with
    ``volume_steps > 0``, ``j / volume_steps`` of the power limit accepted in full
    (withholding). ``Vs[h]`` (``(H+1, G)``): the value from the start of hour ``h`` on."""

    def __init__(self, record: EpisodeRecord, sl: _Slots, params: StorageParams, levels: np.ndarray,
                 tick: float, volume_steps: int, whole: dict | None = None, tables: "StorageTables | None" = None):
        self.record, self.sl, self.params, self.levels = record, sl, params, levels
        H, G = record.n_hours, len(levels)
        self.dt = dt = float(record.dt)
        self.step = float(levels[1] - levels[0]) if G > 1 else 1.0
        self.C = C = _candidates(record, sl, tick, np.full((H, 1), np.nan))
        self.e_dis, self.e_ch = dt / params.efficiency_discharge, dt * params.efficiency_charge  # MWh per MW
        self.whole = {} if whole is None else whole  # (another programme's, same record and levels)
        for side in (1, -1) if whole is None else ():
            vols, inv = np.unique(self.volumes(side, levels), return_inverse=True)

            def outcomes(hours, side=side, vols=vols):
                acc = np.zeros((H, len(vols), C.shape[1]))
                prof = np.zeros_like(acc)
                for h0, h1 in _hour_chunks(hours, H, max(1, MAX_ROWS // (len(vols) * C.shape[1]))):
                    acc[h0:h1], prof[h0:h1] = _whole_volume_outcomes(record, sl, side, vols, C, h0, h1)
                return acc, prof

            if tables is None:
                acc, prof = outcomes(None)
            else:
                acc, prof = tables.rows(("whole", side, vols.tobytes(), float(tick)), outcomes)
            self.whole[side] = (vols, inv, acc, prof)
        n = max(0, int(volume_steps))
        qs = np.concatenate([params.max_power_discharge * np.arange(1, n + 1) / max(n, 1),
                             -params.max_power_charge * np.arange(1, n + 1) / max(n, 1)])
        self.qs = qs = qs[np.abs(qs) > 1e-9]
        # the env's action: waiting needs a price on each side at which nothing trades
        # (an offer even at the top is sold when the price clears above it, e.g. in
        # scarcity); withholding moves (the analysis's "any") may always wait
        self.env_action = n == 0
        self.can_idle = {side: (np.abs(w[2]) <= VOLUME_TOL).any(axis=2) if self.env_action
                         else np.ones((H, len(w[0])), dtype=bool) for side, w in self.whole.items()}
        idle_ok = self.can_idle[1][:, self.whole[1][1]] & self.can_idle[-1][:, self.whole[-1][1]]  # (H, G)
        # an offer at the bottom of the range or a charge bid at its top leaves the other
        # side of a two-sided bid no price that keeps it out: not the env's moves
        self.valid = {1: np.where(C > sl.lo, 0.0, -np.inf), -1: np.where(C < sl.hi, 0.0, -np.inf)} if self.env_action \
            else {1: np.zeros_like(C), -1: np.zeros_like(C)}
        if len(qs):
            self.r_q, self.p_q = _storage_hour_values(record, sl, qs, tick, tables)
        else:
            self.r_q = self.p_q = np.zeros((H, 0))
        soc_q = self.soc_after(levels[:, None], qs[None, :])  # (G, Q)
        fits_q = (soc_q >= params.soc_min - 1e-9) & (soc_q <= params.soc_max + 1e-9)
        self.Vs = Vs = np.zeros((H + 1, G))
        for h in range(H - 1, -1, -1):
            V = Vs[h + 1]
            best = np.where(idle_ok[h], V, -np.inf)
            for side, (vols, inv, acc, prof) in self.whole.items():
                a = acc[h][inv]  # (G, Cn)
                tot = prof[h][inv] + self.valid[side][h] + self.interp(V, self.soc_after(levels[:, None], a))
                best = np.maximum(best, tot.max(axis=1))
            if len(qs):
                best = np.maximum(best, np.where(fits_q, self.r_q[h][None, :] + self.interp(V, soc_q), -np.inf).max(axis=1))
            Vs[h] = best

    def volumes(self, side: int, soc):
        """The whole feasible volume (MW) to discharge (``side > 0``) or charge at ``soc``."""
        p = self.params
        if side > 0:
            return np.minimum(p.max_power_discharge, np.maximum(soc - p.soc_min, 0.0) / self.e_dis)
        return np.minimum(p.max_power_charge, np.maximum(p.soc_max - soc, 0.0) / self.e_ch)

    def soc_after(self, soc, q):
        return soc - np.where(q > 0, q * self.e_dis, q * self.e_ch)

    def interp(self, V: np.ndarray, soc) -> np.ndarray:
        L, G = self.levels, len(self.levels)
        # np.minimum/np.maximum rather than np.clip (the same values, a fraction of the
        # call overhead on these small arrays); x >= 0, so truncation is the floor
        x = np.minimum(np.maximum((np.asarray(soc, dtype=float) - L[0]) / self.step, 0.0), G - 1.0)
        i0 = np.minimum(x.astype(np.int64), max(G - 2, 0))
        w = x - i0
        return V[i0] * (1.0 - w) + V[np.minimum(i0 + 1, G - 1)] * w

    def best_move(self, h: int, soc: float, anchor: tuple[float, float] | None = None) -> tuple[float, float, float, float]:
        """The best move in hour ``h`` from the exact state of charge ``soc`` by the value
        of hour ``h + 1``: ``(profit, accepted net injection q, price, signed bid volume)``
        (idle: ``(0, 0, nan, 0)``). Among equally good prices: the lowest offer, the
        highest charge bid; with ``anchor`` (charge bid, offer) the one nearest to it."""
        V = self.Vs[h + 1]
        best_v, best = float(self.interp(V, soc)), (0.0, 0.0, np.nan, 0.0)
        outcomes = {side: self.outcomes(h, side, soc) for side in self.whole}
        if self.env_action and not all((np.abs(a) <= VOLUME_TOL).any() for a, _ in outcomes.values()):
            best_v = -np.inf  # the env's action cannot wait this hour
        for side, (a, p) in outcomes.items():
            if not np.any(a):
                continue
            tot = p + self.valid[side][h] + self.interp(V, self.soc_after(soc, a))
            if not np.isfinite(tot.max()):
                continue
            if anchor is None:
                c = int(tot.argmax()) if side > 0 else int(len(tot) - 1 - tot[::-1].argmax())
            else:
                top = tot >= tot.max() - 1e-9 * (1.0 + abs(tot.max()))
                c = int(np.where(top, np.abs(self.C[h] - anchor[1 if side > 0 else 0]), np.inf).argmin())
            if not np.isfinite(best_v) or tot[c] > best_v + 1e-9 * (1.0 + abs(best_v)):
                best_v, best = float(tot[c]), (float(p[c]), float(a[c]), float(self.C[h, c]),
                                               side * float(self.volumes(side, soc)))
        if len(self.qs):
            nxt = self.soc_after(soc, self.qs)
            ok = (nxt >= self.params.soc_min - 1e-9) & (nxt <= self.params.soc_max + 1e-9) & np.isfinite(self.r_q[h])
            if ok.any():
                tot = np.where(ok, self.r_q[h] + self.interp(V, nxt), -np.inf)
                c = int(tot.argmax())
                if tot[c] > best_v + 1e-9 * (1.0 + abs(best_v)):
                    best = (float(self.r_q[h, c]), float(self.qs[c]), float(self.p_q[h, c]), float(self.qs[c]))
        return best

    def outcomes(self, h: int, side: int, soc: float) -> tuple[np.ndarray, np.ndarray]:
        """Accepted net injection and profit ``(Cn,)`` of the whole feasible volume at
        ``soc`` offered (``side > 0``) or bid at each candidate price of hour ``h``."""
        vols, _, acc, prof = self.whole[side]
        v = float(self.volumes(side, soc))
        if v <= VOLUME_TOL:
            return np.zeros(self.C.shape[1]), np.zeros(self.C.shape[1])
        u = np.flatnonzero(np.abs(vols - v) <= 1e-9 * max(1.0, v))
        if len(u):
            return acc[h, u[0]], prof[h, u[0]]
        # a volume no grid level has (near an end of the range)
        a, p = _whole_volume_outcomes(self.record, self.sl, side, np.array([v]), self.C, h, h + 1)
        return a[0, 0], p[0, 0]

    def forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The schedule from the initial state of charge, the best move at the exact state
        of charge each hour: ``(profit (H,), q (H,), price (H,), bid volume (H,), soc
        (H+1,))``, feasible, its profit booked as the market pays it."""
        H, p = self.record.n_hours, self.params
        soc = np.empty(H + 1)
        soc[0] = s = float(p.soc_initial)
        profit, q, price, bid = np.zeros(H), np.zeros(H), np.full(H, np.nan), np.zeros(H)
        for h in range(H):
            profit[h], q[h], price[h], bid[h] = self.best_move(h, s)
            s = float(np.clip(self.soc_after(s, q[h]), p.soc_min, p.soc_max))
            soc[h + 1] = s
        return profit, q, price, bid, soc

    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Break-even prices ``(H, G)`` of offering and of bidding the whole feasible
        volume from each level (see :func:`_storage_thresholds`), by this programme's
        values."""
        rec, sl, L = self.record, self.sl, self.levels
        s_cost = rec.supply_cost[:, sl.s_cols[0], None]
        d_cost = rec.demand_cost[:, sl.d_cols[0], None]
        vd, vc = self.volumes(1, L), self.volumes(-1, L)
        nxt = self.Vs[1:]
        after_d = np.stack([self.interp(v, L - vd * self.e_dis) for v in nxt])
        after_c = np.stack([self.interp(v, L + vc * self.e_ch) for v in nxt])
        with np.errstate(divide="ignore", invalid="ignore"):
            offer = np.where(vd > VOLUME_TOL, s_cost + (nxt - after_d) / (vd * self.dt), np.inf)
            bid = np.where(vc > VOLUME_TOL, (after_c - nxt) / (vc * self.dt) - d_cost, -np.inf)
        return offer, bid


def _recorded_soc(record: EpisodeRecord, sl: _Slots, params: StorageParams) -> np.ndarray:
    """State of charge (MWh) at the start of each hour and after the last, moved as the
    env moves it by the record's accepted volumes of the storage's bids."""
    sold = record.supply_accepted[:, sl.s_cols].sum(axis=1)
    bought = record.demand_accepted[:, sl.d_cols].sum(axis=1)
    delta = (bought * params.efficiency_charge - sold / params.efficiency_discharge) * record.dt
    soc = np.empty(record.n_hours + 1)
    soc[0] = params.soc_initial
    for h in range(record.n_hours):
        soc[h + 1] = min(max(soc[h] + delta[h], params.soc_min), params.soc_max)
    return soc


def _storage_thresholds(record: EpisodeRecord, sl: _Slots, ks: np.ndarray, qs: np.ndarray,
                        Vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Break-even prices ``(H, G)`` of the largest discharge and charge move of each hour
    from each grid level: the price at which the move's cash flow equals the fall (rise)
    of the value from the next hour on, plus (minus) the storage's own cost per MWh."""
    H, G = Vs.shape[0] - 1, Vs.shape[1]
    dt = float(record.dt)
    g = np.arange(G)
    kd = np.minimum(int(ks.max()), g)  # levels down by the largest discharge (or onto the bottom)
    kc = np.minimum(int(-ks.min()), G - 1 - g)  # levels up by the largest charge (or onto the top)
    q_of = dict(zip(ks.tolist(), qs.tolist()))
    qd = np.array([q_of.get(int(k), np.nan) if k > 0 else np.nan for k in kd])
    qc = np.array([-q_of.get(int(-k), np.nan) if k > 0 else np.nan for k in kc])
    s_cost = record.supply_cost[:, sl.s_cols[0], None] if len(sl.s_cols) else np.zeros((H, 1))
    d_cost = record.demand_cost[:, sl.d_cols[0], None] if len(sl.d_cols) else np.zeros((H, 1))
    nxt = Vs[1:]  # (H, G)
    with np.errstate(divide="ignore", invalid="ignore"):
        offer = np.where(kd > 0, s_cost + (nxt - nxt[:, g - kd]) / (qd * dt), np.inf)
        bid = np.where(kc > 0, (nxt[:, np.minimum(g + kc, G - 1)] - nxt) / (qc * dt) - d_cost, -np.inf)
    return offer, bid


def storage_break_even_prices(br: BestResponse, record: EpisodeRecord, *, states="recorded",
                              hours=None) -> np.ndarray:
    """Two-sided storage bids ``(H, 2)`` EUR/MWh (charge bid, discharge offer) at an exact
    storage best response's break-even prices ("water values", see
    :class:`BestResponse`), from the states of charge of ``states``: ``"recorded"``
    (default), those the record's own bids led to (what the policy that made the record
    observed), ``"best"``, those of the best response's own schedule, or an array of
    ``H`` states of charge (MWh; each rounded to the nearest grid level). ``record`` is
    the record ``br`` was computed on. Charging below the first price and discharging
    above the second (each the largest move) is the best response's choice in every
    hour when its moves are whole-volume (``storage_moves="full"``); in an hour it waits,
    the hour's price lies between the two. (The two can cross where the value function
    on the grid is not concave; a two-sided env action sorts them.) Prices are clipped to [0, max bid price] (an
    empty storage offers at the top, a full one bids at 0). ``hours`` (indices into the
    record's hours): only those rows, with ``states`` an array of as many states of
    charge (e.g. one hour at a time in a closed loop). With the off-grid search (the
    default of :func:`best_response`) the prices are those of the whole feasible volume,
    the env's storage bid; a price-setting storage earns more by bidding its best move's
    price instead, see :class:`StorageResponsePolicy`."""
    if br.kind != "storage" or br.offer_threshold is None or br.soc_levels is None:
        raise ValueError(f"agent {br.agent!r}: break-even prices need the exact storage best response "
                         "(best_response(..., scenario=...))")
    h = np.arange(record.n_hours) if hours is None else np.asarray(hours, dtype=np.int64).reshape(-1)
    H = len(h)
    if isinstance(states, str):
        if states not in ("recorded", "best"):
            raise ValueError(f"states must be 'recorded', 'best' or an array of {H} states of charge, got {states!r}")
        soc = np.asarray(br.recorded_soc if states == "recorded" else br.soc, dtype=float)[h]
    else:
        soc = np.asarray(states, dtype=float)
        if soc.shape != (H,) or not np.all(np.isfinite(soc)):
            raise ValueError(f"states: expected {H} finite states of charge (MWh), got shape {soc.shape}")
    lv = np.asarray(br.soc_levels, dtype=float)
    step = lv[1] - lv[0] if len(lv) > 1 else 1.0
    g = np.clip(np.rint((soc - lv[0]) / step).astype(np.int64), 0, len(lv) - 1)
    mbp = float(record.max_bid_price)
    out = np.empty((H, 2))
    out[:, 0] = np.clip(np.nan_to_num(br.bid_threshold[h, g], nan=0.0, neginf=0.0, posinf=mbp), 0.0, mbp)
    out[:, 1] = np.clip(np.nan_to_num(br.offer_threshold[h, g], nan=mbp, neginf=0.0, posinf=mbp), 0.0, mbp)
    return out


class StorageResponsePolicy:
    """A storage agent's best response to a record's other bids within the env's own
    storage action (the whole feasible volume at one price, accepted in part where it
    sets the price), as bids for any hour and state of charge: the off-grid dynamic
    programme of :func:`best_response` with whole-volume moves (``storage_moves="full"``),
    read as a policy. :meth:`bids` gives the two-sided bid of each ``(hour, state of
    charge)``: the price of the best move on its side (the lowest offer, the highest
    charge bid among equally good ones) and, on the other side (both sides when waiting
    is best), the price nearest to the break-even price of the whole feasible volume (by
    the programme's value of the hours after) at which that side trades nothing. The
    programme knows that the env's storage cannot always wait: an offer even at the top
    of the bid range is sold when the price clears above it. A closed loop that bids these at the states it reaches follows the
    best response wherever the others bid as recorded.

    Args:
        record, agent: the record and the storage agent (index or name).
        scenario / storage, soc_points, tick, tables: as for :func:`best_response`.
    """

    def __init__(self, record: EpisodeRecord, agent: int | str, *, scenario=None, storage=None,
                 soc_points: int = 201, tick: float = 0.01, tables: "StorageTables | None" = None):
        i = _agent_index(record, agent)
        sl = _slots(record, i)
        if sl.kind != "storage":
            raise ValueError(f"agent {record.agents[i]!r} is a {sl.kind}, not a storage unit")
        params = _storage_params(record, i, scenario, storage)
        if params is None:
            raise ValueError(f"agent {record.agents[i]!r}: the storage policy needs the unit's data "
                             "(scenario= or storage=)")
        if not len(sl.s_cols) or not len(sl.d_cols):
            raise ValueError(f"storage agent {record.agents[i]!r} needs one supply and one demand bid in the record")
        levels, _ = soc_grid(params, soc_points)
        if len(levels) < 2:
            raise ValueError(f"agent {record.agents[i]!r}: the state-of-charge range holds one level only")
        self.agent, self.tick = record.agents[i], float(tick)
        self.max_bid_price = float(record.max_bid_price)
        if tables is not None:
            tables.begin(record, i)
        self._dp = _whole_volume_dp(record, sl, params, levels, tick, tables)
        self._profit = None

    @property
    def best_profit(self) -> float:
        """Profit (EUR) of following the policy from the initial state of charge against
        the recorded bids."""
        if self._profit is None:
            self._profit = float(self._dp.forward()[0].sum())
        return self._profit

    @property
    def recorded_soc(self) -> np.ndarray:
        """State of charge (MWh, ``(H+1,)``) at the start of each hour along the record's
        own bids (the states a policy that made the record visited)."""
        dp = self._dp
        return _recorded_soc(dp.record, dp.sl, dp.params)

    def bids(self, hours, states) -> np.ndarray:
        """Two-sided bids ``(N, 2)`` EUR/MWh (charge bid, discharge offer), each in
        ``[0, max_bid_price]``, for hours ``hours`` (indices into the record) at states of
        charge ``states`` (MWh), both ``(N,)``."""
        h = np.asarray(hours, dtype=np.int64).reshape(-1)
        soc = np.asarray(states, dtype=float).reshape(-1)
        if h.shape != soc.shape:
            raise ValueError(f"hours {h.shape} and states {soc.shape} must have the same length")
        dp, mbp, t = self._dp, self.max_bid_price, self.tick
        H = dp.record.n_hours
        if len(h) and (h.min() < 0 or h.max() >= H):
            raise ValueError(f"hours must lie in [0, {H}), got {h.min()}..{h.max()}")
        rec, sl = dp.record, dp.sl
        out = np.empty((len(h), 2))
        for n, (hh, s) in enumerate(zip(h, soc)):
            V = dp.Vs[hh + 1]
            vd, vc = float(dp.volumes(1, s)), float(dp.volumes(-1, s))
            here = float(dp.interp(V, s))
            offer = (rec.supply_cost[hh, sl.s_cols[0]] + (here - float(dp.interp(V, dp.soc_after(s, vd)))) / (vd * dp.dt)
                     if vd > VOLUME_TOL else mbp)
            bid = ((float(dp.interp(V, dp.soc_after(s, -vc))) - here) / (vc * dp.dt) - rec.demand_cost[hh, sl.d_cols[0]]
                   if vc > VOLUME_TOL else 0.0)
            _, q, price, b = dp.best_move(int(hh), float(s), anchor=(bid, offer))
            # the side that does not trade: the price nearest to its break-even price at
            # which nothing of it is accepted (against the recorded bids)
            C = dp.C[hh]
            if b <= 0:
                idle = np.abs(dp.outcomes(int(hh), 1, float(s))[0]) <= VOLUME_TOL
                if b < 0:
                    idle &= C >= price + t
                if idle.any():
                    offer = float(C[idle][np.abs(C[idle] - offer).argmin()])
            if b >= 0:
                idle = np.abs(dp.outcomes(int(hh), -1, float(s))[0]) <= VOLUME_TOL
                if b > 0:
                    idle &= C <= price - t
                if idle.any():
                    bid = float(C[idle][np.abs(C[idle] - bid).argmin()])
            if b > 0:
                offer = price
            elif b < 0:
                bid = price
            out[n] = bid, offer
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=mbp, neginf=0.0), 0.0, mbp)


# ---------------------------------------------------------------------------- plants
def _prefer_first(profit: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
    """Row-wise argmax preferring column 0 (the recorded bid) among ties; with
    ``distance`` (same shape), the tied column of the smallest distance instead."""
    best = profit.argmax(axis=1)
    rows = np.arange(profit.shape[0])
    top = profit[rows, best]
    tied = profit >= (top - 1e-9 * (1.0 + np.abs(top)))[:, None]
    if distance is not None:
        pick = np.where(tied, distance, np.inf).argmin(axis=1)
        return np.where(np.isfinite(top), pick, best)
    return np.where(tied[:, 0] & np.isfinite(profit[:, 0]), 0, best)


def _on_off_path(on_val: np.ndarray, off_val: np.ndarray, start_up: float, on0: bool,
                 rec_on: np.ndarray) -> np.ndarray:
    """Exact on/off schedule maximising ``sum(value) - start_up * starts``: hour ``h``
    earns ``on_val[h]`` when dispatched (a start when the hour before was off) and
    ``off_val[h]`` otherwise (``-inf`` = impossible). Values ``(H, 2)`` instead of
    ``(H,)`` depend on the state before the hour (column 0: not dispatched, 1:
    dispatched). Ties keep the recorded state ``rec_on``. Returns ``(H,)`` bool."""
    H = len(on_val)
    on_val = np.asarray(on_val, dtype=float).reshape(H, -1)[:, [0, -1]]
    off_val = np.asarray(off_val, dtype=float).reshape(H, -1)[:, [0, -1]]
    V = np.zeros(2)  # value from hour h on, given the state before hour h (0 off, 1 on)
    dec = np.zeros((H, 2), dtype=bool)
    for h in range(H - 1, -1, -1):
        newV = np.empty(2)
        for x in (0, 1):
            a_on = on_val[h, x] - (start_up if x == 0 else 0.0) + V[1]
            a_off = off_val[h, x] + V[0]
            tol = 1e-9 * (1.0 + abs(max(a_on, a_off))) if np.isfinite(max(a_on, a_off)) else 0.0
            if abs(a_on - a_off) <= tol:
                d = bool(rec_on[h])
            else:
                d = a_on > a_off
            dec[h, x] = d
            newV[x] = a_on if d else a_off
        V = newV
    path = np.empty(H, dtype=bool)
    x = int(on0)
    for h in range(H):
        path[h] = dec[h, x]
        x = int(path[h])
    return path


def _own_price_vectors(record: EpisodeRecord, sl: _Slots, tick: float, rec_price: np.ndarray,
                       plant_prices=None, live: np.ndarray | None = None) -> np.ndarray:
    """The own price vectors a best response tries in each hour, ``(H, P, k)`` with ``k``
    independent prices (a plant with two live bids: every ordered pair of candidates),
    the recorded one first (preferred among ties). ``live``: which of a plant's bids
    offer volume in some hour of the episode (default: of ``record``'s hours)."""
    n_live = len(sl.s_cols)
    if sl.kind == "plant":
        if live is None:
            live = (record.supply_volume[:, sl.s_cols] > VOLUME_TOL).any(axis=0)
        n_live = int(live.sum())
    if sl.kind == "plant" and n_live == 2:
        C = _mapped(_candidates(record, sl, tick, rec_price), record, plant_prices)
        a, b = np.triu_indices(C.shape[1])
        pa, pb = C[:, a], C[:, b]
        pairs = np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=2)
        recrow = np.clip(np.sort(rec_price, axis=1), sl.lo, sl.hi)[:, None, :]
        return np.concatenate([recrow, pairs], axis=1)
    first = rec_price[:, :1] if sl.kind != "plant" else rec_price[:, live.argmax() if len(live) else 0][:, None]
    C = _candidates(record, sl, tick, first)
    if sl.kind == "plant":
        C = _mapped(C, record, plant_prices)
    return np.concatenate([np.clip(np.where(np.isnan(first), sl.hi, first), sl.lo, sl.hi), C], axis=1)[:, :, None]


def _outcomes(record: EpisodeRecord, sl: _Slots, own: np.ndarray):
    """Profit and dispatch ``(H, P)`` of each own price vector ``own`` ``(H, P, k)`` of
    each hour. Each hour is computed on its own, so a row does not depend on which other
    hours are computed with it (:func:`plant_hour_values` computes some hours only)."""
    H, P = own.shape[:2]
    profit = np.empty((H, P))
    on = np.empty((H, P), dtype=bool)
    for h0, h1 in _hour_chunks(None, H, max(1, MAX_ROWS // P)):
        o = own[h0:h1]
        if sl.kind == "storage":
            s_price = np.repeat(o, len(sl.s_cols), axis=2)
            d_price = np.repeat(o, len(sl.d_cols), axis=2)
        else:
            s_price = o if own.shape[2] == len(sl.s_cols) else np.repeat(o, len(sl.s_cols), axis=2)
            d_price = np.zeros((h1 - h0, P, 0))
        profit[h0:h1], on[h0:h1] = _evaluate(record, sl, h0, h1, s_price, d_price)
    return profit, on


def plant_hour_values(record: EpisodeRecord, agent: int | str, hours=None, *, tick: float = 0.01):
    """A plant's best profit in each hour when it is dispatched, when it is not (EUR per
    step, without start-up costs, ``-inf`` where no own bid gets that outcome) and either
    way, the others' bids fixed: ``(on, off, either)``, each ``(H,)``, the inputs of the
    on/off programme of :func:`best_response` (whose best profit per hour is ``on`` or
    ``off`` along its schedule less the start-up costs, or ``either`` without a start-up
    cost; see :func:`plant_best_profit`). Only the hours
    ``hours`` (ascending) are computed where given, the rest NaN: an hour's values depend
    on that hour's bids only, so a search over profiles can keep the others'."""
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    if sl.kind != "plant":
        raise ValueError(f"agent {record.agents[i]!r} is a {sl.kind}, not a plant")
    H = record.n_hours
    if hours is not None and not len(hours):
        return tuple(np.full(H, np.nan) for _ in range(3))
    live = (record.supply_volume[:, sl.s_cols] > VOLUME_TOL).any(axis=0)
    sub = record if hours is None else _take_hours(record, np.asarray(hours, dtype=np.int64))
    rec_price = _rec_prices(sub, sl, np.ones(sub.n_hours, dtype=np.int8))
    own = _own_price_vectors(sub, sl, tick, rec_price, live=live)  # each hour's rows on their own
    profit, on = _outcomes(sub, sl, own)
    rows = np.arange(sub.n_hours)
    on_v, off_v = np.where(on, profit, -np.inf), np.where(on, -np.inf, profit)
    with np.errstate(invalid="ignore"):  # as best_response picks them (the recorded bid among near-ties)
        on_v, off_v = on_v[rows, _prefer_first(on_v)], off_v[rows, _prefer_first(off_v)]
        any_v = profit[rows, _prefer_first(profit)]
    if hours is None:
        return on_v, off_v, any_v
    out = tuple(np.full(H, np.nan) for _ in range(3))
    for full, part in zip(out, (on_v, off_v, any_v)):
        full[np.asarray(hours, dtype=np.int64)] = part
    return out


_HOURLY_FIELDS = ("hours", "times", "supply_price", "supply_volume", "supply_cost", "demand_price", "demand_volume",
                  "demand_cost", "fixed_demand", "clearing_price", "supply_accepted", "demand_accepted",
                  "agent_profit", "agent_prev_dispatch")


def _take_hours(record: EpisodeRecord, hours: np.ndarray) -> EpisodeRecord:
    """The record of some of its hours (rows ``hours``), for computations that take each
    hour on its own."""
    return replace(record, **{f: getattr(record, f)[hours] for f in _HOURLY_FIELDS})


def plant_best_profit(record: EpisodeRecord, agent: int | str, on: np.ndarray, off: np.ndarray,
                      either: np.ndarray) -> np.ndarray:
    """The best-response profit per hour ``(H,)`` of a plant from its hour values
    (:func:`plant_hour_values` of this record, or of records that bid the same in each
    hour): the on/off programme with its start-up cost, as :func:`best_response` (with
    ``plant_prices`` and ``cold_prices`` None) reports it, to the bit."""
    i = _agent_index(record, agent)
    suc = float(record.agent_start_up_cost[i])
    if suc == 0.0:
        return np.array(either, dtype=float)
    on0 = bool(record.agent_prev_dispatch[0, i] > 0)
    path = _on_off_path(on, off, suc, on0, dispatched(record, i))
    return np.where(path, on, off) - suc * _start_hours(path, on0)


_CHOICE_FIELDS = ("on", "off", "p_on", "p_off", "x_on", "x_off", "p_any", "x_any", "on_any")


def _plant_choices(record: EpisodeRecord, sl: _Slots, tick: float, rec_price: np.ndarray, plant_prices,
                   cold_prices, ties: str, live: np.ndarray | None = None) -> dict:
    """The per-hour part of a plant's best response, each hour on its own: for the
    prices it bids warm (``plant_prices``) and, with ``cold_prices``, cold, the best value
    when dispatched (``on``, ``-inf`` where none is) and when not (``off``), the profit
    (``p_*``) and price vector (``x_*``, ``(H, k)``) of those bids, and of the best bid
    either way (``*_any``, ``on_any``: whether it is dispatched); keys ``"warm"``,
    ``"cold"`` (None without ``cold_prices``) and ``"P"``, the price vectors tried per hour."""
    own = _own_price_vectors(record, sl, tick, rec_price, plant_prices, live=live)
    rows = np.arange(record.n_hours)
    cost = record.supply_cost[:, sl.s_cols]  # (H, own supply columns)
    c = cost if own.shape[2] == cost.shape[1] else cost[:, :1]

    def pick(own):
        profit, on = _outcomes(record, sl, own)
        dist = np.abs(own - c[:, None, :]).sum(axis=2) if ties == "cost" else None  # (H, P)
        on_val = np.where(on, profit, -np.inf)
        off_val = np.where(on, -np.inf, profit)
        b_on, b_off, b_any = _prefer_first(on_val, dist), _prefer_first(off_val, dist), _prefer_first(profit, dist)
        return {"on": on_val[rows, b_on], "off": off_val[rows, b_off], "p_on": profit[rows, b_on],
                "p_off": profit[rows, b_off], "x_on": own[rows, b_on], "x_off": own[rows, b_off],
                "p_any": profit[rows, b_any], "x_any": own[rows, b_any], "on_any": on[rows, b_any]}
    return {"warm": pick(own), "cold": None if cold_prices is None else pick(_mapped_rows(own, record, cold_prices)),
            "P": int(own.shape[1])}


def _plant_assemble(record: EpisodeRecord, i: int, ch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plant's best profit per hour, price vectors ``(H, k)`` and dispatch from its
    per-hour choices (:func:`_plant_choices`): the on/off programme with its start-up
    cost, where it has one (ties keep the recorded state)."""
    w, cold = ch["warm"], ch["cold"]
    suc = float(record.agent_start_up_cost[i])
    if suc == 0.0:
        return w["p_any"], w["x_any"], np.asarray(w["on_any"], dtype=bool)
    rec_on = dispatched(record, i)
    on0 = bool(record.agent_prev_dispatch[0, i] > 0)
    if cold is None:
        path = _on_off_path(w["on"], w["off"], suc, on0, rec_on)
        profit = np.where(path, w["p_on"], w["p_off"])
        x = np.where(path[:, None], w["x_on"], w["x_off"])
    else:  # each hour's values in the state it is in: cold after an hour without dispatch
        path = _on_off_path(np.stack([cold["on"], w["on"]], axis=1), np.stack([cold["off"], w["off"]], axis=1),
                            suc, on0, rec_on)
        warm = np.concatenate([[on0], path[:-1]])
        profit = np.where(path, np.where(warm, w["p_on"], cold["p_on"]), np.where(warm, w["p_off"], cold["p_off"]))
        x = np.where(path[:, None], np.where(warm[:, None], w["x_on"], cold["x_on"]),
                     np.where(warm[:, None], w["x_off"], cold["x_off"]))
    return profit - suc * _start_hours(path, on0), x, path


def plant_response_prices(record: EpisodeRecord, agent: int | str, *, tick: float = 0.01, ties: str = "recorded",
                          plant_prices=None, cold_prices=None, keep: dict | None = None) -> np.ndarray:
    """A plant's best-response prices ``(H, 2)`` (NaN where it has one bid), as
    :func:`best_response` reports them in ``best_price`` with the same arguments, to the
    bit. ``keep``, a dict kept between calls on records of the same market (and the same
    maps): the hours that bid as in the last record are not computed again (each hour's
    choices depend on that hour's bids only)."""
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    if sl.kind != "plant":
        raise ValueError(f"agent {record.agents[i]!r} is a {sl.kind}, not a plant")
    live = (record.supply_volume[:, sl.s_cols] > VOLUME_TOL).any(axis=0)
    old = None if keep is None else keep.get("record")
    hours = None
    same_maps = old is not None and (keep["choices"]["cold"] is None) == (cold_prices is None)
    if same_maps and np.array_equal(keep["live"], live):
        hours = changed_hours(record, old)
    if hours is None or len(hours) > 0:
        sub = record if hours is None else _take_hours(record, hours)
        rec_price = _rec_prices(sub, sl, np.ones(sub.n_hours, dtype=np.int8))
        fresh = _plant_choices(sub, sl, tick, rec_price, plant_prices, cold_prices, ties, live=live)
        if hours is None:
            ch = fresh
        else:
            ch = {}
            for state in ("warm", "cold"):
                if fresh[state] is None:
                    ch[state] = None
                    continue
                ch[state] = {f: v.copy() for f, v in keep["choices"][state].items()}
                for f in _CHOICE_FIELDS:
                    ch[state][f][hours] = fresh[state][f]
    else:
        ch = keep["choices"]
    if keep is not None:
        keep.update(record=record, live=live, choices=ch)
    _, bp, _ = _plant_assemble(record, i, ch)
    out = np.full((record.n_hours, 2), np.nan)
    out[:] = bp if bp.shape[1] == 2 else bp[:, :1]
    return out


# ---------------------------------------------------------------------------- public
def best_response(
    record: EpisodeRecord,
    agent: int | str,
    *,
    tick: float = 0.01,
    scenario=None,
    storage: "StorageParams | dict[str, StorageParams] | None" = None,
    soc_points: int = 201,
    storage_moves: str = "any",
    ties: str = "recorded",
    storage_off_grid: bool = True,
    plant_prices=None,
    cold_prices=None,
    tables: "StorageTables | None" = None,
) -> BestResponse:
    """The agent's best response over the recorded episode to the recorded bids of all
    other units.

    Args:
        record: an :class:`~envs.record.EpisodeRecord`.
        agent: the agent's index in ``record.agents`` or its name.
        tick: how far below (above, for a demand bid) another bid's price the agent bids
            to undercut (outbid) it, EUR/MWh; the reported profit can fall short of the
            unattainable supremum by at most ``tick`` times the agent's accepted MWh.
        scenario: the :class:`~envs.data.Scenario` the record comes from; needed for the
            exact storage best response (power limits, efficiencies, state-of-charge
            limits and initial state of charge of the storage unit).
        storage: alternatively, the storage unit's :class:`StorageParams` (or a dict by
            agent or unit name).
        soc_points: state-of-charge grid size of the storage dynamic programme (see
            :func:`soc_grid`).
        storage_moves: ``"any"`` (default): every net injection the grid and the power
            limits allow. ``"full"``: only idling, the largest charge or discharge move of
            the grid, or a move onto the lowest/highest level within the power limits --
            what the env's storage action (one price for the whole feasible volume) does
            whenever its bid is accepted in full (up to the grid: the largest move is the
            largest grid step within the power limit), so, up to the grid, a storage
            policy of the env can reach at least this profit against the same bids and at
            most the ``"any"`` one.
        storage_off_grid: also search schedules whose states of charge leave the grid
            (see "Off the grid" in the module docstring; with ``storage_moves="full"``
            its whole-volume moves only) and report the better of the two; ``False``:
            the grid's schedule only (exact on the grid, faster).
        ties: which of several equally profitable bids a plant or renewable reports:
            ``"recorded"`` (default) its recorded bid when that is among them, else the
            first candidate; ``"cost"`` the one nearest its marginal cost (smallest sum of
            the absolute differences of its prices to its costs): a canonical choice that
            changes smoothly from hour to hour, e.g. for a teacher that policies imitate.
            Where the bids tie for the agent, they usually clear the market the same way.
            Storage is not affected.
        plant_prices: for a plant, restrict its best response to the offer prices an env
            can actually bid: a function ``(prices, hour) -> prices`` applied to every
            candidate price of each hour (``hour`` is the scenario's hour,
            ``record.hours``), e.g. :meth:`envs.MarketCore.undercut` for an env with
            ``plant_bids="undercut"``, whose plants can only bid just below a rule offer
            or above all of them. The result is then the best response within the
            env's action space, which a policy of that env can reproduce exactly (a
            teacher's target); the unrestricted one (``None``, default) is the yardstick
            of exploitability. Other unit kinds are not affected.
        cold_prices: for a plant with a start-up cost, the map ``(prices, hour) ->
            prices`` its offers go through in an hour after one without dispatch, in
            place of ``plant_prices`` (the env's ``start_up_markup_hours``: a cold plant
            offers at no less than its marginal cost plus the markup, then on the grid;
            see :func:`cold_offer_map`). The on/off programme then takes each hour's
            best bid from the prices the plant can bid in the state it is in, so the
            result is the best response within such an env's actions. ``None``
            (default): the same prices in both states.
        tables: for a storage agent, a :class:`StorageTables` to keep its per-hour tables
            for the next call on another record of the same market (same result, faster
            where few hours differ).

    Returns:
        :class:`BestResponse` (see the module docstring for exactness and limits).
        A storage agent without ``scenario``/``storage`` gets the approximate per-hour
        analysis (``exact=False``).
    """
    if not tick > 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    if ties not in ("recorded", "cost"):
        raise ValueError(f"ties must be 'recorded' or 'cost', got {ties!r}")
    if storage_moves not in ("any", "full"):
        raise ValueError(f"storage_moves must be 'any' or 'full', got {storage_moves!r}")
    if record.n_hours == 0:
        raise ValueError("the record holds no hours")
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    H = record.n_hours
    mbp = float(record.max_bid_price)
    if sl.kind == "storage":
        params = _storage_params(record, i, scenario, storage)
        if params is not None:
            return _storage_best_response(record, sl, params, tick, soc_points, storage_moves, storage_off_grid, tables)
        direction = _storage_direction(record, sl)
    else:
        direction = np.ones(H, dtype=np.int8)
    rec_price = _rec_prices(record, sl, direction)
    rec_profit = recorded_profit(record, i)

    rows = np.arange(H)
    if sl.kind == "plant":
        choices = _plant_choices(record, sl, tick, rec_price, plant_prices, cold_prices, ties)
        best_profit, bp, best_on = _plant_assemble(record, i, choices)
        P = choices["P"]
    else:
        own = _own_price_vectors(record, sl, tick, rec_price, plant_prices)
        P = own.shape[1]
        profit, on = _outcomes(record, sl, own)
        dist = None
        if ties == "cost" and sl.kind != "storage":
            cost = record.supply_cost[:, sl.s_cols]  # (H, own supply columns)
            c = cost if own.shape[2] == cost.shape[1] else cost[:, :1]
            dist = np.abs(own - c[:, None, :]).sum(axis=2)  # (H, P)
        best = _prefer_first(profit, dist)
        best_profit = profit[rows, best]
        best_on = None
        bp = own[rows, best]  # (H, k)
    best_price = np.full((H, 2), np.nan)
    best_action = np.full((H, 2), np.nan)
    if sl.kind == "plant":
        best_price[:] = bp if bp.shape[1] == 2 else bp[:, :1]
        best_action[:] = best_price / mbp
    elif sl.kind == "storage":
        best_price[:, 0] = bp[:, 0]
        best_action[:, 0] = np.where(direction < 0, -1.0, 1.0) * bp[:, 0] / mbp
    else:
        best_price[:, 0] = bp[:, 0]
        best_action[:, 0] = bp[:, 0] / mbp
    return BestResponse(
        agent=record.agents[i],
        agent_index=i,
        kind=sl.kind,
        exact=sl.kind != "storage",
        tick=float(tick),
        mechanism=record.mechanism,
        hours=np.asarray(record.hours),
        best_profit_per_hour=best_profit,
        best_price=best_price,
        best_action=best_action,
        recorded_profit_per_hour=rec_profit,
        recorded_price=rec_price,
        direction=direction,
        n_candidates=P,
        best_on=None if best_on is None else np.asarray(best_on, dtype=bool),
    )


def exploitability(
    record: EpisodeRecord,
    *,
    tick: float = 0.01,
    scenario=None,
    storage: "dict[str, StorageParams] | None" = None,
    soc_points: int = 201,
    storage_off_grid: bool = True,
) -> Exploitability:
    """Best response of every learning agent of the record (see :func:`best_response`
    for ``scenario``/``storage``/``soc_points``/``storage_off_grid``), and the joint exploitability
    ``sum(BR - recorded) / sum(|recorded|)`` (0 at a Nash equilibrium of the episode up to
    ``tick`` and the storage grid).

    An agent's best-response profit is never reported below its recorded profit: the
    recorded bids are themselves a response, and only a storage grid that misses the
    recorded (off-grid) state-of-charge path can find less."""
    kw = dict(tick=tick, scenario=scenario, storage=storage, soc_points=soc_points, storage_off_grid=storage_off_grid)
    return exploitability_from(record, best_responses(record, record.agents, **kw)[0])


def storage_response_bids(record: EpisodeRecord, agent: int | str, n_hours: int | None = None, **kw) -> np.ndarray:
    """The two-sided bids ``(n_hours, 2)`` EUR/MWh (charge bid, discharge offer) of the
    storage agent's :class:`StorageResponsePolicy` (keywords ``kw``: ``scenario``,
    ``storage``, ``soc_points``, ``tick``) at the states of charge the record visited, for
    its first ``n_hours`` hours (all when None): the best-response teacher's storage
    targets before they are mapped to the env's grid
    (:meth:`agents.learner.Learner.refresh_teacher`). A function of this module, so that
    :class:`agents.analysis_pool.AnalysisPool` can hand it to its worker process."""
    policy = StorageResponsePolicy(record, agent, **kw)
    H = record.n_hours if n_hours is None else int(n_hours)
    return policy.bids(np.arange(H), policy.recorded_soc[:H])


_WORKER_CALLS = {"storage_response_bids": storage_response_bids}
_LAST_RECORD = "<the record of the worker's last best-response job>"
"""An argument of a worker call that stands for the record the worker received last
(sent once, not pickled again, and the object its cached programmes belong to)."""
"""Functions of this module that the analysis worker runs on request (``("call", name,
args, kw)``), besides the best responses."""


def _best_responses_server(conn) -> None:
    """Target of the worker process of :class:`agents.analysis_pool.AnalysisPool`: answer
    each ``(record, agents, kw)`` received through the pipe end ``conn`` with
    ``("ok", best_responses(record, agents, **kw))``, and each ``("call", name, args, kw)``
    with ``("ok", f(*args, **kw))`` for ``f`` the function of :data:`_WORKER_CALLS` of that
    name (an argument :data:`_LAST_RECORD` replaced by the record of the last best-response
    job; :data:`_DP_CACHE` on), or either with ``("error", message)``, until it receives None or the pipe
    closes. Lives here, not in ``agents``, so that the process imports NumPy and ``envs``
    only, not torch. It starts with Ctrl-C ignored (:func:`agents.reference.start_process`):
    the parent stops it."""
    global _DP_CACHE_ON
    _DP_CACHE_ON = True
    last_record = None  # the record of the last best-response job
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            try:
                if len(job) == 4 and job[0] == "call":
                    args = tuple(last_record if isinstance(a, str) and a == _LAST_RECORD else a for a in job[2])
                    msg = ("ok", _WORKER_CALLS[job[1]](*args, **job[3]))
                else:
                    last_record = job[0]
                    msg = ("ok", best_responses(*job[:2], **job[2]))
            except Exception as exc:  # noqa: BLE001 -- the parent computes it itself and sees the error
                msg = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(msg)
    finally:
        conn.close()


def storage_parts_apply(record: EpisodeRecord, agent: int | str, *, scenario=None, storage=None,
                        storage_off_grid: bool = True, **_ignored) -> bool:
    """Whether :func:`best_response` of ``agent`` with these keywords is an exact storage
    best response with off-grid programmes, whose two parts (:func:`storage_response_part`)
    two processes can compute at the same time."""
    i = _agent_index(record, agent)
    return (record.agent_kind[i] == "storage" and bool(storage_off_grid)
            and _storage_params(record, i, scenario, storage) is not None)


def storage_response_part(record: EpisodeRecord, agent: int | str, part: str, *, tick: float = 0.01, scenario=None,
                          storage=None, soc_points: int = 201, storage_moves: str = "any",
                          storage_off_grid: bool = True, **_ignored) -> dict | None:
    """One part of a storage agent's exact best response (:func:`best_response` with the
    same keywords; see :func:`storage_parts_apply`): ``"grid"``, the programme on the
    state-of-charge grid, or ``"off_grid"``, the off-grid programmes (None without them).
    :func:`storage_response_join` makes the best response of the two, the same as
    :func:`best_response` computes in one go."""
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    params = _storage_params(record, i, scenario, storage)
    if sl.kind != "storage" or params is None:
        raise ValueError(f"agent {record.agents[i]!r} has no exact storage best response to split (a storage unit "
                         "with its unit data, from scenario= or storage=)")
    if part == "grid":
        return _storage_grid_part(record, sl, params, tick, soc_points, storage_moves)
    if part == "off_grid":
        return _storage_off_grid_part(record, sl, params, tick, soc_points, storage_moves) if storage_off_grid else None
    raise ValueError(f"part must be 'grid' or 'off_grid', got {part!r}")


def storage_response_join(record: EpisodeRecord, agent: int | str, grid: dict, off: dict | None, *,
                          tick: float = 0.01, scenario=None, storage=None, **_ignored) -> BestResponse:
    """The storage best response from its parts (:func:`storage_response_part`), as
    :func:`best_response` with the same keywords returns it."""
    i = _agent_index(record, agent)
    return _storage_join(record, _slots(record, i), _storage_params(record, i, scenario, storage), tick, grid, off)


def best_responses(record: EpisodeRecord, agents, *, parts: dict | None = None,
                   **kw) -> tuple[dict[str, BestResponse], dict[str, float]]:
    """:func:`best_response` (with keywords ``kw``) of each of ``agents`` (names or indices)
    to the same record, and the seconds each took, both by agent name. The unit of work
    that :class:`agents.analysis_pool.AnalysisPool` hands to its worker process (a
    function of this module, so that the process imports NumPy and ``envs`` only).
    ``parts``, ``{name: "grid" | "off_grid"}``: for these storage agents only that part of
    the best response (:func:`storage_response_part`) in place of it."""
    out, seconds = {}, {}
    for a in agents:
        i = _agent_index(record, a)
        t0 = time.perf_counter()
        part = (parts or {}).get(record.agents[i])
        out[record.agents[i]] = (storage_response_part(record, i, part, **kw) if part is not None
                                 else best_response(record, i, **kw))
        seconds[record.agents[i]] = time.perf_counter() - t0
    return out, seconds


def exploitability_from(record: EpisodeRecord, responses: dict[str, BestResponse]) -> Exploitability:
    """:class:`Exploitability` from already computed best responses of every agent of
    ``record`` (all against this record's bids)."""
    if set(responses) != set(record.agents):
        raise ValueError(f"responses for {sorted(responses)} do not match the record's agents {list(record.agents)}")
    responses = {a: responses[a] for a in record.agents}
    rec = np.array([r.recorded_profit for r in responses.values()])
    br = np.maximum(np.array([r.best_profit for r in responses.values()]), rec)
    gain = br - rec
    denom = float(np.abs(rec).sum())
    total = float(gain.sum())
    if denom > 1e-9:
        joint = total / denom
    else:
        joint = 0.0 if total <= 1e-9 else float("inf")
    return Exploitability(
        agents=tuple(record.agents),
        kinds=tuple(record.agent_kind),
        recorded_profit=rec,
        best_response_profit=br,
        gain=gain,
        share=np.array([_share(r, b) for r, b in zip(rec, br)]),
        exact=np.array([r.exact for r in responses.values()], dtype=bool),
        joint=joint,
        responses=responses,
    )


def br_share(ex: Exploitability) -> float:
    """All agents together: total recorded profit / total best-response profit (the
    ``eval/br_share`` headline; nan when the total best-response profit is not positive)."""
    total = float(np.sum(ex.best_response_profit))
    return float(np.sum(ex.recorded_profit)) / total if total > 0 else float("nan")


# ---------------------------------------------------------------------------- brute force
def _reference_hour(record: EpisodeRecord, sl: _Slots, h: int, own_price, s_vol=None, d_vol=None):
    """Clear hour ``h`` with the loop-based :func:`envs.market.reference_clear`, the agent
    bidding ``own_price`` (one price, or ``(p_in, p_fx)`` for a plant) and optionally
    the own volumes ``s_vol``/``d_vol`` (MW; default: as recorded). Returns the agent's
    (profit per step without start-up cost, accepted supply MW, accepted demand MW)."""
    pab = record.mechanism == "pay_as_bid"
    clip = lambda p: min(max(p, record.price_floor), record.price_cap)  # noqa: E731
    s_own = list(sl.s_cols)
    d_own = list(sl.d_cols)
    sup, own_s = [], []
    for j in range(record.supply_price.shape[1]):
        p, v = float(record.supply_price[h, j]), float(record.supply_volume[h, j])
        if j in s_own:
            k = s_own.index(j)
            p = own_price[k] if len(own_price) > 1 else own_price[0]
            if s_vol is not None:
                v = s_vol
            own_s.append((len(sup), j, p))
        sup.append((p, v))
    dem, own_d = [(record.price_cap, float(record.fixed_demand[h]))], []
    for j in range(record.demand_price.shape[1]):
        p, v = float(record.demand_price[h, j]), float(record.demand_volume[h, j])
        if j in d_own:
            p = own_price[0]
            if d_vol is not None:
                v = d_vol
            own_d.append((len(dem), j, p))
        dem.append((p, v))
    price, _, s_acc, d_acc, _ = reference_clear(sup, dem, price_cap=record.price_cap, price_floor=record.price_floor)
    profit, qs, qd = 0.0, 0.0, 0.0
    for pos, j, p in own_s:
        pay = clip(p) if pab else price
        profit += s_acc[pos] * (pay - record.supply_cost[h, j])
        qs += s_acc[pos]
    for pos, j, p in own_d:
        pay = clip(p) if pab else price
        profit -= d_acc[pos] * (pay + record.demand_cost[h, j])
        qd += d_acc[pos]
    if sl.kind == "plant" and record.agent_min_output is not None and qs > 0:  # raised to min output, unpaid
        runs = min(float(record.agent_min_output[sl.i]), sum(float(record.supply_volume[h, j]) for j in s_own))
        if qs < runs:
            profit -= (runs - qs) * float(record.supply_cost[h, s_own[0]])
    return profit * record.dt, qs, qd


def brute_force_best_response(record: EpisodeRecord, agent: int | str, grid, *, scenario=None,
                              storage=None, soc_points: int = 5) -> BestResponse:
    """Slow reference for tests, written independently of :func:`best_response`: every
    hour is cleared with the loop-based :func:`envs.market.reference_clear` for every own
    price of ``grid`` (clipped to the agent's bid range; a plant tries every pair
    ``p_in <= p_fx``), and whole-episode choices are enumerated:

    * a plant with a start-up cost: every on/off pattern of the ``H`` hours (``2**H``;
      at most 16 hours), each hour taking its best grid bid consistent with the pattern;
    * a storage agent with ``scenario``/``storage``: every state-of-charge path over the
      grid of :func:`soc_grid` (at most 100,000 paths), each hour's net injection sold
      (bought) at the best grid price that gets it accepted in full;
    * otherwise hour by hour (storage without parameters: the recorded direction only).
    """
    import itertools

    i = _agent_index(record, agent)
    sl = _slots(record, i)
    H = record.n_hours
    mbp = float(record.max_bid_price)
    g = np.unique(np.clip(np.asarray(grid, dtype=np.float64), sl.lo, sl.hi))
    params = _storage_params(record, i, scenario, storage) if sl.kind == "storage" else None
    rec_dir = _storage_direction(record, sl) if sl.kind == "storage" else np.ones(H, dtype=np.int8)
    rec_price = _rec_prices(record, sl, rec_dir)
    common = dict(agent=record.agents[i], agent_index=i, kind=sl.kind, tick=0.0, mechanism=record.mechanism,
                  hours=np.asarray(record.hours), recorded_profit_per_hour=recorded_profit(record, i),
                  recorded_price=rec_price)

    if params is not None:  # storage: enumerate state-of-charge paths
        levels, g0 = soc_grid(params, soc_points)
        ks, qs = _storage_moves(params, levels, record.dt)
        val = np.full((H, len(qs)), -np.inf)
        vp = np.full((H, len(qs)), np.nan)
        for h in range(H):
            for m, q in enumerate(qs):
                if q == 0:
                    val[h, m], vp[h, m] = 0.0, np.nan
                    continue
                for p in g:
                    prof, a_s, a_d = _reference_hour(record, sl, h, (p,), s_vol=max(q, 0.0), d_vol=max(-q, 0.0))
                    if abs((a_s - a_d) - q) <= 1e-7 * (1 + abs(q)) and prof > val[h, m]:
                        val[h, m], vp[h, m] = prof, p
        n_paths = len(ks) ** H
        if n_paths > 100_000:
            raise ValueError(f"{n_paths} storage paths: too many for the brute force")
        best_tot, best_path = -np.inf, None
        for path in itertools.product(range(len(ks)), repeat=H):
            lvl, tot = g0, 0.0
            for h, m in enumerate(path):
                lvl -= ks[m]
                if not 0 <= lvl < len(levels):
                    tot = -np.inf
                    break
                tot += val[h, m]
            if tot > best_tot:
                best_tot, best_path = tot, path
        m = np.array(best_path)
        q = qs[m]
        bp = np.full((H, 2), np.nan)
        bp[:, 0] = vp[np.arange(H), m]
        return BestResponse(exact=True, best_profit_per_hour=val[np.arange(H), m], best_price=bp,
                            best_action=np.where(q < 0, -1.0, 1.0)[:, None] * bp / mbp, direction=np.sign(q).astype(np.int8),
                            n_candidates=len(g), best_volume=q, soc=None, soc_points=len(levels), **common)

    if sl.kind == "plant" and len(sl.s_cols) == 2:
        combos = [(g[a], g[b]) for a in range(len(g)) for b in range(a, len(g))]
    else:
        combos = [(p,) for p in g]
    prof = np.full((H, len(combos)), -np.inf)
    on = np.zeros((H, len(combos)), dtype=bool)
    for h in range(H):
        for c, combo in enumerate(combos):
            if sl.kind == "storage":  # recorded direction only
                p, a_s, _ = _reference_hour(record, sl, h, combo)
            else:
                p, a_s, _ = _reference_hour(record, sl, h, combo)
            prof[h, c], on[h, c] = p, a_s > 0
    suc = float(record.agent_start_up_cost[i]) if sl.kind == "plant" else 0.0
    rows = np.arange(H)
    if suc != 0.0:
        if H > 16:
            raise ValueError(f"{H} hours: 2**H on/off patterns are too many for the brute force")
        on_v = np.where(on, prof, -np.inf)
        off_v = np.where(on, -np.inf, prof)
        best_tot, best_pat = -np.inf, None
        for pat in itertools.product((False, True), repeat=H):
            x, tot = bool(record.agent_prev_dispatch[0, i] > 0), 0.0
            for h, o in enumerate(pat):
                tot += (on_v[h].max() - (suc if not x else 0.0)) if o else off_v[h].max()
                x = o
            if tot > best_tot:
                best_tot, best_pat = tot, pat
        pat = np.array(best_pat)
        best = np.where(pat, on_v.argmax(axis=1), off_v.argmax(axis=1))
        best_profit = prof[rows, best] - suc * _start_hours(pat, record.agent_prev_dispatch[0, i] > 0)
    else:
        best = prof.argmax(axis=1)
        best_profit = prof[rows, best]
    best_price = np.full((H, 2), np.nan)
    for h in range(H):
        combo = combos[best[h]]
        best_price[h, : len(combo)] = combo
    act = best_price / mbp
    if sl.kind == "storage":
        act[:, 0] *= np.where(rec_dir < 0, -1.0, 1.0)
    return BestResponse(exact=sl.kind != "storage", best_profit_per_hour=best_profit, best_price=best_price,
                        best_action=act, direction=rec_dir, n_candidates=len(combos), **common)


# ---------------------------------------------------------------------------- equilibrium
_EQ_NAMES = ("equilibrium", "EquilibriumResult", "EquilibriumDistance", "EquilibriumNotConverged",
             "distance_to_equilibrium")


def __getattr__(name):  # the equilibrium reference lives in envs.equilibrium (imported lazily)
    if name in _EQ_NAMES:
        from . import equilibrium as _eq

        return getattr(_eq, name)
    raise AttributeError(f"module 'envs.analysis' has no attribute {name!r}")


# ---------------------------------------------------------------------------- user-facing summary
def max_relative_gain(ex: Exploitability) -> tuple[float, str]:
    """Largest ``gain / max(|recorded|, |best response|)`` over the agents and the agent
    that has it (``(0.0, "")`` without agents)."""
    if not len(ex.agents):
        return 0.0, ""
    den = np.maximum(np.maximum(np.abs(ex.recorded_profit), np.abs(ex.best_response_profit)), 1e-9)
    rel = np.maximum(ex.gain, 0.0) / den
    k = int(np.argmax(rel))
    return float(rel[k]), ex.agents[k]


def deviation_verdict(ex: Exploitability, *, threshold: float = 0.05, revenue: np.ndarray | None = None) -> str:
    """One plain line for a final summary: "near equilibrium: no agent can gain more than
    X % by deviating alone" when the largest relative gain is at most ``threshold``,
    else which agent can gain how much. ``revenue`` (``(n,)`` EUR, e.g.
    :meth:`~envs.record.EpisodeRecord.agent_revenue`) adds that gain as a share of the
    agent's sales: where equilibrium profits are near zero (a competitive market) a gain
    of a few thousand EUR is many times the profit but a sliver of the revenue."""
    rel, agent = max_relative_gain(ex)
    if rel <= threshold:
        return f"near equilibrium: no agent can gain more than {100 * rel:.1f} % by deviating alone"
    k = ex.agents.index(agent)
    line = (f"not at equilibrium: {agent} can gain {ex.gain[k]:,.0f} EUR by deviating alone (it earns "
            f"{ex.recorded_profit[k]:,.0f} EUR, {ex.best_response_profit[k]:,.0f} EUR with its best response")
    if revenue is not None and revenue[k] > 0:
        pct = 100 * ex.gain[k] / revenue[k]
        spec = ".2g" if pct < 99.5 else ",.0f"  # two significant digits, never "1.2e+02"
        line += f"; the gain is {pct:{spec}} % of its sales of {revenue[k]:,.0f} EUR"
    return line + ")"


def _start_hours(on: np.ndarray, on_before: bool) -> np.ndarray:
    """``(H,)`` bool: the hours where the schedule ``on`` switches from off to on (the
    state before its first hour: ``on_before``); each costs one start-up."""
    prev = np.concatenate([[bool(on_before)], on[:-1]])
    return on & ~prev


def _starts(on: np.ndarray, on_before: bool) -> int:
    """Number of starts of the schedule ``on`` (:func:`_start_hours`)."""
    return int(np.sum(_start_hours(on, on_before)))


def dispatched(record: EpisodeRecord, i: int) -> np.ndarray:
    """``(H,)`` bool: whether agent ``i`` sold anything in each recorded step (for a
    plant: it ran, as the env counts a start)."""
    return record.supply_accepted[:, record.agent_supply_columns(i)].sum(axis=1) > 0


def on_off_comparisons(record: EpisodeRecord, responses: dict[str, BestResponse]) -> dict[str, dict[str, float]]:
    """:func:`on_off_comparison` of every agent in ``responses`` (best responses to
    ``record``, by agent name) that has one: the plants with start-up costs."""
    out = {a: on_off_comparison(record, br) for a, br in responses.items()}
    return {a: o for a, o in out.items() if o is not None}


def on_off_comparison(record: EpisodeRecord, br: BestResponse) -> dict[str, float] | None:
    """How a plant with start-up costs ran in ``record`` against its best response
    ``br`` (:func:`best_response` of the same record): hours dispatched and starts of
    each (hours: steps times the step length), and the cost of a start. For a plant whose best response runs long blocks
    while the policy starts every morning (or never), this says where its gap comes
    from. None for other units, plants without start-up costs and best responses
    without an on/off schedule."""
    i = br.agent_index
    suc = float(record.agent_start_up_cost[i])
    if br.kind != "plant" or suc <= 0 or br.best_on is None:
        return None
    before = bool(record.agent_prev_dispatch[0, i] > 0)
    on = dispatched(record, i)
    best_on = np.asarray(br.best_on, dtype=bool)
    dt = float(record.dt)  # a step's length in hours: 15-minute steps count a quarter hour each
    return {"hours_on": float(on.sum() * dt), "starts": _starts(on, before),
            "best_response_hours_on": float(best_on.sum() * dt), "best_response_starts": _starts(best_on, before),
            "start_up_cost": suc}


# where a learner's gain from deviating lies, hour by hour (:func:`gain_by_hours`)
SELLER_HOUR_TYPES = {
    "best_response_raises_price": "both sell, its best response sets a higher price",
    "best_response_sells_more": "both sell, its best response sells more at no higher price",
    "both_sell_other": "both sell, other",
    "idle_where_best_response_sells": "idle where its best response sells",
    "sells_where_best_response_idles": "sells where its best response is idle",
    "both_idle": "both idle",
    "start_ups": "start-up costs, its starts against its best response's",
}
STORAGE_HOUR_TYPES = {
    "opposite_direction": "it and its best response trade in opposite directions",
    "same_direction": "both trade in the same direction",
    "only_best_response_trades": "only its best response trades",
    "only_it_trades": "only it trades",
    "both_idle": "neither trades",
}
PRICE_EPS = 0.005  # EUR/MWh: clearing prices closer than half a cent count as equal


def gain_by_hours(record: EpisodeRecord, br: BestResponse) -> dict[str, dict[str, float]] | None:
    """Where agent ``br.agent``'s gain from deviating alone lies: its hours split by how
    the recorded episode and its best response ``br`` (:func:`best_response` of the same
    record) differ, with the hours (steps times the step length) and the gain (EUR,
    best-response profit less recorded profit, start-ups included) of each type.

    Plants and renewables (:data:`SELLER_HOUR_TYPES`): whether each sells, and where both
    do, whether the best response sets a higher clearing price (it withholds more) or
    sells more at a price no higher (it withholds less). The best response's price and
    volume come from clearing each hour again with its bids; a plant with start-up costs
    counts as selling where its best response's on/off schedule runs it, and its start-up
    costs are split off the hours into ``start_ups``: the gain ``start_up_cost x (its
    starts - its best response's)``, over the hours where only one of the two starts (the
    other types then hold the energy margins alone, and their hours add up to the
    episode). Storage
    (:data:`STORAGE_HOUR_TYPES`, exact best responses only): the direction of its net
    trade and of the best response's. ``None`` for a storage unit without an exact best
    response. The gains of all types add up to ``br.gain``. Under ``pay_as_bid`` "price"
    is still the hour's clearing price. Records of zonal/nodal markets are analysed by
    :mod:`envs.network` instead, which keeps no per-hour best responses."""
    i = br.agent_index
    sl = _slots(record, i)
    g = br.gain_per_hour
    dt = float(record.dt)
    tol = VOLUME_TOL
    acc_s = record.supply_accepted[:, sl.s_cols].sum(axis=1)
    if sl.kind == "storage":
        if br.best_volume is None:
            return None
        net = acc_s - record.demand_accepted[:, sl.d_cols].sum(axis=1)
        mine, best = np.sign(np.where(np.abs(net) > tol, net, 0.0)), np.sign(np.where(np.abs(br.best_volume) > tol, br.best_volume, 0.0))
        masks = {
            "opposite_direction": mine * best < 0,
            "same_direction": mine * best > 0,
            "only_best_response_trades": (mine == 0) & (best != 0),
            "only_it_trades": (mine != 0) & (best == 0),
            "both_idle": (mine == 0) & (best == 0),
        }
    else:
        own = np.nan_to_num(br.best_price[:, : len(sl.s_cols)], nan=sl.hi)
        sp = record.supply_price.copy()
        sp[:, sl.s_cols] = own
        res = clear_market(sp, record.supply_volume, record.demand_price, record.demand_volume,
                           fixed_demand=record.fixed_demand, price_cap=record.price_cap,
                           price_floor=record.price_floor, mechanism=record.mechanism)
        q_best = res.supply_accepted[:, sl.s_cols].sum(axis=1)
        sells = acc_s > tol
        best_sells = np.asarray(br.best_on, dtype=bool) if br.best_on is not None else q_best > tol
        suc = float(record.agent_start_up_cost[i]) if sl.kind == "plant" else 0.0
        start_diff = np.zeros(len(g), dtype=bool)
        if suc != 0.0 and br.best_on is not None:  # as recorded_profit and the on/off programme charge them
            rec_starts = (acc_s > 0) & (record.agent_prev_dispatch[:, i] <= 0)
            br_starts = _start_hours(best_sells, record.agent_prev_dispatch[0, i] > 0)
            start_gain = suc * (rec_starts.astype(float) - br_starts)
            start_diff = rec_starts != br_starts
            g = g - start_gain
        both = sells & best_sells
        raises = both & (res.price > record.clearing_price + PRICE_EPS)
        more = both & ~raises & (q_best > acc_s + tol)
        masks = {
            "best_response_raises_price": raises,
            "best_response_sells_more": more,
            "both_sell_other": both & ~raises & ~more,
            "idle_where_best_response_sells": ~sells & best_sells,
            "sells_where_best_response_idles": sells & ~best_sells,
            "both_idle": ~sells & ~best_sells,
        }
    out = {k: {"hours": float(m.sum() * dt), "gain": float(g[m].sum())} for k, m in masks.items()}
    if sl.kind != "storage":
        out["start_ups"] = {"hours": float(start_diff.sum() * dt), "gain": float(br.gain_per_hour.sum() - g.sum())}
    return out


def gain_by_hours_line(parts: dict[str, dict[str, float]], *, min_share: float = 0.05) -> str:
    """One line of :func:`gain_by_hours`: the types that hold at least ``min_share`` of
    the total absolute gain, largest first, e.g. "gain 188 k EUR by hour: 66 k in 57 h:
    both sell, its best response sells more at no higher price; 38 k in 27 h: ..."."""
    # a plant's or renewable's parts always hold "start_ups"; "both_idle" is in both sets
    labels = SELLER_HOUR_TYPES if "start_ups" in parts else STORAGE_HOUR_TYPES
    total = sum(v["gain"] for v in parts.values())
    scale = sum(abs(v["gain"]) for v in parts.values())
    if scale <= 0:
        return "no gain from deviating"
    keep = sorted((k for k, v in parts.items() if abs(v["gain"]) >= min_share * scale),
                  key=lambda k: -abs(parts[k]["gain"]))
    items = [f"{parts[k]['gain'] / 1e3:,.0f} k in {parts[k]['hours']:g} h: {labels[k]}" for k in keep]
    return f"gain {total / 1e3:,.0f} k EUR by hour: " + "; ".join(items)


def agent_rows(ex: Exploitability, eq=None) -> dict[str, dict]:
    """Per agent, for a summary table/JSON: ``profit``, ``best_response_profit``,
    ``share_of_best_response`` and, with an equilibrium result ``eq``
    (:func:`equilibrium`), ``equilibrium_profit`` (same agents required)."""
    if eq is not None and tuple(eq.agents) != tuple(ex.agents):
        raise ValueError(f"the equilibrium's agents {list(eq.agents)} differ from the record's {list(ex.agents)}")
    rows = {}
    for k, a in enumerate(ex.agents):
        row = {"kind": ex.kinds[k], "profit": float(ex.recorded_profit[k]),
               "best_response_profit": float(ex.best_response_profit[k]), "share_of_best_response": float(ex.share[k])}
        if eq is not None:
            row["equilibrium_profit"] = float(eq.profit[k])
            row["equilibrium_converged"] = bool(eq.converged)
        rows[a] = row
    return rows
