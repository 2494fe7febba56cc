"""``start_up_markup_hours``: a learning plant with a start-up cost that did not run in the
previous hour offers at no less than its marginal cost plus its start-up cost spread over
that many hours at minimum power; ``start_up_markup_fallback`` tries such markups on the
kept policy after training and keeps the best by ``best_policy_metric``.

What would be wrong if it broke: the offers a cold plant places (checked against the
formula from the scenario), a warm plant's or a plant without start-up cost's offers
(unchanged), the grid applied after the markup, the option's and keys' validation, and
the fallback's choice (checked against independent evaluations of each markup), its
record in the manifest and ``evaluate_policy`` bidding with it; the best response within
such an env's actions (``best_response(..., cold_prices=...)``: a replay through the env
that earns anything but the reported profit, a result unlike a brute force over on/off
patterns with the prices of each state, or the teacher's targets off it)."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import replay
from _runs import plant_constant
from agents.checkpoint import read_manifest
from agents.config import ConfigError, LearningConfig
from agents.evaluation import evaluation_summary
from agents.recorder import TrainResult, initial_best
from agents.trainer import Trainer, evaluate_policy

TINY = ["training_episodes=2", "episodes_collecting_initial_experience=1", "gradient_steps=2", "batch_size=16",
        "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=null",
        "validation_episodes_interval=10", "equilibrium_reference=false", "stay_out_fallback=false",
        "start_up_markup_fallback=[]", "profile_search=0"]
H = 48


def _acts(core, prices: dict[str, float]) -> np.ndarray:
    acts = np.zeros((1, core.n, core.max_act))
    for name, p in prices.items():
        acts[0, core.agents.index(name), :2] = p / core.max_bid_price
    return acts


@pytest.mark.parametrize("plant_bids", ["free", "undercut"])
def test_a_cold_plant_offers_at_least_cost_plus_markup_and_a_warm_one_as_it_says(plant_bids):
    sc = envs.load_scenario("default")
    hours = 6.0
    core = envs.MarketCore(sc, num_envs=1, plant_bids=plant_bids, start_up_markup_hours=hours)
    plain = envs.MarketCore(sc, num_envs=1, plant_bids=plant_bids)
    core.reset(np.random.default_rng(0))
    plain.reset(np.random.default_rng(0))
    pl = sc.plants
    names = ["plant_ccgt-1", "plant_ccgt-2"]
    js = [list(pl.names).index(n.removeprefix("plant_").replace("-", "_")) for n in names]
    want_markup = pl.start_up_cost[js] / pl.min_power[js] / hours
    np.testing.assert_allclose(core.start_up_markup, want_markup)
    assert np.all(want_markup > 1.0)  # 20,000 EUR over 6 h at 200 MW: 16.7 EUR/MWh
    low = _acts(core, {n: 5.0 for n in names})  # far below cost
    t = core.hour
    floor = pl.marginal_cost[t, js] + want_markup
    if plant_bids == "undercut":
        floor = core.undercut(floor, t)
    got = core.build_bids(low, None)[4][0]
    for k, n in enumerate(names):
        i = core.agents.index(n)
        np.testing.assert_allclose(got[i], [floor[k], floor[k]], rtol=0, atol=1e-9)  # cold at the first hour
    assert np.all(plain.build_bids(low, None)[4][0, [core.agents.index(n) for n in names]] < floor.min())
    high = _acts(core, {n: 99.0 for n in names})  # above the floor: as the action says
    np.testing.assert_array_equal(core.build_bids(high, None)[4], plain.build_bids(high, None)[4])
    # a step at the bottom of the range: the markup keeps both out of the first hour
    bottom = _acts(core, {n: -100.0 for n in names})
    out = core.step(bottom, None)
    ref = plain.step(bottom, None)
    idx = [core.agents.index(n) for n in names]
    assert np.all(out.accepted[0, idx] == 0) and np.all(ref.accepted[0, idx] > 0)
    # warm (dispatched the hour before): offers as the actions say
    core.last_dispatch[0, idx] = ref.accepted[0, idx]
    np.testing.assert_array_equal(core.build_bids(low, None)[4][0, idx], plain.build_bids(low, None)[4][0, idx])
    core.last_dispatch[0, idx[0]] = 0.0  # one cold, one warm
    got = core.build_bids(low, None)[4][0]
    t = core.hour
    f0 = pl.marginal_cost[t, js[0]] + want_markup[0]
    f0 = core.undercut(np.array([f0]), t)[0] if plant_bids == "undercut" else f0
    np.testing.assert_allclose(got[idx[0]], [f0, f0], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got[idx[1]], plain.build_bids(low, None)[4][0, idx[1]])
    # a plant without start-up cost is never marked up
    sc2 = envs.load_scenario("default")
    sc2.plants.start_up_cost[js[0]] = 0.0
    c2 = envs.MarketCore(sc2, num_envs=1, plant_bids=plant_bids, start_up_markup_hours=hours)
    c2.reset(np.random.default_rng(0))
    assert c2.start_up_markup[0] == 0.0 and c2.start_up_markup[1] > 0.0
    i0 = c2.agents.index(names[0])
    np.testing.assert_array_equal(c2.build_bids(low, None)[4][0, i0], plain.build_bids(low, None)[4][0, i0])


def test_option_and_keys_are_validated():
    with pytest.raises(ValueError, match="start_up_markup_hours"):
        envs.MarketCore(envs.load_scenario("tiny"), start_up_markup_hours=-1)
    with pytest.raises((ValueError, TypeError), match="start_up_markup_hours"):
        envs.parallel_env("tiny", start_up_markup_hours="soon")
    with pytest.raises(ConfigError, match="start_up_markup_hours"):
        LearningConfig().with_overrides(["start_up_markup_hours=-2"])
    with pytest.raises(ConfigError, match="start_up_markup_fallback"):
        LearningConfig().with_overrides(["start_up_markup_fallback=[0]"])
    assert LearningConfig().with_overrides(["start_up_markup_fallback=null"]).start_up_markup_fallback == ()
    assert LearningConfig.from_dict({"start_up_markup_fallback": [6, 24]}).start_up_markup_fallback == (6.0, 24.0)
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + ["start_up_markup_hours=12"])
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    assert tr.core.start_up_markup_hours == tr.eval_core.start_up_markup_hours == 12.0
    tr.close()


def test_the_fallback_keeps_the_markup_that_evaluates_best(tmp_path):
    """`ccgt_2` with a start-up cost of 1 M EUR bids at the bottom of its range: it starts at
    the first hour and loses money. A markup keeps it cold (its floor lies far above any
    price); the fallback must pick what independent evaluations of each markup say is
    best, record it in the manifest, and `evaluate_policy` must bid with it."""
    sc = envs.load_scenario("default")
    sc.plants.start_up_cost[list(sc.plants.names).index("ccgt_2")] = 1e6
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    tr.train()
    assert tr.markup_report is None  # the key was empty
    plant_constant(tr, "plant_ccgt-2", -8.0)
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    tr.recorder.best = initial_best()
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    best = run / "policies" / "best"
    assert read_manifest(best)["trainer"]["start_up_markup_hours"] == 0.0
    gains = {h: evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H, "start_up_markup_hours": h})[0]
             .metrics()["gain"] for h in (0.0, 6.0, 24.0)}
    want = min(gains, key=lambda h: (gains[h], h))
    assert want != 0.0 and gains[want] < gains[0.0]

    tr.learner.config = cfg.with_overrides(["start_up_markup_fallback=[6, 24]"])
    assert tr.start_up_markup_fallback() == want
    assert "kept with a start-up markup" in tr.markup_report
    assert read_manifest(best)["trainer"]["start_up_markup_hours"] == want
    assert tr.eval_core.start_up_markup_hours == want  # the summary evaluates what was kept
    ev2, core = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert core.start_up_markup_hours == want
    assert ev2.metrics()["gain"] == pytest.approx(gains[want], rel=1e-9)
    assert evaluation_summary(sc, core, ev2)["start_up_markup_hours"] == want
    report = tr.markup_report
    assert tr.start_up_markup_fallback() == want and tr.markup_report == report  # chosen once
    # the run's summary evaluates policies/best with the markup its manifest records
    tr.eval_core.set_start_up_markup(0.0)
    summary = tr.finish(TrainResult(run, 2, 1.0, dict(tr.recorder.best), [], None, False), plots=False)
    assert summary["start_up_markup_hours"] == want and "kept with a start-up markup" in summary["start_up_markup"]
    assert summary["evaluation"]["gain"] == pytest.approx(gains[want], rel=1e-9)
    for other in ("best_profit", "best_regret"):  # only policies/best competes
        if (best.parent / other / "manifest.json").exists():
            assert read_manifest(best.parent / other)["trainer"]["start_up_markup_hours"] == 0.0

    # a policy the markup does not change: both plants offer at the top, never dispatched
    tr.eval_core.set_start_up_markup(0.0)
    plant_constant(tr, "plant_ccgt-1", 8.0)
    plant_constant(tr, "plant_ccgt-2", 8.0)
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    tr.recorder.best = initial_best()
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    assert tr.start_up_markup_fallback() == 0.0
    assert "no start-up markup" in tr.markup_report
    assert read_manifest(best)["trainer"]["start_up_markup_hours"] == 0.0
    tr.close()


# ------------------------------------------------------------------ best response under a markup
def _random_record(markup: float, hours: int, other: str, seed: int):
    """A recorded episode of `default` on the grid with a markup: random offers of the
    learning plant under study, the other learning plant always offering above its floor
    (so its offers do not depend on the first plant's dispatch) and the storage waiting."""
    core = envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids="undercut",
                           max_cycles=hours, start_up_markup_hours=markup)
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1.0, 1.0, (hours, 1, core.n, core.max_act))
    acts[:, :, core.agents.index("storage_pumped-storage-1")] = 1.0
    o = core.agents.index(other)
    acts[:, :, o, :2] = 0.7 + 0.3 * np.abs(acts[:, :, o, :2])  # >= 70 EUR/MWh: above its cost + markup
    return core, acts, _replay(core, acts)


_replay = replay


@pytest.mark.parametrize("plant,other", [("plant_ccgt-1", "plant_ccgt-2"), ("plant_ccgt-2", "plant_ccgt-1")])
def test_best_response_with_cold_prices_replays_through_a_marked_up_env_to_its_profit(plant, other):
    from envs.analysis import best_response, cold_offer_map

    Hh = 72
    core, acts, rec = _random_record(6.0, Hh, other, seed=5)
    k = rec.agents.index(plant)
    hours = np.asarray(rec.hours)
    cold = cold_offer_map(core, k, core.undercut)
    out = {}
    for name, kw in (("cold", {"cold_prices": cold}), ("plain", {})):
        br = best_response(rec, k, plant_prices=core.undercut, **kw)
        mine = acts.copy()
        for h in range(Hh):
            mine[h, 0, k, :2] = core.undercut_centre(br.best_price[h], int(hours[h])) / core.max_bid_price
        out[name] = (br, _replay(core, mine).agent_profit[:, k])
    br, got = out["cold"]
    np.testing.assert_allclose(got, br.best_profit_per_hour, rtol=0, atol=1e-6)
    # every hour after one without dispatch bids at least the floor (on the grid)
    warm = np.concatenate([[rec.agent_prev_dispatch[0, k] > 0], br.best_on[:-1]])
    mc = core.scenario.plants.marginal_cost[hours, core.lp[k]]
    floor = np.array([core.undercut(np.array([mc[h] + core.start_up_markup[k]]), int(hours[h]))[0] for h in range(Hh)])
    assert (~warm).sum() >= 5
    assert np.all(br.best_price[~warm] >= floor[~warm, None] - 1e-9)
    # the best response that ignores the markup promises more than the env pays it
    br0, got0 = out["plain"]
    assert br0.best_profit > br.best_profit + 1000.0
    assert got0.sum() < br0.best_profit - 1000.0


def test_best_response_with_cold_prices_matches_a_brute_force_over_on_off_patterns():
    """Every on/off pattern of 12 hours, each hour's best pair of grid prices in the state
    the pattern puts the plant in (cold prices after an hour off), cleared one by one. The
    markup binds here: without it the plant starts an hour earlier and earns more."""
    import itertools

    from envs.analysis import _reference_hour, _slots, best_response, cold_offer_map

    Hh = 12
    core, _, rec = _random_record(6.0, Hh, "plant_ccgt-2", seed=3)
    k = rec.agents.index("plant_ccgt-1")
    sl = _slots(rec, k)
    hours = np.asarray(rec.hours)
    cold = cold_offer_map(core, k, core.undercut)
    suc = float(rec.agent_start_up_cost[k])
    best = {}  # (hour, warm?, on?) -> best profit
    for h in range(Hh):
        t = int(hours[h])
        grid = np.unique(core.undercut(np.concatenate([np.linspace(-100, 100, 81), core.static_sorted_price[t]]), t))
        for warm, g in ((True, grid), (False, np.unique(cold(grid, t)))):
            for a, b in itertools.combinations_with_replacement(g, 2):
                prof, acc, _ = _reference_hour(rec, sl, h, (a, b))
                key = (h, warm, acc > 0)
                best[key] = max(best.get(key, -np.inf), prof)
    total = -np.inf
    for pat in itertools.product((False, True), repeat=Hh):
        x, tot = bool(rec.agent_prev_dispatch[0, k] > 0), 0.0
        for h, o in enumerate(pat):
            tot += best.get((h, x, o), -np.inf) - (suc if o and not x else 0.0)
            x = o
        total = max(total, tot)
    br = best_response(rec, k, plant_prices=core.undercut, cold_prices=cold)
    assert abs(br.best_profit - total) <= 1e-6 * (1.0 + abs(total))
    assert br.best_on.sum() >= 3
    plain = best_response(rec, k, plant_prices=core.undercut)
    assert plain.best_profit > br.best_profit + 1000.0  # the markup takes the earlier start away


def test_cold_offer_map_is_none_without_a_markup_and_checks_the_agent():
    from envs.analysis import cold_offer_map

    sc = envs.load_scenario("default")
    plain = envs.MarketCore(sc, num_envs=1, plant_bids="undercut")
    assert cold_offer_map(plain, 0, plain.undercut) is None
    core = envs.MarketCore(sc, num_envs=1, plant_bids="undercut", start_up_markup_hours=12.0)
    with pytest.raises(ValueError, match="not a learning plant"):
        cold_offer_map(core, core.agents.index("storage_pumped-storage-1"))
    f = cold_offer_map(core, 0)
    mc = sc.plants.marginal_cost[5, core.lp[0]]
    np.testing.assert_allclose(f(np.array([0.0, 500.0]), 5), [mc + core.start_up_markup[0], 500.0])
