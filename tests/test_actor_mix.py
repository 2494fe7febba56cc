"""`actor_mix_fallback`: after training, each learner may take its actor from another of
the run's best evaluations, kept only where the total gain from deviating falls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from _runs import H, TINY, plant_constant
from agents.checkpoint import CheckpointError, read_manifest, validate_manifest
from agents.config import ConfigError, LearningConfig
from agents.recorder import TrainResult, actor_mix_size, initial_best
from agents.trainer import Trainer, evaluate_policy

PLANT = "plant_ccgt-1"
OTHER = "plant_ccgt-2"


@pytest.fixture()
def trained(tmp_path):
    """A tiny run of `default` (two learning CCGTs and a storage unit), every fallback off."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    tr.train()
    assert tr.mix_report is None  # the key was 0
    yield sc, cfg, run, tr
    tr.close()


def _actors(tr) -> list[torch.Tensor]:
    return [p.detach().clone() for p in tr.learner.algo.actor_params]


def _set(tr, actors) -> None:
    with torch.no_grad():
        for p, a in zip(tr.learner.algo.actor_params, actors):
            p.copy_(a)


def _prices(tr, plant: float, other: float) -> list[torch.Tensor]:
    """The trained actors with the two CCGTs offering everything at these prices."""
    mbp = tr.eval_core.max_bid_price
    plant_constant(tr, PLANT, float(np.arctanh(plant / mbp)))
    plant_constant(tr, OTHER, float(np.arctanh(other / mbp)))
    return _actors(tr)


def _gain(tr, actors) -> float:
    _set(tr, actors)
    return tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False).metrics()["gain"]


def test_the_recorder_keeps_the_actors_of_the_evaluations_with_the_lowest_gain(trained):
    _, cfg, _, tr = trained
    rec = tr.recorder
    assert rec.actor_candidates == []  # off in the run
    rec.config = cfg.with_overrides(["actor_mix_fallback=2"])
    W = tr.learner.algo.actor_params[-1]
    seen = {}
    for ep, gain in enumerate([5.0, 3.0, 9.0, 1.0, 3.0]):
        with torch.no_grad():
            W.fill_(float(ep))  # a mark of the actors at this evaluation
        seen[ep] = _actors(tr)
        rec.keep_actor_candidate({"gain": gain}, ep)
    rec.keep_actor_candidate({"reward": 1.0}, 9)  # no analysis: not a candidate
    assert [(g, e) for g, e, _ in rec.actor_candidates] == [(1.0, 3), (3.0, 1)]  # the earlier of equal gains
    for _, ep, actors in rec.actor_candidates:
        assert all(torch.equal(a, s) and a.device.type == "cpu" for a, s in zip(actors, seen[ep]))
    with torch.no_grad():
        W.fill_(-1.0)  # copies, not views
    assert float(rec.actor_candidates[0][2][-1].flatten()[0]) == 3.0
    rec.config = cfg  # 0: off
    rec.keep_actor_candidate({"gain": 0.5}, 10)
    assert len(rec.actor_candidates) == 2 and rec.actor_candidates[0][0] == 1.0


def test_the_fallback_takes_each_learners_actor_where_the_total_gain_falls(trained):
    """Kept policy: both CCGTs offer everything at 0 EUR/MWh (they run at a loss all
    night). One candidate evaluation has `plant_ccgt-1` at 60, the other `plant_ccgt-2` at
    60. Each alone is better than the kept policy, both together better than either: the
    fallback must take one actor from each evaluation, save that as `policies/best`, and
    leave the trainer's own actors as they were."""
    sc, cfg, run, tr = trained
    own = _actors(tr)
    kept, cand_a, cand_b, mixed = (_prices(tr, 0, 0), _prices(tr, 60, 0), _prices(tr, 0, 60), _prices(tr, 60, 60))
    g = {k: _gain(tr, v) for k, v in (("kept", kept), ("a", cand_a), ("b", cand_b), ("mixed", mixed))}
    assert g["mixed"] < min(g["a"], g["b"]) - 1.0 and max(g["a"], g["b"]) < g["kept"] - 1.0
    _set(tr, kept)
    tr.recorder.best = initial_best()
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    _set(tr, own)
    tr.recorder.actor_candidates = [(g["a"], 11, cand_a), (g["b"], 12, cand_b)]
    best = run / "policies" / "best"

    tr.learner.config = cfg.with_overrides(["actor_mix_fallback=2"])
    taken = tr.actor_mix_fallback()
    assert taken == {OTHER: 12, PLANT: 11}  # the larger gain first: plant_ccgt-2 loses more at 0 EUR/MWh
    assert "kept with plant_ccgt-2 from episode 12, plant_ccgt-1 from episode 11" in tr.mix_report
    # pass 1: ccgt-2 <- 12, ccgt-1 <- 11, ccgt-1 <- 12 (worse); pass 2: ccgt-2 <- 11 (worse); ccgt-1 <- 12
    # again would repeat an evaluation against the same bids of the others, so it is skipped
    assert "; 4 evaluations of 2 evaluations' actors)" in tr.mix_report
    assert all(torch.equal(a, o) for a, o in zip(_actors(tr), own))  # the trainer's own actors
    manifest = read_manifest(best)
    assert manifest["trainer"]["actor_mix"] == {OTHER: 12, PLANT: 11}
    assert manifest["metrics"]["gain"] == pytest.approx(g["mixed"], rel=1e-9)
    assert tr.recorder.best["gain"] == pytest.approx(g["mixed"], rel=1e-9)
    ev2, _ = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert ev2.metrics()["gain"] == pytest.approx(g["mixed"], rel=1e-9)

    report = tr.mix_report
    assert tr.actor_mix_fallback() == {} and tr.mix_report == report  # chosen once (a resumed run)
    summary = tr.finish(TrainResult(run, 2, 1.0, dict(tr.recorder.best), [], None, False), plots=False)
    assert summary["actor_mix_fallback"] == report
    assert summary["evaluation"]["gain"] == pytest.approx(g["mixed"], rel=1e-9)


def test_the_evaluation_budget_and_a_worse_candidate(trained):
    sc, cfg, run, tr = trained
    own = _actors(tr)
    kept, cand_b = _prices(tr, 0, 0), _prices(tr, 0, 60)
    _set(tr, kept)
    tr.recorder.best = initial_best()
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    best = run / "policies" / "best"
    tr.recorder.actor_candidates = [(0.0, 5, kept)]  # the kept policy's own actors: nothing to try
    tr.learner.config = cfg.with_overrides(["actor_mix_fallback=3"])
    assert tr.actor_mix_fallback() == {}
    assert "(0 evaluations), kept as it was" in tr.mix_report
    assert "actor_mix" not in read_manifest(best)["trainer"]
    # one evaluation allowed: plant_ccgt-2 (the larger gain) takes the candidate's actor, then it stops
    tr.recorder.actor_candidates = [(0.0, 7, _prices(tr, 60, 60))]
    _set(tr, own)
    tr.learner.config = cfg.with_overrides(["actor_mix_fallback=3", "actor_mix_evaluations=1"])
    assert tr.actor_mix_fallback() == {OTHER: 7}
    assert "1 evaluations" in tr.mix_report
    ev2, _ = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert ev2.metrics()["gain"] == pytest.approx(_gain(tr, cand_b), rel=1e-9)


def test_the_keys_and_the_manifest_entry_are_validated(trained, tmp_path):
    _, cfg, run, _ = trained
    for bad in ("actor_mix_fallback=-1", "actor_mix_evaluations=0", "actor_mix_fallback=two"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            cfg.with_overrides([bad])
    assert LearningConfig().actor_mix_fallback == "auto" and LearningConfig().actor_mix_evaluations == 36
    assert [actor_mix_size(LearningConfig(), n) for n in (1, 5, 6, 24)] == [6, 6, 0, 0]  # auto: up to 5 learners
    assert actor_mix_size(cfg.with_overrides(["actor_mix_fallback=3"]), 24) == 3
    manifest = read_manifest(run / "policies" / "best")
    for mix in ({"nobody": 3}, {PLANT: -1}, {PLANT: 1.5}, [PLANT]):
        m = {**manifest, "trainer": {**manifest["trainer"], "actor_mix": mix}}
        with pytest.raises(CheckpointError, match="actor_mix"):
            validate_manifest(m, run / "policies" / "best")
    validate_manifest({**manifest, "trainer": {**manifest["trainer"], "actor_mix": {PLANT: 3}}}, run / "policies" / "best")


def test_the_readings_are_tried_again_once_an_actor_changed(trained):
    """Kept: both CCGTs at 0 EUR/MWh, where `tie_below_cost` changes nothing (the
    fallback kept it off). Candidates: one CCGT at 50 EUR/MWh each (under the 51.875 rule
    offer, below their cost). Once both take them, the tied reading is better: the
    fallback must switch it on, record it, and `evaluate_policy` must bid with it."""
    sc, cfg, run, tr = trained
    kept, cand_a, cand_b, mixed = (_prices(tr, 0, 0), _prices(tr, 50, 0), _prices(tr, 0, 50), _prices(tr, 50, 50))
    gain = {}
    for tie in (False, True):
        tr.eval_core.tie_below_cost = tie
        gain[tie] = {k: _gain(tr, v) for k, v in (("kept", kept), ("mixed", mixed))}
    assert gain[True]["kept"] == pytest.approx(gain[False]["kept"], rel=1e-12)
    assert gain[True]["mixed"] < gain[False]["mixed"] - 1.0 < gain[False]["kept"]
    tr.eval_core.tie_below_cost = False
    _set(tr, kept)
    tr.recorder.best = initial_best()
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    tr.recorder.actor_candidates = [(0.0, 3, cand_a), (0.0, 4, cand_b)]
    best = run / "policies" / "best"
    tr.learner.config = cfg.with_overrides(["actor_mix_fallback=2", "tie_below_cost_fallback=true"])
    assert tr.actor_mix_fallback() == {OTHER: 4, PLANT: 3}
    assert ", then tie_below_cost true (" in tr.mix_report
    info = read_manifest(best)["trainer"]
    assert info["tie_below_cost"] is True and info["actor_mix"] == {OTHER: 4, PLANT: 3}
    assert tr.eval_core.tie_below_cost  # the summary evaluates what was kept
    ev2, core = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert core.tie_below_cost and ev2.metrics()["gain"] == pytest.approx(gain[True]["mixed"], rel=1e-9)
