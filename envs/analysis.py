"""Best-response analysis of a recorded episode: how close are the learned bids to an
equilibrium?

For one learning agent, every other bid of every hour of an
:class:`~envs.record.EpisodeRecord` is held fixed as recorded, and the agent's own bid
prices are chosen to maximise its profit in each hour (its bid volumes stay as recorded):

* a learning **plant** chooses two prices ``p_in <= p_fx`` for its inflexible and its
  flexible part (the env bids ``min(a0, a1)`` and ``max(a0, a1)`` times
  ``max_bid_price``), each in ``[-max_bid_price, max_bid_price]``;
* a learning **renewable** chooses one price in ``[-max_bid_price, max_bid_price]``;
* a learning **storage** unit chooses one price in ``[0, max_bid_price]`` in the
  direction it bid in that hour (discharge offer or charge bid), see the limits below.

Profit is computed like :meth:`envs.core.MarketCore.step`::

    profit = sum_j acc_j * (pay_j - cost_j)            # own supply bids
           - sum_k acc_k * (pay_k + cost_k)            # own demand bids (storage charging)
           - start_up_cost * [q > 0 and prev_dispatch <= 0]   # plants only

with ``pay`` the clearing price (``pay_as_clear``) or the bid's own price clipped to the
price limits (``pay_as_bid``), ``cost`` the record's ``supply_cost``/``demand_cost``,
``q`` the agent's accepted supply and ``prev_dispatch`` the record's
``agent_prev_dispatch``.

Exactness. With all other bids fixed, the market outcome depends on the agent's own price
only through its position in the merit order, which changes only at the *breakpoints*:
the other live supply prices, the live demand prices and the ends of the bid range. On
each open interval between two breakpoints the agent's profit is constant or increasing
in its own supply price (pay-as-clear: while its bid is the highest accepted one it sets
the price; pay-as-bid: it is paid its own price) and constant or decreasing in its own
demand price. At a breakpoint itself the bids tie and share pro rata. So the supremum of
the profit is attained at a breakpoint or approached just below one (just above one for
a demand bid), and it suffices to evaluate the candidates

    {b} U {b - min(tick, gap_below/2)} U {b + min(tick, gap_above/2)} U {recorded prices}

for every breakpoint ``b`` (``gap_below``/``gap_above``: distance to the neighbouring
distinct breakpoint, so every interval keeps a representative even when it is narrower
than ``tick``). The "+" candidates are used for storage agents only (their charge bid is a
demand bid). A plant evaluates every pair ``p_in <= p_fx`` of candidates. The result is
exact up to ``tick``: where the supremum is approached below a breakpoint ``b`` (the
agent sets the price, or is paid its bid), the reported best price is ``b - tick`` and the
reported profit is at most ``tick * accepted MW`` below the supremum, which no bid
attains (bidding ``b`` itself ties with the bid at ``b``).

All candidates of all hours are cleared together by :func:`envs.market.clear_market`
(rows = hours x candidate price vectors, in chunks of at most ``MAX_ROWS`` rows); there
is no Python loop over hours or bids.

Limits:

* **Per hour.** The best response is computed hour by hour. A plant's start-up cost is
  charged against the *recorded* dispatch of the hour before (``agent_prev_dispatch``),
  not against the dispatch the best response would have produced, so the episode total
  is the sum of per-hour best responses, not the best response over whole bid
  trajectories.
* **Storage is an approximation** (``exact=False``): the state of charge is held as
  recorded. The feasible volume is the recorded volume of the slot the agent bid in that
  hour (the env offers ``min(max power, energy available)``); the other direction's
  feasible volume is not in the record (the record holds a zero volume for the slot not
  chosen), so only the recorded direction is considered. The profit is the hour's cash
  flow, which ignores the value of the stored energy: a myopic best response never pays
  to charge at a positive price. Read storage results as "how much better could this
  hour's bid have been, today's cash only".
* A storage charge bid at price exactly 0 is not an env action (``a = 0`` means
  discharge at 0); the analysis allows it as the limit ``a -> 0-``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .market import VOLUME_TOL, clear_market, reference_clear
from .record import EpisodeRecord

__all__ = [
    "BestResponse",
    "Exploitability",
    "best_response",
    "exploitability",
    "brute_force_best_response",
    "recorded_profit",
    "MAX_ROWS",
]

# largest batch handed to clear_market in one call
MAX_ROWS = 200_000


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
    n_candidates: int  # price vectors evaluated per hour

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
    record: EpisodeRecord, sl: _Slots, h0: int, h1: int, s_price: np.ndarray, d_price: np.ndarray
) -> np.ndarray:
    """Profit ``(h, P)`` of the agent in hours ``h0:h1`` for ``P`` own price vectors per
    hour: ``s_price`` ``(h, P, len(s_cols))``, ``d_price`` ``(h, P, len(d_cols))``. One
    batched clearing of ``h * P`` markets."""
    h = h1 - h0
    P = s_price.shape[1]
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
    if sl.kind == "plant" and record.agent_start_up_cost[sl.i] != 0:
        started = (acc_s.sum(axis=1) > 0) & (rep(record.agent_prev_dispatch[:, sl.i]) <= 0)
        profit -= started * record.agent_start_up_cost[sl.i]
    return profit.reshape(h, P)


# ---------------------------------------------------------------------------- public
def best_response(record: EpisodeRecord, agent: int | str, *, tick: float = 0.01) -> BestResponse:
    """The agent's per-hour best response to the recorded bids of all other units.

    Args:
        record: an :class:`~envs.record.EpisodeRecord`.
        agent: the agent's index in ``record.agents`` or its name.
        tick: how far below (above, for a demand bid) another bid's price the agent bids
            to undercut (outbid) it, EUR/MWh; the reported profit can fall short of the
            unattainable supremum by at most ``tick`` times the agent's accepted MW.

    Returns:
        :class:`BestResponse` (see the module docstring for exactness and limits).
    """
    if not tick > 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    if record.n_hours == 0:
        raise ValueError("the record holds no hours")
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    H = record.n_hours
    mbp = float(record.max_bid_price)
    if sl.kind == "storage":
        direction = _storage_direction(record, sl)
    else:
        direction = np.ones(H, dtype=np.int8)
    rec_price = _rec_prices(record, sl, direction)
    rec_profit = recorded_profit(record, i)

    # own price vectors per hour: (H, P, k) with k = number of independent prices
    n_live = len(sl.s_cols)
    if sl.kind == "plant":
        live = (record.supply_volume[:, sl.s_cols] > VOLUME_TOL).any(axis=0)
        n_live = int(live.sum())
    if sl.kind == "plant" and n_live == 2:
        C = _candidates(record, sl, tick, rec_price)
        a, b = np.triu_indices(C.shape[1])
        pa, pb = C[:, a], C[:, b]
        pairs = np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=2)
        # the recorded prices first (preferred among ties)
        recrow = np.clip(np.sort(rec_price, axis=1), sl.lo, sl.hi)[:, None, :]
        own = np.concatenate([recrow, pairs], axis=1)  # (H, P, 2)
    else:
        first = rec_price[:, :1] if sl.kind != "plant" else rec_price[:, live.argmax() if len(live) else 0][:, None]
        C = _candidates(record, sl, tick, first)
        own = np.concatenate([np.clip(np.where(np.isnan(first), sl.hi, first), sl.lo, sl.hi), C], axis=1)[:, :, None]
    P = own.shape[1]

    profit = np.empty((H, P))
    step = max(1, MAX_ROWS // P)
    for h0 in range(0, H, step):
        h1 = min(H, h0 + step)
        o = own[h0:h1]
        if sl.kind == "storage":
            s_price = np.repeat(o, len(sl.s_cols), axis=2)
            d_price = np.repeat(o, len(sl.d_cols), axis=2)
        else:
            s_price = o if own.shape[2] == len(sl.s_cols) else np.repeat(o, len(sl.s_cols), axis=2)
            d_price = np.zeros((h1 - h0, P, 0))
        profit[h0:h1] = _evaluate(record, sl, h0, h1, s_price, d_price)

    best = profit.argmax(axis=1)
    rows = np.arange(H)
    top = profit[rows, best]
    keep_rec = profit[:, 0] >= top - 1e-9 * (1.0 + np.abs(top))
    best = np.where(keep_rec, 0, best)
    best_profit = profit[rows, best]
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
    )


def exploitability(record: EpisodeRecord, *, tick: float = 0.01) -> Exploitability:
    """Best response of every learning agent of the record, and the joint exploitability
    ``sum(BR - recorded) / sum(|recorded|)`` (0 at a per-hour Nash equilibrium up to
    ``tick``)."""
    responses = {a: best_response(record, k, tick=tick) for k, a in enumerate(record.agents)}
    rec = np.array([r.recorded_profit for r in responses.values()])
    br = np.array([r.best_profit for r in responses.values()])
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


def brute_force_best_response(record: EpisodeRecord, agent: int | str, grid) -> BestResponse:
    """Slow reference for tests: sweeps the prices ``grid`` (clipped to the agent's bid
    range; a plant tries every pair ``p_in <= p_fx`` of grid points) hour by hour, clearing
    each market with the loop-based :func:`envs.market.reference_clear`."""
    i = _agent_index(record, agent)
    sl = _slots(record, i)
    H = record.n_hours
    mbp = float(record.max_bid_price)
    g = np.unique(np.clip(np.asarray(grid, dtype=np.float64), sl.lo, sl.hi))
    direction = _storage_direction(record, sl) if sl.kind == "storage" else np.ones(H, dtype=np.int8)
    if sl.kind == "plant" and len(sl.s_cols) == 2:
        combos = [(g[a], g[b]) for a in range(len(g)) for b in range(a, len(g))]
    else:
        combos = [(p,) for p in g]
    s_own = set(sl.s_cols.tolist())
    d_own = set(sl.d_cols.tolist())
    pab = record.mechanism == "pay_as_bid"
    clip = lambda p: min(max(p, record.price_floor), record.price_cap)  # noqa: E731
    best_profit = np.full(H, -np.inf)
    best_price = np.full((H, 2), np.nan)
    for h in range(H):
        for combo in combos:
            sup, own_s = [], []
            for j in range(record.supply_price.shape[1]):
                p = float(record.supply_price[h, j])
                if j in s_own:
                    k = list(sl.s_cols).index(j)
                    p = combo[k] if len(combo) > 1 else combo[0]
                    own_s.append((len(sup), j, p))
                sup.append((p, float(record.supply_volume[h, j])))
            dem, own_d = [(record.price_cap, float(record.fixed_demand[h]))], []
            for j in range(record.demand_price.shape[1]):
                p = float(record.demand_price[h, j])
                if j in d_own:
                    p = combo[0]
                    own_d.append((len(dem), j, p))
                dem.append((p, float(record.demand_volume[h, j])))
            price, _, s_acc, d_acc, _ = reference_clear(
                sup, dem, price_cap=record.price_cap, price_floor=record.price_floor
            )
            profit, q = 0.0, 0.0
            for pos, j, p in own_s:
                pay = clip(p) if pab else price
                profit += s_acc[pos] * (pay - record.supply_cost[h, j])
                q += s_acc[pos]
            for pos, j, p in own_d:
                pay = clip(p) if pab else price
                profit -= d_acc[pos] * (pay + record.demand_cost[h, j])
            if sl.kind == "plant" and q > 0 and record.agent_prev_dispatch[h, i] <= 0:
                profit -= record.agent_start_up_cost[i]
            if profit > best_profit[h]:
                best_profit[h] = profit
                best_price[h, : len(combo)] = combo
    rec_price = _rec_prices(record, sl, direction)
    act = best_price / mbp
    if sl.kind == "storage":
        act[:, 0] *= np.where(direction < 0, -1.0, 1.0)
    return BestResponse(
        agent=record.agents[i], agent_index=i, kind=sl.kind, exact=sl.kind != "storage", tick=0.0,
        mechanism=record.mechanism, hours=np.asarray(record.hours), best_profit_per_hour=best_profit,
        best_price=best_price, best_action=act, recorded_profit_per_hour=recorded_profit(record, i),
        recorded_price=rec_price, direction=direction, n_candidates=len(combos),
    )
