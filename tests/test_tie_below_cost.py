"""``tie_below_cost``: with ``plant_bids="undercut"``, a learning plant's offer that the
grid would put a tick under a rule offer priced below the plant's marginal cost ties with
that rule offer instead (the two split its volume pro rata); ``tie_below_cost_fallback``
tries the other reading on the kept policy after training.

What would be wrong if it broke: an offer moved anywhere but to the rule offer (below
cost) or a tick under it (at or above cost), the reading applied without the grid, a tied
plant not getting the pro-rata share of the rule unit it ties with, a best response within
the grid that bids a price the env moves elsewhere or does not earn its profit when bid
through the env, teacher targets that do not bid it, unchecked input, and the fallback's
choice (against independent evaluations of each reading), its record in the manifest, the
run's summary and ``evaluate_policy`` bidding with it."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import replay, rule_ladder
from _runs import H, TINY, plant_constant, trained_with
from agents.checkpoint import CheckpointError, read_manifest, validate_manifest
from agents.config import ConfigError, LearningConfig
from agents.evaluation import evaluation_summary
from agents.recorder import TrainResult, initial_best
from agents.trainer import Trainer, evaluate_policy
from envs.analysis import best_response

PLANT = "plant_ccgt-1"
OTHER = "plant_ccgt-2"
STORAGE = "storage_pumped-storage-1"
def _core(tie: bool, **kw) -> envs.MarketCore:
    return envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids=kw.pop("plant_bids", "undercut"),
                           tie_below_cost=tie, **kw)


def _offers(core, price: float) -> np.ndarray:
    """Both learning plants' two offers at ``price`` as the env reads them, (2, 2)."""
    acts = np.zeros((1, core.n, core.max_act))
    idx = [core.agents.index(PLANT), core.agents.index(OTHER)]
    acts[0, idx, :2] = price / core.max_bid_price
    return core.build_bids(acts, None)[4][0, idx]


def test_an_offer_under_a_rule_offer_below_cost_ties_with_it():
    tie, plain = _core(True), _core(False)
    free = _core(True, plant_bids="free")
    for c in (tie, plain, free):
        c.reset(np.random.default_rng(0))
    t = tie.hour
    mc = tie.scenario.plants.marginal_cost[t, tie.lp]  # the two CCGTs' costs
    lad = rule_ladder(tie, t)
    lower = np.concatenate([[-tie.max_bid_price], lad[:-1]])
    below = above = 0
    for low, rule in zip(lower, lad):
        p = 0.5 * (low + rule)  # inside the range the grid moves to a tick under `rule`
        got = _offers(tie, p)
        want = np.where(rule < mc, rule, rule - 0.01)[:, None]
        np.testing.assert_allclose(got, np.broadcast_to(want, (2, 2)), rtol=0, atol=1e-9)
        np.testing.assert_allclose(_offers(plain, p), rule - 0.01, rtol=0, atol=1e-9)  # without it: a tick under
        np.testing.assert_allclose(_offers(free, p), p, rtol=0, atol=1e-9)  # no grid, nothing moves
        below += int((rule < mc).sum())
        above += int((rule >= mc).sum())
        for k, name in enumerate((PLANT, OTHER)):  # the plant's own map and centre agree with the env
            to_grid, centre = tie.plant_grid(tie.agents.index(name))
            np.testing.assert_allclose(to_grid(np.array([p]), t), got[k, :1], rtol=0, atol=1e-9)
            c = centre(got[k, :1], t)
            assert low < c[0] <= rule
            np.testing.assert_allclose(c, 0.5 * (low + rule - 0.01), rtol=0, atol=1e-9)
            np.testing.assert_allclose(to_grid(c, t), got[k, :1], rtol=0, atol=1e-9)
    assert below >= 8 and above >= 4  # both sides of the costs were exercised
    top = 0.5 * (lad[-1] + tie.max_bid_price)  # above every rule offer: kept
    np.testing.assert_allclose(_offers(tie, top), top, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="not a learning plant"):
        tie.plant_grid(tie.agents.index(STORAGE))


def test_a_plant_tied_with_a_rule_offer_gets_the_pro_rata_share_at_that_price():
    """Both CCGTs offer inside the range under the last rule offer below their costs
    (51.875 EUR/MWh in `default`): where that offer sets the price, each CCGT is accepted
    for the same fraction of its offer as the rule unit it ties with, less than all of it
    in some hours; without the reading it sells all of it a tick under."""
    for tie in (True, False):
        core = _core(tie, max_cycles=H)
        t = 0
        mc = core.scenario.plants.marginal_cost[t, core.lp]
        lad = rule_ladder(core, t)
        rule = lad[lad < mc.min()].max()
        acts = np.zeros((H, 1, core.n, core.max_act))
        for name in (PLANT, OTHER):
            acts[:, 0, core.agents.index(name), :2] = (rule - 1.0) / core.max_bid_price
        acts[:, 0, core.agents.index(STORAGE)] = 1.0  # waiting at the top
        rec = replay(core, acts)
        at_rule = np.abs(rec.clearing_price - rule) < 1e-9
        assert at_rule.sum() >= 3
        cols = [c for c in range(rec.supply_price.shape[1]) if rec.supply_unit[c] in rec.agent_unit[:2]]
        rule_cols = [c for c in range(rec.supply_price.shape[1]) if c not in cols]
        partial = 0
        for h in np.flatnonzero(at_rule):
            vol = rec.supply_volume[h]
            frac = np.divide(rec.supply_accepted[h], vol, out=np.full(vol.shape, np.nan), where=vol > 0)
            mine = [c for c in cols if vol[c] > 0]
            np.testing.assert_allclose(rec.supply_price[h, mine], rule if tie else rule - 0.01, rtol=0, atol=1e-9)
            if tie:
                rivals = [c for c in rule_cols if vol[c] > 0 and abs(rec.supply_price[h, c] - rule) < 1e-9]
                assert rivals
                np.testing.assert_allclose(frac[mine], frac[rivals[0]], rtol=0, atol=1e-9)  # pro rata
                partial += int(frac[mine].max() < 1.0 - 1e-9)
            else:
                np.testing.assert_allclose(frac[mine], 1.0, rtol=0, atol=1e-9)  # ahead of the rule unit
        assert partial >= 1 or not tie


def test_grid_best_response_with_ties_replays_through_the_env_and_teacher_targets_bid_it():
    core = _core(True, max_cycles=H)
    rng = np.random.default_rng(5)
    acts = rng.uniform(-1.0, 1.0, (H, 1, core.n, core.max_act))
    acts[:, :, core.agents.index(STORAGE)] = 1.0
    rec = replay(core, acts)
    hours = np.asarray(rec.hours)
    mbp = core.max_bid_price
    k = rec.agents.index(PLANT)
    to_grid, centre = core.plant_grid(k)
    br = best_response(rec, k, plant_prices=to_grid)
    lad = rule_ladder(core, int(hours[0]))
    mc = core.scenario.plants.marginal_cost[hours, core.lp[0]]
    ties = 0
    mine = acts.copy()
    for h in range(H):
        p = br.best_price[h]
        np.testing.assert_allclose(to_grid(p, int(hours[h])), p, rtol=0, atol=1e-9)  # a price the env bids as it is
        ties += int(np.any(np.isin(np.round(p, 9), np.round(lad[lad < mc[h]], 9))))
        mine[h, 0, k, :2] = centre(p, int(hours[h])) / mbp
    assert ties >= 1  # the best response uses a tie somewhere
    again = replay(core, mine)
    np.testing.assert_allclose(again.agent_profit[:, k], br.best_profit_per_hour, rtol=0, atol=1e-6)
    assert br.best_profit <= best_response(rec, k).best_profit + 1e-6
    # the teacher of a run that trains with the reading teaches these targets
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["torch_threads=1", "training_episodes=1", "episodes_collecting_initial_experience=0", "tie_below_cost=true"])
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    assert tr.core.tie_below_cost and tr.eval_core.tie_below_cost
    ev = tr.evaluate(analysis=True)
    _, tgt = tr.learner.teacher_data[-1]
    ec, rec = tr.eval_core, ev.record
    hours = np.asarray(rec.hours)
    for name in (PLANT, OTHER):
        j = list(tr.learner.agents).index(name)
        grid = best_response(rec, j, ties="cost", plant_prices=ec.plant_grid(j)[0])
        back = np.stack([ec.plant_grid(j)[0](np.sort(tgt[h, j, :2].astype(float)) * mbp, int(hours[h]))
                         for h in range(len(hours))])
        np.testing.assert_allclose(back, np.sort(grid.best_price, axis=1), rtol=0, atol=1e-3)
    tr.close()


def test_the_option_and_keys_are_validated(tmp_path):
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="tie_below_cost"):
            envs.MarketCore(envs.load_scenario("tiny"), tie_below_cost=bad)
    with pytest.raises(TypeError, match="tie_below_cost"):
        envs.parallel_env("tiny", tie_below_cost="yes")
    for key in ("tie_below_cost", "tie_below_cost_fallback"):
        with pytest.raises(ConfigError, match=key):
            LearningConfig().with_overrides([f"{key}=maybe"])
    cfg = LearningConfig().with_overrides(["tie_below_cost=true", "tie_below_cost_fallback=false"])
    assert cfg.tie_below_cost is True and cfg.tie_below_cost_fallback is False
    sc, cfg, best, manifest = trained_with(tmp_path, "tie_below_cost")
    manifest["trainer"]["tie_below_cost"] = "yes"
    with pytest.raises(CheckpointError, match="tie_below_cost"):
        validate_manifest(manifest, best)


def test_the_fallback_keeps_the_reading_that_evaluates_best(tmp_path):
    """`plant_ccgt-1` offers everything at 50 EUR/MWh, in the range under the 51.875 rule
    offer, below its cost of 57.5: a tick under, it sells its whole offer at a loss in the
    hours that rule offer sets the price; tied, a pro-rata share of it. The fallback must
    pick what independent evaluations of each reading say is best, record it in the
    manifest and the summary, and `evaluate_policy` must bid with it."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    tr.train()
    assert tr.tie_report is None  # the key was off
    plant_constant(tr, PLANT, float(np.arctanh(50.0 / tr.eval_core.max_bid_price)))
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    tr.recorder.best = initial_best()
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    best = run / "policies" / "best"
    assert read_manifest(best)["trainer"]["tie_below_cost"] is False
    gains = {flag: evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H, "tie_below_cost": flag})[0]
             .metrics()["gain"] for flag in (False, True)}
    assert gains[True] < gains[False] - 1.0

    tr.learner.config = cfg.with_overrides(["tie_below_cost_fallback=true"])
    assert tr.tie_below_cost_fallback() is True
    assert "kept with tie_below_cost true" in tr.tie_report
    assert read_manifest(best)["trainer"]["tie_below_cost"] is True
    assert tr.eval_core.tie_below_cost  # the summary evaluates what was kept
    ev2, core = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert core.tie_below_cost
    assert ev2.metrics()["gain"] == pytest.approx(gains[True], rel=1e-9)
    report = tr.tie_report
    assert tr.tie_below_cost_fallback() is True and tr.tie_report == report  # chosen once
    tr.eval_core.tie_below_cost = False  # the run's summary reads the manifest's reading
    summary = tr.finish(TrainResult(run, 2, 1.0, dict(tr.recorder.best), [], None, False), plots=False)
    assert "kept with tie_below_cost true" in summary["tie_below_cost_fallback"] and summary["tie_below_cost"] is True
    assert evaluation_summary(sc, core, ev2)["tie_below_cost"] is True
    assert summary["evaluation"]["gain"] == pytest.approx(gains[True], rel=1e-9)

    # the other way round: a policy trained with the reading whose evaluation is better
    # without it keeps the reading when it is not (both plants at the top: never dispatched)
    tr.eval_core.tie_below_cost = False
    plant_constant(tr, PLANT, 8.0)
    plant_constant(tr, OTHER, 8.0)
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    tr.recorder.best = initial_best()
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    assert tr.tie_below_cost_fallback() is False
    assert "tie_below_cost true was not better" in tr.tie_report
    assert read_manifest(best)["trainer"]["tie_below_cost"] is False
    tr.close()


def test_a_later_fallback_keeps_what_an_earlier_one_chose(tmp_path):
    """The start-up markup that `start_up_markup_fallback` recorded in `policies/best`
    stays in its manifest when `tie_below_cost_fallback` saves it again."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    tr.train()
    plant_constant(tr, PLANT, float(np.arctanh(50.0 / tr.eval_core.max_bid_price)))
    tr.recorder.best = initial_best()
    tr.recorder.run_info["start_up_markup_hours"] = 24.0  # as if the markup fallback had kept 24 h
    try:
        ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
        assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    finally:
        tr.recorder.run_info["start_up_markup_hours"] = 0.0
    best = run / "policies" / "best"
    assert read_manifest(best)["trainer"]["start_up_markup_hours"] == 24.0
    tr.eval_core.set_start_up_markup(24.0)
    tr.learner.config = cfg.with_overrides(["tie_below_cost_fallback=true"])
    flag = tr.tie_below_cost_fallback()
    assert flag is True  # it saved policies/best again
    info = read_manifest(best)["trainer"]
    assert info["start_up_markup_hours"] == 24.0 and info["tie_below_cost"] is True
    assert tr.recorder.run_info["start_up_markup_hours"] == 0.0  # the run's own record is left as it was
    tr.close()
