"""Tests of envs.analysis: best responses against a brute-force price sweep, a hand-made
merit order, exploitability, and records made by the env core."""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest

from envs.analysis import (
    best_response,
    brute_force_best_response,
    exploitability,
    recorded_profit,
)
from envs.market import clear_market, reference_clear
from envs.record import EpisodeRecord

TICK = 0.01


# ----------------------------------------------------------------------------- helpers
def _profit(mechanism, sp, sv, dp, dv, fixed, cost_s, cost_d, own_s, own_d, suc, prev, cap, floor, plant):
    """Clear the markets and return (result, agent profit per hour) like MarketCore."""
    res = clear_market(sp, sv, dp, dv, fixed_demand=fixed, price_cap=cap, price_floor=floor, mechanism=mechanism)
    pay_s = np.broadcast_to(res.supply_payment, sp.shape)
    pay_d = np.broadcast_to(res.demand_payment, dp.shape)
    acc_s, acc_d = res.supply_accepted, res.demand_accepted
    profit = (acc_s[:, own_s] * (pay_s[:, own_s] - cost_s[:, own_s])).sum(axis=1)
    profit -= (acc_d[:, own_d] * (pay_d[:, own_d] + cost_d[:, own_d])).sum(axis=1)
    if plant:
        profit -= ((acc_s[:, own_s].sum(axis=1) > 0) & (prev <= 0)) * suc
    return res, profit


def make_record(
    sp, sv, dp, dv, fixed, *, cost_s, cost_d=None, supply_unit, demand_unit, unit_kind, agent_unit, agent_kind,
    start_up=0.0, prev=None, mechanism="pay_as_clear", max_bid_price=10.0, cap=3000.0, floor=-500.0,
) -> EpisodeRecord:
    """An EpisodeRecord of one learning agent from bid arrays (H, N) / (H, M), cleared here."""
    sp, sv, dp, dv = (np.atleast_2d(np.asarray(a, float)) for a in (sp, sv, dp, dv))
    H = sp.shape[0]
    fixed = np.broadcast_to(np.asarray(fixed, float), (H,)).copy()
    cost_s = np.broadcast_to(np.asarray(cost_s, float), sp.shape).copy()
    cost_d = np.zeros(dp.shape) if cost_d is None else np.broadcast_to(np.asarray(cost_d, float), dp.shape).copy()
    supply_unit = np.asarray(supply_unit, np.int64)
    demand_unit = np.asarray(demand_unit, np.int64)
    prev = np.zeros(H) if prev is None else np.asarray(prev, float)
    own_s = np.flatnonzero(supply_unit == agent_unit)
    own_d = np.flatnonzero(demand_unit == agent_unit)
    res, profit = _profit(
        mechanism, sp, sv, dp, dv, fixed, cost_s, cost_d, own_s, own_d, start_up, prev, cap, floor,
        agent_kind == "plant",
    )
    return EpisodeRecord(
        hours=np.arange(H), times=np.arange(H).astype("datetime64[h]").astype("datetime64[ns]"),
        units=tuple(f"u{k}" for k in range(len(unit_kind))), unit_kind=tuple(unit_kind),
        supply_price=sp, supply_volume=sv, supply_cost=cost_s, supply_unit=supply_unit,
        demand_price=dp, demand_volume=dv, demand_cost=cost_d, demand_unit=demand_unit,
        fixed_demand=fixed, clearing_price=res.price,
        supply_accepted=res.supply_accepted, demand_accepted=res.demand_accepted,
        agents=(f"{agent_kind}_L",), agent_unit=np.array([agent_unit]), agent_kind=(agent_kind,),
        agent_profit=profit[:, None], agent_prev_dispatch=prev[:, None],
        agent_start_up_cost=np.array([start_up if agent_kind == "plant" else 0.0]),
        max_bid_price=float(max_bid_price), price_cap=cap, price_floor=floor, mechanism=mechanism,
    )


def random_record(rng, kind="plant", mechanism="pay_as_clear", mbp=10.0) -> EpisodeRecord:
    """1-3 hours, 3-8 other supply bids (prices on a 0.5 grid, so that ties happen, some
    outside the bid range), a fixed demand, a rule storage demand bid, and one learning
    agent of the given kind."""
    H = int(rng.integers(1, 4))
    n = int(rng.integers(3, 9))
    o_p = rng.integers(-26, 27, (H, n)) / 2.0  # [-13, 13]
    o_v = rng.uniform(10, 100, (H, n)) * (rng.random((H, n)) > 0.1)
    st_p = rng.integers(-20, 21, (H, 1)) / 2.0
    st_v = rng.uniform(0, 60, (H, 1))
    fixed = rng.uniform(0.2, 0.9, H) * o_v.sum(axis=1)
    L, S = n, n + 1  # unit indices: others 0..n-1, learner, rule storage
    unit_kind = ["plant"] * n + [kind, "storage"]
    if kind == "plant":
        a = rng.uniform(-1, 1, (H, 2)) * mbp
        l_p = np.sort(a, axis=1)
        l_v = np.column_stack([rng.uniform(5, 30, H), rng.uniform(20, 80, H)])
        l_c = np.repeat(rng.uniform(-3, 6, (H, 1)), 2, axis=1)
        sp = np.hstack([o_p, l_p])
        sv = np.hstack([o_v, l_v])
        cs = np.hstack([np.zeros((H, n)), l_c])
        su = list(range(n)) + [L, L]
        dp, dv, du, cd = st_p, st_v, [S], np.zeros((H, 1))
    elif kind == "renewable":
        sp = np.hstack([o_p, rng.uniform(-mbp, mbp, (H, 1))])
        sv = np.hstack([o_v, rng.uniform(20, 80, (H, 1))])
        cs = np.hstack([np.zeros((H, n)), np.full((H, 1), rng.uniform(-1, 3))])
        su = list(range(n)) + [L]
        dp, dv, du, cd = st_p, st_v, [S], np.zeros((H, 1))
    else:  # learning storage: one offer and one bid, one of them with volume
        a = rng.uniform(-1, 1, H)
        price = np.abs(a) * mbp
        dis = a >= 0
        sp = np.hstack([o_p, price[:, None]])
        sv = np.hstack([o_v, np.where(dis, rng.uniform(10, 50, H), 0.0)[:, None]])
        cs = np.hstack([np.zeros((H, n)), np.full((H, 1), 0.3)])
        su = list(range(n)) + [L]
        dp = np.hstack([st_p, price[:, None]])
        dv = np.hstack([st_v, np.where(dis, 0.0, rng.uniform(10, 50, H))[:, None]])
        du, cd = [S, L], np.hstack([np.zeros((H, 1)), np.full((H, 1), 0.3)])
    prev = np.where(rng.random(H) < 0.5, 0.0, 50.0)
    return make_record(
        sp, sv, dp, dv, fixed, cost_s=cs, cost_d=cd, supply_unit=su, demand_unit=du, unit_kind=unit_kind,
        agent_unit=L, agent_kind=kind, start_up=float(rng.choice([0.0, 40.0])) if kind == "plant" else 0.0,
        prev=prev, mechanism=mechanism, max_bid_price=mbp,
    )


def dense_grid(record: EpisodeRecord, step: float, eps: float = 1e-7) -> np.ndarray:
    """A uniform grid over the bid range plus every other bid's price and the points
    just around it."""
    mbp = record.max_bid_price
    pts = [np.arange(-mbp, mbp + step / 2, step)]
    for arr in (record.supply_price, record.demand_price):
        v = arr.ravel()
        pts += [v, v - eps, v + eps]
    return np.unique(np.concatenate(pts))


def own_volume(record: EpisodeRecord) -> np.ndarray:
    i = 0
    return (record.supply_volume[:, record.agent_supply_columns(i)].sum(axis=1)
            + record.demand_volume[:, record.agent_demand_columns(i)].sum(axis=1))


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
@pytest.mark.parametrize("kind,seeds,step", [("plant", range(6), 0.5), ("renewable", range(8), 0.05),
                                             ("storage", range(8), 0.05)])
def test_matches_brute_force(kind, seeds, step, mechanism):
    for seed in seeds:
        rng = np.random.default_rng(1000 * seed + len(kind))
        rec = random_record(rng, kind, mechanism)
        br = best_response(rec, 0, tick=TICK)
        bf = brute_force_best_response(rec, 0, dense_grid(rec, step))
        vol = own_volume(rec)
        # the grid holds a point in every price interval at least as good as the analytic
        # candidate there, and the analytic one is at most tick * MW worse
        assert np.all(br.best_profit_per_hour <= bf.best_profit_per_hour + 1e-6), (seed, br, bf)
        assert np.all(br.best_profit_per_hour >= bf.best_profit_per_hour - TICK * vol - 1e-6), (seed, br, bf)
        # a plain uniform grid never beats the analytic best response by more than tick * MW
        # (implied by the check above, as the grid above contains it; run where it is cheap)
        if kind != "plant":
            uni = brute_force_best_response(rec, 0, np.arange(-10, 10.001, step))
            assert np.all(br.best_profit_per_hour >= uni.best_profit_per_hour - TICK * vol - 1e-6)
        # BR >= recorded; recorded recomputed = profit paid
        np.testing.assert_allclose(br.recorded_profit_per_hour, rec.agent_profit[:, 0], atol=1e-9)
        assert np.all(br.gain_per_hour >= -1e-7)
        assert br.exact == (kind != "storage")


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
def test_best_prices_reproduce_best_profit(mechanism):
    """Re-clearing with the reported best prices gives the reported best profit."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        kind = ("plant", "renewable", "storage")[seed % 3]
        rec = random_record(rng, kind, mechanism)
        br = best_response(rec, 0, tick=TICK)
        prev_q = rec.agent_prev_dispatch[0, 0]  # the start-up state follows the best response's own path
        for h in range(rec.n_hours):
            sp = rec.supply_price[h].copy()
            dp = rec.demand_price[h].copy()
            s, d = rec.agent_supply_columns(0), rec.agent_demand_columns(0)
            if kind == "plant":
                sp[s] = br.best_price[h]
            else:
                sp[s] = br.best_price[h, 0]
                dp[d] = br.best_price[h, 0]
            sup = list(zip(sp, rec.supply_volume[h]))
            dem = [(rec.price_cap, rec.fixed_demand[h])] + list(zip(dp, rec.demand_volume[h]))
            price, _, s_acc, d_acc, _ = reference_clear(sup, dem, price_cap=rec.price_cap,
                                                        price_floor=rec.price_floor)
            pay = (lambda p: p) if mechanism == "pay_as_bid" else (lambda p: price)
            prof = sum(s_acc[j] * (pay(sp[j]) - rec.supply_cost[h, j]) for j in s)
            prof -= sum(d_acc[1 + j] * (pay(dp[j]) + rec.demand_cost[h, j]) for j in d)
            if kind == "plant" and sum(s_acc[j] for j in s) > 0 and prev_q <= 0:
                prof -= rec.agent_start_up_cost[0]
            prev_q = sum(s_acc[j] for j in s)
            assert prof == pytest.approx(br.best_profit_per_hour[h], abs=1e-6)
            # actions map back to prices like MarketCore.build_bids
            a = br.best_action[h]
            if kind == "storage":
                assert (a[0] >= 0) == (br.direction[h] >= 0) or br.best_price[h, 0] == 0
                assert abs(a[0]) * rec.max_bid_price == pytest.approx(br.best_price[h, 0])
            else:
                np.testing.assert_allclose(a[np.isfinite(a)] * rec.max_bid_price,
                                           br.best_price[h][np.isfinite(a)])
            assert np.all(np.abs(a[np.isfinite(a)]) <= 1 + 1e-12)


def _02a_like(learner_prices, learner_cost=55.708, mechanism="pay_as_clear"):
    """Rule plants at 20.8, 30, 40, 85.708 (1000 MW each, the last 5000 MW), a learner
    with 1 MW inflexible + 2499 MW flexible at marginal cost 55.708, demand 4500 MW."""
    sp = [[20.8, 30.0, 40.0, 85.708, *learner_prices]]
    sv = [[1000.0, 1000.0, 1000.0, 5000.0, 1.0, 2499.0]]
    cost = [[20.8, 30.0, 40.0, 85.708, learner_cost, learner_cost]]
    return make_record(
        sp, sv, np.zeros((1, 0)), np.zeros((1, 0)), 4500.0, cost_s=cost, supply_unit=[0, 1, 2, 3, 4, 4],
        demand_unit=[], unit_kind=["plant"] * 5, agent_unit=4, agent_kind="plant", prev=[100.0],
        mechanism=mechanism, max_bid_price=100.0,
    )


def test_hand_computed_undercut():
    rec = _02a_like([55.708, 55.708])  # bidding at marginal cost: price 55.708, profit 0
    assert rec.clearing_price[0] == pytest.approx(55.708)
    br = best_response(rec, 0, tick=TICK)
    assert br.recorded_profit == pytest.approx(0.0, abs=1e-9)
    # best: the learner sets the price just below the 85.708 plant and sells 1500 MW
    assert br.best_price[0, 1] == pytest.approx(85.708 - TICK)
    assert br.best_price[0, 0] <= br.best_price[0, 1]
    assert br.best_profit == pytest.approx((85.698 - 55.708) * 1500.0, rel=1e-12)
    # a finer tick gets closer to the supremum 29.99... * 1500
    assert best_response(rec, 0, tick=1e-4).best_profit == pytest.approx((85.708 - 1e-4 - 55.708) * 1500.0)
    # the brute-force sweep with a point just below 85.708 agrees within tick * MW
    bf = brute_force_best_response(rec, 0, [0.0, 55.708, 85.7, 85.708 - 1e-6, 85.708, 90.0])
    assert bf.best_profit == pytest.approx((85.708 - 1e-6 - 55.708) * 1500.0)
    assert 0 <= bf.best_profit - br.best_profit <= TICK * 1500 + 1e-6
    # pay as bid: both parts just below 85.708 as well (the 1500 MW are paid their bid)
    pab = best_response(_02a_like([55.708, 55.708], mechanism="pay_as_bid"), 0, tick=TICK)
    assert pab.best_profit == pytest.approx((85.698 - 55.708) * 1500.0)


def test_exploitability_zero_at_best_response_and_positive_at_cost():
    rec = _02a_like([55.708, 55.708])
    ex = exploitability(rec)
    assert ex.agents == ("plant_L",) and ex.exact.all()
    assert ex.gain[0] == pytest.approx((85.698 - 55.708) * 1500.0)
    assert ex.joint == float("inf")  # recorded profit 0, a positive gain
    # recorded bids = the best response: nothing to gain
    at_br = _02a_like([85.698, 85.698])
    ex = exploitability(at_br)
    assert ex.gain[0] == pytest.approx(0.0, abs=1e-6)
    assert ex.joint == pytest.approx(0.0, abs=1e-9)
    assert ex.share[0] == pytest.approx(1.0)
    # half-way: joint = gain / |recorded|, share = recorded / BR
    mid = _02a_like([70.0, 70.0])
    ex = exploitability(mid)
    rec_p, br_p = (70.0 - 55.708) * 1500, (85.698 - 55.708) * 1500
    assert ex.recorded_profit[0] == pytest.approx(rec_p)
    assert ex.joint == pytest.approx((br_p - rec_p) / rec_p)
    assert ex.share[0] == pytest.approx(rec_p / br_p)
    assert "joint exploitability" in ex.summary()


def test_exploitability_zero_when_replaying_best_response():
    """Random markets: re-record with the best-response prices -> gain ~ 0."""
    for seed in range(6):
        rng = np.random.default_rng(50 + seed)
        kind = ("plant", "renewable")[seed % 2]
        rec = random_record(rng, kind)
        br = best_response(rec, 0)
        sp = rec.supply_price.copy()
        s = rec.agent_supply_columns(0)
        sp[:, s] = br.best_price[:, : len(s)]
        again = make_record(
            sp, rec.supply_volume, rec.demand_price, rec.demand_volume, rec.fixed_demand,
            cost_s=rec.supply_cost, cost_d=rec.demand_cost, supply_unit=rec.supply_unit,
            demand_unit=rec.demand_unit, unit_kind=rec.unit_kind, agent_unit=int(rec.agent_unit[0]),
            agent_kind=kind, start_up=float(rec.agent_start_up_cost[0]), prev=rec.agent_prev_dispatch[:, 0],
            max_bid_price=rec.max_bid_price,
        )
        np.testing.assert_allclose(again.agent_profit[:, 0], br.best_profit_per_hour, atol=1e-6)
        ex = exploitability(again)
        assert abs(ex.gain[0]) <= 1e-6
        np.testing.assert_allclose(ex.best_response_profit[0], br.best_profit, atol=1e-6)


def _two_hour_start_up(prev0):
    sp = [[20.0, 40.0, 5.0, 5.0]] * 2
    sv = [[100.0, 100.0, 10.0, 40.0]] * 2
    return make_record(
        sp, sv, np.zeros((2, 0)), np.zeros((2, 0)), 120.0, cost_s=[[0, 0, 30.0, 30.0]],
        supply_unit=[0, 1, 2, 2], demand_unit=[], unit_kind=["plant"] * 3, agent_unit=2, agent_kind="plant",
        start_up=200.0, prev=[prev0, 0.0], max_bid_price=100.0,
    )


def test_start_up_cost_over_the_episode():
    """Start-up costs follow the best response's own on/off path, not the recorded one.
    Each hour: undercut 40 -> sell 20 MW at 39.99 = 199.8 EUR, less than the 200 EUR
    start-up. Per hour it never pays to start; over two hours it does (199.6 > 0)."""
    br = best_response(_two_hour_start_up(0.0), 0)
    np.testing.assert_allclose(br.best_profit_per_hour, [199.8 - 200.0, 199.8], atol=1e-9)
    assert br.best_profit == pytest.approx(199.6)
    assert np.all(br.best_price[:, 1] == pytest.approx(39.99))
    np.testing.assert_array_equal(br.best_on, [True, True])  # the schedule the profits follow
    # already on before the first hour: no start at all
    br = best_response(_two_hour_start_up(50.0), 0)
    np.testing.assert_allclose(br.best_profit_per_hour, [199.8, 199.8], atol=1e-9)
    # the recorded prev of hour 1 (0 MW) is ignored: the path's own dispatch counts
    rec = _two_hour_start_up(0.0)
    rec1 = replace(rec, **{k: getattr(rec, k)[1:] for k in _HOURLY})
    assert best_response(rec1, 0).best_profit == pytest.approx(0.0, abs=1e-9)  # one hour alone: stay off
    assert best_response(rec1, 0).best_price[0, 0] > 20.0  # priced out of the market
    np.testing.assert_array_equal(best_response(rec1, 0).best_on, [False])


_HOURLY = ("hours", "times", "supply_price", "supply_volume", "supply_cost", "demand_price", "demand_volume",
           "demand_cost", "fixed_demand", "clearing_price", "supply_accepted", "demand_accepted", "agent_profit",
           "agent_prev_dispatch")


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
def test_start_up_matches_brute_force_over_patterns(mechanism):
    """Random multi-hour markets with a start-up cost of the order of an hour's profit:
    the on/off DP equals the enumeration of all 2**H on/off patterns (brute force)."""
    checked = 0
    for seed in range(12):
        rng = np.random.default_rng(300 + seed)
        rec = random_record(rng, "plant", mechanism)
        H = 4
        rec = _tile_hours(rec, H, rng)
        rec = replace(rec, agent_start_up_cost=np.array([float(rng.uniform(5, 120))]))
        assert_matches_brute_force(rec, seed)
        checked += 1
    assert checked == 12


def assert_matches_brute_force(rec, seed):
    """The best response of agent 0 equals the brute force over a dense grid, up to the
    tick on its volume; returns the best response."""
    br = best_response(rec, 0, tick=TICK)
    bf = brute_force_best_response(rec, 0, dense_grid(rec, 1.0))
    vol = own_volume(rec).sum()
    assert br.best_profit <= bf.best_profit + 1e-6, seed
    assert br.best_profit >= bf.best_profit - TICK * vol - 1e-6, seed
    return br


def _tile_hours(rec, H, rng):
    """Repeat the record's hours to ``H`` with perturbed volumes (a longer episode)."""
    idx = np.arange(H) % rec.n_hours
    fields = {k: getattr(rec, k)[idx].copy() for k in _HOURLY}
    fields["hours"] = np.arange(H)
    fields["times"] = np.arange(H).astype("datetime64[h]").astype("datetime64[ns]")
    fields["fixed_demand"] = fields["fixed_demand"] * rng.uniform(0.6, 1.4, H)
    return replace(rec, **fields)


def test_storage_recorded_direction_only():
    rng = np.random.default_rng(3)
    rec = random_record(rng, "storage")
    br = best_response(rec, 0)
    assert not br.exact
    sv = rec.supply_volume[:, rec.agent_supply_columns(0)[0]]
    dv = rec.demand_volume[:, rec.agent_demand_columns(0)[0]]
    np.testing.assert_array_equal(br.direction, np.where(sv > 0, 1, np.where(dv > 0, -1, 0)))
    assert np.all((br.best_price[:, 0] >= 0) & (br.best_price[:, 0] <= rec.max_bid_price))


def test_agent_by_name_and_errors():
    rec = _02a_like([60.0, 70.0])
    a = best_response(rec, "plant_L")
    b = best_response(rec, 0)
    assert a.best_profit == b.best_profit
    with pytest.raises(KeyError):
        best_response(rec, "nope")
    with pytest.raises(ValueError):
        best_response(rec, 0, tick=0.0)
    np.testing.assert_allclose(recorded_profit(rec, 0), rec.agent_profit[:, 0])


def test_chunking_gives_same_result(monkeypatch):
    import envs.analysis as an

    rng = np.random.default_rng(7)
    rec = random_record(rng, "plant")
    full = best_response(rec, 0)
    monkeypatch.setattr(an, "MAX_ROWS", 10)
    small = best_response(rec, 0)
    np.testing.assert_array_equal(full.best_profit_per_hour, small.best_profit_per_hour)


# ----------------------------------------------------------------------------- env core
def _core_record(name, actions_fn, hours=None):
    scenario = pytest.importorskip("envs.scenario")
    core_mod = pytest.importorskip("envs.core")
    sc = scenario.load_scenario(name)
    core = core_mod.MarketCore(sc, max_cycles=hours)
    core.recording = True
    rng = np.random.default_rng(0)
    core.reset(rng)
    while not core.done:
        core.step(actions_fn(core, rng))
    return core, core.episode_record()


def test_tiny_core_recorded_profit_matches_env():
    fixed = lambda core, rng: np.full((1, core.n, core.max_act), 0.3)  # noqa: E731
    core, rec = _core_record("tiny", fixed)
    ex = exploitability(rec)
    for k, a in enumerate(rec.agents):
        r = ex.responses[a]
        np.testing.assert_allclose(r.recorded_profit_per_hour, rec.agent_profit[:, k], rtol=1e-12, atol=1e-6)
        assert np.all(r.gain_per_hour >= -1e-6)
    assert ex.gain.sum() > 0  # 30 EUR/MWh is not the best response in every hour


def test_default_core_plants_with_start_up_and_storage():
    rand = lambda core, rng: rng.uniform(-1, 1, (1, core.n, core.max_act))  # noqa: E731
    core, rec = _core_record("default", rand, hours=48)
    ex = exploitability(rec)
    for k, a in enumerate(rec.agents):
        r = ex.responses[a]
        np.testing.assert_allclose(r.recorded_profit_per_hour, rec.agent_profit[:, k], rtol=1e-12, atol=1e-6)
        assert r.gain >= -1e-6  # per hour it can be negative (a start-up that pays off later)
        assert r.exact == (r.kind != "storage")  # no scenario given: storage approximate
    ex = exploitability(rec, scenario=core.scenario)
    assert ex.exact.all()
    assert np.all(ex.gain >= 0)
    # brute force on a few hours of one plant agrees within tick * MW
    sub = replace(rec, **{k: getattr(rec, k)[:2] for k in (
        "hours", "times", "supply_price", "supply_volume", "supply_cost", "demand_price", "demand_volume",
        "demand_cost", "fixed_demand", "clearing_price", "supply_accepted", "demand_accepted", "agent_profit",
        "agent_prev_dispatch")})
    br = best_response(sub, 0)
    grid = dense_grid(sub, 5.0)
    grid = grid[(grid >= -100) & (grid <= 100)]
    bf = brute_force_best_response(sub, 0, grid)
    vol = sub.supply_volume[:, sub.agent_supply_columns(0)].sum(axis=1)
    assert np.all(br.best_profit_per_hour <= bf.best_profit_per_hour + 1e-6)
    assert np.all(br.best_profit_per_hour >= bf.best_profit_per_hour - TICK * vol - 1e-6)


from _examples import ASSUME_DIR  # noqa: E402 - the one helper for the shared ASSUME examples

EX_02A = str(ASSUME_DIR / "example_02a")


@pytest.mark.skipif(not os.path.isdir(EX_02A), reason="ASSUME example_02a not available")
def test_02a_full_month():
    core, rec = _core_record(EX_02A, lambda core, rng: rng.uniform(-1, 1, (1, core.n, core.max_act)))
    assert rec.n_hours == 720
    br = best_response(rec, 0)
    np.testing.assert_allclose(br.recorded_profit_per_hour, rec.agent_profit[:, 0], rtol=1e-12, atol=1e-6)
    assert np.all(br.gain_per_hour >= -1e-6)


# ----------------------------------------------------------------------------- exact storage
def _storage_record(o_p, o_v, fixed, *, own_cost=(0.0, 0.0), mechanism="pay_as_clear", mbp=100.0,
                    st_p=None, st_v=None, own_price=None, own_signed=None):
    """A record with other supply bids ``o_p``/``o_v`` ``(H, n)``, an optional rule
    demand bid ``st_p``/``st_v`` and one learning storage unit (one offer, one bid)."""
    o_p, o_v = np.atleast_2d(np.asarray(o_p, float)), np.atleast_2d(np.asarray(o_v, float))
    H, n = o_p.shape
    L = n + 1
    a = np.zeros(H) if own_signed is None else np.asarray(own_signed, float)
    price = np.zeros(H) if own_price is None else np.asarray(own_price, float)
    sp = np.hstack([o_p, price[:, None]])
    sv = np.hstack([o_v, np.maximum(a, 0)[:, None]])
    cs = np.hstack([o_p, np.full((H, 1), own_cost[1])])
    if st_p is None:
        dp, dv, du, cd = price[:, None], np.maximum(-a, 0)[:, None], [L], np.full((H, 1), own_cost[0])
    else:
        dp = np.hstack([np.asarray(st_p, float).reshape(H, 1), price[:, None]])
        dv = np.hstack([np.asarray(st_v, float).reshape(H, 1), np.maximum(-a, 0)[:, None]])
        du, cd = [n, L], np.hstack([np.zeros((H, 1)), np.full((H, 1), own_cost[0])])
    return make_record(
        sp, sv, dp, dv, fixed, cost_s=cs, cost_d=cd, supply_unit=list(range(n)) + [L], demand_unit=du,
        unit_kind=["plant"] * (n + 1) + ["storage"], agent_unit=L, agent_kind="storage", mechanism=mechanism,
        max_bid_price=mbp,
    )


def _reclear_storage_hour(rec, h, p_ch, p_dis, v_ch, v_dis, mechanism="pay_as_clear"):
    """Hour ``h`` of a ``_storage_record`` re-cleared by ``reference_clear`` with the
    storage's charge bid ``v_ch`` MW at ``p_ch`` and offer ``v_dis`` MW at ``p_dis``:
    its accepted net injection (MW, + sold) and profit of the hour."""
    sp, dp = rec.supply_price[h].copy(), rec.demand_price[h].copy()
    sv, dv = rec.supply_volume[h].copy(), rec.demand_volume[h].copy()
    sp[-1], sv[-1], dp[-1], dv[-1] = p_dis, v_dis, p_ch, v_ch
    price, _, s_acc, d_acc, _ = reference_clear(
        list(zip(sp, sv)), [(rec.price_cap, rec.fixed_demand[h])] + list(zip(dp, dv)),
        price_cap=rec.price_cap, price_floor=rec.price_floor)
    pay_s = p_dis if mechanism == "pay_as_bid" else price
    pay_d = p_ch if mechanism == "pay_as_bid" else price
    profit = s_acc[-1] * (pay_s - rec.supply_cost[h, -1]) - d_acc[-1] * (pay_d + rec.demand_cost[h, -1])
    return s_acc[-1] - d_acc[-1], profit


def test_storage_hand_computed_arbitrage():
    """Cheap hour then dear hour, others' curves flat: charge 50 MW at 10, sell the 36 MW
    it yields at 50 (the 50 EUR plant still sets the price)."""
    from envs.analysis import StorageParams

    rec = _storage_record([[10.0], [50.0]], [[1000.0], [1000.0]], [500.0, 500.0], own_cost=(1.0, 1.0))
    par = StorageParams(max_power_charge=50.0, max_power_discharge=50.0, efficiency_charge=0.8,
                        efficiency_discharge=0.9, soc_min=0.0, soc_max=40.0, soc_initial=0.0)
    br = best_response(rec, 0, storage=par, soc_points=5)
    assert br.exact and br.soc_points == 5
    np.testing.assert_allclose(br.best_volume, [-50.0, 36.0])
    np.testing.assert_allclose(br.soc, [0.0, 40.0, 0.0])
    np.testing.assert_allclose(br.best_profit_per_hour, [-50 * (10 + 1), 36 * (50 - 1)])
    assert br.best_profit == pytest.approx(1214.0)
    np.testing.assert_array_equal(br.direction, [-1, 1])
    assert br.best_action[0, 0] <= 0 <= br.best_action[1, 0]
    # equally good charge bids: the highest (a demand bid does not set the price; a low one
    # would invite an outbidding race); equally good offers: the lowest
    assert br.best_price[0, 0] == pytest.approx(100.0)
    assert br.best_price[1, 0] == pytest.approx(0.0)
    # a finer grid cannot do better here (the power limit binds), a grid of 2 levels can
    assert best_response(rec, 0, storage=par, soc_points=41).best_profit == pytest.approx(1214.0)
    # time step of 30 minutes: the same MW move half the energy, profit per step halves
    rec_half = replace(rec, dt=0.5)
    br = best_response(rec_half, 0, storage=par, soc_points=5)
    np.testing.assert_allclose(br.best_volume, [-50.0, 36.0])
    np.testing.assert_allclose(br.soc, [0.0, 20.0, 0.0])
    assert br.best_profit == pytest.approx(607.0)
    # starting full with no later hour: sell at once, never buy
    par_full = replace(par, soc_initial=40.0)
    br = best_response(rec, 0, storage=par_full, soc_points=5)
    assert br.best_volume[1] == pytest.approx(36.0) and br.best_volume[0] >= 0


def test_storage_sets_the_price_with_what_the_residual_demand_leaves():
    """others: 60 MW at 10, 100 MW at 80; demand 100 MW; storage full (100 MWh, 100 MW).
    Selling 40 MW at 79.99 sets the price (3199.6 EUR); selling all 100 MW needs a price
    below 10 (999 EUR); anything in between is not accepted in full."""
    from envs.analysis import StorageParams

    rec = _storage_record([[10.0, 80.0]], [[60.0, 100.0]], [100.0])
    par = StorageParams(max_power_charge=100.0, max_power_discharge=100.0, efficiency_charge=1.0,
                        efficiency_discharge=1.0, soc_min=0.0, soc_max=100.0, soc_initial=100.0)
    br = best_response(rec, 0, storage=par, soc_points=11)
    assert br.best_volume[0] == pytest.approx(40.0)
    assert br.best_price[0, 0] == pytest.approx(80.0 - TICK)
    assert br.best_profit == pytest.approx(40.0 * (80.0 - TICK))
    # a grid without the 40 MW level (steps of 30 MW): on the grid, 30 MW (the 80 EUR plant
    # sets the price); the off-grid search offers the whole 90 MW at 79.99 and sells the 40
    # MW the residual demand leaves, ending at 50 MWh, between two levels
    coarse = replace(par, soc_max=90.0, soc_initial=90.0)
    br = best_response(rec, 0, storage=coarse, soc_points=4, storage_off_grid=False)
    assert br.best_volume[0] == pytest.approx(30.0) and not br.off_grid
    assert br.best_profit == pytest.approx(30.0 * 80.0)
    br = best_response(rec, 0, storage=coarse, soc_points=4)
    assert br.off_grid and br.best_volume[0] == pytest.approx(40.0)
    assert br.best_price[0, 0] == pytest.approx(80.0 - TICK)
    assert br.best_profit == pytest.approx(40.0 * (80.0 - TICK))
    np.testing.assert_allclose(br.soc, [90.0, 50.0])


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
def test_storage_dp_matches_brute_force_paths(mechanism):
    """Random 3-hour markets: the DP over the state-of-charge grid equals the enumeration
    of every state-of-charge path with a brute-force price sweep (reference_clear)."""
    from envs.analysis import StorageParams

    for seed in range(6):
        rng = np.random.default_rng(700 + seed)
        H, n = 3, int(rng.integers(2, 5))
        o_p = rng.integers(-4, 21, (H, n)) / 2.0
        o_v = rng.uniform(10, 60, (H, n))
        fixed = rng.uniform(20, 120, H)
        rec = _storage_record(o_p, o_v, fixed, own_cost=(rng.uniform(0, 1), rng.uniform(0, 1)),
                              mechanism=mechanism, mbp=10.0, st_p=rng.integers(0, 21, (H, 1)) / 2.0,
                              st_v=rng.uniform(0, 30, (H, 1)))
        par = StorageParams(max_power_charge=float(rng.uniform(15, 40)), max_power_discharge=float(rng.uniform(15, 40)),
                            efficiency_charge=float(rng.uniform(0.7, 1.0)), efficiency_discharge=float(rng.uniform(0.7, 1.0)),
                            soc_min=5.0, soc_max=45.0, soc_initial=float(rng.choice([5.0, 25.0, 45.0])))
        br = best_response(rec, 0, storage=par, soc_points=5, tick=TICK, storage_off_grid=False)
        bf = brute_force_best_response(rec, 0, dense_grid(rec, 0.25), storage=par, soc_points=5)
        slack = TICK * np.abs(br.best_volume).sum() + 1e-6
        assert br.best_profit <= bf.best_profit + 1e-6, seed
        assert br.best_profit >= bf.best_profit - slack, (seed, br.best_profit, bf.best_profit)
        # the schedule is feasible: power limits, SoC bounds, SoC moves like the env
        soc = br.soc
        e = np.where(br.best_volume >= 0, -br.best_volume / par.efficiency_discharge,
                     -br.best_volume * par.efficiency_charge) * rec.dt
        np.testing.assert_allclose(np.diff(soc), e, atol=1e-9)
        assert soc.min() >= par.soc_min - 1e-9 and soc.max() <= par.soc_max + 1e-9
        assert np.all(br.best_volume <= par.max_power_discharge + 1e-9)
        assert np.all(-br.best_volume <= par.max_power_charge + 1e-9)
        # re-clearing each hour with the reported price and volume gives the reported profit
        for h in range(H):
            q = br.best_volume[h]
            if q == 0:
                assert br.best_profit_per_hour[h] == 0.0
                continue
            p = br.best_price[h, 0]
            net, prof = _reclear_storage_hour(rec, h, p, p, max(-q, 0), max(q, 0), mechanism)
            assert net == pytest.approx(q)
            assert prof == pytest.approx(br.best_profit_per_hour[h], abs=1e-6)


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
def test_storage_off_grid_schedule_is_feasible_and_replays_to_its_profit(mechanism):
    """Random 6-hour markets on a coarse grid (4 levels, moves that do not fit the power
    limits): the off-grid schedule earns at least the grid's, keeps the power and
    state-of-charge limits, moves its state of charge like the env, and re-clearing each
    hour with its price and bid volume sells exactly its volume for exactly its profit."""
    from envs.analysis import StorageParams

    found = 0
    for seed in range(8):
        rng = np.random.default_rng(900 + seed)
        H, n = 6, int(rng.integers(2, 5))
        o_p = rng.integers(0, 21, (H, n)) / 2.0
        o_v = rng.uniform(10, 60, (H, n))
        fixed = rng.uniform(20, 120, H)
        rec = _storage_record(o_p, o_v, fixed, own_cost=(rng.uniform(0, 1), rng.uniform(0, 1)),
                              mechanism=mechanism, mbp=10.0, st_p=rng.integers(0, 21, (H, 1)) / 2.0,
                              st_v=rng.uniform(0, 30, (H, 1)))
        par = StorageParams(max_power_charge=float(rng.uniform(15, 40)), max_power_discharge=float(rng.uniform(15, 40)),
                            efficiency_charge=float(rng.uniform(0.7, 1.0)), efficiency_discharge=float(rng.uniform(0.7, 1.0)),
                            soc_min=5.0, soc_max=65.0, soc_initial=float(rng.choice([5.0, 35.0, 65.0])))
        grid = best_response(rec, 0, storage=par, soc_points=4, tick=TICK, storage_off_grid=False)
        br = best_response(rec, 0, storage=par, soc_points=4, tick=TICK)
        assert br.best_profit >= grid.best_profit - 1e-9
        if not br.off_grid:
            assert br.best_profit == grid.best_profit
            continue
        found += 1
        assert br.best_profit > grid.best_profit
        e = np.where(br.best_volume >= 0, -br.best_volume / par.efficiency_discharge,
                     -br.best_volume * par.efficiency_charge) * rec.dt
        np.testing.assert_allclose(np.diff(br.soc), e, atol=1e-9)
        assert br.soc.min() >= par.soc_min - 1e-9 and br.soc.max() <= par.soc_max + 1e-9
        assert np.all(br.bid_volume <= par.max_power_discharge + 1e-9)
        assert np.all(-br.bid_volume <= par.max_power_charge + 1e-9)
        assert np.all(np.abs(br.best_volume) <= np.abs(br.bid_volume) + 1e-9)
        assert np.all(br.best_volume * br.bid_volume >= 0)
        for h in range(H):
            b = br.bid_volume[h]
            if b == 0:
                assert br.best_volume[h] == 0 and br.best_profit_per_hour[h] == 0.0
                continue
            p = br.best_price[h, 0]
            net, prof = _reclear_storage_hour(rec, h, p, p, max(-b, 0), max(b, 0), mechanism)
            assert net == pytest.approx(br.best_volume[h], abs=1e-7)
            assert prof == pytest.approx(br.best_profit_per_hour[h], abs=1e-6)
    assert found >= 2  # the coarse grid leaves something to find in most of these markets


def test_storage_response_policy_in_closed_loop_earns_the_whole_volume_best_response():
    """Random 8-hour markets: bidding StorageResponsePolicy's two-sided bids at the state
    of charge it reaches (both bids at once, for the whole feasible volume, re-cleared
    each hour against the recorded other bids, as the env does) earns exactly what the
    policy's programme promises, and (where nothing forces a trade) at least the
    whole-volume best response on the grid."""
    from envs.analysis import StorageParams, StorageResponsePolicy

    for seed in range(6):
        rng = np.random.default_rng(1300 + seed)
        H, n = 8, int(rng.integers(2, 5))
        rec = _storage_record(rng.integers(0, 21, (H, n)) / 2.0, rng.uniform(10, 60, (H, n)),
                              rng.uniform(20, 120, H), own_cost=(rng.uniform(0, 1), rng.uniform(0, 1)), mbp=10.0,
                              st_p=rng.integers(0, 21, (H, 1)) / 2.0, st_v=rng.uniform(0, 30, (H, 1)))
        par = StorageParams(max_power_charge=float(rng.uniform(15, 40)), max_power_discharge=float(rng.uniform(15, 40)),
                            efficiency_charge=float(rng.uniform(0.7, 1.0)), efficiency_discharge=float(rng.uniform(0.7, 1.0)),
                            soc_min=5.0, soc_max=65.0, soc_initial=float(rng.choice([5.0, 35.0, 65.0])))
        policy = StorageResponsePolicy(rec, 0, storage=par, soc_points=7, tick=TICK)
        grid = best_response(rec, 0, storage=par, soc_points=7, tick=TICK, storage_moves="full", storage_off_grid=False)
        soc, total = par.soc_initial, 0.0
        for h in range(H):
            p_ch, p_dis = policy.bids([h], [soc])[0]
            assert 0.0 <= p_ch <= p_dis <= rec.max_bid_price
            v_dis = min(par.max_power_discharge, (soc - par.soc_min) * par.efficiency_discharge)
            v_ch = min(par.max_power_charge, (par.soc_max - soc) / par.efficiency_charge)
            net, prof = _reclear_storage_hour(rec, h, p_ch, p_dis, v_ch, v_dis)
            total += prof
            soc = float(np.clip(soc - max(net, 0) / par.efficiency_discharge - min(net, 0) * par.efficiency_charge,
                                par.soc_min, par.soc_max))
        assert total == pytest.approx(policy.best_profit, abs=1e-6), seed
        if rec.clearing_price.max() <= rec.max_bid_price:  # the grid may wait where the env cannot
            assert policy.best_profit >= grid.best_profit - 1e-6, seed
    with pytest.raises(ValueError, match="hours"):
        policy.bids([H], [par.soc_min])
    plant = _02a_like([55.708, 55.708])
    with pytest.raises(ValueError, match="not a storage unit"):
        StorageResponsePolicy(plant, 0)


def test_storage_exact_on_env_record_and_grid_convergence():
    """default scenario, 48 hours of random bids: the exact storage response is feasible,
    needs the scenario, and refines (weakly) as the grid gets finer in nested grids."""
    core, rec = _core_record("default", lambda core, rng: rng.uniform(-1, 1, (1, core.n, core.max_act)), hours=48)
    k = [a.startswith("storage") for a in rec.agents].index(True)
    coarse = best_response(rec, k, scenario=core.scenario, soc_points=11)
    fine = best_response(rec, k, scenario=core.scenario, soc_points=21)  # contains the 11-level grid
    assert coarse.exact and fine.exact
    assert fine.best_profit >= coarse.best_profit - 1e-6
    assert best_response(rec, k).exact is False  # without the scenario: per-hour approximation
    st = core.scenario.storages
    assert fine.soc[0] == pytest.approx(st.initial_soc[0] * st.capacity[0])
    assert fine.best_profit > 0


def test_time_step_scales_energy_and_profit_not_start_ups():
    rec = _02a_like([55.708, 55.708])
    half = replace(rec, dt=0.5)
    assert best_response(half, 0).best_profit == pytest.approx(0.5 * best_response(rec, 0).best_profit)
    np.testing.assert_allclose(recorded_profit(half, 0), 0.5 * recorded_profit(rec, 0))
    # the start-up cost is EUR per start, whatever the step: 2 x 15-minute steps
    two = _two_hour_start_up(0.0)
    q = replace(two, dt=0.25)
    br = best_response(q, 0)
    # selling 20 MW at 39.99 for 15 minutes earns 49.95 per step: never worth a 200 EUR start
    assert br.best_profit == pytest.approx(0.0, abs=1e-9)
    assert EpisodeRecord.__dataclass_fields__["dt"].default == 1.0


def test_br_share_headline():
    from envs.analysis import br_share

    ex = exploitability(_02a_like([70.0, 70.0]))
    rec_p, br_p = (70.0 - 55.708) * 1500, (85.698 - 55.708) * 1500
    assert br_share(ex) == pytest.approx(rec_p / br_p)
    assert br_share(exploitability(_02a_like([85.698, 85.698]))) == pytest.approx(1.0)


@pytest.mark.parametrize("kind,demand_bids", [("plant", False), ("renewable", False), ("plant", True), ("renewable", True)])
def test_residual_fast_path_equals_full_clearing(kind, demand_bids):
    """Pay-as-clear, an agent with supply bids only: the per-hour merit-order path of
    _evaluate gives the same profits and dispatch as clearing every candidate market in
    full, with ties, zero volumes, prices outside the limits, scarcity and zero demand;
    with fixed demand only and with the others' demand bids too (prices on the supply
    grid, between it, at the cap and below the floor; the supply below the first covering
    offer may already meet the demand there)."""
    from envs.analysis import _evaluate, _slots

    rng = np.random.default_rng((7 if kind == "plant" else 8) + (100 if demand_bids else 0))
    for trial in range(60 if demand_bids else 40):
        H, n = int(rng.integers(1, 5)), int(rng.integers(0, 9))
        o_p = rng.integers(-30, 31, (H, n)) / 2.0
        o_p[rng.random((H, n)) < 0.1] = 4000.0  # above the cap: clipped
        o_v = rng.integers(0, 6, (H, n)) * 10.0 * (rng.random((H, n)) > 0.15)
        k = 2 if kind == "plant" else 1
        l_v = rng.integers(0, 5, (H, k)) * 10.0
        l_v[rng.random((H, k)) < 0.15] = 0.0
        scale = rng.choice([0.0, 0.5, 1.0, 1.3])  # zero demand, within the offer, scarcity
        fixed = np.round(scale * (o_v.sum(axis=1) + l_v.sum(axis=1)) * rng.uniform(0.3, 1.0, H))
        sp = np.hstack([o_p, np.sort(rng.integers(-20, 21, (H, k)) / 2.0, axis=1)])
        sv = np.hstack([o_v, l_v])
        cs = np.hstack([np.zeros((H, n)), np.repeat(rng.integers(-4, 8, (H, 1)) / 2.0, k, axis=1)])
        L = n
        m = int(rng.integers(1, 5)) if demand_bids else 0
        dp = rng.integers(-24, 25, (H, m)) / 2.0 + rng.choice([0.0, 0.25], (H, m))
        dp[rng.random((H, m)) < 0.15] = 3000.0
        dp[rng.random((H, m)) < 0.1] = -600.0
        dv = rng.integers(0, 5, (H, m)) * 10.0
        if demand_bids:
            fixed = fixed * rng.choice([0.0, 0.5, 1.0])
        rec = make_record(
            sp, sv, dp, dv, fixed, cost_s=cs, supply_unit=list(range(n)) + [L] * k,
            demand_unit=list(range(n + 1, n + 1 + m)),
            unit_kind=["plant"] * n + [kind] + ["demand"] * m, agent_unit=L, agent_kind=kind,
            cap=float(rng.choice([3000.0, 12.0])), floor=float(rng.choice([-500.0, -8.0])),
        )
        sl = _slots(rec, 0)
        # candidates: the others' prices, next to them, the limits and random values
        pool = np.concatenate([o_p.ravel(), o_p.ravel() - 0.01, [-600.0, 3100.0, 12.0, -8.0], rng.uniform(-16, 16, 20)])
        P = 30
        own = np.sort(rng.choice(pool, (H, P, k)), axis=2)
        d0 = np.zeros((H, P, 0))
        fast = _evaluate(rec, sl, 0, H, own, d0)
        full = _evaluate(rec, sl, 0, H, own, d0, via_clearing=True)
        np.testing.assert_allclose(fast[0], full[0], rtol=1e-12, atol=1e-7, err_msg=f"trial {trial}")
        np.testing.assert_array_equal(fast[1], full[1], err_msg=f"trial {trial}")


def test_storage_full_moves_equal_the_enumeration_of_full_power_paths():
    """storage_moves="full": the DP equals the best of every path that only idles, moves by
    the largest grid step or onto an end level (enumerated over 4 hours with the same
    per-hour values), never beats "any", and equals it when the grid has no smaller move."""
    import itertools

    from envs import analysis as A
    from envs.analysis import StorageParams

    for seed in range(5):
        rng = np.random.default_rng(900 + seed)
        H, n = 4, 3
        rec = _storage_record(rng.integers(-4, 21, (H, n)) / 2.0, rng.uniform(10, 60, (H, n)),
                              rng.uniform(20, 120, H), own_cost=(0.3, 0.2), mbp=10.0)
        par = StorageParams(max_power_charge=float(rng.uniform(15, 30)), max_power_discharge=float(rng.uniform(15, 30)),
                            efficiency_charge=0.9, efficiency_discharge=0.85, soc_min=0.0, soc_max=40.0,
                            soc_initial=float(rng.choice([0.0, 20.0, 40.0])))
        full = best_response(rec, 0, storage=par, soc_points=9, tick=TICK, storage_moves="full", storage_off_grid=False)
        anym = best_response(rec, 0, storage=par, soc_points=9, tick=TICK, storage_off_grid=False)
        levels, g0 = A.soc_grid(par, 9)
        ks, qs = A._storage_moves(par, levels, rec.dt)
        r, _ = A._storage_hour_values(rec, A._slots(rec, 0), qs, TICK)
        G, best = len(levels), -np.inf
        for path in itertools.product(range(len(ks)), repeat=H):
            g, total = g0, 0.0
            for h, m in enumerate(path):
                k, to = ks[m], g - ks[m]
                if not 0 <= to < G or not (k == 0 or k in (ks.max(), ks.min()) or (k > 0 and to == 0)
                                           or (k < 0 and to == G - 1)):
                    total = -np.inf
                    break
                total, g = total + r[h, m], to
            best = max(best, total)
        assert full.best_profit == pytest.approx(best, abs=1e-6), seed
        assert full.best_profit <= anym.best_profit + 1e-6
        # the reported schedule uses only the allowed moves
        moves = -np.diff(np.round((full.soc - levels[0]) / (levels[1] - levels[0])).astype(int))
        end = np.round((full.soc[1:] - levels[0]) / (levels[1] - levels[0])).astype(int)
        assert np.all((moves == 0) | (moves == ks.max()) | (moves == ks.min()) | ((moves > 0) & (end == 0))
                      | ((moves < 0) & (end == G - 1)))
    # the hand-computed arbitrage (charge at full power to the top, sell it all): full moves are optimal
    rec2 = _storage_record([[10.0], [50.0]], [[1000.0], [1000.0]], [500.0, 500.0], own_cost=(1.0, 1.0))
    par2 = StorageParams(max_power_charge=50.0, max_power_discharge=50.0, efficiency_charge=0.8,
                         efficiency_discharge=0.9, soc_min=0.0, soc_max=40.0, soc_initial=0.0)
    assert best_response(rec2, 0, storage=par2, soc_points=5, storage_moves="full").best_profit == pytest.approx(1214.0)
    with pytest.raises(ValueError, match="storage_moves"):
        best_response(rec, 0, storage=par, storage_moves="half")


def test_cost_ties_pick_the_bid_nearest_marginal_cost_at_the_same_profit():
    """``best_response(..., ties="cost")``: the same best profit in every hour as the
    default, but among equally good bids the one nearest the marginal cost. In the
    02a-like hour the learner sets the price with its flexible part (one best price) and
    its 1 MW inflexible part is dispatched at any price up to that: the default reports
    the first candidate (the bid floor), "cost" the marginal cost itself. On random bids
    in `many` the cost ties are never farther from cost and in some hours much nearer;
    on a plant with start-up costs (the on/off programme) the profits agree too."""
    rec = _02a_like([55.708, 55.708])
    plain, cost = best_response(rec, 0, tick=TICK), best_response(rec, 0, tick=TICK, ties="cost")
    assert cost.best_profit == pytest.approx(plain.best_profit, rel=1e-12)
    assert cost.best_price[0, 1] == pytest.approx(85.708 - TICK) == plain.best_price[0, 1]
    assert plain.best_price[0, 0] < 0 and cost.best_price[0, 0] == pytest.approx(55.708)
    core, rec = _core_record("many", lambda core, rng: rng.uniform(0.0, 0.3, (1, core.n, core.max_act)), hours=24)
    closer = 0
    for k in range(0, core.n, 4):
        a, b = best_response(rec, k), best_response(rec, k, ties="cost")
        np.testing.assert_allclose(b.best_profit_per_hour, a.best_profit_per_hour, rtol=1e-9, atol=1e-6)
        mc = rec.supply_cost[:, rec.supply_unit == rec.agent_unit[k]][:, :1]
        da, db = np.abs(a.best_price - mc).sum(axis=1), np.abs(b.best_price - mc).sum(axis=1)
        assert np.all(db <= da + 1e-9)
        closer += int(np.sum(db < da - 1.0))
    assert closer > 0
    _, rec = _core_record("default", lambda core, rng: rng.uniform(-0.1, 0.2, (1, core.n, core.max_act)), hours=48)
    for k in (0, 1):  # the learning CCGTs, 20,000 EUR per start
        assert best_response(rec, k, ties="cost").best_profit == pytest.approx(best_response(rec, k).best_profit)
    with pytest.raises(ValueError, match="ties"):
        best_response(rec, 0, ties="lowest")


def test_on_off_comparison_counts_hours_and_starts_of_the_record_and_the_best_response():
    """``on_off_comparison``: for a learning plant with start-up costs, the hours it ran
    and its starts (recomputed independently: the recorded profit is the energy margin
    less one start-up cost per start), and the same for its best response's schedule
    (whose profit is the per-hour energy margin of ``best_on`` hours less the starts);
    None for the storage unit."""
    from envs.analysis import on_off_comparison

    rng_actions = lambda core, rng: rng.uniform(-0.2, 0.9, (1, core.n, core.max_act))  # noqa: E731
    core, rec = _core_record("default", rng_actions, hours=96)
    for k in (0, 1):  # the learning CCGTs, 20,000 EUR per start
        br = best_response(rec, k)
        o = on_off_comparison(rec, br)
        cols = rec.agent_supply_columns(k)
        q = rec.supply_accepted[:, cols]
        margin = (q * (rec.clearing_price[:, None] - rec.supply_cost[:, cols])).sum() * rec.dt
        assert o["start_up_cost"] == 20_000.0
        assert o["hours_on"] == int((q.sum(axis=1) > 0).sum())
        assert margin - rec.agent_profit[:, k].sum() == pytest.approx(o["starts"] * 20_000.0)
        assert o["best_response_hours_on"] == int(br.best_on.sum())
        # the best response starts where an on hour follows an off one (the first hour: off before)
        on = br.best_on.astype(int)
        assert o["best_response_starts"] == int(on[0] + np.sum(np.diff(on) == 1))
        assert o["starts"] > o["best_response_starts"]  # random bids switch often; the best response does not
    assert on_off_comparison(rec, best_response(rec, 2, scenario=core.scenario, soc_points=51)) is None
    # hours are steps times the step length: the same steps as quarter hours
    import dataclasses

    quarter = on_off_comparison(dataclasses.replace(rec, dt=0.25), br)
    assert quarter["hours_on"] == pytest.approx(o["hours_on"] / 4) and quarter["starts"] == o["starts"]


def test_gain_by_hours_names_the_hour_types_of_hand_computed_cases():
    """``gain_by_hours`` on the 02a-like hour (rule plants up to 85.708 EUR/MWh, demand
    4500 MW, a 2500 MW learner at cost 55.708): bidding at cost it sells 1500 MW at
    55.708, and its best response (just under 85.708) sets a higher price; offering only
    its 1 MW inflexible part (the rest at 90) it sells 1 MW at 85.708, and its best
    response sells 1500 MW at a price no higher (it withholds too much); offering all at
    90 it is idle where its best response sells. Each case puts the whole gain in its
    type, and the line names it."""
    from envs.analysis import gain_by_hours, gain_by_hours_line

    cases = {(55.708, 55.708): "best_response_raises_price", (0.0, 90.0): "best_response_sells_more",
             (90.0, 90.0): "idle_where_best_response_sells"}
    for prices, kind in cases.items():
        rec = _02a_like(list(prices))
        br = best_response(rec, 0, tick=TICK)
        assert br.gain > 1000.0
        parts = gain_by_hours(rec, br)
        assert parts[kind] == {"hours": 1.0, "gain": pytest.approx(br.gain)}
        assert sum(v["hours"] for k, v in parts.items() if k != "start_ups") == 1.0
        assert all(v["gain"] == 0.0 for k, v in parts.items() if k != kind)
        assert parts["start_ups"] == {"hours": 0.0, "gain": 0.0}  # no start-up cost
        line = gain_by_hours_line(parts)
        assert line.startswith(f"gain {br.gain / 1e3:,.0f} k EUR by hour: ") and line.count(" in 1 h: ") == 1


def test_gain_by_hours_splits_the_whole_gain_of_plants_and_storage():
    """On `default` with random bids (96 h): for each learning CCGT (start-up costs) the
    types' gains add up to its gain and their hours to the episode; ``start_ups`` holds
    20,000 EUR times its starts less its best response's, over the hours where only one
    of the two starts, and the other types hold the energy margins; the selling types
    cover exactly the hours it was dispatched and those its best response's on/off
    schedule runs; where both sell, the type agrees with an independent loop-based
    clearing of the hour with the best response's prices. For the storage unit's exact
    best response, the types follow the signs of the recorded net trade and of the best
    response's net injection."""
    from envs.analysis import dispatched, gain_by_hours, on_off_comparison

    rng_actions = lambda core, rng: rng.uniform(-0.2, 0.9, (1, core.n, core.max_act))  # noqa: E731
    core, rec = _core_record("default", rng_actions, hours=96)
    H = rec.n_hours
    for k in (0, 1):
        br = best_response(rec, k)
        parts = gain_by_hours(rec, br)
        assert sum(v["gain"] for v in parts.values()) == pytest.approx(br.gain, abs=1e-6)
        assert sum(v["hours"] for t, v in parts.items() if t != "start_ups") == H
        on = dispatched(rec, k)
        o = on_off_comparison(rec, br)
        assert o["starts"] > o["best_response_starts"]  # random bids switch often
        assert parts["start_ups"]["gain"] == pytest.approx(20_000.0 * (o["starts"] - o["best_response_starts"]))
        rec_start = on & ~np.concatenate([[rec.agent_prev_dispatch[0, k] > 0], on[:-1]])
        br_start = br.best_on & ~np.concatenate([[rec.agent_prev_dispatch[0, k] > 0], br.best_on[:-1]])
        assert parts["start_ups"]["hours"] == int((rec_start != br_start).sum())
        margin = br.gain_per_hour + 20_000.0 * (br_start.astype(float) - rec_start)  # energy margins alone
        both_idle = ~on & ~br.best_on
        assert parts["both_idle"]["gain"] == pytest.approx(margin[both_idle].sum(), abs=1e-6) == 0.0
        sells = ("best_response_raises_price", "best_response_sells_more", "both_sell_other")
        assert sum(parts[t]["hours"] for t in sells) == int((on & br.best_on).sum())
        assert parts["sells_where_best_response_idles"]["hours"] == int((on & ~br.best_on).sum())
        assert parts["idle_where_best_response_sells"]["hours"] == int((~on & br.best_on).sum())
        cols = list(rec.agent_supply_columns(k))
        checked = {t: 0 for t in sells}
        for h in np.flatnonzero(on & br.best_on):
            sup = [(float(br.best_price[h, cols.index(j)]) if j in cols else float(rec.supply_price[h, j]),
                    float(rec.supply_volume[h, j])) for j in range(rec.supply_price.shape[1])]
            dem = [(rec.price_cap, float(rec.fixed_demand[h]))]
            price, _, s_acc, _, _ = reference_clear(sup, dem, price_cap=rec.price_cap, price_floor=rec.price_floor)
            q_best, q_rec = sum(s_acc[j] for j in cols), rec.supply_accepted[h, cols].sum()
            if price > rec.clearing_price[h] + 0.005:
                t = "best_response_raises_price"
            elif q_best > q_rec + 1e-6:
                t = "best_response_sells_more"
            else:
                t = "both_sell_other"
            checked[t] += 1
        assert {t: parts[t]["hours"] for t in sells} == checked
    assert sum(checked.values()) > 0
    br = best_response(rec, 2, scenario=core.scenario, soc_points=51)
    parts = gain_by_hours(rec, br)
    net = rec.supply_accepted[:, rec.agent_supply_columns(2)].sum(axis=1) - rec.demand_accepted[:, rec.agent_demand_columns(2)].sum(axis=1)
    mine, best = np.sign(np.round(net, 6)), np.sign(np.round(br.best_volume, 6))
    assert parts["opposite_direction"]["hours"] == int((mine * best < 0).sum())
    assert parts["only_best_response_trades"]["hours"] == int(((mine == 0) & (best != 0)).sum())
    assert sum(v["gain"] for v in parts.values()) == pytest.approx(br.gain, abs=1e-6)
    assert parts["opposite_direction"]["hours"] + parts["same_direction"]["hours"] > 0


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
def test_plant_hour_values_give_the_best_response_to_the_bit(mechanism):
    """`plant_best_profit` of `plant_hour_values` is `best_response`'s best profit per hour
    (with and without a start-up cost), and values computed for some hours only equal the
    full ones there (the profile search keeps the other hours' values)."""
    from envs.analysis import plant_best_profit, plant_hour_values

    rng = np.random.default_rng(21)
    starts = 0
    for _ in range(60):
        rec = random_record(rng, "plant", mechanism)
        starts += rec.agent_start_up_cost[0] > 0
        full = plant_hour_values(rec, 0)
        np.testing.assert_array_equal(plant_best_profit(rec, 0, *full), best_response(rec, 0).best_profit_per_hour)
        hrs = np.flatnonzero(rng.random(rec.n_hours) < 0.5)
        part = plant_hour_values(rec, 0, hrs)
        for a, b in zip(part, full):
            np.testing.assert_array_equal(a[hrs], b[hrs])
            assert np.isnan(np.delete(a, hrs)).all()
    assert 0 < starts < 60
    with pytest.raises(ValueError, match="not a plant"):
        plant_hour_values(random_record(rng, "renewable"), 0)


@pytest.mark.parametrize("n", [0, 1, 5, 24, 25, 40])
def test_count_below_is_a_bisection_of_every_row(n):
    """``_count_below`` (the residual path's search in each hour's sorted bids, column by
    column for short rows, a bisection per row for long ones) counts as
    ``np.searchsorted`` does, with ties, +inf padding and values beyond both ends (the
    analysis never searches NaN)."""
    from envs.analysis import _count_below

    rng = np.random.default_rng(40 + n)
    R, X = 7, 33
    rows = np.sort(rng.integers(-5, 6, (R, n)).astype(float), axis=1)
    if n:
        rows[:, -min(n, 3):] = np.inf  # bids without volume, sorted last
    q = rng.integers(-7, 8, (R, X)).astype(float)
    q[0, :2] = (-np.inf, np.inf)
    for inclusive, side in ((False, "left"), (True, "right")):
        got = _count_below(rows, q, inclusive=inclusive)
        want = np.stack([np.searchsorted(r, x, side=side) for r, x in zip(rows, q)])
        np.testing.assert_array_equal(got, want, err_msg=f"inclusive={inclusive}")
