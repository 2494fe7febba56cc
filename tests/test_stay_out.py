"""``stay_out_fallback``: after training, a learning plant that loses money in the kept
policy's evaluation is tried with its actor offering at the top of its bid range, and that
policy is kept when it is better by ``best_policy_metric``."""

from __future__ import annotations

import numpy as np
import torch

import envs
from agents.checkpoint import read_manifest
from agents.config import LearningConfig
from agents.recorder import initial_best
from agents.trainer import Trainer, evaluate_policy, losing_plants

TINY = ["training_episodes=2", "episodes_collecting_initial_experience=1", "gradient_steps=2", "batch_size=16",
        "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=null",
        "validation_episodes_interval=10", "equilibrium_reference=false", "profile_search=0"]
H = 48


def _dear_default():
    """`default` with `ccgt_2`'s marginal cost tripled: every MWh it sells loses money."""
    sc = envs.load_scenario("default")
    j = list(sc.plants.names).index("ccgt_2")
    sc.plants.marginal_cost[:, j] *= 3.0
    return sc


def _set_constant_action(tr: Trainer, i: int, pre: float) -> None:
    W, b = tr.learner.algo.actor_params[-2], tr.learner.algo.actor_params[-1]
    with torch.no_grad():
        W[i].zero_()
        b[i, : int(tr.learner.act_dims[i])] = pre


def test_stay_out_sets_the_action_to_the_top_and_leaves_the_others():
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    obs = tr.core.reset(np.random.default_rng(0))
    before = tr.learner.act(obs, explore=False)
    i = tr.agents.index("plant_ccgt-2")
    tr.learner.stay_out([i])
    after = tr.learner.act(obs, explore=False)
    d = int(tr.learner.act_dims[i])
    assert np.all(after[:, i, :d] > 0.9999)
    np.testing.assert_array_equal(after[:, i, d:], 0.0)  # padding stays 0
    others = [k for k in range(tr.n) if k != i]
    np.testing.assert_array_equal(after[:, others], before[:, others])
    tr.close()


def test_a_losing_plant_is_kept_out_when_that_is_better(tmp_path):
    sc = _dear_default()
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False,
                 env_options={"max_cycles": H})
    tr.train()
    i = tr.agents.index("plant_ccgt-2")
    obs = tr.core.reset(np.random.default_rng(1))
    # plant a kept policy in which ccgt_2 offers at the bottom of its range (always dispatched,
    # at a loss) and ccgt_1 at the top (never dispatched: it loses nothing)
    _set_constant_action(tr, i, -8.0)
    _set_constant_action(tr, tr.agents.index("plant_ccgt-1"), 8.0)
    trained = tr.learner.act(obs, explore=False)
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    assert ev.agent_profit[i] < 0
    tr.recorder.best = initial_best()
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    best = tmp_path / "run" / "policies" / "best"

    assert tr.stay_out_fallback() == ["plant_ccgt-2"]
    assert "lost money" in tr.stay_out_report and "plant_ccgt-2" in tr.stay_out_report
    assert read_manifest(best)["trainer"]["stay_out"] == ["plant_ccgt-2"]
    for other in ("best_profit", "best_regret"):  # only policies/best competes
        if (best.parent / other / "manifest.json").exists():
            assert "stay_out" not in read_manifest(best.parent / other)["trainer"]
    ev2, _ = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert ev2.agent_profit[i] == 0.0 and ev2.dispatch[i] == 0.0
    assert ev2.metrics()["gain"] < ev.metrics()["gain"]
    # the trainer's own actors are as they were
    np.testing.assert_array_equal(tr.learner.act(obs, explore=False), trained)
    # a kept policy that already stays out is not tried again
    assert tr.stay_out_fallback() == []
    tr.close()


def test_the_fallback_can_be_switched_off(tmp_path):
    sc = _dear_default()
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + ["stay_out_fallback=false"])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False,
                 env_options={"max_cycles": H})
    tr.train()
    i = tr.agents.index("plant_ccgt-2")
    _set_constant_action(tr, i, -8.0)
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    tr.recorder.best = initial_best()
    tr.recorder.compare_and_save_policies(ev.metrics())
    assert tr.stay_out_fallback() == [] and tr.stay_out_report is None
    assert "stay_out" not in read_manifest(tmp_path / "run" / "policies" / "best")["trainer"]
    tr.close()


def test_profits_of_zero_up_to_rounding_are_not_losses():
    """At a zero-profit equilibrium (learners bidding their cost) profits are 0 up to float
    rounding; those plants are not tried out, a real loss is, and other kinds never."""
    kinds = ["plant", "plant", "plant", "storage", "plant"]
    assert losing_plants(kinds, [-1e-9, -0.0, -250.0, -900.0, 3.0]) == [2]
    assert losing_plants(kinds, np.zeros(5)) == []
