"""``benchmarks/eval_other_hours.py``: a saved policy evaluated on the hours it trained on
and on other hours of the same market (the longer study case's held-out end), per
start-up markup.

What would be wrong if it broke: the windows (the trained fortnight and the next one),
a trained-hours figure that differs from the trainer's own evaluation of the same
actors, markups or variants that are not applied, a missing policy not named."""

from __future__ import annotations

import json

import pytest

import envs
from agents.config import LearningConfig
from agents.recorder import initial_best
from agents.trainer import Trainer
from _examples import load_benchmark

TINY = ["training_episodes=1", "episodes_collecting_initial_experience=1", "gradient_steps=1", "batch_size=16",
        "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=null",
        "equilibrium_reference=false", "stay_out_fallback=false", "start_up_markup_fallback=[]",
        "profile_search=0"]


def _script():
    return load_benchmark("eval_other_hours")


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """Untrained actors of `default`, saved as policies/best, with the trainer's own
    evaluation of them on the fortnight they belong to."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    run = tmp_path_factory.mktemp("run")
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False)
    ev = tr.learner.evaluate(tr.eval_core, tr.scenario, analysis=True, refresh=False)
    tr.recorder.best = initial_best()
    assert "best" in tr.recorder.compare_and_save_policies(ev.metrics())
    tr.close()
    return run / "policies" / "best", ev.metrics()


def _run(capsys, *args) -> dict:
    assert _script().main([str(a) for a in args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_trained_and_other_hours_with_each_markup(policy, capsys):
    best, metrics = policy
    out = _run(capsys, best, "--markups", "0", "6")
    trained, other = out["trained hours"], out["other hours"]
    assert trained["hours"] == [0, 336] and other["hours"] == [336, 672]
    assert trained["by_markup"]["0"]["exploitability"] == pytest.approx(metrics["exploitability"], rel=1e-9)
    assert trained["by_markup"]["0"]["gain"] == pytest.approx(metrics["gain"], rel=1e-9)
    assert other["by_markup"]["0"]["gain"] != pytest.approx(trained["by_markup"]["0"]["gain"], rel=1e-3)
    # a 6 h markup (16.7 EUR/MWh on a cold CCGT) changes what the untrained actors earn
    assert trained["by_markup"]["6"]["gain"] != pytest.approx(trained["by_markup"]["0"]["gain"], rel=1e-6)
    assert set(trained["by_markup"]["0"]["shares"]) == {"plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"}


def test_a_variant_is_another_market_and_a_missing_policy_is_named(policy, capsys, tmp_path):
    best, metrics = policy
    out = _run(capsys, best, "--variant", "3", "--markups", "0")
    assert out["variant"] == 3
    assert out["trained hours"]["by_markup"]["0"]["gain"] != pytest.approx(metrics["gain"], rel=1e-6)
    with pytest.raises(SystemExit):
        _script().main([str(tmp_path / "nothing")])
    assert "no manifest.json" in capsys.readouterr().err
