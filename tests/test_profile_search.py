"""The profile search after training (`profile_search`), its distillation into the actors
(`agents.distil`) and the env's map from actions to bid prices (`MarketCore.bid_prices_for`).

What would be wrong if it broke: targets at the edge of a grid price's range (an
imitation error of 1e-4 then moves the bid to the next grid point, and the fitted actors
bid another profile), fitted actors that do not bid the searched profile again, a kept
policy whose evaluation is not the one reported or that is worse than the one it
replaces, a search that changes the learner's own actors or optimizer, a key that runs
when it is 0."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import envs
from _examples import load_benchmark
from _runs import H, TINY
from agents.checkpoint import read_manifest
from agents.config import LearningConfig
from agents.distil import centred_path, distil
from agents.profile_search import Replay, actions_from_record, score, start_profile
from agents.trainer import Trainer, _search_score, evaluate_policy, load_policy

WIDE = ["actor_hidden_sizes=[64,64]"]  # TINY's 16 units cannot hold 48 hours of bids exactly


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny run of `default` (48 hours) with a profile search of 30 proposals after it."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + WIDE + ["profile_search=30"])
    run = tmp_path_factory.mktemp("profile") / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    before = [p.detach().clone() for p in tr.learner.algo.actor_params]
    tr.train()
    after = [p.detach().clone() for p in tr.learner.algo.actor_params]
    report = tr.search_report
    tr.close()
    return sc, run, report, before, after


def _moves(core, actions, step):
    """(H, n, 2) bool: whether moving each action by ``step`` changes its bid price."""
    out = np.zeros(actions.shape[:2] + (2,), dtype=bool)
    core.reset(np.random.default_rng(0))
    for t in range(actions.shape[0]):
        a = actions[t]
        for k in range(core.n):
            for j in range(int(min(core.act_dims[k], 2))):
                moved = a.copy()
                moved[k, j] = np.clip(moved[k, j] + step, -1.0, 1.0)
                p = core.bid_prices_for(np.stack([a, moved]))
                role = 0 if core.act_dims[k] < 2 or a[k, j] <= a[k, 1 - j] else 1
                out[t, k, j] = abs(p[0, k, role] - p[1, k, role]) > 1e-9
        core.step(a[None])
    return out


def test_bid_prices_for_is_the_env_reading(tmp_path):
    sc = envs.load_scenario("default")
    core = envs.MarketCore(sc, plant_bids="undercut", storage_bids="two_sided", storage_prices="undercut",
                           max_cycles=6)
    rng = np.random.default_rng(1)
    core.reset(rng)
    for _ in range(6):
        acts = rng.uniform(-1, 1, (5, core.n, core.max_act))
        probe = core.bid_prices_for(acts)
        for i in range(5):  # each profile alone, as a step reads it
            one = core.build_bids(acts[i:i + 1], None)[4]
            np.testing.assert_array_equal(probe[i], one[0])
        core.step(acts[:1])
    with pytest.raises(ValueError, match="one-copy"):
        envs.MarketCore(sc, num_envs=2).bid_prices_for(np.zeros((1, core.n, core.max_act)))


def test_centred_actions_bid_the_same_prices_away_from_the_edges(searched):
    sc, run, *_ = searched
    learner, core = load_policy(sc, LearningConfig.from_dict(sc.learning_config), run / "policies" / "best",
                                env_options={"max_cycles": H})
    ev = learner.evaluate(core, sc, analysis=False, refresh=False)
    raw = actions_from_record(core, ev.record)
    obs, centred, rec = centred_path(core, raw, seed=learner.generators.evaluation)
    # the same path: clearing prices, profits and the observations the actors saw
    np.testing.assert_allclose(rec.clearing_price, ev.record.clearing_price, atol=1e-9)
    rep = Replay(core, sc, 0).run(centred)
    np.testing.assert_allclose(rep["record"].clearing_price, ev.record.clearing_price, atol=1e-9)
    np.testing.assert_allclose(rep["record"].supply_price, ev.record.supply_price, atol=1e-9)
    assert obs.shape == (H, core.n, core.obs_dim) and np.isfinite(obs).all()
    # rebuilt actions at a grid price sit near the top of its range (a step down of 1e-3
    # keeps the price, a step up of 1e-3 changes it); centred, they keep it under steps of
    # 4e-4 either way (the range is at least 1e-3 wide)
    edge = ~_moves(core, raw, -1e-3) & _moves(core, raw, 1e-3)
    assert edge.sum() > 10
    assert not (edge & _moves(core, centred, 4e-4)).any()
    assert not (edge & _moves(core, centred, -4e-4)).any()


def test_distilled_actors_bid_the_profile_again(searched):
    sc, run, *_ = searched
    cfg = LearningConfig.from_dict(sc.learning_config)
    learner, core = load_policy(sc, cfg, run / "policies" / "last", env_options={"max_cycles": H})
    # a profile that is not the actors' own: the kept policy's episode
    ev_best, _ = evaluate_policy(sc, cfg, run / "policies" / "best", env_options={"max_cycles": H})
    target = actions_from_record(core, ev_best.record)
    obs, centred, _ = centred_path(core, target, seed=learner.generators.evaluation)
    ev0 = learner.evaluate(core, sc, analysis=False, refresh=False)
    assert not np.allclose(ev0.record.clearing_price, ev_best.record.clearing_price, atol=1e-6)
    distil(learner, obs, centred)
    ev = learner.evaluate(core, sc, analysis=False, refresh=False)
    # every hour clears at the profile's price; bids in a range of prices without grid
    # points (e.g. near the cap) come back to about 0.01 EUR/MWh, which can move a tie's
    # split: the profits to within a percent
    np.testing.assert_allclose(ev.record.clearing_price, ev_best.record.clearing_price, atol=1e-9)
    np.testing.assert_allclose(ev.agent_profit, ev_best.agent_profit, rtol=0.02, atol=1.0)


def test_the_search_after_training_keeps_a_better_policy(searched):
    sc, run, report, before, after = searched
    assert report is not None and report.startswith("profile_search: kept")
    m = read_manifest(run / "policies" / "best")
    info = m["trainer"]["profile_search"]
    assert info["proposals"] == 30 and 1 <= info["kept"] <= 30 and info["reproduced"] is True
    assert info["objective"] == "smooth"
    w0, w1 = info["score"]  # the larger of the largest gain share and the exploitability
    assert w1 < w0
    # the saved policy evaluates to what the manifest and the report say
    ev, core = evaluate_policy(sc, LearningConfig.from_dict(sc.learning_config), run / "policies" / "best",
                               env_options={"max_cycles": H})
    assert _search_score(ev)[0] == pytest.approx(w1, rel=1e-6)
    assert m["metrics"]["exploitability"] == pytest.approx(ev.exploitability, rel=1e-9)
    assert f"-> {ev.exploitability:.3f}" in report
    # the learner's own actors are those training left: the same as a run without the
    # search (the search fits the kept policy's actors and puts the learner's back)
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + WIDE)
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    tr.train()
    tr.close()
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # training moved them
    assert all(torch.equal(a, b.detach()) for a, b in zip(after, tr.learner.algo.actor_params))


def test_the_search_is_off_at_zero_and_scores_as_documented(tmp_path):
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    assert cfg.profile_search == 0
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False,
                 env_options={"max_cycles": H})
    tr.train()
    tr.close()
    assert tr.search_report is None
    assert "profile_search" not in (read_manifest(tmp_path / "run" / "policies" / "best")["trainer"] or {})
    p = {"br": np.array([100.0, 50.0]), "profit": np.array([90.0, 40.0])}
    assert score(p, "worst") == pytest.approx((0.2, 20.0))
    assert score(p, "both") == pytest.approx((0.2, 20.0))  # max(0.2, 20 / 130)
    assert score({"br": np.array([100.0, 100.0]), "profit": np.array([80.0, 80.0])}, "both")[0] == pytest.approx(0.25)
    assert score(p, "total") == pytest.approx((20.0, 0.2))
    # "smooth": the 10-norm of the gain shares (0.1, 0.2) and the exploitability (20 / 130)
    assert score(p, "smooth") == pytest.approx((0.201424, 20.0), rel=1e-5)
    # it credits a change that lowers one of two figures tied at the top by more than it
    # raises the other, which the plain maximum ("both") does not: gain shares 0.1 / 0.1
    # -> 0.101 / 0.095 (the third learner's 0.05 and the exploitability stay below)
    tied = {"br": np.array([100.0, 100.0, 100.0]), "profit": np.array([90.0, 90.0, 95.0])}
    moved = {"br": np.array([100.0, 100.0, 100.0]), "profit": np.array([89.9, 90.5, 95.0])}
    assert score(moved, "both") > score(tied, "both")
    assert score(moved, "smooth") < score(tied, "smooth")


def test_the_script_distils_into_a_checkpoint(searched, tmp_path, capsys):
    sc, run, *_ = searched
    mod = load_benchmark("search_policy_actions")
    out = tmp_path / "distilled"
    assert mod.main(["--policy", str(run / "policies" / "last"), "--hours", str(H), "--iterations", "15",
                     "--seed", "4", "--distil", str(out)]) == 0
    final = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")][-1]
    d = final["distilled"]
    assert d["reproduced"] is True and d["shares"] == final["shares"]
    ev, _ = evaluate_policy(sc, LearningConfig.from_dict(sc.learning_config), out, env_options={"max_cycles": H})
    assert ev.exploitability == pytest.approx(d["exploitability"], abs=1e-4)
    assert read_manifest(out)["trainer"]["distilled_from"] == str(run / "policies" / "last")
    with pytest.raises(SystemExit):
        mod.main(["--policy", str(out), "--hours", str(H), "--iterations", "0", "--distil", str(out)])
    # a start profile that does not replay the episode is refused with the reason
    learner, core = load_policy(sc, LearningConfig.from_dict(sc.learning_config), out, env_options={"max_cycles": H})
    ev = learner.evaluate(core, sc, analysis=True, refresh=False)
    with pytest.raises(ValueError, match="profits"):
        start_profile(Replay(core, sc, 0), ev.record, np.asarray(ev.agent_profit) + 1.0)


def _start(searched):
    """The tiny run's last policy loaded, its evaluation's profile: ``(scenario, core,
    learner, replay, profile)``."""
    sc, run, *_ = searched
    learner, core = load_policy(sc, LearningConfig.from_dict(sc.learning_config), run / "policies" / "last",
                                env_options={"max_cycles": H})
    ev = learner.evaluate(core, sc, analysis=True, refresh=False)
    rep = Replay(core, sc, learner.generators.evaluation)
    return sc, core, learner, rep, start_profile(rep, ev.record, ev.agent_profit)


def test_reused_best_responses_score_as_a_full_analysis(searched):
    """Each proposal recomputes only the best responses of learners whose opponents bid
    differently; the figures must equal a full analysis of the same actions."""
    from agents.profile_search import propose
    from envs.analysis import exploitability

    sc, core, learner, rep, p = _start(searched)
    rng = np.random.default_rng(7)
    reused = 0
    for _ in range(12):
        actions, _, _ = propose(p, core, sc, rng)
        before = rep.computed
        q = rep.run(actions, prev=p)
        reused += core.n - (rep.computed - before)
        ex = exploitability(q["record"], scenario=sc)
        np.testing.assert_allclose(q["profit"], ex.recorded_profit, rtol=1e-12, atol=1e-6)
        np.testing.assert_allclose(q["br"], ex.best_response_profit, rtol=1e-12, atol=1e-6)
        for k, a in enumerate(ex.agents):
            np.testing.assert_allclose(q["gain_per_hour"][k], ex.responses[a].gain_per_hour, atol=1e-6)
        p = q
    assert reused > 0  # some proposals left a learner's opponents as they were


@pytest.mark.parametrize("objective", ["worst", "both", "total", "smooth"])
def test_a_bound_drops_only_profiles_that_score_no_better(searched, objective):
    """With a bound, a replay stops before the best responses that cannot change the
    verdict: where it returns None the full analysis scores the profile no better than
    the bound; otherwise it gives the same figures; and it skips some best responses."""
    from agents.profile_search import propose

    sc, core, learner, full, p = _start(searched)
    bounded = Replay(core, sc, learner.generators.evaluation)
    rng = np.random.default_rng(3)
    dropped = kept = 0
    for _ in range(16):
        actions, _, _ = propose(p, core, sc, rng)
        q = full.run(actions, prev=p)
        b = bounded.run(actions, prev=p, bound=(objective, score(p, objective)))
        if b is None:  # dropped: the full analysis agrees that it is no better
            assert score(q, objective) >= score(p, objective)
            dropped += 1
            continue
        for key in ("profit", "br", "best_per_hour", "gain_per_hour"):
            np.testing.assert_array_equal(b[key], q[key])
        if score(q, objective) < score(p, objective):
            p, kept = q, kept + 1
    assert dropped > 0 and kept > 0 and bounded.computed < full.computed


def test_the_estimate_drops_what_scores_no_better_with_the_storage_as_before(searched):
    """``estimate``: a profile is dropped where the full analysis, with the storage's
    best-response profit taken as the previous profile's, scores it no better than the
    bound (and only the storage's best response is ever taken so); what is not dropped
    has the full analysis's figures."""
    from agents.profile_search import propose

    sc, core, learner, full, p = _start(searched)
    est = Replay(core, sc, learner.generators.evaluation)
    storage = [k for k in range(core.n) if core.agent_kind[k] == "storage"]
    assert storage
    rng = np.random.default_rng(5)
    dropped = 0
    for _ in range(24):
        actions, _, _ = propose(p, core, sc, rng)
        bound = ("both", score(p, "both"))
        q = full.run(actions, prev=p)
        e = est.run(actions, prev=p, bound=bound, estimate=True)
        as_before = dict(q, br=q["br"].copy())
        for k in storage:
            if not est._others_same(q["record"], p["record"], k):
                as_before["br"][k] = max(float(p["br"][k]), q["profit"][k])
        if e is None:  # by the bound (then also by the estimate) or by the estimate
            assert score(as_before, "both") >= bound[1]
            dropped += 1
        else:
            for key in ("profit", "br", "best_per_hour", "gain_per_hour"):
                np.testing.assert_array_equal(e[key], q[key])
        if score(q, "both") < bound[1] and e is not None:
            p = q
    assert dropped > 0 and est.computed < full.computed


def test_a_replay_from_the_first_changed_hour_records_the_whole_episode(searched):
    """A replay with ``prev`` steps only from the first changed action until the state is
    ``prev``'s again; its record must equal a replay of the whole episode, array by array."""
    import dataclasses

    from agents.profile_search import propose

    sc, core, learner, rep, p = _start(searched)
    rng = np.random.default_rng(11)
    steps, step = [], core.step
    core.step = lambda *a, **kw: steps.append(1) or step(*a, **kw)  # count the hours stepped
    shortened = 0
    for _ in range(12):
        actions, _, _ = propose(p, core, sc, rng)
        steps.clear()
        q = rep.run(actions, prev=p)
        shortened += len(steps) < H
        whole = Replay(core, sc, learner.generators.evaluation).run(actions)
        for f in dataclasses.fields(q["record"]):
            a, b = getattr(q["record"], f.name), getattr(whole["record"], f.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=f.name)
            else:
                assert a == b, f.name
        for (s1, d1), (s2, d2) in zip(q["trace"]["state"], whole["trace"]["state"], strict=True):
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(d1, d2)
        p = q
    assert shortened > 0


def test_the_helper_process_finds_the_same_profile(searched):
    """The search with its helper process (proposals drawn and scored there too, ahead of
    the ones decided) keeps the same steps and ends at the same profile as the search in
    one process."""
    from agents.profile_search import SearchHelper, search

    sc, core, learner, rep, p = _start(searched)
    alone = search(rep, p, 24, np.random.default_rng(4), objective="both")
    steps = []
    helper = SearchHelper(rep.core, sc, rep.seed, p["actions"])
    assert helper.alive, helper.failure
    try:
        both = search(rep, p, 24, np.random.default_rng(4), objective="both", helper=helper,
                      on_step=lambda it, new, what, k: steps.append(new is not None))
        assert helper.alive, helper.failure  # it answered every time
    finally:
        helper.close()
    assert both[1] == alone[1] > 0 and sum(steps) == both[1] and len(steps) == 24
    np.testing.assert_array_equal(both[0]["actions"], alone[0]["actions"])
    np.testing.assert_array_equal(both[0]["br"], alone[0]["br"])


def test_a_helper_that_dies_mid_search_changes_nothing(searched):
    """Where the helper process ends during the search, what it had been sent is drawn
    and scored here: the same steps and the same profile as in one process."""
    from agents.profile_search import SearchHelper, search

    sc, core, learner, rep, p = _start(searched)
    alone = search(rep, p, 24, np.random.default_rng(5), objective="both")
    helper = SearchHelper(rep.core, sc, rep.seed, p["actions"])
    assert helper.alive, helper.failure

    def kill(it, new, what, k):
        if it == 6 and helper._proc is not None:
            helper._proc.kill()
    try:
        got = search(rep, p, 24, np.random.default_rng(5), objective="both", helper=helper, on_step=kill)
    finally:
        helper.close()
    assert not helper.alive
    assert got[1] == alone[1]
    np.testing.assert_array_equal(got[0]["actions"], alone[0]["actions"])
    np.testing.assert_array_equal(got[0]["br"], alone[0]["br"])


def test_storage_tables_give_the_same_best_response_and_bids(searched):
    """A storage best response (and its response bids) from tables kept over the records
    of successive proposals equals the one computed from scratch, to the bit."""
    from agents.profile_search import propose
    from envs.analysis import StorageTables, best_response, storage_response_bids

    sc, core, learner, rep, p = _start(searched)
    k = list(core.agent_kind).index("storage")
    tab, tab_bids = StorageTables(), StorageTables()
    rng = np.random.default_rng(9)
    partial = 0
    for _ in range(10):
        actions, _, _ = propose(p, core, sc, rng)
        rec = rep.run(actions, prev=p)["record"]
        fresh = best_response(rec, k, scenario=sc)
        kept = best_response(rec, k, scenario=sc, tables=tab)
        partial += tab.hours is not None and len(tab.hours) < rec.n_hours
        for f in ("best_profit_per_hour", "soc", "offer_threshold", "bid_threshold", "bid_volume"):
            np.testing.assert_array_equal(getattr(kept, f), getattr(fresh, f), err_msg=f)
        np.testing.assert_array_equal(storage_response_bids(rec, k, scenario=sc, tables=tab_bids),
                                      storage_response_bids(rec, k, scenario=sc))
        p = rep.run(actions, prev=p)
    assert partial > 0  # some best responses reused rows


def test_plant_targets_kept_over_records_equal_the_best_response(searched):
    """A plant's best response within the env's grid (the proposals' targets), with the
    hours that bid as before kept from record to record (:func:`envs.analysis.
    plant_response_prices`), equals :func:`envs.analysis.best_response`'s, to the bit,
    with the cold offers of a start-up markup too."""
    from agents.profile_search import propose
    from envs.analysis import best_response, changed_hours, cold_offer_map, plant_response_prices

    sc, core, learner, rep, p = _start(searched)
    plants = [k for k, kind in enumerate(core.agent_kind) if kind == "plant"]
    rng = np.random.default_rng(11)
    for markup in (0.0, 12.0):
        core.set_start_up_markup(markup)
        rep = Replay(core, sc, rep.seed)  # the proposals' own targets: with this markup
        keep = {k: {} for k in plants}
        partial = 0
        q = rep.run(p["actions"])
        for _ in range(8):
            for k in plants:
                to_grid, _ = core.plant_grid(k)
                cold = cold_offer_map(core, k, to_grid)
                assert (cold is None) == (markup == 0.0)
                before = keep[k].get("record")
                got = plant_response_prices(q["record"], k, ties="cost", plant_prices=to_grid, cold_prices=cold,
                                            keep=keep[k])
                want = best_response(q["record"], k, ties="cost", plant_prices=to_grid, cold_prices=cold)
                np.testing.assert_array_equal(got, want.best_price)
                partial += before is not None and 0 < len(changed_hours(q["record"], before)) < q["record"].n_hours
            actions, _, _ = propose(q, core, sc, rng)
            q = rep.run(actions, prev=q)
        assert partial > 0  # some hours were kept


@pytest.mark.parametrize("objective", ["both", "smooth"])
def test_the_search_stops_at_its_tolerance_as_the_full_search_was_then(searched, objective):
    """``stop_at``: the search ends before the first proposal drawn from a profile whose
    larger of the largest gain share and the exploitability (objective "both"'s figure,
    whichever objective the search lowers) is at or below it, with the proposals and the
    profile the full search had then."""
    from agents.profile_search import search

    sc, core, learner, rep, p = _start(searched)
    seen = []  # (proposals made, steps kept, the best profile's actions and figure after them)
    state = {"best": p, "kept": 0}

    def step(it, new, what, k):
        if new is not None:
            state["best"], state["kept"] = new, state["kept"] + 1
        seen.append((it, state["kept"], state["best"]["actions"].copy(), score(state["best"], "both")[0]))

    full = search(rep, p, 24, np.random.default_rng(4), objective=objective, on_step=step)
    assert full[1] >= 2
    first = score(p, "both")[0]
    i = next(j for j, (*_, s) in enumerate(seen) if s < first)  # the first step below the start
    stop = seen[i][3]
    made = []
    got, kept = search(rep, p, 24, np.random.default_rng(4), objective=objective, stop_at=stop,
                       on_step=lambda it, new, what, k: made.append(it))
    assert kept == seen[i][1] >= 1 and made[-1] == seen[i][0] < 24
    np.testing.assert_array_equal(got["actions"], seen[i][2])
    assert score(got, "both")[0] == stop
    # a start already within the tolerance: no proposal at all
    same, kept0 = search(rep, p, 24, np.random.default_rng(4), objective=objective, stop_at=first,
                         on_step=lambda *a: pytest.fail("a proposal was made"))
    assert same is p and kept0 == 0


def test_the_trainer_stops_the_search_at_profile_search_tolerance(searched, tmp_path):
    sc, run, report, *_ = searched
    w0, w1 = read_manifest(run / "policies" / "best")["trainer"]["profile_search"]["score"]
    with pytest.raises(ValueError, match="profile_search_tolerance"):
        LearningConfig.from_dict(sc.learning_config).with_overrides(["profile_search_tolerance=-0.1"])
    # the same run, told to stop as soon as anything scores below the start
    tol = f"profile_search_tolerance={w0 * (1 - 1e-9)!r}"
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + WIDE + ["profile_search=30", tol])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False,
                 env_options={"max_cycles": H})
    tr.train()
    tr.close()
    info = read_manifest(tmp_path / "run" / "policies" / "best")["trainer"]["profile_search"]
    assert 1 <= info["proposals"] < 30 and info["kept"] == 1
    assert f"1 of {info['proposals']} proposals kept" in tr.search_report
