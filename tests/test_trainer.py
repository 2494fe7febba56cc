"""The training loop, checkpoints, train.py and evaluate, on the built-in tiny scenario."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from agents.checkpoint import CheckpointError, load_checkpoint, read_manifest, save_checkpoint
from agents.config import LearningConfig
from agents.learning_utils import Actor, CriticTD3
from agents.trainer import Trainer
from envs import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "actor_hidden_sizes=[32, 32]", "critic_hidden_sizes=[32, 32]", "train_freq=12h", "gradient_steps=4",
    "batch_size=16", "episodes_collecting_initial_experience=1", "validation_episodes_interval=1",
    "training_episodes=3", "replay_buffer_size=10000", "profile_search=0",
]


def make(tmp_path=None, extra=(), seed=3, scenario="tiny"):
    sc = load_scenario(scenario)
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + list(extra))
    return Trainer(sc, cfg, run_dir=tmp_path, seed=seed, progress=False, tensorboard=tmp_path is not None)


def stacked(tr):
    return [p.detach().clone() for p in tr.algo.actor_params + tr.algo.critic_params]


def test_same_seed_same_run_and_different_seed_differs():
    a, b, c = make(seed=5), make(seed=5), make(seed=6)
    for t in (a, b, c):
        t.train(2)
    for x, y in zip(stacked(a), stacked(b)):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(stacked(a), stacked(c)))
    assert a.n_updates == b.n_updates > 0


def test_initial_exploration_has_no_updates_then_updates_follow_train_freq():
    tr = make(extra=["episodes_collecting_initial_experience=2"])
    tr.train(2)
    assert tr.n_updates == 0
    before = stacked(tr)
    tr.train(3)
    # 48 hours / train_freq 12 h = 4 update rounds x 4 gradient steps
    assert tr.n_updates == 16
    assert any(not torch.equal(x, y) for x, y in zip(before, stacked(tr)))


def test_noise_schedule_linear_and_constant():
    tr = make(extra=["action_noise_schedule=linear", "noise_scale=1.0", "training_episodes=11",
                     "episodes_collecting_initial_experience=1"])
    assert tr.noise_scale(1) == pytest.approx(1.0)
    assert tr.noise_scale(6) == pytest.approx(0.5)
    assert tr.noise_scale(11) == pytest.approx(0.0)
    tr2 = make(extra=["noise_scale=0.7", "action_noise_schedule=constant"])
    assert tr2.noise_scale(1) == tr2.noise_scale(3) == pytest.approx(0.7)


def test_run_folder_contents_and_checkpoint_loads_into_documented_networks(tmp_path):
    run = tmp_path / "run"
    tr = make(run)
    tr.train()
    tr.close()
    assert (run / "config.yaml").is_file() and (run / "history.csv").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    for name in ("best", "best_profit", "best_regret", "last"):
        assert (run / "policies" / name / "manifest.json").is_file(), name
    hist = pd.read_csv(run / "history.csv")
    assert len(hist) == 3 and "eval/br_share" in hist.columns
    m = read_manifest(run / "policies" / "last")
    assert m["agents"] == tr.agents and m["act_dims"] == [2]
    sd = torch.load(run / "policies" / "last" / m["files"][tr.agents[0]]["actor"], weights_only=True)
    actor = Actor(m["obs_dim"], 2, torch.float32, hidden_sizes=(32, 32))
    actor.load_state_dict(sd["actor"])
    obs = torch.from_numpy(tr.core.reset(np.random.default_rng(0)))[0]
    torch.testing.assert_close(actor(obs), tr.algo.act(obs)[:, :2])
    csd = torch.load(run / "policies" / "last" / m["files"][tr.agents[0]]["critic"], weights_only=True)
    critic = CriticTD3(1, m["obs_dim"], m["max_act"], torch.float32, unique_obs_len=m["unique_obs_len"], hidden_sizes=(32, 32))
    critic.load_state_dict(csd["critic"])
    # the saved config resolves to the same values
    saved = LearningConfig.load(run / "config.yaml")
    assert saved.batch_size == 16 and saved.actor_hidden_sizes == (32, 32)


def test_save_load_round_trip_and_errors(tmp_path):
    a = make()
    a.train(2)
    save_checkpoint(tmp_path / "ck", a.algo, a.agents)
    b = make(seed=99)
    load_checkpoint(tmp_path / "ck", b.algo, b.agents)
    for x, y in zip(stacked(a), stacked(b)):
        assert torch.equal(x, y)
    # corrupt file -> clear error naming the file, nothing loaded
    m = read_manifest(tmp_path / "ck")
    bad = tmp_path / "ck" / m["files"][a.agents[0]]["critic"]
    bad.write_bytes(b"not a torch file")
    c = make(seed=7)
    before = stacked(c)
    with pytest.raises(CheckpointError, match="critic"):
        load_checkpoint(tmp_path / "ck", c.algo, c.agents)
    # mismatched agents without remapping
    with pytest.raises(CheckpointError, match="agents differ"):
        load_checkpoint(tmp_path / "ck", c.algo, ["plant_other"])
    with pytest.raises(CheckpointError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    assert all(torch.equal(x, y) for x, y in zip(before, stacked(c)))


def test_atomic_save_replaces_whole_folder(tmp_path):
    a = make()
    save_checkpoint(tmp_path / "ck", a.algo, a.agents, episode=1)
    save_checkpoint(tmp_path / "ck", a.algo, a.agents, episode=2)
    assert read_manifest(tmp_path / "ck")["episode"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp or old folders left


def test_continue_learning_with_a_different_agent_set_remaps_critic_columns(tmp_path):
    """default has 3 learners; a checkpoint of them loads into a 2-learner critic by name."""
    from agents.checkpoint import _critic_columns, remap_critic

    old, new = ["plant_a", "plant_b", "storage_c"], ["storage_c", "plant_a"]
    od, u, m = 5, 2, 2
    cols_old = _critic_columns(old, 0, od, u, m)
    w = torch.arange(3 * (od + 2 * u + 3 * m), dtype=torch.float32).reshape(3, -1)
    sd = {"q1.0.weight": w, "q2.0.weight": w + 1000, "q1.0.bias": torch.zeros(3), "q2.0.bias": torch.zeros(3)}
    fresh = {"q1.0.weight": torch.full((3, od + u + 2 * m), -1.0), "q2.0.weight": torch.full((3, od + u + 2 * m), -1.0),
             "q1.0.bias": torch.ones(3), "q2.0.bias": torch.ones(3)}
    out = remap_critic(sd, fresh, old, new, "plant_a", od, u, m, m)
    cols_new = _critic_columns(new, 1, od, u, m)
    for key in (("own", "plant_a", 0), ("unique", "storage_c", 1), ("action", "storage_c", 0), ("action", "plant_a", 1)):
        torch.testing.assert_close(out["q1.0.weight"][:, cols_new[key]], w[:, cols_old[key]])
        torch.testing.assert_close(out["q2.0.weight"][:, cols_new[key]], w[:, cols_old[key]] + 1000)
    torch.testing.assert_close(out["q1.0.bias"], torch.zeros(3))


def test_continue_learning_from_config(tmp_path):
    a = make(tmp_path / "r1")
    a.train(2)
    a.close()
    b = make(extra=["continue_learning=true", f"trained_policies_load_path={tmp_path / 'r1' / 'policies' / 'last'}"], seed=42)
    for x, y in zip(stacked(a), stacked(b)):
        assert torch.equal(x, y)


def test_train_py_and_evaluate_end_to_end(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--episodes", "3", "--seed", "1",
           "--out", str(out), "--quiet"] + sum((["--set", s] for s in SMALL if not s.startswith("training_")), [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "share" in r.stdout and (out / "summary.json").is_file()
    for png in ("learning_curves", "bids_vs_marginal_cost", "price_duration_curve", "profit_vs_best_response"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "evaluate", "--policy", str(out / "policies" / "best"),
                        "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    market = pd.read_csv(tmp_path / "ev" / "market.csv")
    orders = pd.read_csv(tmp_path / "ev" / "orders.csv")
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert list(market.columns) == ["time", "clearing_price", "demand", "supply_volume"]
    assert list(orders.columns) == ["time", "unit", "price", "volume", "accepted_volume", "clearing_price", "marginal_cost"]
    assert len(market) == 48
    # supply equals served demand every hour; demand rows are negative
    assert np.allclose(market["supply_volume"], market["demand"])
    assert (orders.loc[orders.unit == "demand", "volume"] < 0).all()
    agent = summary["agents"]["plant_learner-1"]
    assert agent["best_response_profit"] >= agent["profit"] - 1e-6
    # evaluation profit of the learner from orders.csv matches the summary
    o = orders[orders.unit == "learner_1"]
    assert np.isclose(((o.clearing_price - o.marginal_cost) * o.accepted_volume).sum(), agent["profit"], rtol=1e-6, atol=1e-3)


def test_bad_cli_input_gives_clear_errors(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--set", "batch_sise=3"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "batch_sise" in r.stderr and "batch_size" in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "evaluate", "--policy", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.slow
def test_learns_best_response_on_tiny():
    """tiny: the learner's best response is to bid just below the peaker's 70 EUR/MWh. The
    trained policy must reach >= 90 % of its exact best-response profit."""
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["training_episodes=40", "episodes_collecting_initial_experience=3", "train_freq=24h", "gradient_steps=48",
         "validation_episodes_interval=1", "gamma=0", "actor_preactivation_penalty=0.01"])
    tr = Trainer(sc, cfg, seed=0, progress=False, tensorboard=False)
    tr.train()
    best = max(r["eval/br_share"] for r in tr.history if "eval/br_share" in r)
    assert best >= 0.9, [round(r.get("eval/br_share", -1), 3) for r in tr.history]


def test_early_stopping_stops_when_reward_stalls():
    tr = make(extra=["training_episodes=10", "early_stopping_steps=1", "early_stopping_threshold=1e9"])
    res = tr.train()
    assert res.stopped_early and res.episodes == 3  # evaluations after episodes 1 and 2, no gain -> stop
    tr2 = make(extra=["training_episodes=4"])
    res2 = tr2.train()
    assert not res2.stopped_early and res2.episodes == 4


def test_compare_and_save_policies_compares_every_metric(tmp_path):
    tr = make(tmp_path / "run")
    assert tr.compare_and_save_policies({"reward": 1.0, "profit": 5.0, "regret": 3.0}) == ["best", "best_profit", "best_regret"]
    # only regret improves -> only best_regret is written
    assert tr.compare_and_save_policies({"reward": 0.5, "profit": 4.0, "regret": 1.0}) == ["best_regret"]
    assert tr.compare_and_save_policies({"reward": 0.4, "profit": 6.0, "regret": 2.0}) == ["best_profit"]
    assert read_manifest(tmp_path / "run" / "policies" / "best_profit")["metrics"]["profit"] == 6.0
    tr.close()


# --------------------------------------------------------------------------- config keys do what they say


def test_learning_mode_false_runs_the_loaded_policies_without_training(tmp_path):
    a = make(tmp_path / "r1")
    a.train(2)
    a.close()
    best = tmp_path / "r1" / "policies" / "best"
    b = make(tmp_path / "r2", extra=["learning_mode=false", f"trained_policies_load_path={best}"], seed=9)
    loaded = stacked(b)
    res = b.train()
    b.close()
    assert res.episodes == 0 and b.n_updates == 0 and b.buffer.size() == 0 and b.history == []
    assert all(torch.equal(x, y) for x, y in zip(loaded, stacked(b)))  # nothing trained
    assert not (tmp_path / "r2" / "policies").exists()
    # the actors are the checkpoint's: the same evaluation as the trainer that saved them
    load_checkpoint(best, a.algo, a.agents)
    ev = a.evaluate()
    assert res.final_eval.profit == ev.profit and np.array_equal(res.final_eval.bids, ev.bids)


def test_learning_mode_false_in_train_py_and_refused_without_a_path(tmp_path):
    a = make(tmp_path / "r1")
    a.train(2)
    a.close()
    out = tmp_path / "fixed"
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--out", str(out), "--quiet",
                        "--seed", "1", "--set", "learning_mode=false",
                        "--set", f"trained_policies_save_path={tmp_path / 'r1' / 'policies'}"]
                       + sum((["--set", s] for s in SMALL), []), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "without training" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == str(tmp_path / "r1" / "policies" / "best")  # save path's best
    assert (out / "market.csv").is_file() and not (out / "policies").exists()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--set", "learning_mode=false"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "learning_mode" in lines[0] and "trained_policies_load_path" in lines[0]


def test_trained_policies_save_path_sets_where_policies_go(tmp_path):
    save = tmp_path / "elsewhere"
    tr = make(tmp_path / "run", extra=[f"trained_policies_save_path={save}"])
    tr.train()
    tr.close()
    for name in ("best", "best_profit", "best_regret", "last"):
        assert (save / name / "manifest.json").is_file(), name
    assert not (tmp_path / "run" / "policies").exists()
    assert (tmp_path / "run" / "history.csv").is_file()


def test_continue_learning_falls_back_to_the_save_path_and_fails_in_one_line_without(tmp_path):
    a = make(tmp_path / "r1", extra=[f"trained_policies_save_path={tmp_path / 'pol'}"])
    a.train(2)
    a.close()
    b = make(extra=["continue_learning=true", f"trained_policies_save_path={tmp_path / 'pol'}"], seed=42)
    ref = make(seed=43)
    load_checkpoint(tmp_path / "pol" / "best", ref.algo, ref.agents)
    for x, y in zip(stacked(ref), stacked(b)):
        assert torch.equal(x, y)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--set", "continue_learning=true"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "continue_learning" in lines[0], r.stderr


def test_seed_null_is_drawn_from_the_os_and_recorded(tmp_path):
    import yaml

    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["seed=null", "training_episodes=2"])
    assert cfg.seed is None
    sc_no_seed = dataclasses.replace(sc, seed=None) if sc.seed is not None else sc
    runs = []
    for name in ("a", "b"):
        tr = Trainer(sc_no_seed, cfg, run_dir=tmp_path / name, seed=None, progress=False, tensorboard=False)
        tr.train()
        tr.close()
        saved = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert isinstance(saved["seed"], int) and saved["seed"] == tr.seed
        runs.append(tr)
    assert runs[0].seed != runs[1].seed  # 31 random bits: equal by chance with probability 5e-10
    # the recorded seed repeats the run
    again = Trainer(sc_no_seed, LearningConfig.load(tmp_path / "a" / "config.yaml"), progress=False, tensorboard=False)
    again.train()
    for x, y in zip(stacked(runs[0]), stacked(again)):
        assert torch.equal(x, y)


def test_noise_dt_decays_the_scale_per_draw(monkeypatch):
    """noise_dt: the k-th noisy draw of the run has scale noise_scale * noise_dt**k (one
    draw per agent and hour of the training episodes; none during initial exploration)."""
    from agents.learning_utils import NormalActionNoise

    scales = []
    original = NormalActionNoise.noise

    def spy(self):
        scales.append(self.scale)
        return original(self)

    monkeypatch.setattr(NormalActionNoise, "noise", spy)
    tr = make(extra=["noise_dt=0.99", "noise_scale=0.8", "episodes_collecting_initial_experience=1",
                     "action_noise_schedule=constant"])
    tr.train(3)  # episode 0 explores (no noise), episodes 1 and 2: 48 draws each
    H = tr.core.max_cycles
    assert len(scales) == 2 * H
    np.testing.assert_allclose(scales, 0.8 * 0.99 ** np.arange(2 * H), rtol=1e-12)
    assert tr.noise_scale(2) == pytest.approx(0.8 * 0.99 ** H)
    np.testing.assert_allclose([r["train/noise_scale"] for r in tr.history], [0.8, 0.8, 0.8 * 0.99 ** H])


def test_learner_state_dict_round_trip():
    a = make()
    a.train(2)
    sd = a.learner.state_dict()
    b = make(seed=77)
    b.learner.load_state_dict(sd)
    assert (b.learner.episode, b.learner.n_updates, b.learner.hours_since_update, b.learner.seed) == \
        (a.learner.episode, a.learner.n_updates, a.learner.hours_since_update, 3)
    for x, y in zip(stacked(a), stacked(b)):
        assert torch.equal(x, y)
    # generators continue identically
    assert a.learner.env_rng.integers(2**31) == b.learner.env_rng.integers(2**31)
    for r1, r2 in zip(a.learner.agent_rngs, b.learner.agent_rngs):
        assert r1.random() == r2.random()
    s1, s2 = a.algo.state_dict()["actor_optimizer"], b.algo.state_dict()["actor_optimizer"]
    for k, st in s1["state"].items():
        assert torch.equal(st["exp_avg"], s2["state"][k]["exp_avg"])
    with pytest.raises(ValueError, match="units"):
        make(scenario="default").learner.load_state_dict(sd)


def test_history_columns_are_the_tensorboard_tags_and_the_readme_table(tmp_path):
    import re

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr = make(tmp_path / "run")
    tr.train()
    tr.close()
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    columns = set(hist.columns) - {"episode", "wall_time", "saved"}
    assert tags == columns
    assert {"losses/critic_loss", "eval/profit_plant_learner-1", "eval/br_share_plant_learner-1"} <= columns
    # every tag of the README's metric table is written (agent names filled in)
    readme = (ROOT / "README.md").read_text()
    table = readme.split("Logged metrics", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"`((?:train|eval|losses)/[^`]+)`", table))
    agent = tr.agents[0]
    documented = {t.replace("<agent>", agent) for t in documented}
    assert documented <= columns, documented - columns
    assert {re.sub(re.escape(agent), "<agent>", c) for c in columns} <= {t.replace(agent, "<agent>") for t in documented}


def test_help_lists_the_evaluate_command():
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "evaluate" in r.stdout and "train" in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "evaluate", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--policy" in r.stdout


# Where each learning_config key's behaviour is tested (a new key needs an entry).
KEY_TESTS = {
    "learning_mode": "test_learning_mode_false_runs_the_loaded_policies_without_training",
    "continue_learning": "test_continue_learning_falls_back_to_the_save_path_and_fails_in_one_line_without",
    "trained_policies_save_path": "test_trained_policies_save_path_sets_where_policies_go",
    "trained_policies_load_path": "test_continue_learning_from_config",
    "max_bid_price": "test_every_key_reaches_the_object_it_configures",
    "algorithm": "tests/test_config.py::test_wrong_values_name_source_key_value_and_allowed",
    "actor_architecture": "tests/test_config.py::test_wrong_values_name_source_key_value_and_allowed",
    "learning_rate": "test_every_key_reaches_the_object_it_configures",
    "learning_rate_schedule": "test_every_key_reaches_the_object_it_configures",
    "training_episodes": "test_early_stopping_stops_when_reward_stalls",
    "episodes_collecting_initial_experience": "test_initial_exploration_has_no_updates_then_updates_follow_train_freq",
    "train_freq": "test_initial_exploration_has_no_updates_then_updates_follow_train_freq",
    "gradient_steps": "test_initial_exploration_has_no_updates_then_updates_follow_train_freq",
    "batch_size": "test_every_key_reaches_the_object_it_configures",
    "gamma": "test_every_key_reaches_the_object_it_configures",
    "device": "tests/test_matd3.py::test_cuda_matches_reference",
    "noise_sigma": "test_every_key_reaches_the_object_it_configures",
    "noise_scale": "test_noise_schedule_linear_and_constant",
    "noise_dt": "test_noise_dt_decays_the_scale_per_draw",
    "action_noise_schedule": "test_noise_schedule_linear_and_constant",
    "validation_episodes_interval": "test_every_key_reaches_the_object_it_configures",
    "early_stopping_steps": "test_early_stopping_stops_when_reward_stalls",
    "early_stopping_threshold": "test_early_stopping_stops_when_reward_stalls",
    "tau": "test_every_key_reaches_the_object_it_configures",
    "policy_delay": "test_every_key_reaches_the_object_it_configures",
    "target_policy_noise": "test_every_key_reaches_the_object_it_configures",
    "target_noise_clip": "test_every_key_reaches_the_object_it_configures",
    "replay_buffer_size": "test_every_key_reaches_the_object_it_configures",
    "actor_hidden_sizes": "test_run_folder_contents_and_checkpoint_loads_into_documented_networks",
    "critic_hidden_sizes": "test_run_folder_contents_and_checkpoint_loads_into_documented_networks",
    "max_grad_norm": "test_every_key_reaches_the_object_it_configures",
    "actor_preactivation_penalty": "test_every_key_reaches_the_object_it_configures",
    "regret_scale": "test_every_key_reaches_the_object_it_configures",
    "storage_bids": "tests/test_storage_bids.py::test_trainer_uses_the_config_key",
    "plant_bids": "tests/test_plant_bids.py::test_auto_resolves_by_start_up_costs_and_the_trainer_uses_both_keys",
    "start_up_gamma": "tests/test_plant_bids.py::test_auto_resolves_by_start_up_costs_and_the_trainer_uses_both_keys",
    "storage_prices": "tests/test_plant_bids.py::test_storage_prices_key_reaches_the_env_and_the_checkpoint",
    "stay_out_fallback": "tests/test_stay_out.py::test_the_fallback_can_be_switched_off",
    "start_up_markup_hours": "tests/test_start_up_markup.py::test_option_and_keys_are_validated",
    "min_power_rule": "tests/test_min_power_rule.py::test_the_rule_is_validated_and_carried_by_training_the_manifest_and_evaluate",
    "cost_snap": "tests/test_cost_snap.py::test_the_band_is_validated_and_carried_by_training_the_manifest_and_evaluate",
    "stop_at_equilibrium": "tests/test_cost_snap.py::test_training_stops_once_the_kept_policy_is_an_exact_equilibrium",
    "start_up_markup_fallback": "tests/test_start_up_markup.py::test_the_fallback_keeps_the_markup_that_evaluates_best",
    "tie_below_cost": "tests/test_tie_below_cost.py::test_the_option_and_keys_are_validated",
    "grid_learner_costs":
        "tests/test_grid_learner_costs.py::test_the_key_is_validated_and_carried_by_training_the_manifest_and_evaluate",
    "tie_below_cost_fallback": "tests/test_tie_below_cost.py::test_the_fallback_keeps_the_reading_that_evaluates_best",
    "actor_mix_fallback": "tests/test_actor_mix.py::test_the_fallback_takes_each_learners_actor_where_the_total_gain_falls",
    "actor_mix_evaluations": "tests/test_actor_mix.py::test_the_evaluation_budget_and_a_worse_candidate",
    "profile_search": "tests/test_profile_search.py::test_the_search_after_training_keeps_a_better_policy",
    "profile_search_tolerance": "tests/test_profile_search.py::test_the_trainer_stops_the_search_at_profile_search_tolerance",
    "storage_teacher": "tests/test_storage_teacher.py::test_best_move_targets_bid_the_response_policy_through_the_grid",
    "best_policy_metric": "tests/test_quality_keys.py::test_best_policy_metric_decides_what_policies_best_holds",
    "best_policy_interval": "tests/test_quality_keys.py::test_best_policy_interval_adds_evaluations_that_only_choose_the_best_policy",
    "critic_reward_scale": "tests/test_quality_keys.py::test_critic_reward_scale_multiplies_what_the_critics_learn_from_only",
    "best_response_teacher": "test_best_response_teacher_refreshes_and_teaches_every_exact_response",
    "best_response_teacher_interval": "test_best_response_teacher_refreshes_and_teaches_every_exact_response",
    "best_response_teacher_window": "test_best_response_teacher_refreshes_and_teaches_every_exact_response",
    "best_response_teacher_margin": "test_best_response_teacher_refreshes_and_teaches_every_exact_response",
    "per_unit_gamma": "tests/test_quality_keys.py::test_per_unit_gamma_discounts_only_units_with_a_link_between_hours",
    "equilibrium_teacher": "tests/test_quality_keys.py::test_equilibrium_teacher_fits_the_actors_to_the_equilibrium_bids",
    "equilibrium_teacher_steps": "tests/test_quality_keys.py::test_equilibrium_teacher_fits_the_actors_to_the_equilibrium_bids",
    "equilibrium_teacher_rollouts": "tests/test_quality_keys.py::test_equilibrium_teacher_fits_the_actors_to_the_equilibrium_bids",
    "equilibrium_teacher_storage_refresh": "tests/test_quality_keys.py::test_equilibrium_teacher_true_also_teaches_start_up_plants_and_two_sided_storage",
    "foresight": "tests/test_quality_keys.py::test_foresight_auto_sees_a_whole_cycle_of_the_slowest_learning_storage",
    "obs_normalization": "tests/test_obs_normalization.py::test_the_key_switches_the_standardisation_on_and_off",
    "critic_search": "tests/test_quality_keys.py::test_critic_search_teaches_the_critics_best_candidate_where_it_beats_the_actor",
    "plant_cost_floor": "tests/test_quality_keys.py::test_plant_cost_floor_lifts_flexible_offers_below_cost",
    "seed": "test_seed_null_is_drawn_from_the_os_and_recorded",
    "num_envs": "tests/test_mango_runtime.py::test_several_units_uneven_train_freq_and_every_message_through_the_codec",
    "torch_threads": "test_every_key_reaches_the_object_it_configures",
    "episode_hours": "tests/test_wiring.py::test_training_never_touches_the_held_out_hours_and_evaluation_runs_exactly_them",
    "random_start": "tests/test_wiring.py::test_training_never_touches_the_held_out_hours_and_evaluation_runs_exactly_them",
    "demand_noise": "tests/test_wiring.py::test_training_never_touches_the_held_out_hours_and_evaluation_runs_exactly_them",
    "availability_noise": "tests/test_wiring.py::test_training_never_touches_the_held_out_hours_and_evaluation_runs_exactly_them",
    "holdout_hours": "tests/test_wiring.py::test_training_never_touches_the_held_out_hours_and_evaluation_runs_exactly_them",
    "analysis_max_agents": "tests/test_wiring.py::test_analysis_skipped_above_analysis_max_agents",
    "equilibrium_reference": "tests/test_wiring.py::test_final_summary_names_equilibrium_profits",
}


def test_every_config_key_has_a_behaviour_test():
    fields = {f.name for f in dataclasses.fields(LearningConfig) if f.init and f.name != "unknown_keys"}
    assert set(KEY_TESTS) == fields
    for key, where in KEY_TESTS.items():
        path, _, name = where.rpartition("::")
        source = (ROOT / path).read_text() if path else Path(__file__).read_text()
        assert f"def {name}(" in source, (key, where)


def test_learning_rate_decays_by_default_and_constant_keeps_it():
    """marketzoo's default ``learning_rate_schedule`` is "linear" (a config that leaves the
    key out decays the rate to 0 over the training episodes); "constant" and null keep it."""
    base = ["learning_rate=0.004", "training_episodes=4"]
    tr = make(extra=base)
    assert tr.config.learning_rate_schedule == "linear"
    assert [tr.learning_rate(e) for e in (0, 2, 4)] == [pytest.approx(0.004), pytest.approx(0.002), 0.0]
    for kept in ("constant", "null"):
        tr = make(extra=base + [f"learning_rate_schedule={kept}"])
        assert [tr.learning_rate(e) for e in (0, 2, 4)] == [pytest.approx(0.004)] * 3


def test_every_key_reaches_the_object_it_configures():
    import torch as _torch

    before = _torch.get_num_threads()
    extra = [
        "max_bid_price=250", "learning_rate=0.004", "learning_rate_schedule=linear", "training_episodes=4",
        "batch_size=8", "gamma=0.5", "noise_sigma=0.3", "validation_episodes_interval=2", "tau=0.2",
        "policy_delay=3", "target_policy_noise=0.4", "target_noise_clip=0.1", "replay_buffer_size=160",
        "max_grad_norm=0.7", "actor_preactivation_penalty=0.05", "torch_threads=1",
        "best_policy_interval=null",  # only the validations (tests/test_quality_keys.py tests the extra ones)
    ]
    tr = make(extra=extra + ["regret_scale=0.5"])
    try:
        a, core = tr.algo, tr.core
        assert (core.max_bid_price, core.regret_scale) == (250.0, 0.5)
        assert (a.gamma, a.tau, a.policy_delay, a.target_policy_noise, a.target_noise_clip, a.max_grad_norm,
                a.actor_preactivation_penalty) == (0.5, 0.2, 3, 0.4, 0.1, 0.7, 0.05)
        assert tr.buffer.buffer_size == 160 and all(nz.sigma == 0.3 for nz in tr.learner.noises)
        assert _torch.get_num_threads() == 1
        # learning-rate schedule: linear from 0.004 towards 0 over the episodes, applied per episode
        assert [tr.learning_rate(e) for e in (0, 2)] == [pytest.approx(0.004), pytest.approx(0.002)]
        tr.train(3)
        assert a.learning_rate == pytest.approx(0.004 * (1 - 2 / 4))
        assert all(g["lr"] == pytest.approx(0.002) for g in a.actor_optimizer.param_groups)
        # batch size: the workspace of the last gradient step; evaluations every 2 episodes after exploration
        assert a._ws.batch == 8
        assert [r["episode"] for r in tr.history if "eval/reward" in r] == [2]
        # regret_scale: the same (random) first episode earns the same profit, but a lower reward
        plain = make(extra=extra + ["regret_scale=0"]).run_episode()
        assert plain["profit"] == tr.history[0]["train/profit"] and plain["reward"] > tr.history[0]["train/reward"]
    finally:
        _torch.set_num_threads(before)


@pytest.mark.parametrize("storage_bids", ["two_sided", "signed"])
def test_best_response_teacher_refreshes_and_teaches_every_exact_response(storage_bids):
    """best_response_teacher: a teacher refresh after every `interval`-th episode (and at
    evaluations), at most `window` episodes kept, plant targets = the analysis's
    best-response actions minus `margin` / max_bid_price (storage: an offer stays an
    offer; two-sided storage with `storage_teacher` break_even: the break-even prices of its
    full-move best response at the visited states of charge; best_move in
    tests/test_storage_teacher.py), and the imitation term reaches the actor steps; weight 0
    keeps none of it."""
    from envs import load_scenario

    sc = load_scenario("default")
    base = ["training_episodes=5", "episodes_collecting_initial_experience=1", "train_freq=48h", "gradient_steps=2",
            "batch_size=16", "validation_episodes_interval=10", "actor_hidden_sizes=[8]", "critic_hidden_sizes=[8]",
            "torch_threads=1", "best_policy_interval=null"]
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        base + ["best_response_teacher=5", "best_response_teacher_interval=2", "best_response_teacher_window=1",
                "best_response_teacher_margin=2.0", f"storage_bids={storage_bids}", "storage_teacher=break_even",
                "plant_bids=free"])  # the unrestricted targets (on the grid: tests/test_grid_teacher.py)
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False, env_options={"max_cycles": 48})
    refreshes, taught = [], []
    orig, orig_update = tr.learner.refresh_teacher, tr.learner.algo.update
    tr.learner.refresh_teacher = lambda obs, an, **kw: (refreshes.append((obs, an, kw)), orig(obs, an, **kw))[1]

    def update(batch, imitation=None, **kw):
        taught.append(imitation is not None)
        return orig_update(batch, imitation=imitation, **kw)

    tr.learner.algo.update = update
    tr.train()
    # episodes 0..4, exploration in 0: a refresh of its own after episode 2 (interval 2);
    # after episode 4 the evaluation refreshes it (no second episode for the same purpose)
    assert len(refreshes) == 2
    assert len(tr.learner.teacher_data) == 1  # window 1
    obs, tgt = tr.learner.teacher_data[0]
    an = refreshes[-1][1]
    assert obs.shape == (48, tr.n, tr.core.obs_dim) and tgt.shape == (48, tr.n, tr.core.max_act)
    for k, a in enumerate(tr.agents):
        best = an.responses[a].best_action
        if tr.core.agent_kind[k] == "storage" and storage_bids == "two_sided":
            from envs.analysis import best_response, storage_break_even_prices

            rec = refreshes[-1][2]["record"]
            full = best_response(rec, a, scenario=sc, storage_moves="full", storage_off_grid=False)
            want = 2.0 * storage_break_even_prices(full, rec) / cfg.max_bid_price - 1.0
            np.testing.assert_allclose(tgt[:, k, :2], want, atol=1e-6)
            assert np.ptp(want) > 0
        elif tr.core.agent_kind[k] == "storage":
            assert an.responses[a].exact and np.isnan(tgt[:, k, 1]).all()
            want = np.maximum(best[:, 0] - 0.02, np.where(best[:, 0] >= 0, 0.0, -1.0))
            np.testing.assert_allclose(tgt[:, k, 0], want, atol=1e-6)
            assert np.all((tgt[:, k, 0] >= 0) == (best[:, 0] >= 0))
        else:
            want = np.clip(best[:, :2] - 2.0 / cfg.max_bid_price, -1, 1)
            np.testing.assert_allclose(tgt[:, k, :2], want, atol=1e-6)
    # after the first refresh (episode 2) every actor step (policy_delay 2) was taught
    assert any(taught[1::2]) and not any(taught[0::2]) and not any(taught[:4])
    if tr.learner.algo.n_updates % 2 == 0:
        tr.learner.algo.n_updates += 1  # the next step is an actor step
    obs_b, tgt_b, w = tr.learner._teacher_batch()
    assert obs_b.shape == (16, tr.n, tr.core.obs_dim) and w == 5.0
    off = Trainer(sc, LearningConfig.from_dict(sc.learning_config).with_overrides(base + ["best_response_teacher=0"]),
                  run_dir=None, seed=3,
                  progress=False, tensorboard=False, env_options={"max_cycles": 48})
    off.train()
    assert off.learner.teacher_data == [] and off.learner._teacher_batch() is None
