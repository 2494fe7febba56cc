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
