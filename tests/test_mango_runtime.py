"""The mango runtime against the plain training loop, and its process handling."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from agents.config import LearningConfig
from agents.mango.runtime import Timeline, Timeouts, run_mango_training, train_mango
from agents.trainer import Trainer
from envs import load_scenario

SMALL = ["actor_hidden_sizes=[32,32]", "critic_hidden_sizes=[32,32]", "train_freq=6h", "gradient_steps=2",
         "batch_size=16", "episodes_collecting_initial_experience=1", "training_episodes=3",
         "validation_episodes_interval=1",
         "best_response_teacher=0"]  # "auto" teaches a single learner in the plain loop only (no teacher in mango)


def config(sc, *extra):
    return LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL + list(extra))


def assert_same_run(tr: Trainer, res, exact: bool = True):
    """Same transitions in the replay buffer, same stacked weights and Adam states, same history."""
    b1, b2 = tr.buffer, res.role.buffer
    assert (b1.pos, b1.full, b1.size()) == (b2.pos, b2.full, b2.size())
    for name in ("observations", "actions", "rewards", "_has_next"):
        assert np.array_equal(getattr(b1, name), getattr(b2, name)), name
    a1, a2 = tr.algo, res.role.rl_algorithm
    assert a1.n_updates == a2.n_updates > 0
    for name in ("actor_params", "critic_params", "actor_target_params", "critic_target_params"):
        for p, q in zip(getattr(a1, name), getattr(a2, name)):
            if exact:
                assert torch.equal(p, q), name
            else:
                torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    s1, s2 = a1.state_dict(), a2.state_dict()
    for opt in ("actor_optimizer", "critic_optimizer"):
        for k, st in s1[opt]["state"].items():
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(st[key], s2[opt]["state"][k][key]), (opt, key)
    keys = [k for k in tr.history[0] if k.startswith("train/") and "seconds" not in k and k != "train/sps"]
    assert len(tr.history) == len(res.history)
    for r1, r2 in zip(tr.history, res.history):
        assert {k: r1.get(k) for k in keys} == {k: r2.get(k) for k in keys}
        assert {k: v for k, v in r1.items() if k.startswith("eval/")} == {k: v for k, v in r2.items() if k.startswith("eval/")}
        assert r1.get("saved") == r2.get("saved")


@pytest.mark.parametrize("extra", [[], ["critic_search=2"], ["per_unit_gamma=true"]])
def test_one_container_reproduces_the_training_loop(extra):
    """(critic_search runs inside the learner's update round and per_unit_gamma is set on
    the learner by both runtimes: the same run in both.)"""
    sc = load_scenario("tiny")
    cfg = config(sc, "noise_dt=0.999", *extra)  # per-draw noise decay: the market sends each hour's scale
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False)
    tr.train()
    res = train_mango(sc, cfg, seed=3)
    assert res.containers == 1 and res.hours == 3 * 48 + 2 * 48
    assert res.role.policy_version == 1 + res.role.n_updates // cfg.gradient_steps
    assert res.role.dropped_messages == 0 and res.market.dropped_messages == 0
    assert_same_run(tr, res)
    assert tr.history[-1]["train/noise_scale"] < tr.history[1]["train/noise_scale"]


def test_mango_says_it_trains_without_the_teacher(capsys):
    sc = load_scenario("tiny")  # one learning unit: best_response_teacher "auto" is on in the plain loop
    res = train_mango(sc, config(sc, "best_response_teacher=auto", "training_episodes=2"), seed=1)
    assert res.role.n_updates > 0
    assert "does not refresh the best-response teacher" in capsys.readouterr().out
    train_mango(sc, config(sc, "training_episodes=2"), seed=1)  # best_response_teacher=0: no note
    assert "best-response teacher" not in capsys.readouterr().out


def test_learning_mode_false_is_refused_by_the_mango_runtime(tmp_path):
    sc = load_scenario("tiny")
    cfg = config(sc, "learning_mode=false", f"trained_policies_load_path={tmp_path}")
    with pytest.raises(ValueError, match="learning_mode is false"):
        train_mango(sc, cfg)


@pytest.mark.parametrize("num_envs", [1, 2])
def test_several_units_uneven_train_freq_and_every_message_through_the_codec(monkeypatch, num_envs):
    """Three units with different action sizes, train_freq not dividing the episode length
    (evaluation slots padded), one or two market copies, and every in-process message
    encoded and decoded by the TCP codec on the way: still the plain loop's run, bit for bit."""
    from mango.container.external_coupling import ExternalSchedulingContainer
    from mango.messages.message import MangoMessage

    from agents.mango.protocol import make_codec

    codec = make_codec()
    original = ExternalSchedulingContainer._send_internal_message
    seen: set[str] = set()

    def via_codec(self, message, receiver_id, priority=0, default_meta=None, inbox=None):
        seen.add(message.get("type") if isinstance(message, dict) else type(message).__name__)
        message = codec.decode(codec.encode(MangoMessage(message, {}))).content
        return original(self, message, receiver_id, priority=priority, default_meta=default_meta, inbox=inbox)

    monkeypatch.setattr(ExternalSchedulingContainer, "_send_internal_message", via_codec)
    sc = load_scenario("default")
    cfg = config(sc, "train_freq=5h", "training_episodes=4", "episodes_collecting_initial_experience=2",
                 "validation_episodes_interval=1", "noise_scale=0.5", "action_noise_schedule=linear",
                 f"num_envs={num_envs}")
    env = {"max_cycles": 24}
    tr = Trainer(sc, cfg, run_dir=None, seed=11, env_options=env, progress=False, tensorboard=False, analysis=False)
    tr.train()
    res = train_mango(sc, cfg, seed=11, env_options=env, analysis=False)
    assert seen == {"episode_start", "observation", "bid", "transition", "episode_end", "actor_weights", "actor_ack"}
    assert res.hours == 4 * 24 + 2 * 24
    assert_same_run(tr, res)


# names whose values are wall-clock times (or derived from them) or creation stamps
TIMING = {"wall_time", "train/sim_seconds", "train/update_seconds", "train/sps", "wall_time_s", "created",
          "simulated_hours_per_s", "waited_s"}


def _tensors_equal(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _tensors_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _json_without_timing(obj):
    if isinstance(obj, dict):
        return {k: _json_without_timing(v) for k, v in obj.items() if k not in TIMING and k != "runtime"}
    if isinstance(obj, list):
        return [_json_without_timing(v) for v in obj]
    return obj


def _tb_scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
            if tag not in TIMING}


def assert_same_run_folder(a, b):
    """Every file of run folder ``a`` is in ``b`` with the same contents: YAML and CSV as
    text (timing columns dropped), JSON as values (timing keys dropped), checkpoints
    tensor by tensor, TensorBoard scalar by scalar."""
    import pandas as pd

    # state.pt: the plain loop's resume state (train.py --resume); the mango runtime writes none
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*")
                     if p.is_file() and "tb" not in p.parts and p.name != "state.pt")
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*")
                     if p.is_file() and "tb" not in p.parts and p.name != "state.pt")
    assert files_a == files_b
    assert {"config.yaml", "history.csv", "summary.json", "policies/best/manifest.json",
            "policies/last/manifest.json"} <= set(files_a)
    for rel in files_a:
        pa, pb = a / rel, b / rel
        if rel.endswith(".pt"):
            _tensors_equal(torch.load(pa, weights_only=True), torch.load(pb, weights_only=True), rel)
        elif rel.endswith(".json"):
            ja, jb = json.loads(pa.read_text()), json.loads(pb.read_text())
            assert _json_without_timing(ja) == _json_without_timing(jb), rel
        elif rel.endswith(".csv"):
            da, db = pd.read_csv(pa), pd.read_csv(pb)
            keep = [c for c in da.columns if c not in TIMING]
            assert list(da.columns) == list(db.columns), rel
            pd.testing.assert_frame_equal(da[keep], db[keep], check_exact=True, obj=rel)
        else:
            assert pa.read_bytes() == pb.read_bytes(), rel
    sa, sb = _tb_scalars(a), _tb_scalars(b)
    assert sa == sb and any(t.startswith("losses/") for t in sa) and any(t.startswith("eval/") for t in sa)


@pytest.mark.parametrize("extra", [[], ["profile_search=8"]])
def test_one_container_writes_the_loop_run_folder(tmp_path, extra):
    """The same run folder, file by file and value by value, from the plain loop (what
    ``train.py`` runs) and from one mango container (``train.py --runtime mango``); with
    ``profile_search`` both search after training and keep the same policy."""
    sc = load_scenario("tiny")
    cfg = config(sc, "training_episodes=3", *extra)
    tr = Trainer(sc, cfg, run_dir=tmp_path / "loop", seed=4, progress=False)
    try:
        tr.finish(tr.train(), plots=False)
    finally:
        tr.close()
    assert run_mango_training(sc, cfg, tmp_path / "mango", seed=4, progress=False, plots=False) == 0
    summary = json.loads((tmp_path / "mango" / "summary.json").read_text())
    assert summary["runtime"]["kind"] == "mango"
    assert ("profile_search" in summary) == bool(extra)
    assert_same_run_folder(tmp_path / "loop", tmp_path / "mango")


def test_run_folder_like_the_loop(tmp_path, capsys):
    sc = load_scenario("tiny")
    cfg = config(sc, "training_episodes=2", "early_stopping_steps=1")
    assert run_mango_training(sc, cfg, tmp_path / "run", seed=1, progress=False, plots=False) == 0
    run = tmp_path / "run"
    for path in ("config.yaml", "history.csv", "summary.json", "policies/best/manifest.json",
                 "policies/last/manifest.json", "policies/best_profit", "policies/best_regret"):
        assert (run / path).exists(), path
    summary = json.loads((run / "summary.json").read_text())
    assert summary["runtime"]["kind"] == "mango" and summary["episodes"] == 2
    assert "plant_learner-1" in summary["agents"]
    manifest = json.loads((run / "policies" / "last" / "manifest.json").read_text())
    assert manifest["trainer"]["episode"] == 2 and manifest["n_updates"] > 0


@pytest.mark.parametrize("H,f,init,total,evals,want_hour", [
    (48, 6, 1, 3, [1, 2], 48),  # first update right after initial exploration (hour 49)
    (48, 100, 1, 4, [1, 3], 196 + 3),  # training hour 100 comes after the first evaluation slot (100 hours)
    (24, 5, 0, 2, [1], 4),  # no initial exploration: after hour 5
    (24, 200, 1, 2, [1], None),  # never
])
def test_timeline_first_update(H, f, init, total, evals, want_hour):
    start = dt.datetime(2023, 1, 2, tzinfo=dt.timezone.utc)
    tl = Timeline(start, H, f, total, init, lambda ep, tot: ep in evals)
    first = tl.first_update()
    if want_hour is None:
        assert first == tl.end()
    else:
        assert first == start + dt.timedelta(hours=want_hour, minutes=30)
    assert tl.eval_hours % f == 0 and tl.eval_hours >= H


def test_taken_port_fails_clearly():
    sc = load_scenario("tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="cannot open the main container"):
            train_mango(sc, config(sc), containers=2, port=port)
        assert time.monotonic() - t0 < 10
    assert not mp.active_children()


def test_unreachable_remote_worker_fails_clearly():
    sc = load_scenario("tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectionError, match="unit_host"):
            train_mango(sc, config(sc), workers=[f"127.0.0.1:{port}"], timeouts=Timeouts(start=5))


def test_two_processes_complete_and_learn():
    """Market and learner here, the unit in a worker process, TCP on loopback."""
    sc = load_scenario("tiny")
    cfg = config(sc)
    t0 = time.monotonic()
    res = train_mango(sc, cfg, seed=3, containers=2, timeouts=Timeouts(start=60, step=60))
    assert time.monotonic() - t0 < 60
    assert res.containers == 2 and res.role.n_updates > 0
    assert not mp.active_children()  # worker stopped by the clock manager's "stop"
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False)
    tr.train()
    assert_same_run(tr, res)  # the protocol waits for every bid and acknowledgement: still deterministic


@pytest.mark.slow
def test_four_processes_on_three_units():
    sc = load_scenario("default")
    cfg = config(sc, "training_episodes=3")
    env = {"max_cycles": 24}
    res = train_mango(sc, cfg, seed=2, containers=4, env_options=env, analysis=False,
                      timeouts=Timeouts(start=90, step=60))
    assert res.containers == 4 and res.role.n_updates > 0
    assert not mp.active_children()
    tr = Trainer(sc, cfg, run_dir=None, seed=2, env_options=env, progress=False, tensorboard=False, analysis=False)
    tr.train()
    assert_same_run(tr, res)


@pytest.mark.slow
def test_dead_worker_stops_the_run_with_an_error(monkeypatch):
    from agents.mango import runtime

    sc = load_scenario("default")
    # far more than the 5 s before the kill can train (50 episodes of 24 h ended in < 5 s on an idle machine)
    cfg = config(sc, "training_episodes=2000")
    errors: list[BaseException] = []
    ready = threading.Event()
    start = runtime._Workers.start

    def start_and_tell(self, *args, **kwargs):
        start(self, *args, **kwargs)
        ready.set()

    monkeypatch.setattr(runtime._Workers, "start", start_and_tell)

    def run():
        try:
            train_mango(sc, cfg, containers=2, env_options={"max_cycles": 24}, analysis=False,
                        timeouts=Timeouts(start=90, step=30, bids=30, acks=30))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=run)
    th.start()
    assert ready.wait(120), "the worker process did not start"
    time.sleep(5)  # well into training (the worker is up: a busy machine may take long to start it)
    for p in mp.active_children():
        p.kill()
    t_kill = time.monotonic()
    th.join(60)
    assert not th.is_alive(), "the run hangs after its worker died"
    assert time.monotonic() - t_kill < 30
    assert errors, "no error after the worker died"
    assert isinstance(errors[0], (RuntimeError, ConnectionError)), repr(errors[0])
    assert "died" in str(errors[0]) or "cannot reach" in str(errors[0]), str(errors[0])
    assert not mp.active_children()


@pytest.mark.slow
def test_worker_started_by_hand(tmp_path):
    """``python -m agents.mango_runtime worker --bind HOST:PORT`` and ``workers=[...]``."""
    proc = subprocess.Popen([sys.executable, "-m", "agents.mango_runtime", "worker", "--bind", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        addr = line.split()[-1]
        sc = load_scenario("tiny")
        res = train_mango(sc, config(sc, "training_episodes=2"), workers=[addr], timeouts=Timeouts(start=30, step=30))
        assert res.containers == 2 and res.role.n_updates > 0
        assert proc.wait(20) == 0  # stopped by the clock manager
    finally:
        if proc.poll() is None:
            proc.kill()
