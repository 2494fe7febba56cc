"""The best response within the env's offer grid, and the teacher built on it.

With ``plant_bids="undercut"`` a learning plant can only bid just below a rule offer (or
above all of them), so the unrestricted best response that scores exploitability often
lies where no action of the env reaches. ``best_response(..., plant_prices=core.undercut)``
restricts it to the grid; ``MarketCore.undercut_centre`` gives the middle of the range of
prices the grid moves to one grid price; the trainer's best-response teacher teaches
plants those middles.

What would be wrong if this broke: a best response off the grid (a price the env moves
elsewhere), one worse than a brute force over the grid or better than the unrestricted
one, a replay through the env that earns anything but the reported profit, a centre
outside its range or not the middle, and the teacher's targets or "auto" units."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import replay, rule_ladder
from agents.config import LearningConfig
from agents.trainer import Trainer
from envs.analysis import best_response, brute_force_best_response, undercut_learners_map

PLANT = "plant_ccgt-1"
OTHER = "plant_ccgt-2"
STORAGE = "storage_pumped-storage-1"


def _actions(core, rng, hours):
    """Random offers of both learning plants, the storage waiting (an offer at the top of
    the bid range, never accepted in `default`) so that every other bid is the same in a
    replay."""
    a = rng.uniform(-1.0, 1.0, (hours, 1, core.n, core.max_act))
    a[:, :, core.agents.index(STORAGE)] = 1.0
    return a


_run = replay


def test_undercut_centre_is_the_middle_of_the_range_that_maps_to_the_same_price():
    core = envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids="undercut")
    mbp = core.max_bid_price
    for t in (0, 7, 100, 250):
        lad = rule_ladder(core, t)
        assert len(lad) >= 4
        grid = lad - 0.01
        centre = core.undercut_centre(grid, t)
        lower = np.concatenate([[-mbp], lad[:-1]])
        np.testing.assert_allclose(centre, 0.5 * (lower + grid), rtol=0, atol=1e-9)
        np.testing.assert_allclose(core.undercut(centre, t), grid, rtol=0, atol=1e-9)  # same grid price
        # the range's ends: just inside it, still the same price; just outside, another one
        np.testing.assert_allclose(core.undercut(lower[1:] + 1e-3, t), grid[1:], rtol=0, atol=1e-9)
        assert np.all(core.undercut(lower[1:] - 1e-3, t) < grid[1:] - 1e-6)
        # a price the grid does not produce (above every rule offer in range) is kept
        free = np.array([lad[-1] + 0.5 * (mbp - lad[-1])])
        np.testing.assert_allclose(core.undercut_centre(free, t), free)


def test_grid_best_response_is_on_the_grid_between_brute_force_and_the_unrestricted_one():
    core = envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids="undercut", max_cycles=6)
    rng = np.random.default_rng(11)
    rec = _run(core, _actions(core, rng, 6))
    k = rec.agents.index(PLANT)
    grid = best_response(rec, k, plant_prices=core.undercut)
    free = best_response(rec, k)
    hours = np.asarray(rec.hours)
    for h in range(rec.n_hours):  # every price is one the env bids as it is
        np.testing.assert_allclose(core.undercut(grid.best_price[h], int(hours[h])), grid.best_price[h], atol=1e-9)
    assert grid.best_profit <= free.best_profit + 1e-6
    # brute force over the grid prices (the same ladder in these hours) and a few above it
    lads = [rule_ladder(core, int(t)) for t in hours]
    assert all(np.array_equal(lads[0], x) for x in lads)
    top = np.linspace(lads[0][-1] + 0.01, core.max_bid_price, 7)
    g = np.concatenate([lads[0] - 0.01, top])
    g = g[core.undercut(g, int(hours[0])) == g]
    bf = brute_force_best_response(rec, k, g)
    assert grid.best_profit >= bf.best_profit - 1e-6


def test_grid_best_response_replays_through_the_env_to_its_profit():
    """Open loop: the other bids as recorded, the plant bidding its grid best response
    (at the middles of the grid's ranges) earns what the analysis reports, hour by hour;
    the unrestricted best response, replayed the same way, does not."""
    H = 48
    core = envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids="undercut", max_cycles=H)
    acts = _actions(core, np.random.default_rng(5), H)
    rec = _run(core, acts)
    k = rec.agents.index(PLANT)
    hours = np.asarray(rec.hours)
    mbp = core.max_bid_price
    replays = {}
    for name, kw in (("grid", {"plant_prices": core.undercut}), ("free", {})):
        br = best_response(rec, k, **kw)
        mine = acts.copy()
        for h in range(H):
            mine[h, 0, k, :2] = core.undercut_centre(br.best_price[h], int(hours[h])) / mbp
        again = _run(core, mine)
        replays[name] = (br, again.agent_profit[:, k])
    br, got = replays["grid"]
    np.testing.assert_allclose(got, br.best_profit_per_hour, rtol=0, atol=1e-6)
    br_free, got_free = replays["free"]
    assert got_free.sum() < br_free.best_profit - 1.0  # unreachable for the env's actions


def _trainer(**over):
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["torch_threads=1", "training_episodes=1", "episodes_collecting_initial_experience=0",
         *[f"{k}={v}" for k, v in over.items()]])
    return Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False)


def test_teacher_teaches_plants_the_centres_of_their_grid_best_response():
    tr = _trainer()
    L = tr.learner
    names = list(L.agents)
    assert L.teach_mask.tolist() == [True] * len(names)  # "auto" on the grid: the plants and the storage
    ev = tr.evaluate(analysis=True)  # refreshes the teacher
    obs, tgt = L.teacher_data[-1]
    core, rec = tr.eval_core, ev.record
    mbp = core.max_bid_price
    hours = np.asarray(rec.hours)
    for name in (PLANT, OTHER):
        k = names.index(name)
        grid = best_response(rec, k, ties="cost", plant_prices=core.undercut)
        want = np.stack([np.sort(core.undercut_centre(grid.best_price[h], int(hours[h]))) for h in range(len(hours))])
        np.testing.assert_allclose(tgt[:, k, :2], np.clip(want / mbp, -1, 1), rtol=0, atol=1e-6)
        # each target bids the grid best response's prices in the env
        back = np.stack([core.undercut(np.sort(tgt[h, k, :2].astype(float)) * mbp, int(hours[h]))
                         for h in range(len(hours))])
        np.testing.assert_allclose(back, np.sort(grid.best_price, axis=1), rtol=0, atol=1e-3)


def test_free_plant_bids_keep_the_unrestricted_teacher_and_auto_leaves_plants_out():
    tr = _trainer(plant_bids="free")
    L = tr.learner
    kinds = [str(k) for k in tr.eval_core.agent_kind]
    assert L.plant_prices is None
    assert L.teach_mask.tolist() == [k == "storage" for k in kinds]
    tr = _trainer(plant_bids="free", best_response_teacher=100)
    ev = tr.evaluate(analysis=True)
    obs, tgt = tr.learner.teacher_data[-1]
    k = list(tr.learner.agents).index(PLANT)
    r = ev.analysis_result.responses[PLANT]
    margin = tr.config.best_response_teacher_margin / tr.config.max_bid_price
    np.testing.assert_allclose(tgt[:, k, :2], np.clip(np.maximum(r.best_action[:, :2] - margin, -1), -1, 1),
                               rtol=0, atol=1e-6)


def test_summaries_show_the_grid_best_response_of_plants_on_the_grid():
    """``evaluation_summary`` (and so `train.py`'s summaries and bench_quality's lines)
    gives plants on the grid their best-response profit within the grid: between their
    recorded profit (their own bids are on the grid) and the unrestricted one, and the
    value of the analysis itself; free plant bids and storage get none."""
    from agents.evaluation import evaluation_summary

    tr = _trainer()
    ev = tr.evaluate(analysis=True)
    rows = evaluation_summary(tr.scenario, tr.eval_core, ev)["agents"]
    for k, (a, kind) in enumerate(zip(tr.eval_core.agents, tr.eval_core.agent_kind)):
        r = rows[a]
        if kind != "plant":
            assert "grid_best_response_profit" not in r
            continue
        want = best_response(ev.record, k, plant_prices=tr.eval_core.undercut).best_profit
        assert r["grid_best_response_profit"] == pytest.approx(want)
        assert r["profit"] - 1e-6 <= r["grid_best_response_profit"] <= r["best_response_profit"] + 1e-6
        wide = best_response(ev.record, k, plant_prices=undercut_learners_map(ev.record, k, tr.eval_core.undercut))
        assert r["undercut_learners_best_response_profit"] == pytest.approx(wide.best_profit)
        assert (r["grid_best_response_profit"] - 1e-6 <= r["undercut_learners_best_response_profit"]
                <= r["best_response_profit"] + 1e-6)
    free = _trainer(plant_bids="free")
    ev = free.evaluate(analysis=True)
    rows = evaluation_summary(free.scenario, free.eval_core, ev)["agents"]
    assert not any("grid_best_response_profit" in r or "undercut_learners_best_response_profit" in r
                   for r in rows.values())


def test_with_held_out_hours_the_teacher_learns_from_the_training_hours_only():
    """`holdout_hours`: every evaluation runs the held-out hours, but the teacher's
    observations and targets come from an analysed episode on the training hours (the
    first training window), so the held-out hours are never imitated."""
    tr = _trainer(holdout_hours=96, episode_hours=120)
    assert tr.eval_core.window == (240, 336)
    ev = tr.evaluate(analysis=True)
    assert ev.record.n_hours == 96 and int(ev.record.hours[0]) == 240
    obs, tgt = tr.learner.teacher_data[-1]
    assert obs.shape[0] == tr.teacher_core.max_cycles == 120 and tr.teacher_core.window == (0, 240)
    # its first row is the observation of hour 0, not of the first held-out hour
    first = tr.teacher_core.reset(np.random.default_rng(0))[0]
    held = tr.eval_core.reset(np.random.default_rng(0))[0]
    np.testing.assert_allclose(obs[0], first, rtol=0, atol=1e-6)
    assert not np.allclose(obs[0], held, atol=1e-3)
    assert np.isfinite(tgt).any()
    # a due refresh between evaluations also reads the training hours
    n = len(tr.learner.teacher_data)
    tr.refresh_teacher()
    assert len(tr.learner.teacher_data) == min(n + 1, tr.config.best_response_teacher_window)
    assert tr.learner.teacher_data[-1][0].shape[0] == 120
    # held-out hours given to the training env only, with an evaluation env set to them by
    # hand (as benchmarks/bench_holdout.py did), count the same
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["torch_threads=1", "training_episodes=1", "episodes_collecting_initial_experience=0"])
    by_hand = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False,
                      env_options={"holdout_hours": 96, "episode_hours": 120})
    assert by_hand.teacher_core is None  # its own evaluation env covers the training window
    by_hand.eval_core = tr.eval_core
    by_hand.evaluate(analysis=True)
    assert by_hand.learner.teacher_data[-1][0].shape[0] == 120
    np.testing.assert_allclose(by_hand.learner.teacher_data[-1][0][0], first, rtol=0, atol=1e-6)
    # without held-out hours the evaluation itself refreshes it, as before
    plain = _trainer()
    assert plain.teacher_core is None
    plain.evaluate(analysis=True)
    assert plain.learner.teacher_data[-1][0].shape[0] == plain.eval_core.max_cycles == 336


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
