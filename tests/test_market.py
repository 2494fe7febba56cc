"""Tests of the batched merit-order clearing (envs/market.py).

Hand-computed textbook cases first, then the conventions (ASSUME's price rule, pro-rata
ties, clipping, empty sides, pay-as-bid), the shortcuts the core uses (``fixed_demand``,
``static_supply``), batching, and a randomized comparison with the loop-based
:func:`reference_clear`.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.market import ClearingResult, clear_market, reference_clear

CAP, FLOOR = 3000.0, -500.0
NONE = np.zeros(0)  # an empty side of one market


def one(supply, demand=(), **kw) -> ClearingResult:
    """Clear one market given ``[(price, volume), ...]`` lists."""
    sp = np.array([p for p, _ in supply], dtype=float)
    sv = np.array([v for _, v in supply], dtype=float)
    dp = np.array([p for p, _ in demand], dtype=float)
    dv = np.array([v for _, v in demand], dtype=float)
    return clear_market(sp, sv, dp, dv, **kw)


# --------------------------------------------------------------------------- textbook merit order

MERIT = [(20.0, 1000.0), (30.0, 2500.0), (55.708, 3000.0), (85.708, 6000.0)]  # cumulative 1000/3500/6500/12500


@pytest.mark.parametrize(
    "demand, price, accepted",
    [
        (500.0, 20.0, [500, 0, 0, 0]),
        (3000.0, 30.0, [1000, 2000, 0, 0]),
        (6000.0, 55.708, [1000, 2500, 2500, 0]),
        (11000.0, 85.708, [1000, 2500, 3000, 4500]),
    ],
)
def test_textbook_merit_order(demand, price, accepted):
    r = one(MERIT, fixed_demand=demand)
    assert r.price[0] == pytest.approx(price)
    assert r.volume[0] == pytest.approx(demand)
    np.testing.assert_allclose(r.supply_accepted[0], accepted)
    assert not r.scarcity[0] and r.unserved[0] == pytest.approx(0.0)
    assert r.fixed_accepted[0] == pytest.approx(demand)


def test_textbook_scarcity_sets_price_cap_and_reports_unserved():
    r = one(MERIT, fixed_demand=13000.0)
    assert r.price[0] == CAP
    assert r.scarcity[0]
    assert r.unserved[0] == pytest.approx(500.0)
    assert r.volume[0] == pytest.approx(12500.0)
    np.testing.assert_allclose(r.supply_accepted[0], [v for _, v in MERIT])  # everything runs
    assert r.fixed_accepted[0] == pytest.approx(12500.0)


def test_textbook_cases_as_one_batch():
    demands = np.array([500.0, 3000.0, 6000.0, 11000.0, 13000.0])
    sp = np.tile([p for p, _ in MERIT], (5, 1))
    sv = np.tile([v for _, v in MERIT], (5, 1))
    r = clear_market(sp, sv, np.zeros((5, 0)), np.zeros((5, 0)), fixed_demand=demands)
    np.testing.assert_allclose(r.price, [20.0, 30.0, 55.708, 85.708, CAP])
    np.testing.assert_allclose(r.unserved, [0, 0, 0, 0, 500.0], atol=1e-9)
    assert r.scarcity.tolist() == [False, False, False, False, True]


def test_supply_exactly_meets_demand_at_step_boundary():
    # demand 3500 is exactly the supply up to 30: the 55.708 step is not needed
    r = one(MERIT, fixed_demand=3500.0)
    assert r.price[0] == pytest.approx(30.0)
    np.testing.assert_allclose(r.supply_accepted[0], [1000, 2500, 0, 0])


# --------------------------------------------------------------------------- ASSUME's price convention


def test_price_is_highest_accepted_supply_when_demand_is_marginal():
    # elastic demand 150 MW @ 40: the 10-EUR step (100 MW) runs, the 50-EUR step is too dear;
    # demand is the marginal side but the price is the highest ACCEPTED SUPPLY price (10)
    r = one([(10.0, 100.0), (50.0, 100.0)], [(40.0, 150.0)])
    assert r.price[0] == pytest.approx(10.0)
    assert r.volume[0] == pytest.approx(100.0)
    np.testing.assert_allclose(r.supply_accepted[0], [100.0, 0.0])
    np.testing.assert_allclose(r.demand_accepted[0], [100.0])
    assert not r.scarcity[0]


def test_elastic_demand_steps_accepted_in_price_order():
    # supply 100 @ 10, 100 @ 35; demand 80 @ 60, 80 @ 30, 80 @ 5
    r = one([(10.0, 100.0), (35.0, 100.0)], [(60.0, 80.0), (30.0, 80.0), (5.0, 80.0)])
    # at 35 only 80 MW of demand wants to buy, at 10 160 MW: the 10-step is all sold (100),
    # the 35-step: demand willing to pay 35 is 80 < 100 already offered -> Q = 100, price 10
    assert r.price[0] == pytest.approx(10.0)
    assert r.volume[0] == pytest.approx(100.0)
    np.testing.assert_allclose(r.demand_accepted[0], [80.0, 20.0, 0.0])


def test_demand_bids_are_not_fixed_by_cap_unless_bidding_at_cap():
    # a demand bid below the cap that goes unserved is not scarcity
    r = one([(10.0, 100.0)], [(50.0, 300.0)])
    assert r.volume[0] == pytest.approx(100.0)
    assert not r.scarcity[0] and r.price[0] == pytest.approx(10.0)
    # the same bid at the cap is
    r = one([(10.0, 100.0)], [(CAP, 300.0)])
    assert r.scarcity[0] and r.price[0] == CAP and r.unserved[0] == pytest.approx(200.0)


# --------------------------------------------------------------------------- ties


def test_pro_rata_supply_ties():
    supply = [(10.0, 100.0), (20.0, 60.0), (20.0, 40.0), (25.0, 500.0)]
    r = one(supply, fixed_demand=150.0)
    assert r.price[0] == pytest.approx(20.0)
    # 50 MW left for the two 20-EUR bids (100 MW together): each gets half of its volume
    np.testing.assert_allclose(r.supply_accepted[0], [100.0, 30.0, 20.0, 0.0])
    assert r.supply_share[0] == pytest.approx(0.5)


def test_pro_rata_demand_ties():
    r = one([(10.0, 50.0)], [(40.0, 60.0), (40.0, 40.0), (5.0, 100.0)])
    assert r.volume[0] == pytest.approx(50.0)
    np.testing.assert_allclose(r.demand_accepted[0], [30.0, 20.0, 0.0])


@pytest.mark.parametrize("seed", range(5))
def test_ties_independent_of_bid_order(seed):
    rng = np.random.default_rng(seed)
    sp = np.array([10.0, 20.0, 20.0, 20.0, 30.0, 0.0, 20.0])
    sv = np.array([100.0, 60.0, 40.0, 25.0, 500.0, 0.0, 75.0])
    dp = np.array([40.0, 40.0, CAP, 15.0, 40.0])
    dv = np.array([60.0, 40.0, 80.0, 100.0, 30.0])
    base = clear_market(sp, sv, dp, dv)
    ps, pd = rng.permutation(len(sp)), rng.permutation(len(dp))
    r = clear_market(sp[ps], sv[ps], dp[pd], dv[pd])
    assert r.price[0] == base.price[0]
    assert r.volume[0] == pytest.approx(base.volume[0])
    np.testing.assert_allclose(r.supply_accepted[0], base.supply_accepted[0][ps], atol=1e-9)
    np.testing.assert_allclose(r.demand_accepted[0], base.demand_accepted[0][pd], atol=1e-9)
    # and the tie really is shared: the 20-EUR bids get the same fraction of their volume
    at = sv > 0
    frac = base.supply_accepted[0][(sp == 20.0) & at] / sv[(sp == 20.0) & at]
    np.testing.assert_allclose(frac, frac[0])


# --------------------------------------------------------------------------- clipping, zero volume, empty sides


def test_price_cap_and_floor_clip_bids():
    # a supply bid above the cap is treated as a bid at the cap
    r = one([(5000.0, 100.0)], fixed_demand=50.0)
    assert r.price[0] == CAP and r.volume[0] == pytest.approx(50.0) and not r.scarcity[0]
    # below the floor: at the floor
    r = one([(-1000.0, 100.0)], fixed_demand=50.0)
    assert r.price[0] == FLOOR
    # custom limits
    r = one([(-80.0, 100.0), (300.0, 100.0)], fixed_demand=150.0, price_cap=200.0, price_floor=-50.0)
    assert r.price[0] == 200.0
    np.testing.assert_allclose(r.supply_accepted[0], [100.0, 50.0])
    r = one([(-80.0, 100.0)], fixed_demand=50.0, price_cap=200.0, price_floor=-50.0)
    assert r.price[0] == -50.0
    # demand bids are clipped too: 5000 counts as the cap (-> scarcity when unmet)
    r = one([(10.0, 100.0)], [(5000.0, 300.0)])
    assert r.scarcity[0] and r.price[0] == CAP and r.unserved[0] == pytest.approx(200.0)


def test_zero_volume_bids_take_no_part():
    # a cheap zero-volume bid does not set the price and gets nothing
    r = one([(5.0, 0.0), (20.0, 100.0)], fixed_demand=50.0)
    assert r.price[0] == pytest.approx(20.0)
    np.testing.assert_allclose(r.supply_accepted[0], [0.0, 50.0])
    # nor does a zero-volume bid at the would-be marginal price change the tie split
    r = one([(20.0, 0.0), (20.0, 100.0)], fixed_demand=50.0)
    np.testing.assert_allclose(r.supply_accepted[0], [0.0, 50.0])
    # a zero-volume demand bid at the cap causes no scarcity
    r = one([(20.0, 100.0)], [(CAP, 0.0), (50.0, 40.0)])
    assert not r.scarcity[0] and r.volume[0] == pytest.approx(40.0)
    np.testing.assert_allclose(r.demand_accepted[0], [0.0, 40.0])


def test_no_trade():
    # the cheapest offer is above every demand bid: nothing trades, the price is that offer
    r = one([(50.0, 100.0), (70.0, 100.0)], [(40.0, 100.0)])
    assert r.volume[0] == 0.0
    assert r.price[0] == pytest.approx(50.0)
    assert not r.scarcity[0]
    np.testing.assert_allclose(r.supply_accepted[0], 0.0)
    np.testing.assert_allclose(r.demand_accepted[0], 0.0)


def test_empty_sides():
    # no demand at all
    r = one([(50.0, 100.0)], [])
    assert r.volume[0] == 0.0 and r.price[0] == pytest.approx(50.0)
    assert r.demand_accepted.shape == (1, 0)
    # no supply at all, demand below the cap: no trade, price cap, no scarcity
    r = one([], [(40.0, 100.0)])
    assert r.volume[0] == 0.0 and r.price[0] == CAP and not r.scarcity[0]
    assert r.supply_accepted.shape == (1, 0)
    # no supply, fixed demand: scarcity, all of it unserved
    r = one([], [], fixed_demand=70.0)
    assert r.scarcity[0] and r.price[0] == CAP and r.unserved[0] == pytest.approx(70.0)
    # only zero-volume supply: same as none
    r = one([(10.0, 0.0)], [], fixed_demand=70.0)
    assert r.scarcity[0] and r.unserved[0] == pytest.approx(70.0)
    # nothing at all
    r = one([], [])
    assert r.volume[0] == 0.0 and r.price[0] == CAP and not r.scarcity[0]


# --------------------------------------------------------------------------- pay-as-bid


def test_pay_as_bid_payments():
    supply = [(10.0, 100.0), (20.0, 100.0), (30.0, 100.0), (5000.0, 10.0)]
    demand = [(60.0, 120.0), (25.0, 50.0)]
    clear = one(supply, demand)
    pab = one(supply, demand, mechanism="pay_as_bid")
    # same allocation and reported marginal price; payments are the (clipped) own prices
    assert pab.price[0] == clear.price[0] == pytest.approx(20.0)
    np.testing.assert_allclose(pab.supply_accepted, clear.supply_accepted)
    np.testing.assert_allclose(pab.demand_accepted, clear.demand_accepted)
    np.testing.assert_allclose(pab.supply_payment[0], [10.0, 20.0, 30.0, CAP])
    np.testing.assert_allclose(pab.demand_payment[0], [60.0, 25.0])
    # pay-as-clear: one column that broadcasts
    np.testing.assert_allclose(clear.supply_payment * np.ones((1, 4)), 20.0)
    np.testing.assert_allclose(clear.demand_payment * np.ones((1, 2)), 20.0)
    revenue = (pab.supply_accepted * pab.supply_payment).sum()
    assert revenue == pytest.approx(100 * 10 + 70 * 20)


def test_unknown_mechanism_refused():
    with pytest.raises(ValueError, match="mechanism"):
        one([(10.0, 1.0)], fixed_demand=1.0, mechanism="vickrey")


# --------------------------------------------------------------------------- fixed demand / static supply shortcuts


def _random_batch(rng, B, N, M, levels=(-20.0, 0.0, 10.0, 20.0, 30.0, 45.0, CAP)):
    sp = rng.choice(levels, size=(B, N))
    sv = rng.choice([0.0, 10.0, 25.0, 40.0, 100.0], size=(B, N))
    dp = rng.choice(levels, size=(B, M))
    dv = rng.choice([0.0, 15.0, 30.0, 60.0], size=(B, M))
    return sp, sv, dp, dv


def test_fixed_demand_equals_explicit_bid_at_cap():
    rng = np.random.default_rng(1)
    sp, sv, dp, dv = _random_batch(rng, 200, 5, 3)
    fixed = rng.choice([0.0, 20.0, 80.0, 150.0, 400.0], size=200)
    a = clear_market(sp, sv, dp, dv, fixed_demand=fixed)
    b = clear_market(sp, sv, np.c_[np.full(200, CAP), dp], np.c_[fixed, dv])
    np.testing.assert_array_equal(a.price, b.price)
    np.testing.assert_allclose(a.volume, b.volume)
    np.testing.assert_allclose(a.supply_accepted, b.supply_accepted, atol=1e-9)
    np.testing.assert_allclose(a.demand_accepted, b.demand_accepted[:, 1:], atol=1e-9)
    np.testing.assert_allclose(a.fixed_accepted, b.demand_accepted[:, 0], atol=1e-9)
    np.testing.assert_array_equal(a.scarcity, b.scarcity)
    np.testing.assert_allclose(a.unserved, b.unserved, atol=1e-9)
    # a scalar fixed demand applies to every market
    s = clear_market(sp, sv, dp, dv, fixed_demand=80.0)
    t = clear_market(sp, sv, dp, dv, fixed_demand=np.full(200, 80.0))
    np.testing.assert_array_equal(s.price, t.price)


def test_static_supply_equals_explicit_bids():
    rng = np.random.default_rng(2)
    B = 300
    sp, sv, dp, dv = _random_batch(rng, B, 3, 2)
    st_p = np.array([10.0, 20.0, 45.0, 30.0, 99.0])  # unsorted on purpose
    st_v = np.array([50.0, 30.0, 100.0, 20.0, 0.0])
    st_key = np.where(st_v > 0, st_p, np.inf)  # zero-volume entries at inf, as documented
    fixed = rng.choice([0.0, 40.0, 120.0, 300.0], size=B)
    a = clear_market(sp, sv, dp, dv, fixed_demand=fixed, static_supply=(st_key, st_v))
    b = clear_market(np.c_[np.tile(st_p, (B, 1)), sp], np.c_[np.tile(st_v, (B, 1)), sv], dp, dv, fixed_demand=fixed)
    np.testing.assert_array_equal(a.price, b.price)
    np.testing.assert_allclose(a.volume, b.volume)
    np.testing.assert_allclose(a.supply_accepted, b.supply_accepted[:, 5:], atol=1e-9)
    np.testing.assert_allclose(a.demand_accepted, b.demand_accepted, atol=1e-9)
    np.testing.assert_allclose(a.fixed_accepted, b.fixed_accepted, atol=1e-9)
    np.testing.assert_array_equal(a.scarcity, b.scarcity)
    # static_accepted gives the static bids' share, consistent with the explicit run
    np.testing.assert_allclose(a.static_accepted(st_p, st_v), b.supply_accepted[:, :5], atol=1e-9)
    # supply and demand balance
    total = a.static_accepted(st_p, st_v).sum(1) + a.supply_accepted.sum(1)
    np.testing.assert_allclose(total, a.demand_accepted.sum(1) + a.fixed_accepted, atol=1e-6)


def test_static_supply_with_no_dynamic_bids():
    st_p, st_v = np.array([20.0, 30.0]), np.array([100.0, 100.0])
    r = clear_market(np.zeros((2, 0)), np.zeros((2, 0)), np.zeros((2, 0)), np.zeros((2, 0)),
                     fixed_demand=np.array([50.0, 150.0]), static_supply=(st_p, st_v))
    np.testing.assert_allclose(r.price, [20.0, 30.0])
    np.testing.assert_allclose(r.static_accepted(st_p, st_v), [[50.0, 0.0], [100.0, 50.0]])


def test_static_accepted_splits_ties_like_the_bids():
    st_p, st_v = np.array([20.0, 25.0]), np.array([60.0, 50.0])
    # a dynamic bid ties with the static one at 20
    r = clear_market([[20.0]], [[40.0]], np.zeros((1, 0)), np.zeros((1, 0)), fixed_demand=50.0,
                     static_supply=(st_p, st_v))
    assert r.price[0] == 20.0
    np.testing.assert_allclose(r.static_accepted(st_p, st_v), [[30.0, 0.0]])
    np.testing.assert_allclose(r.supply_accepted, [[20.0]])


# --------------------------------------------------------------------------- batching


def test_batch_equals_each_market_alone():
    rng = np.random.default_rng(3)
    B = 64
    sp, sv, dp, dv = _random_batch(rng, B, 6, 3)
    fixed = rng.choice([0.0, 30.0, 90.0, 500.0], size=B)
    for mech in ("pay_as_clear", "pay_as_bid"):
        batch = clear_market(sp, sv, dp, dv, fixed_demand=fixed, mechanism=mech)
        for b in range(B):
            r = clear_market(sp[b], sv[b], dp[b], dv[b], fixed_demand=fixed[b], mechanism=mech)
            assert r.price[0] == batch.price[b]
            assert r.volume[0] == pytest.approx(batch.volume[b])
            np.testing.assert_allclose(r.supply_accepted[0], batch.supply_accepted[b], atol=1e-9)
            np.testing.assert_allclose(r.demand_accepted[0], batch.demand_accepted[b], atol=1e-9)
            assert r.scarcity[0] == batch.scarcity[b]
            assert r.unserved[0] == pytest.approx(batch.unserved[b], abs=1e-9)
            np.testing.assert_allclose(
                np.broadcast_to(r.supply_payment[0], (6,)), np.broadcast_to(batch.supply_payment[b], (6,))
            )


def test_result_shapes_and_dtypes():
    r = clear_market(np.zeros((4, 3)), np.ones((4, 3)), np.zeros((4, 2)), np.ones((4, 2)))
    assert r.price.shape == r.volume.shape == r.scarcity.shape == r.unserved.shape == (4,)
    assert r.supply_accepted.shape == (4, 3) and r.demand_accepted.shape == (4, 2)
    assert r.scarcity.dtype == bool and r.price.dtype == np.float64
    assert r.fixed_accepted.shape == (4,) and r.supply_share.shape == (4,)


def test_inputs_are_not_modified():
    sp = np.array([[5000.0, 10.0, -900.0]])
    sv = np.array([[10.0, 0.0, 10.0]])
    dp, dv = np.array([[4000.0]]), np.array([[5.0]])
    copies = [x.copy() for x in (sp, sv, dp, dv)]
    clear_market(sp, sv, dp, dv, fixed_demand=3.0)
    for x, c in zip((sp, sv, dp, dv), copies):
        np.testing.assert_array_equal(x, c)


# --------------------------------------------------------------------------- randomized vs reference


def test_random_markets_match_reference():
    rng = np.random.default_rng(12345)
    levels = np.array([-600.0, -500.0, -10.0, 0.0, 5.0, 10.0, 15.0, 20.0, 35.0, 50.0, 80.0, 3000.0, 3500.0])
    n_markets = 0
    for _ in range(3000):
        N, M = int(rng.integers(0, 7)), int(rng.integers(0, 5))
        if rng.random() < 0.5:  # coarse prices: many ties
            sp = rng.choice(levels, size=N)
            dp = rng.choice(levels, size=M)
        else:
            sp = rng.uniform(-100, 200, size=N).round(1)
            dp = rng.uniform(-100, 300, size=M).round(1)
        sv = rng.choice([0.0, 5.0, 10.0, 20.0, 33.3, 50.0], size=N)
        dv = rng.choice([0.0, 5.0, 15.0, 40.0, 70.0], size=M)
        r = clear_market(sp, sv, dp, dv)
        price, volume, s_acc, d_acc, scarcity = reference_clear(list(zip(sp, sv)), list(zip(dp, dv)))
        msg = f"supply={list(zip(sp, sv))} demand={list(zip(dp, dv))}"
        assert r.price[0] == pytest.approx(price), msg
        assert r.volume[0] == pytest.approx(volume, abs=1e-9), msg
        assert bool(r.scarcity[0]) == scarcity, msg
        np.testing.assert_allclose(r.supply_accepted[0], s_acc, atol=1e-7, err_msg=msg)
        np.testing.assert_allclose(r.demand_accepted[0], d_acc, atol=1e-7, err_msg=msg)
        # balance: sold == bought
        assert r.supply_accepted[0].sum() == pytest.approx(r.demand_accepted[0].sum(), abs=1e-7), msg
        n_markets += 1
    assert n_markets == 3000


def test_random_batches_match_reference():
    """The same comparison through the batched path (one call for many markets)."""
    rng = np.random.default_rng(777)
    B, N, M = 1000, 5, 3
    sp, sv, dp, dv = _random_batch(rng, B, N, M, levels=(-600.0, 0.0, 10.0, 20.0, 20.0, 45.0, CAP, 4000.0))
    r = clear_market(sp, sv, dp, dv)
    for b in range(B):
        price, volume, s_acc, d_acc, scarcity = reference_clear(list(zip(sp[b], sv[b])), list(zip(dp[b], dv[b])))
        assert r.price[b] == pytest.approx(price)
        assert r.volume[b] == pytest.approx(volume, abs=1e-9)
        assert bool(r.scarcity[b]) == scarcity
        np.testing.assert_allclose(r.supply_accepted[b], s_acc, atol=1e-7)
        np.testing.assert_allclose(r.demand_accepted[b], d_acc, atol=1e-7)


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    "args",
    [
        ([[1.0, 2.0]], [[1.0]], [[1.0]], [[1.0]]),  # supply price/volume disagree
        ([[1.0]], [[1.0]], [[1.0, 2.0]], [[1.0]]),  # demand price/volume disagree
        (np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 1)), np.zeros((3, 1))),  # batch sizes disagree
        (np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), np.zeros((1, 1)), np.zeros((1, 1))),  # 3-D
        (1.0, 1.0, [1.0], [1.0]),  # 0-D
    ],
)
def test_shape_errors(args):
    with pytest.raises(ValueError):
        clear_market(*args)


def test_shape_error_message_names_the_arrays():
    with pytest.raises(ValueError, match="supply"):
        clear_market(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="disagree"):
        clear_market([[1.0, 2.0]], [[1.0]], [[1.0]], [[1.0]])
