"""The trainer's wiring of the env options and analysis (issues 9, 11, 12): episode keys
and the held-out window, the replay buffer cap, train_freq in hours with sub-hourly
steps, the analysis limits, `train.py equilibrium` and `--learning-units`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.config import LearningConfig
from agents.learner import replay_capacity, train_freq_steps
from agents.trainer import Trainer
from envs import MarketCore, load_scenario

from test_assume_features import write_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "batch_size=4", "gradient_steps=1",
         "episodes_collecting_initial_experience=1", "validation_episodes_interval=1"]


def make(sc, *extra, seed=5):
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + list(extra))
    return Trainer(sc, cfg, run_dir=None, seed=seed, progress=False, tensorboard=False, analysis=False)


def log_hours(monkeypatch):
    """Record (core id, hour) of every step of every MarketCore."""
    seen: list[tuple[int, int]] = []
    inside = []
    step, step_observe = MarketCore.step, MarketCore.step_observe

    def logged_step(self, actions, active=None):
        if not inside:  # step_observe's fallback calls step: count that step once
            seen.append((id(self), self.hour))
        return step(self, actions, active)

    def logged_step_observe(self, actions, active=None):
        seen.append((id(self), self.hour))
        inside.append(1)
        try:
            return step_observe(self, actions, active)
        finally:
            inside.pop()

    monkeypatch.setattr(MarketCore, "step", logged_step)
    monkeypatch.setattr(MarketCore, "step_observe", logged_step_observe)
    return seen


def test_training_never_touches_the_held_out_hours_and_evaluation_runs_exactly_them(monkeypatch):
    sc = load_scenario("tiny")  # 48 hours
    seen = log_hours(monkeypatch)
    tr = make(sc, "holdout_hours=12", "episode_hours=12", "random_start=true", "demand_noise=0.05", "availability_noise=0.05",
              "training_episodes=5", "train_freq=6h")
    tr.train()
    train_hours = [h for c, h in seen if c == id(tr.core)]
    eval_hours = [h for c, h in seen if c == id(tr.eval_core)]
    assert len(train_hours) == 5 * 12 and max(train_hours) < 36
    assert len(set(train_hours)) > 12  # random starts: not always the same 12 hours
    assert eval_hours and len(eval_hours) % 12 == 0
    assert sorted(set(eval_hours)) == list(range(36, 48))
    assert eval_hours[:12] == list(range(36, 48))


def test_without_holdout_evaluation_runs_the_whole_horizon(monkeypatch):
    sc = load_scenario("tiny")
    seen = log_hours(monkeypatch)
    tr = make(sc, "training_episodes=2", "train_freq=6h")
    tr.train()
    assert [h for c, h in seen if c == id(tr.eval_core)][:48] == list(range(48))


def test_replay_buffer_is_capped_at_what_the_run_can_fill():
    sc = load_scenario("tiny")
    tr = make(sc, "training_episodes=3", "replay_buffer_size=500000", "num_envs=2", "train_freq=6h")
    assert tr.buffer.buffer_size == 3 * 48 * 2 and tr.buffer.observations.shape[0] == 3 * 48
    # a smaller configured buffer is kept; never below one batch
    cfg = LearningConfig().with_overrides(["replay_buffer_size=100", "batch_size=64"])
    assert replay_capacity(cfg, 10_000) == 100 and replay_capacity(cfg, 10) == 64
    tr.train()  # fills it exactly, still trains
    assert tr.buffer.full and tr.n_updates > 0


def test_train_freq_is_hours_of_simulated_time_with_quarter_hour_steps(tmp_path, monkeypatch):
    sc = load_scenario(write_scenario(tmp_path / "q", time_step="15min", days=1))
    assert sc.time_step_hours == 0.25
    cfg = LearningConfig().with_overrides(["train_freq=6h"])
    assert train_freq_steps(cfg, 0.25) == 24 and train_freq_steps(cfg, 1.0) == 6
    tr = make(sc, "train_freq=6h", "training_episodes=3", "episodes_collecting_initial_experience=1")
    steps = []
    original = tr.learner.update_round

    def counting():
        steps.append(tr.core.step_count)
        return original()

    monkeypatch.setattr(tr.learner, "update_round", counting)
    tr.train()
    assert tr.core.max_cycles == 96
    # every 6 simulated hours = 24 quarter-hour steps: 4 updates per training episode
    # (the counter also runs during the exploration episode, so the first lands one step in)
    assert steps == [1, 25, 49, 73, 1, 25, 49, 73]


def test_analysis_skipped_above_analysis_max_agents(capsys):
    sc = load_scenario("default")  # 3 learning agents
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        SMALL + ["analysis_max_agents=2", "training_episodes=1", "train_freq=24h"])
    tr = Trainer(sc, cfg, run_dir=None, seed=5, progress=False, tensorboard=False)
    assert tr.analysis is False
    assert "3 learning agents > analysis_max_agents (2)" in capsys.readouterr().out
    ev = tr.evaluate()
    assert ev.br_profit is None and ev.exploitability is None
    tr2 = Trainer(sc, tr.config.with_overrides({"analysis_max_agents": 3}), run_dir=None, seed=5, progress=False,
                  tensorboard=False)
    assert tr2.analysis is True


def test_final_summary_names_equilibrium_profits(tmp_path, capsys):
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["training_episodes=2", "train_freq=12h"])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=5, progress=False, tensorboard=False)
    s = tr.finish(tr.train(), plots=True)
    tr.close()
    row = s["agents"]["plant_learner-1"]
    assert {"profit", "best_response_profit", "equilibrium_profit"} <= set(row)
    # tiny's equilibrium: the learner's profit there is its best response to the rule plants (exact value)
    assert row["equilibrium_profit"] == pytest.approx(1_439_520.0, abs=1.0)
    e = s["equilibrium"]
    assert e["converged"] and e["price_rmse"] >= abs(e["mean_price_difference"]) - 1e-9
    assert e["mean_price_difference"] == pytest.approx(s["evaluation"]["mean_price"] - e["mean_price"])
    assert (tmp_path / "run" / "plots" / "prices_vs_equilibrium.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert s["verdict"] in out and "equilibrium" in out and "learned vs equilibrium prices" in out
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["agents"]["plant_learner-1"]["equilibrium_profit"] == row["equilibrium_profit"]
    # switched off: no equilibrium work, no key
    cfg2 = cfg.with_overrides({"equilibrium_reference": False})
    tr = Trainer(sc, cfg2, run_dir=None, seed=5, progress=False, tensorboard=False)
    s = tr.finish(tr.train(), plots=False)
    assert "equilibrium" not in s and "equilibrium_profit" not in s["agents"]["plant_learner-1"]


def test_equilibrium_reference_alongside_training_equals_the_one_computed_at_the_end(tmp_path, monkeypatch, capsys):
    import agents.reference as R

    monkeypatch.setattr(R, "_usable_cores", lambda: 2)  # a separate process, also on a one-core machine
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["training_episodes=2", "train_freq=12h"])
    tr = Trainer(sc, cfg, run_dir=None, seed=5, progress=False, tensorboard=False)
    tr.start_equilibrium_reference()  # 2 x 48 training hours: not worth a process
    assert tr._pending_reference is None
    monkeypatch.setattr(R, "BACKGROUND_MIN_TRAINING_HOURS", 96)
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["training_episodes=2", "train_freq=12h"])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=5, progress=False, tensorboard=False)
    tr.start_equilibrium_reference()
    pending = tr._pending_reference
    assert isinstance(pending, R.PendingEquilibrium) and pending.hours == 48
    result = tr.train()
    s = tr.finish(result, plots=False)
    tr.close()
    assert tr._pending_reference is None and pending._proc is None  # the process was joined
    e = s["equilibrium"]
    assert e["alongside_training"] is True and e["converged"] is True
    assert "computed alongside training" in capsys.readouterr().out
    # the same numbers as the search at the end, in this process
    inline = R.add_equilibrium_reference({"agents": {"plant_learner-1": {}}}, sc, tr.config, result.final_eval,
                                         echo=lambda _: None)
    assert inline["equilibrium"]["alongside_training"] is False
    for k in ("mean_price", "mean_price_difference", "price_rmse", "price_mae", "reason"):
        assert e[k] == inline["equilibrium"][k]
    assert s["agents"]["plant_learner-1"]["equilibrium_profit"] == pytest.approx(1_439_520.0, abs=1.0)
    assert inline["agents"]["plant_learner-1"]["equilibrium_profit"] == s["agents"]["plant_learner-1"]["equilibrium_profit"]
    # one that covers other hours is stopped and the reference computed here
    other = R.PendingEquilibrium(sc, 24, cfg.max_bid_price, 60.0)
    again = R.add_equilibrium_reference({}, sc, tr.config, result.final_eval, echo=lambda _: None, pending=other)
    assert again["equilibrium"]["alongside_training"] is False and other._proc is None
    assert again["equilibrium"]["price_rmse"] == e["price_rmse"]
    # a search the process refuses (hours beyond the scenario): the note the search here gives
    bad = R.PendingEquilibrium(sc, 10_000, cfg.max_bid_price, 60.0)
    bad.hours = 48  # pretend it covers the episode
    note = R.add_equilibrium_reference({}, sc, tr.config, result.final_eval, echo=lambda _: None, pending=bad)
    assert "max_cycles must be in [1, 48]" in note["equilibrium"]["skipped"]
    # past its time limit (counted from its start): a note, and the process is stopped
    slow = R.PendingEquilibrium(load_scenario("default"), 48, cfg.max_bid_price, 0.01)
    slow.hours = 48
    late = R.add_equilibrium_reference({}, sc, tr.config, result.final_eval, echo=lambda _: None, pending=slow)
    assert late["equilibrium"] == {"skipped": "equilibrium reference skipped: not found within 0.01 s"}
    assert slow._proc is None
    # one usable core, or the reference switched off: nothing starts
    monkeypatch.setattr(R, "_usable_cores", lambda: 1)
    assert R.PendingEquilibrium.start(sc, cfg, 1, 48, 0) is None
    monkeypatch.setattr(R, "_usable_cores", lambda: 2)
    assert R.PendingEquilibrium.start(sc, cfg.with_overrides({"equilibrium_reference": False}), 1, 48, 0) is None
    assert R.PendingEquilibrium.start(sc, cfg, 1, 48, 12) is None  # a held-out window


def run_cli(*args, timeout=300):
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def main(*args) -> int:
    """``train.py``'s main in this process (no interpreter start-up per call)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import train

    return train.main(list(args))


def test_equilibrium_command_on_tiny(tmp_path, capsys):
    assert main("equilibrium", "--scenario", "tiny", "--out", str(tmp_path / "eq")) == 0
    s = json.loads((tmp_path / "eq" / "summary.json").read_text())  # strict JSON
    assert s["converged"] is True and s["agents"]["plant_learner-1"]["profit"] == pytest.approx(1_439_520.0, abs=1.0)
    assert (tmp_path / "eq" / "market.csv").exists() and (tmp_path / "eq" / "orders.csv").exists()
    assert s["verdict"] in capsys.readouterr().out
    # one pass cannot certify it: not converged, exit 1 with the reason on one line
    assert main("equilibrium", "--scenario", "tiny", "--out", str(tmp_path / "eq2"), "--max-passes", "1") == 1
    assert "not converged (max_passes): largest residual gain" in capsys.readouterr().err
    assert main("equilibrium", "--scenario", "tiny", "--learning-units", "nope") == 2
    assert "unknown unit(s) 'nope'" in capsys.readouterr().err


def test_learning_units_and_holdout_from_the_command_line_reach_evaluate(tmp_path):
    out = tmp_path / "run"
    assert main("--scenario", "tiny", "--episodes", "1", "--learning-units", "mid_1", "--holdout-hours", "12",
                "--no-plots", "--quiet", "--out", str(out), "--set", "actor_hidden_sizes=[16]",
                "--set", "critic_hidden_sizes=[16]", "--set", "equilibrium_reference=false") == 0
    assert set(json.loads((out / "summary.json").read_text())["agents"]) == {"plant_mid-1", "plant_learner-1"}
    assert main("evaluate", "--policy", str(out / "policies" / "last"), "--out", str(tmp_path / "ev")) == 0
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert set(s["agents"]) == {"plant_mid-1", "plant_learner-1"} and s["hours"] == 12


def test_device_cuda_without_a_gpu_fails_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = run_cli("--scenario", "tiny", "--device", "cuda", "--episodes", "1")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "CUDA" in r.stderr


def test_scenario_file_asking_for_cuda_falls_back_to_cpu_with_one_warning(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    folder = write_scenario(tmp_path / "g", days=1, extra_case="")
    text = (folder / "config.yaml").read_text().replace("    max_bid_price: 100\n", "    max_bid_price: 100\n    device: cuda:0\n")
    (folder / "config.yaml").write_text(text)
    with pytest.warns(UserWarning, match="no CUDA GPU is available; training on cpu") as got:
        assert main("--scenario", str(folder), "--episodes", "1", "--no-plots", "--quiet", "--out", str(tmp_path / "run"),
                    "--set", "actor_hidden_sizes=[16]", "--set", "critic_hidden_sizes=[16]") == 0
    assert sum("CUDA" in str(w.message) for w in got) == 1
    assert "device cpu" in capsys.readouterr().out


def test_mango_runtime_counts_train_freq_in_hours_with_quarter_hour_steps_like_the_loop(tmp_path):
    from agents.mango.runtime import train_mango
    from test_mango_runtime import assert_same_run, config

    sc = load_scenario(write_scenario(tmp_path / "q", time_step="15min", days=1))
    cfg = config(sc, "train_freq=6h", "training_episodes=3", "episodes_collecting_initial_experience=1")
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False, analysis=False)
    tr.train()
    res = train_mango(sc, cfg, seed=3, analysis=False)
    assert_same_run(tr, res)
    # 2 training episodes x 4 updates (every 24 quarter hours) x gradient_steps
    assert tr.n_updates == 2 * 4 * cfg.gradient_steps


def test_mango_runtime_refuses_evaluation_episodes_of_another_length():
    from agents.mango.runtime import train_mango

    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["holdout_hours=12", "training_episodes=1"])
    with pytest.raises(ValueError, match="evaluation episodes as long as training episodes"):
        train_mango(sc, cfg, seed=1, analysis=False)


def test_summary_storage_rows_name_the_full_volume_best_response(capsys, tmp_path):
    from agents.evaluation import print_run_summary, run_summary
    from envs.analysis import best_response

    sc = load_scenario("default")  # two plants and one pumped storage learn
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + ["training_episodes=1"])
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False)
    ev = tr.evaluate()
    s = run_summary(sc, tr.core, ev, episodes=0, wall_time=0.0, stopped_early=False, best={})
    kinds = {a: r["kind"] for a, r in s["agents"].items()}
    storage = [a for a, k in kinds.items() if k == "storage"]
    assert storage and all("full_moves_best_response_profit" not in s["agents"][a] for a in kinds if a not in storage)
    for a in storage:
        row = s["agents"][a]
        full = best_response(ev.record, a, scenario=sc, storage_moves="full").best_profit
        assert row["full_moves_best_response_profit"] == pytest.approx(full)
        # restricted moves never beat the any-volume best response
        assert row["full_moves_best_response_profit"] <= row["best_response_profit"] + 1e-6
    # the plants with start-up costs: hours and starts against their best response's
    plants = [a for a, k in kinds.items() if k == "plant"]
    assert plants and all("on_off" not in s["agents"][a] for a in storage)
    for a in plants:
        o = s["agents"][a]["on_off"]
        br = ev.analysis_result.responses[a]
        assert o["best_response_hours_on"] == int(br.best_on.sum()) and o["start_up_cost"] == 20_000.0
        assert o["hours_on"] == int((ev.record.supply_accepted[:, ev.record.agent_supply_columns(
            ev.record.agents.index(a))].sum(axis=1) > 0).sum())
    print_run_summary(s)
    out = capsys.readouterr().out
    assert "full-volume moves" in out
    o = s["agents"][plants[0]]["on_off"]
    assert (f"runs {o['hours_on']:g} h with {o['starts']} start" in out
            and f"its best response runs {o['best_response_hours_on']:g} h" in out)
    # every analysed agent: where its gain lies by hour type, adding up to its gain, and that line printed
    from envs.analysis import gain_by_hours_line

    for a, row in s["agents"].items():
        parts = row["gain_by_hours"]
        assert sum(v["gain"] for v in parts.values()) == pytest.approx(row["best_response_profit"] - row["profit"], abs=1e-3)
        assert sum(v["hours"] for k, v in parts.items() if k != "start_ups") == ev.record.n_hours
        assert gain_by_hours_line(parts) in out
    assert "idle_where_best_response_sells" in s["agents"][plants[0]]["gain_by_hours"]
    assert "only_best_response_trades" in s["agents"][storage[0]]["gain_by_hours"]
    # the same as a figure: one panel per plant with start-up costs; none without the analysis
    from agents.plots import on_off_vs_best_response

    png = on_off_vs_best_response(ev, tmp_path / "on_off.png")
    assert png is not None and png.stat().st_size > 1000
    assert on_off_vs_best_response(tr.evaluate(analysis=False), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    from agents.plots import gain_by_hour_type

    png = gain_by_hour_type(ev, tmp_path / "gain_by_hour_type.png")
    assert png is not None and png.stat().st_size > 1000
    assert gain_by_hour_type(tr.evaluate(analysis=False), tmp_path / "none.png") is None
    # the plants' gain by the price it needs (grid, a tick under another learner, other), as a line and a figure
    from agents.evaluation import off_grid_line
    from agents.plots import gain_by_price_needed

    assert all("undercut_learners_best_response_profit" in s["agents"][a] for a in plants)
    assert off_grid_line(s["agents"]) in out
    png = gain_by_price_needed(s["agents"], tmp_path / "by_price.png")
    assert png is not None and png.stat().st_size > 1000
    assert gain_by_price_needed({a: s["agents"][a] for a in storage}, tmp_path / "none2.png") is None
    tr.close()
