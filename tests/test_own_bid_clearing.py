"""The storage analysis's one-bid clearing (``envs.analysis._own_bid_outcomes``) against
the full clearing (``envs.market.clear_market``) of the same bid arrays."""

from __future__ import annotations

import numpy as np
import pytest

from envs.analysis import _own_bid_outcomes, _slots
from envs.market import clear_market
from test_analysis import random_record


def by_clearing(record, sl, side, vols, C):
    """The own accepted volume and its payment, every row cleared in full."""
    H, U, Cn = record.n_hours, len(vols), C.shape[1]
    per = U * Cn
    j_s, j_d = int(sl.s_cols[0]), int(sl.d_cols[0])
    rep = lambda a: np.repeat(a, per, axis=0)  # noqa: E731
    sp, sv = rep(record.supply_price), rep(record.supply_volume)
    dp, dv = rep(record.demand_price), rep(record.demand_volume)
    price = np.broadcast_to(C[:, None, :], (H, U, Cn)).reshape(-1)
    vol = np.broadcast_to(np.asarray(vols, float)[None, :, None], (H, U, Cn)).reshape(-1)
    if side > 0:
        sp[:, j_s], sv[:, j_s], dv[:, j_d] = price, vol, 0.0
    else:
        dp[:, j_d], dv[:, j_d], sv[:, j_s] = price, vol, 0.0
    res = clear_market(sp, sv, dp, dv, fixed_demand=rep(record.fixed_demand), price_cap=record.price_cap,
                       price_floor=record.price_floor, mechanism=record.mechanism)
    if side > 0:
        acc = res.supply_accepted[:, j_s]
        pay = np.broadcast_to(res.supply_payment, sp.shape)[:, j_s]
    else:
        acc = res.demand_accepted[:, j_d]
        pay = np.broadcast_to(res.demand_payment, dp.shape)[:, j_d]
    return acc.reshape(H, U, Cn), pay.reshape(H, U, Cn), res.price.reshape(H, U, Cn)


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
@pytest.mark.parametrize("side", [1, -1])
def test_one_bid_clearing_equals_the_full_clearing(mechanism, side):
    rng = np.random.default_rng(7 if side > 0 else 8)
    rows = partial = scarce = 0
    for _ in range(60):
        rec = random_record(rng, kind="storage", mechanism=mechanism)
        if rng.random() < 0.3:  # tight hours: the own bid can set the price, or leave demand unserved
            rec = type(rec)(**{**rec.__dict__, "fixed_demand": rec.fixed_demand * rng.uniform(1.0, 1.6)})
        sl = _slots(rec, 0)
        others = np.concatenate([rec.supply_price.ravel(), rec.demand_price.ravel()])
        # prices: the others' own prices (ties), just around them, a grid, the range's ends
        C = np.concatenate([others, others - 0.01, others + 0.01, np.linspace(-2, 14, 9), [0.0, 10.0]])
        C = np.clip(np.unique(C), sl.lo, sl.hi)
        C = np.broadcast_to(C, (rec.n_hours, len(C))).copy()
        vols = np.array([0.0, 1e-12, 0.5, 7.0, 25.0, 60.0, 150.0, 400.0])
        acc, pay = _own_bid_outcomes(rec, sl, side, vols, C, 0, rec.n_hours)
        ref_acc, ref_pay, ref_price = by_clearing(rec, sl, side, vols, C)
        np.testing.assert_allclose(acc, ref_acc, rtol=1e-9, atol=1e-7)
        traded = ref_acc > 1e-9
        np.testing.assert_allclose(pay[traded], ref_pay[traded], rtol=1e-12, atol=1e-9)
        rows += acc.size
        partial += int(((ref_acc > 1e-6) & (ref_acc < vols[None, :, None] - 1e-6)).sum())
        scarce += int((ref_price >= rec.price_cap).sum())
    # the cases that matter were met: accepted in part (the own bid sets the price) and scarcity
    assert rows > 10_000 and partial > 50 and scarce > 50
