"""The fused single-copy step (envs/fast.py, envs.market.clear_single) equals the generic
array path: same clearing on thousands of random markets, same episodes of the env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import envs
from envs.data import Demands, MarketConfig, Plants, Renewables, Scenario, Storages
from envs.market import clear_market, clear_single

from _examples import ASSUME_DIR  # noqa: E402


def _random_market(rng: np.random.Generator):
    cap, floor = 3000.0, -500.0
    ns, K, M = (int(x) for x in rng.integers(0, [12, 7, 4]))

    def prices(n):
        if rng.random() < 0.5:  # a coarse grid, partly outside the limits: many ties and clipped bids
            return np.round(rng.uniform(-700, 3300, n) / 500) * 500
        return np.round(rng.uniform(0, 100, n))

    def vols(n):
        v = np.round(rng.uniform(0, 200, n))
        v[rng.random(n) < 0.2] = 0.0
        return v

    stp, stv = np.clip(prices(ns), floor, cap), vols(ns)
    key = np.where(stv > 0, stp, np.inf)
    o = np.argsort(key, kind="stable")
    static = key[o], np.where(stv > 0, stv, 0.0)[o]
    fixed = float(np.round(rng.uniform(0, 600))) if rng.random() < 0.9 else 0.0
    return prices(K), vols(K), prices(M), vols(M), fixed, static, cap, floor


def test_clear_single_equals_clear_market_on_random_markets():
    rng = np.random.default_rng(0)
    n_scarce = n_demand = 0
    for _ in range(5000):
        sp, sv, dp, dv, fixed, (stp, stv), cap, floor = _random_market(rng)
        r = clear_market(sp, sv, dp, dv, fixed_demand=fixed, static_supply=(stp, stv), price_cap=cap,
                         price_floor=floor)
        f = clear_single(sp.tolist(), sv.tolist(), dp.tolist(), dv.tolist(), fixed, stp.tolist(), stv.tolist(),
                         cap, floor)
        assert f.price == r.price[0] and f.volume == r.volume[0]
        assert f.supply_accepted == r.supply_accepted[0].tolist()
        assert f.demand_accepted == r.demand_accepted[0].tolist()
        assert f.scarcity == bool(r.scarcity[0]) and f.unserved == r.unserved[0]
        assert f.supply_share == r.supply_share[0] and f.fixed_accepted == r.fixed_accepted[0]
        n_scarce += f.scarcity
        n_demand += any(v > 0 for v in f.demand_accepted)
    assert n_scarce > 100 and n_demand > 100  # the random markets exercise both branches


def mixed_scenario(T: int = 120, seed: int = 0, time_step_hours: float = 1.0) -> Scenario:
    """Every unit kind, learning and rule-bidding: 4 plants (2 learning, min_power > 0,
    availability < 1 at times), 3 renewables (1 learning), 3 storage units (2 learning,
    one rule-based), demand with a daily swing that sometimes exceeds the supply."""
    rng = np.random.default_rng(seed)
    P, R, S = 4, 3, 3
    plants = Plants(
        names=tuple(f"pp{i}" for i in range(P)), technology=("ccgt",) * P, fuel_type=("gas",) * P,
        operator=("x",) * P, bidding=("powerplant_energy_learning",) * 2 + ("naive",) * 2,
        max_power=np.array([300.0, 200.0, 400.0, 250.0]), min_power=np.array([100.0, 50.0, 0.0, 80.0]),
        efficiency=np.ones(P), emission_factor=np.zeros(P), additional_cost=np.zeros(P),
        start_up_cost=np.array([5000.0, 0.0, 100.0, 800.0]),
        marginal_cost=np.round(rng.uniform(20, 80, (T, P))), availability=np.where(rng.random((T, P)) < 0.1, 0.5, 1.0),
        learning=np.array([True, True, False, False]),
    )
    ren = Renewables(
        names=("wind", "solar", "wind2"), technology=("wind", "solar", "wind"), operator=("x",) * R,
        bidding=("renewable_energy_learning", "naive", "naive"), capacity=np.array([300.0, 200.0, 100.0]),
        availability=rng.uniform(0, 1, (T, R)), marginal_cost=np.array([0.0, 1.0, 0.5]),
        learning=np.array([True, False, False]),
    )
    sto = Storages(
        names=("s0", "s1", "s2"), technology=("battery",) * S, operator=("x",) * S,
        bidding=("storage_energy_learning", "naive", "storage_energy_learning"),
        max_power_charge=np.array([100.0, 50.0, 80.0]), max_power_discharge=np.array([100.0, 60.0, 70.0]),
        efficiency_charge=np.array([0.9, 0.85, 0.95]), efficiency_discharge=np.array([0.9, 0.8, 0.95]),
        min_soc=np.array([0.0, 0.1, 0.05]), max_soc=np.array([1.0, 0.9, 1.0]), capacity=np.array([400.0, 200.0, 150.0]),
        initial_soc=np.array([0.5, 0.2, 1.0]), additional_cost_charge=np.array([0.0, 1.0, 0.5]),
        additional_cost_discharge=np.array([0.0, 2.0, 0.5]), learning=np.array([True, False, True]),
    )
    hour = np.arange(T)
    dem = Demands(names=("d",), technology=("inflex",), price=np.array([3000.0]),
                  volume=(900 + 500 * np.sin(2 * np.pi * hour / 24))[:, None])
    times = np.datetime64("2023-01-02T00:00", "ns") + hour * np.timedelta64(1, "h")
    return Scenario(name="mixed", study_case="base", source="tests", times=times, time_step_hours=time_step_hours,
                    plants=plants, renewables=ren, storages=sto, demands=dem,
                    market=MarketConfig(price_cap=500.0, price_floor=-100.0), learning_config={"max_bid_price": 200.0})


def _scenarios():
    out = ["default", "tiny", "mixed", "mixed_quarter_hour"]
    for name in ("example_02a", "example_02b", "example_02e"):
        out.append(ASSUME_DIR / name)
    return out


def _load(sc):
    if isinstance(sc, Path) and not (sc / "config.yaml").is_file():
        pytest.skip(f"ASSUME reference scenario not available at {sc}")
    if sc == "mixed":
        return mixed_scenario()
    if sc == "mixed_quarter_hour":  # a 15-minute time step: every dt-dependent term must agree too
        return mixed_scenario(time_step_hours=0.25)
    return sc


# (storage_bids, plant_bids, storage_prices, start_up_markup_hours, cost_snap, tie):
# tie True / False is tie_below_cost, "costs" grid_learner_costs alone, "both" both; a
# wide cost_snap band so that random actions land in it often
BIDS = [("signed", "free", "free", 0.0, 0.0, False), ("two_sided", "free", "free", 0.0, 0.0, False),
        ("two_sided", "undercut", "undercut", 0.0, 0.0, False), ("signed", "undercut", "undercut", 0.0, 0.0, False),
        ("two_sided", "undercut", "behind", 0.0, 0.0, False), ("two_sided", "undercut", "undercut", 6.0, 0.0, False),
        ("signed", "free", "free", 24.0, 0.0, False), ("two_sided", "free", "free", 0.0, 15.0, False),
        ("two_sided", "undercut", "undercut", 6.0, 15.0, False), ("two_sided", "undercut", "undercut", 0.0, 0.0, True),
        ("signed", "undercut", "undercut", 6.0, 15.0, True), ("two_sided", "undercut", "undercut", 0.0, 0.0, "costs"),
        ("two_sided", "undercut", "behind", 6.0, 15.0, "both"), ("two_sided", "free", "undercut", 0.0, 0.0, "costs")]


def _tie_opts(tie) -> dict:
    return {"tie_below_cost": tie in (True, "both"), "grid_learner_costs": tie in ("costs", "both")}


@pytest.mark.parametrize(("storage_bids", "plant_bids", "storage_prices", "markup", "snap", "tie"), BIDS)
@pytest.mark.parametrize("scenario", _scenarios(), ids=lambda s: s if isinstance(s, str) else s.name)
def test_fast_env_step_equals_generic_step(scenario, storage_bids, plant_bids, storage_prices, markup, snap, tie):
    """Whole episodes with random actions (some agents left out, some actions outside
    [-1, 1]): observations, rewards, infos, state and storage state all equal, with
    either storage action and either reading of the plants' prices."""
    sc = _load(scenario)
    hours = min(96, envs.parallel_env(sc).core.T)
    opts = dict(max_cycles=hours, start="random", regret_scale=0.5, storage_bids=storage_bids, plant_bids=plant_bids,
                storage_prices=storage_prices, start_up_markup_hours=markup, cost_snap=snap, **_tie_opts(tie))
    fast = envs.parallel_env(sc, **opts)
    slow = envs.parallel_env(sc, **opts)
    slow.use_fast_path = False
    assert fast._fast.supported()
    rng = np.random.default_rng(1)
    for episode in range(2):
        of, _ = fast.reset(seed=episode)
        og, _ = slow.reset(seed=episode)
        while fast.agents:
            acts = {a: rng.uniform(-1.3, 1.3, fast.action_space(a).shape).astype(np.float32) for a in fast.agents}
            if rng.random() < 0.2:
                acts.pop(rng.choice(list(acts)))
            if rng.random() < 0.1:
                acts = {a: np.zeros_like(v) for a, v in acts.items()}  # ties between learners
            rf = fast.step(acts)
            rg = slow.step(acts)
            for a in rf[0]:
                np.testing.assert_array_equal(rf[0][a], rg[0][a])
            assert rf[1:] == rg[1:]
            np.testing.assert_array_equal(fast.state(), slow.state())
            np.testing.assert_array_equal(fast.core.soc, slow.core.soc)
            np.testing.assert_array_equal(fast.core.stored_cost, slow.core.stored_cost)
        assert not slow.agents


def test_fast_path_with_uniform_spaces_and_rendering():
    fast = envs.parallel_env("default", uniform_spaces=True, max_cycles=24, render_mode="rgb_array")
    slow = envs.parallel_env("default", uniform_spaces=True, max_cycles=24, render_mode="rgb_array")
    slow.use_fast_path = False
    rng = np.random.default_rng(2)
    fast.reset(seed=0)
    slow.reset(seed=0)
    while fast.agents:
        acts = {a: rng.uniform(-1, 1, 2).astype(np.float32) for a in fast.agents}
        rf, rg = fast.step(acts), slow.step(acts)
        for a in rf[0]:
            np.testing.assert_array_equal(rf[0][a], rg[0][a])
        assert rf[1:] == rg[1:]
    np.testing.assert_array_equal(fast.render(), slow.render())
    fast.render_mode = slow.render_mode = "human"
    from envs.render import render_text

    assert render_text(fast) == render_text(slow)


def test_fast_path_falls_back_when_recording_or_pay_as_bid():
    env = envs.parallel_env("default", record=True)
    assert not env._fast.supported()
    env = envs.parallel_env("default")
    assert env._fast.supported()
    env.core.recording = True  # switched on later: the next step goes the generic way
    assert not env._fast.supported()
    from dataclasses import replace

    sc = mixed_scenario()
    pab = envs.parallel_env(replace(sc, market=replace(sc.market, mechanism="pay_as_bid")), max_cycles=5)
    assert not pab._fast.supported()
    pab.reset(seed=0)
    while pab.agents:  # the generic path serves it
        pab.step({a: pab.action_space(a).sample() for a in pab.agents})


@pytest.mark.parametrize(("storage_bids", "plant_bids", "storage_prices", "markup", "snap", "tie"), BIDS)
@pytest.mark.parametrize("scenario", ["default", "mixed", "mixed_quarter_hour"])
def test_core_step_observe_equals_step_then_observe(scenario, storage_bids, plant_bids, storage_prices, markup, snap,
                                                    tie):
    """MarketCore.step_observe (the fused path for B == 1, e.g. for a trainer's loop)
    returns the same StepOutcome and observation as step() + observe()."""
    sc = _load(scenario)
    if isinstance(sc, str):
        sc = envs.load_scenario(sc)
    opts = dict(num_envs=1, max_cycles=min(72, sc.n_hours), start="random", storage_bids=storage_bids,
                plant_bids=plant_bids, storage_prices=storage_prices, start_up_markup_hours=markup,
                cost_snap=snap, **_tie_opts(tie))
    a = envs.MarketCore(sc, **opts)
    b = envs.MarketCore(sc, **opts)
    assert a.B == 1
    rng = np.random.default_rng(4)
    for episode in range(2):
        np.testing.assert_array_equal(a.reset(np.random.default_rng(episode)), b.reset(np.random.default_rng(episode)))
        while not a.done:
            acts = rng.uniform(-1.2, 1.2, (1, a.n, a.max_act))  # unclipped, as rule_actions may give
            if rng.random() < 0.5:
                acts = np.clip(acts, -1, 1)
            if rng.random() < 0.1:
                acts *= 40.0  # beyond the price cap / floor
            active = None if rng.random() < 0.8 else rng.random(a.n) < 0.5
            oa, obs_a = a.step_observe(acts, active)
            ob = b.step(acts, active)
            obs_b = b.observe()
            np.testing.assert_array_equal(obs_a, obs_b)
            for f in ("price", "profit", "regret", "reward", "accepted", "bid_price", "volume", "demand", "scarcity"):
                x, y = getattr(oa, f), getattr(ob, f)
                assert x.shape == y.shape, f
                np.testing.assert_array_equal(x, y, err_msg=f)
            np.testing.assert_array_equal(oa.clearing.supply_accepted, ob.clearing.supply_accepted)
            np.testing.assert_array_equal(oa.clearing.demand_accepted, ob.clearing.demand_accepted)
            np.testing.assert_array_equal(oa.clearing.supply_share, ob.clearing.supply_share)
        assert b.done
    # with B > 1 it is step() + observe()
    v = envs.MarketCore(sc, num_envs=2)
    v.reset(np.random.default_rng(0))
    out, obs = v.step_observe(np.zeros((2, v.n, v.max_act)))
    assert obs.shape == (2, v.n, v.obs_dim) and out.profit.shape == (2, v.n)
