"""Uniform-price (pay-as-clear) and pay-as-bid clearing of a batch of hourly markets.

Every function works on a batch of ``B`` independent markets at once: supply bids are
arrays shaped ``(B, N)`` (price in EUR/MWh, volume in MW), demand bids ``(B, M)``.
There is no Python loop over bids or markets; the work is a sort, cumulative sums and
a few gathers per call.

Clearing rules (ASSUME's conventions where ASSUME has one):

* Bid prices are clipped to ``[price_floor, price_cap]``; bids with zero volume take no
  part.
* Supply is sorted by ascending price, demand by descending price. The traded volume
  ``Q`` is the largest volume at which the supply price does not exceed the demand
  price.
* The clearing price is the price of the **highest accepted supply bid** (ASSUME's
  convention), also when the last accepted demand bid is the marginal one.
* Ties: all supply bids at the clearing price share the marginal volume pro rata to
  their volumes; likewise demand bids at the marginal demand price. This is
  deterministic and independent of bid order.
* Scarcity: when demand bidding at (or above) the price cap cannot be met in full, the
  price is set to the price cap, ``scarcity`` is true and ``unserved`` holds the
  missing volume in MW.
* No trade (no supply offer at or below any demand bid): ``Q = 0`` and the price is the
  cheapest supply offer (or the price cap when there is none), so the price says what
  the next MWh would cost.
* ``mechanism="pay_as_bid"``: accepted bids are paid their own prices
  (``supply_payment`` / ``demand_payment``); the reported clearing price is still the
  marginal price found above.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

import numpy as np

__all__ = ["ClearingResult", "SingleClearing", "clear_market", "clear_single", "reference_clear"]

# volumes below this (MW) count as zero when comparing cumulative sums
VOLUME_TOL = 1e-9


@dataclass(frozen=True)
class ClearingResult:
    """Outcome of clearing ``B`` markets. Arrays are float64 unless noted.

    ``supply_accepted``/``demand_accepted`` refer to the bids passed as arrays (not to a
    ``static_supply`` curve or ``fixed_demand``; use :meth:`static_accepted` and
    ``fixed_accepted`` for those).
    """

    price: np.ndarray  # (B,) clearing price, EUR/MWh
    volume: np.ndarray  # (B,) traded volume Q, MW
    supply_accepted: np.ndarray  # (B, N) accepted MW per supply bid
    demand_accepted: np.ndarray  # (B, M) accepted MW per demand bid
    supply_payment: np.ndarray  # (B, N), or (B, 1) under pay-as-clear: price paid per bid, EUR/MWh
    demand_payment: np.ndarray  # (B, M), or (B, 1) under pay-as-clear: price paid per bid
    scarcity: np.ndarray  # (B,) bool: demand at the cap not met
    unserved: np.ndarray  # (B,) MW of demand at the cap left unserved
    supply_share: np.ndarray  # (B,) accepted fraction of supply bids AT the clearing price
    fixed_accepted: np.ndarray  # (B,) accepted MW of ``fixed_demand`` (0 when none)

    def static_accepted(self, static_price: np.ndarray, static_volume: np.ndarray) -> np.ndarray:
        """Accepted MW of a ``static_supply`` curve's bids, ``(B, Ns)``."""
        p = self.price[:, None]
        return np.where(static_price < p, static_volume, 0.0) + np.where(
            static_price == p, static_volume * self.supply_share[:, None], 0.0
        )


def _as_2d(a, name: str) -> np.ndarray:
    arr = a if type(a) is np.ndarray and a.dtype == np.float64 else np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (B, n_bids) or (n_bids,), got {arr.shape}")
    return arr


def clear_market(
    supply_price,
    supply_volume,
    demand_price,
    demand_volume,
    *,
    fixed_demand=None,
    static_supply: tuple[np.ndarray, np.ndarray] | None = None,
    price_cap: float = 3000.0,
    price_floor: float = -500.0,
    mechanism: str = "pay_as_clear",
) -> ClearingResult:
    """Clear ``B`` markets at once.

    Args:
        supply_price, supply_volume: ``(B, N)`` (or ``(N,)`` for one market); MW >= 0.
        demand_price, demand_volume: ``(B, M)`` (or ``(M,)``); MW >= 0.
        fixed_demand: optional ``(B,)`` (or scalar) MW of inelastic demand bidding at the
            price cap, added to the demand bids (it ties with demand bids at the cap).
        static_supply: optional ``(price, volume)`` pair of ``(Ns,)`` arrays, the same
            for every market of the batch: bids that do not change from call to call
            (the rule-bidding units of one hour). Prices must lie in
            ``[price_floor, price_cap]``; give zero-volume entries the price ``inf``.
        price_cap, price_floor: the market's price limits; bids are clipped to them.
        mechanism: ``"pay_as_clear"`` (uniform price) or ``"pay_as_bid"``.

    Returns:
        :class:`ClearingResult`.
    """
    if mechanism not in ("pay_as_clear", "pay_as_bid"):
        raise ValueError(f"mechanism must be 'pay_as_clear' or 'pay_as_bid', got {mechanism!r}")
    sp = _as_2d(supply_price, "supply_price")
    sv = _as_2d(supply_volume, "supply_volume")
    dp = _as_2d(demand_price, "demand_price")
    dv = _as_2d(demand_volume, "demand_volume")
    if sp.shape != sv.shape or dp.shape != dv.shape or sp.shape[0] != dp.shape[0]:
        raise ValueError(
            f"bid arrays disagree: supply {sp.shape}/{sv.shape}, demand {dp.shape}/{dv.shape}"
        )
    # Micro-optimised: this runs once per environment step, so it uses ndarray methods
    # and plain indexing rather than the slower numpy helper functions.
    sp = np.minimum(np.maximum(sp, price_floor), price_cap)
    dp = np.minimum(np.maximum(dp, price_floor), price_cap)
    B, N = sp.shape
    M = dp.shape[1]
    rows = _rows(B)
    rcol = rows[:, None]
    if fixed_demand is None:
        fixed = np.zeros(B)
    else:
        fixed = np.asarray(fixed_demand, np.float64).reshape(-1)
        if fixed.shape[0] != B:
            fixed = np.full(B, fixed[0])

    # -- supply merit order (zero-volume bids sort last at +inf) -------------------
    s_live = sv > VOLUME_TOL
    s_vol = sv * s_live
    s_key = sp.copy()
    s_key[~s_live] = np.inf
    if static_supply is not None:
        st_p, st_v = static_supply
        ns = st_p.shape[-1]
        all_p = np.empty((B, ns + N))
        all_v = np.empty((B, ns + N))
        all_p[:, :ns] = st_p
        all_p[:, ns:] = s_key
        all_v[:, :ns] = st_v
        all_v[:, ns:] = s_vol
    else:
        all_p, all_v = s_key, s_vol
    if all_p.shape[1] == 0:  # no supply bid at all: one empty bid keeps the code uniform
        all_p, all_v = np.full((B, 1), np.inf), np.zeros((B, 1))
    order = all_p.argsort(axis=1, kind="stable")
    ps = all_p[rcol, order]
    cpad = np.zeros((B, ps.shape[1] + 1))  # cpad[:, k] = supply offered before step k
    all_v[rcol, order].cumsum(axis=1, out=cpad[:, 1:])
    cum = cpad[:, 1:]
    finite = ps < np.inf

    # -- demand willing to pay each supply step's price -----------------------------
    if M:
        d_live = dv > VOLUME_TOL
        d_vol = dv * d_live
        dem = ((dp[:, None, :] >= ps[:, :, None]) * d_vol[:, None, :]).sum(axis=2)
        dem += fixed[:, None]
    else:
        dem = fixed[:, None]

    # -- first supply step that covers the demand willing to pay its price ----------
    meets = (cum >= dem - VOLUME_TOL) & finite
    k = meets.argmax(axis=1)
    has_cross = meets[rows, k]
    c_prev = cpad[rows, k]
    d_k = dem[rows, k] if M else fixed
    step_marginal = d_k > c_prev + VOLUME_TOL  # step k is (partly) accepted
    if has_cross.all():
        volume = np.where(step_marginal, d_k, c_prev)
        last = k - (~step_marginal)  # highest accepted step
    else:
        volume = np.where(has_cross, np.where(step_marginal, d_k, c_prev), cum[:, -1])
        last = np.where(has_cross, k - (~step_marginal), finite.sum(axis=1) - 1)
    traded = (last >= 0) & (volume > VOLUME_TOL)
    if traded.all():
        price = ps[rows, last]
    else:
        volume = volume * traded
        cheapest = ps[:, 0].copy()
        cheapest[~finite[:, 0]] = price_cap
        price = np.where(traded, ps[rows, last.clip(0)], cheapest)

    # -- scarcity: demand at the cap not served in full -----------------------------
    cap_demand = fixed + ((dp >= price_cap) * d_vol).sum(axis=1) if M else fixed
    unserved = cap_demand - volume
    scarcity = unserved > VOLUME_TOL
    if scarcity.any():
        price = np.where(scarcity, price_cap, price)
    unserved = unserved * scarcity

    # -- supply acceptance: below the price in full, at the price pro rata -----------
    pcol = price[:, None]
    v_below = cpad[rows, (ps < pcol).sum(axis=1)]
    v_at = cpad[rows, (ps <= pcol).sum(axis=1)] - v_below
    share = (volume - v_below) / np.maximum(v_at, VOLUME_TOL)
    share = np.minimum(np.maximum(share, 0.0), 1.0) * (v_at > VOLUME_TOL)
    supply_acc = (s_key < pcol) * s_vol + (s_key == pcol) * (s_vol * share[:, None])

    # -- demand acceptance: marginal demand price group shares the rest --------------
    if M:
        # fixed demand is one more bid at the cap
        a_p = np.empty((B, M + 1))
        a_p[:, 0] = price_cap
        a_p[:, 1:] = dp
        a_p[:, 1:][~d_live] = -np.inf
        a_v = np.empty((B, M + 1))
        a_v[:, 0] = fixed
        a_v[:, 1:] = d_vol
        ge = ((a_p[:, None, :] >= a_p[:, :, None]) * a_v[:, None, :]).sum(axis=2)  # MW at >= own price
        reach = (ge >= volume[:, None] - VOLUME_TOL) & (a_v > VOLUME_TOL)
        cand = np.full((B, M + 1), -np.inf)
        cand[reach] = a_p[reach]
        pd_marg = cand.max(axis=1)[:, None]
        above = a_p > pd_marg
        at = a_p == pd_marg
        v_above = (above * a_v).sum(axis=1)
        v_dat = (at * a_v).sum(axis=1)
        d_share = ((volume - v_above) / np.maximum(v_dat, VOLUME_TOL)).clip(0.0, 1.0) * (v_dat > VOLUME_TOL)
        acc = above * a_v + at * (a_v * d_share[:, None])
        fixed_acc, demand_acc = acc[:, 0], acc[:, 1:]
    else:
        fixed_acc, demand_acc = np.minimum(fixed, volume), np.zeros((B, 0))

    if mechanism == "pay_as_bid":
        supply_pay, demand_pay = sp, dp
    else:  # one column that broadcasts against (B, N) / (B, M)
        supply_pay = demand_pay = pcol
    return ClearingResult(
        price=price,
        volume=volume,
        supply_accepted=supply_acc,
        demand_accepted=demand_acc,
        supply_payment=supply_pay,
        demand_payment=demand_pay,
        scarcity=scarcity,
        unserved=unserved,
        supply_share=share,
        fixed_accepted=fixed_acc,
    )


class SingleClearing(NamedTuple):
    """Outcome of :func:`clear_single` (one market, pay-as-clear), as Python floats/lists."""

    price: float
    volume: float
    supply_accepted: list  # MW per dynamic supply bid, in the order given
    demand_accepted: list  # MW per demand bid, in the order given
    scarcity: bool
    unserved: float
    supply_share: float
    fixed_accepted: float


_INF = float("inf")


def clear_single(
    supply_price: list,
    supply_volume: list,
    demand_price: list,
    demand_volume: list,
    fixed_demand: float,
    static_price: list,
    static_volume: list,
    price_cap: float,
    price_floor: float,
) -> SingleClearing:
    """Pay-as-clear clearing of ONE market with a few bids, in plain Python.

    The same rules and the same floating-point operations as :func:`clear_market` with
    ``B = 1`` (it is tested equal to it on thousands of random markets), without NumPy's
    per-call overhead: for the handful of bids of a single environment step, Python
    lists are several times faster than array calls. Used by the single-copy fast path
    of :class:`~envs.core.MarketCore`.

    Args:
        supply_price, supply_volume: dynamic supply bids (lists of floats, MW >= 0).
        demand_price, demand_volume: demand bids (lists of floats, MW >= 0).
        fixed_demand: MW of inelastic demand at the price cap.
        static_price, static_volume: a sorted static supply curve as
            :func:`clear_market`'s ``static_supply`` (prices ascending within
            ``[price_floor, price_cap]``, zero-volume entries last at ``inf``).
        price_cap, price_floor: the market's price limits.
    """
    tol = VOLUME_TOL
    # -- merged supply curve: static first, each dynamic bid after every entry of a
    #    price <= its own (= a stable sort of [static, dynamic], as clear_market does)
    ps = list(static_price)
    vs = list(static_volume)
    keys = []
    vols = []
    for p, v in zip(supply_price, supply_volume):
        if v > tol:
            k = price_cap if p > price_cap else (price_floor if p < price_floor else p)
            keys.append(k)
            vols.append(v)
            pos = bisect_right(ps, k)
            ps.insert(pos, k)
            vs.insert(pos, v)
        else:
            keys.append(_INF)
            vols.append(0.0)
            ps.append(_INF)
            vs.append(0.0)
    if not ps:
        ps, vs = [_INF], [0.0]
    cum = list(accumulate(vs))
    n_fin = bisect_left(ps, _INF)
    # -- demand bids (clipped; zero-volume ones take no part)
    dps = []
    dvs = []
    for p, v in zip(demand_price, demand_volume):
        dps.append(price_cap if p > price_cap else (price_floor if p < price_floor else p))
        dvs.append(v if v > tol else 0.0)
    M = len(dps)
    # -- first step whose cumulative supply covers the demand willing to pay its price
    #    (monotone: cumulative supply grows, demand shrinks along the curve)
    if M:
        k = -1
        d_k = fixed_demand
        for j in range(n_fin):
            pj = ps[j]
            dem = 0.0
            for q, w in zip(dps, dvs):
                if q >= pj:
                    dem += w
            dem += fixed_demand
            if cum[j] >= dem - tol:
                k, d_k = j, dem
                break
    else:
        d_k = fixed_demand
        k = bisect_left(cum, fixed_demand - tol)
        if k >= n_fin:
            k = -1
    if k >= 0:
        c_prev = cum[k - 1] if k else 0.0
        if d_k > c_prev + tol:
            volume, last = d_k, k
        else:
            volume, last = c_prev, k - 1
    else:
        volume, last = cum[-1], n_fin - 1
    if last >= 0 and volume > tol:
        price = ps[last]
    else:
        volume = 0.0
        price = ps[0] if ps[0] < _INF else price_cap
    # -- scarcity: demand at the cap not served in full
    cap_demand = fixed_demand
    if M:
        extra = 0.0
        for q, w in zip(dps, dvs):
            if q >= price_cap:
                extra += w
        cap_demand = fixed_demand + extra
    unserved = cap_demand - volume
    scarcity = unserved > tol
    if scarcity:
        price = price_cap
    else:
        unserved = 0.0
    # -- supply acceptance: below the price in full, at the price pro rata
    i_lt = bisect_left(ps, price)
    i_le = bisect_right(ps, price)
    v_below = cum[i_lt - 1] if i_lt else 0.0
    v_at = (cum[i_le - 1] if i_le else 0.0) - v_below
    if v_at > tol:
        share = (volume - v_below) / v_at
        share = 1.0 if share > 1.0 else (0.0 if share < 0.0 else share)
    else:
        share = 0.0
    s_acc = [v if k_ < price else (v * share if k_ == price else 0.0) for k_, v in zip(keys, vols)]
    # -- demand acceptance: the marginal demand price group shares the rest
    if M:
        a_p = [price_cap] + [q if w > tol else -_INF for q, w in zip(dps, dvs)]
        a_v = [fixed_demand] + dvs
        pd_marg = -_INF
        for pi, vi in zip(a_p, a_v):
            if vi > tol and pi > pd_marg:
                ge = 0.0
                for pj, vj in zip(a_p, a_v):
                    if pj >= pi:
                        ge += vj
                if ge >= volume - tol:
                    pd_marg = pi
        v_above = 0.0
        v_dat = 0.0
        for pi, vi in zip(a_p, a_v):
            if pi > pd_marg:
                v_above += vi
            elif pi == pd_marg:
                v_dat += vi
        if v_dat > tol:
            d_share = (volume - v_above) / v_dat
            d_share = 1.0 if d_share > 1.0 else (0.0 if d_share < 0.0 else d_share)
        else:
            d_share = 0.0
        acc = [vi if pi > pd_marg else (vi * d_share if pi == pd_marg else 0.0) for pi, vi in zip(a_p, a_v)]
        fixed_acc, d_acc = acc[0], acc[1:]
    else:
        fixed_acc, d_acc = min(fixed_demand, volume), []
    return SingleClearing(price, volume, s_acc, d_acc, scarcity, unserved, share, fixed_acc)


_ROWS: dict[int, np.ndarray] = {}


def _rows(b: int) -> np.ndarray:
    r = _ROWS.get(b)
    if r is None:
        r = _ROWS[b] = np.arange(b)
    return r


def reference_clear(
    supply: list[tuple[float, float]],
    demand: list[tuple[float, float]],
    *,
    price_cap: float = 3000.0,
    price_floor: float = -500.0,
) -> tuple[float, float, list[float], list[float], bool]:
    """Plain, loop-based clearing of ONE market, written for readability; used by the
    tests as an independent check of :func:`clear_market` (pay-as-clear rules).

    Args:
        supply: ``[(price, volume), ...]``; demand likewise.

    Returns:
        ``(price, volume, supply_accepted, demand_accepted, scarcity)``.
    """
    clip = lambda p: min(max(p, price_floor), price_cap)  # noqa: E731
    sup = [(clip(p), v) for p, v in supply]
    dem = [(clip(p), v) for p, v in demand]
    # Walk the supply curve price level by price level, and the demand curve the same way.
    s_levels = sorted({p for p, v in sup if v > 0})
    d_levels = sorted({p for p, v in dem if v > 0}, reverse=True)

    def supply_upto(price):  # MW offered at or below price
        return sum(v for p, v in sup if v > 0 and p <= price)

    def demand_from(price):  # MW bid at or above price
        return sum(v for p, v in dem if v > 0 and p >= price)

    # traded volume: max over supply levels of min(supply up to it, demand willing to pay it)
    volume, price = 0.0, None
    for p in s_levels:
        q = min(supply_upto(p), demand_from(p))
        if q > volume + VOLUME_TOL:
            volume = q
    if volume > VOLUME_TOL:
        # highest accepted supply level: lowest level whose cumulative supply reaches volume,
        # unless the volume is reached within the level below
        below = 0.0
        for p in s_levels:
            level_vol = sum(v for q_, v in sup if v > 0 and q_ == p)
            if below < volume - VOLUME_TOL:
                price = p
            below += level_vol
    else:
        volume = 0.0
        price = s_levels[0] if s_levels else price_cap
    cap_demand = sum(v for p, v in dem if v > 0 and p >= price_cap)
    scarcity = cap_demand - volume > VOLUME_TOL
    if scarcity:
        price = price_cap

    s_acc = []
    if volume > VOLUME_TOL:
        v_below = sum(v for p, v in sup if v > 0 and p < price)
        v_at = sum(v for p, v in sup if v > 0 and p == price)
        share = min(max((volume - v_below) / v_at, 0.0), 1.0) if v_at > 0 else 0.0
        for p, v in sup:
            s_acc.append(0.0 if v <= 0 else v if p < price else v * share if p == price else 0.0)
        # marginal demand level
        cum, pd = 0.0, None
        for lvl in d_levels:
            cum += sum(v for p, v in dem if v > 0 and p == lvl)
            if cum >= volume - VOLUME_TOL:
                pd = lvl
                break
        if pd is None:
            pd = d_levels[-1]
        v_above = sum(v for p, v in dem if v > 0 and p > pd)
        v_dat = sum(v for p, v in dem if v > 0 and p == pd)
        dshare = min(max((volume - v_above) / v_dat, 0.0), 1.0) if v_dat > 0 else 0.0
        d_acc = [0.0 if v <= 0 else v if p > pd else v * dshare if p == pd else 0.0 for p, v in dem]
    else:
        s_acc = [0.0] * len(sup)
        d_acc = [0.0] * len(dem)
    return float(price), float(volume), s_acc, d_acc, bool(scarcity)
