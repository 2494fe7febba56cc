"""``cost_snap``: a learning plant's (or renewable's) offer price within a band of its
marginal cost is read as exactly that cost.

What would be wrong if this broke: bids a few cents off cost where the band should have
snapped them (or snapped bids outside it), a fused step that reads prices otherwise than
the array step (tests/test_fast_path.py runs both with a wide band), a competitive market
whose learners bid near cost and still leave rivals a gain, and a key that training, the
manifest and ``evaluate`` do not carry."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import replay
from agents.checkpoint import read_manifest
from agents.config import ConfigError, LearningConfig
from agents.trainer import Trainer, evaluate_policy
from envs.analysis import exploitability
from envs.data import Demands, MarketConfig, Plants, Renewables, Scenario, Storages
from test_fast_path import mixed_scenario
from test_start_up_markup import TINY

H = 48


def competitive_scenario(T: int = H, learners: int = 6, cost: float = 50.0) -> Scenario:
    """``learners`` learning plants of 300 MW at one marginal cost between a cheap base
    plant and a dear backstop; demand always needs some but never all of them, so the only
    equilibrium is every learner at its cost (earning nothing), as in ASSUME's example
    with ten learning CCGTs."""
    P = learners + 2
    hour = np.arange(T)
    plants = Plants(
        names=tuple(f"learner{i}" for i in range(learners)) + ("base", "backstop"), technology=("ccgt",) * P,
        fuel_type=("gas",) * P, operator=("x",) * P,
        bidding=("powerplant_energy_learning",) * learners + ("naive",) * 2,
        max_power=np.array([300.0] * learners + [800.0, 5000.0]), min_power=np.zeros(P), efficiency=np.ones(P),
        emission_factor=np.zeros(P), additional_cost=np.zeros(P), start_up_cost=np.zeros(P),
        marginal_cost=np.tile(np.array([cost] * learners + [10.0, cost + 30.0]), (T, 1)),
        availability=np.ones((T, P)), learning=np.array([True] * learners + [False, False]),
    )
    ren = Renewables(names=(), technology=(), operator=(), bidding=(), capacity=np.zeros(0),
                     availability=np.zeros((T, 0)), marginal_cost=np.zeros(0), learning=np.zeros(0, dtype=bool))
    z = np.zeros(0)
    sto = Storages(names=(), technology=(), operator=(), bidding=(), max_power_charge=z, max_power_discharge=z,
                   efficiency_charge=z, efficiency_discharge=z, min_soc=z, max_soc=z, capacity=z, initial_soc=z,
                   additional_cost_charge=z, additional_cost_discharge=z, learning=np.zeros(0, dtype=bool))
    dem = Demands(names=("d",), technology=("inflex",), price=np.array([3000.0]),
                  volume=(1400 + 500 * np.sin(2 * np.pi * hour / 24))[:, None])
    times = np.datetime64("2023-01-02T00:00", "ns") + hour * np.timedelta64(1, "h")
    return Scenario(name="competitive", study_case="base", source="tests", times=times, time_step_hours=1.0,
                    plants=plants, renewables=ren, storages=sto, demands=dem,
                    market=MarketConfig(price_cap=3000.0, price_floor=-500.0), learning_config={"max_bid_price": 100.0})


def _near_cost_actions(core, spread: float, seed: int = 0) -> np.ndarray:
    """Every learner's two prices at its cost plus uniform noise of +-``spread`` EUR/MWh,
    as fitted actors bid around a target (float32, as actors output)."""
    rng = np.random.default_rng(seed)
    mc = core.scenario.plants.marginal_cost[:H, core.lp] / core.max_bid_price
    a = mc[:, None, :, None] + rng.uniform(-spread, spread, (H, 1, core.n, core.max_act)) / core.max_bid_price
    return a.astype(np.float32)


def test_prices_within_the_band_are_read_as_the_cost_and_others_as_given():
    sc = mixed_scenario(T=H)
    mbp = 200.0
    for snap in (0.0, 3.0):
        core = envs.MarketCore(sc, num_envs=1, max_bid_price=mbp, cost_snap=snap)
        core.reset(np.random.default_rng(0))
        for t in range(6):
            mc_p = sc.plants.marginal_cost[t, core.lp]
            mc_r = sc.renewables.marginal_cost[core.lr]
            a = np.zeros((1, core.n, core.max_act))
            # plant 0: both prices inside the band (one below, one above the cost); plant 1:
            # one inside, one just outside; the learning renewable inside
            a[0, 0, :2] = (mc_p[0] - 2.9) / mbp, (mc_p[0] + 2.5) / mbp
            a[0, 1, :2] = (mc_p[1] + 1.0) / mbp, (mc_p[1] - 3.2) / mbp
            a[0, core.sl_ren.start, 0] = (mc_r[0] + 2.0) / mbp
            out = core.step(a)
            bp = out.bid_price[0]
            if snap:
                np.testing.assert_array_equal(bp[0], [mc_p[0], mc_p[0]])
                np.testing.assert_allclose(bp[1], [mc_p[1] - 3.2, mc_p[1]], atol=1e-9)
                assert bp[1, 1] == mc_p[1] and bp[core.sl_ren.start, 0] == mc_r[0]
            else:
                np.testing.assert_allclose(bp[0], [mc_p[0] - 2.9, mc_p[0] + 2.5], atol=1e-9)
                assert bp[core.sl_ren.start, 0] != mc_r[0]


def test_a_competitive_market_bid_near_cost_is_an_exact_equilibrium_only_with_the_band():
    sc = competitive_scenario()
    gains = {}
    for snap in (0.0, 0.25):
        core = envs.MarketCore(sc, num_envs=1, max_cycles=H, cost_snap=snap)
        rec = replay(core, _near_cost_actions(core, 0.2))
        ex = exploitability(rec, scenario=sc)
        gains[snap] = ex
    loose, snapped = gains[0.0], gains[0.25]
    # a few cents off cost: the learner that sets the price a little above its cost earns
    # a little, and each rival could take its volume a cent lower: the gain is of the
    # order of the profits (exploitability near 1)
    assert loose.gain.sum() > 1000.0 and loose.joint > 0.5
    # snapped: every learner at its cost earns nothing and no learner can gain
    assert np.abs(snapped.recorded_profit).max() < 1e-6
    assert snapped.gain.max() < 1e-6 and snapped.joint == 0.0
    # a band narrower than the noise leaves some bids off cost
    core = envs.MarketCore(sc, num_envs=1, max_cycles=H, cost_snap=0.05)
    assert exploitability(replay(core, _near_cost_actions(core, 0.2)), scenario=sc).gain.sum() > 100.0


def test_the_band_is_validated_and_carried_by_training_the_manifest_and_evaluate(tmp_path):
    for bad in (-0.1, float("nan"), "wide"):
        with pytest.raises(ValueError, match="cost_snap"):
            envs.MarketCore(envs.load_scenario("tiny"), cost_snap=bad)
    with pytest.raises(ValueError, match="cost_snap"):
        envs.parallel_env("tiny", cost_snap=-1.0)
    with pytest.raises(ConfigError, match="cost_snap"):
        LearningConfig().with_overrides(["cost_snap=-1"])
    assert LearningConfig().resolved_cost_snap() == pytest.approx(0.25)  # "auto": 0.25 % of max_bid_price 100
    assert LearningConfig().with_overrides(["max_bid_price=400"]).resolved_cost_snap() == pytest.approx(1.0)
    assert LearningConfig().with_overrides(["cost_snap=0"]).resolved_cost_snap() == 0.0
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + ["cost_snap=2.5"])
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    assert tr.core.cost_snap == tr.eval_core.cost_snap == 2.5
    tr.train()
    tr.close()
    best = run / "policies" / "best"
    assert read_manifest(best)["trainer"]["cost_snap"] == 2.5
    _, core = evaluate_policy(sc, cfg.with_overrides(["cost_snap=0"]), best, seed=0, env_options={"max_cycles": H})
    assert core.cost_snap == 2.5  # the checkpoint's band, not the config's


def _competitive_trainer(tmp_path, *extra):
    sc = competitive_scenario()
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["training_episodes=4", "episodes_collecting_initial_experience=1", "gradient_steps=2", "batch_size=16",
         "actor_hidden_sizes=[32]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=1",
         "validation_episodes_interval=10", "equilibrium_reference=false", "equilibrium_teacher_steps=1500",
         "equilibrium_teacher_rollouts=0", "cost_snap=2.0", *extra])
    return Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False)


@pytest.mark.parametrize("stop", [True, False])
def test_training_stops_once_the_kept_policy_is_an_exact_equilibrium(tmp_path, stop):
    """With the band, the equilibrium teacher's fitted actors bid exactly their cost on the
    competitive market: the analysis certifies them (no learner can gain), so training stops
    after its first episode; with stop_at_equilibrium off it runs every episode."""
    tr = _competitive_trainer(tmp_path, f"stop_at_equilibrium={str(stop).lower()}")
    res = tr.train()
    assert tr.fit_evaluation is not None and tr.fit_evaluation["gain"] <= 1.0
    if stop:
        assert res.stopped_early and res.episodes == 1
        assert "equilibrium" in tr.recorder.stop_reason
    else:
        assert not res.stopped_early and res.episodes == 4 and tr.recorder.stop_reason is None
    tr.close()
