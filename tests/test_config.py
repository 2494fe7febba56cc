"""Tests of agents.config: ASSUME's learning_config as a validated dataclass."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import pytest
import yaml

from agents.config import (
    ConfigError,
    LearningConfig,
    UnknownConfigKeyWarning,
    parse_duration_hours,
)

from _examples import ASSUME_DIR


def _assume_learning_configs():
    """(id, source, learning_config dict) for every study case of every ASSUME example."""
    cases = []
    if not ASSUME_DIR.is_dir():
        return cases
    for cfg_path in sorted(ASSUME_DIR.glob("*/config.yaml")):
        data = yaml.safe_load(cfg_path.read_text())
        for study_case, body in (data or {}).items():
            if isinstance(body, dict) and "learning_config" in body:
                cases.append(
                    pytest.param(
                        f"{cfg_path} [{study_case}]",
                        body["learning_config"],
                        id=f"{cfg_path.parent.name}-{study_case}",
                    )
                )
    return cases


ASSUME_CASES = _assume_learning_configs()


# --------------------------------------------------------------------------- defaults


def test_defaults():
    cfg = LearningConfig()
    expected = dict(
        learning_mode=True,
        continue_learning=False,
        trained_policies_save_path=None,
        trained_policies_load_path=None,
        max_bid_price=100.0,
        algorithm="matd3",
        actor_architecture="mlp",
        learning_rate=1e-3,
        learning_rate_schedule="linear",
        training_episodes=100,
        episodes_collecting_initial_experience=5,
        train_freq=100,
        gradient_steps=10,
        batch_size=128,
        gamma=0.99,
        device="cpu",
        noise_sigma=0.1,
        noise_scale=1.0,
        noise_dt=1.0,
        action_noise_schedule=None,
        validation_episodes_interval=5,
        early_stopping_steps=None,
        early_stopping_threshold=0.05,
        stop_at_equilibrium=True,
        tau=0.005,
        policy_delay=2,
        target_policy_noise=0.2,
        target_noise_clip=0.5,
        replay_buffer_size=500_000,
        actor_hidden_sizes=[256, 128],
        critic_hidden_sizes=[256, 128],
        max_grad_norm=1.0,
        actor_preactivation_penalty=0.01,
        best_response_teacher="auto",
        best_response_teacher_interval=1,
        best_response_teacher_window=10,
        best_response_teacher_margin=0.3,
        equilibrium_teacher="auto",
        equilibrium_teacher_steps=9000,
        equilibrium_teacher_rollouts=3,
        equilibrium_teacher_storage_refresh="auto",
        per_unit_gamma="auto",
        critic_search="auto",
        plant_cost_floor="auto",
        best_policy_metric="auto",
        stay_out_fallback=True,
        start_up_markup_hours=0.0,
        min_power_rule="partial",
        cost_snap="auto",
        start_up_markup_fallback=[12.0, 24.0, 48.0],
        grid_learner_costs=False,
        tie_below_cost=False,
        tie_below_cost_fallback=True,
        actor_mix_fallback="auto",
        actor_mix_evaluations=36,
        profile_search=0,
        profile_search_tolerance=0.0,
        best_policy_interval="auto",
        critic_reward_scale=1.0,
        regret_scale=0.0,
        storage_bids="two_sided",
        plant_bids="auto",
        storage_prices="auto",
        storage_teacher="auto",
        start_up_gamma="auto",
        seed=None,
        num_envs=1,
        torch_threads=None,
        foresight="auto",
        obs_normalization=True,
        episode_hours=None,
        random_start=False,
        demand_noise=0.0,
        availability_noise=0.0,
        holdout_hours=None,
        analysis_max_agents=40,
        equilibrium_reference=True,
    )
    assert cfg.to_dict() == expected
    assert cfg.unknown_keys == ()
    assert cfg.actor_hidden_sizes == (256, 128)
    assert LearningConfig.from_dict({}) == cfg
    assert LearningConfig.from_dict(None) == cfg


def test_every_field_has_a_docstring_with_its_default():
    import inspect

    source = inspect.getsource(LearningConfig)
    for f in dataclasses.fields(LearningConfig):
        if f.name.startswith("_"):
            continue
        head = source.split(f"    {f.name}:", 1)
        assert len(head) == 2, f.name
        after = head[1].split("\n", 1)[1].lstrip()
        assert after.startswith('"""'), f"{f.name} has no docstring under it"
        if f.name != "unknown_keys":
            doc = after.split('"""')[1]
            assert "Default:" in doc, f"{f.name}'s docstring gives no default"


def _documented_defaults() -> dict:
    """``{field: value}`` read from the ``Default: X.`` sentence of every field's docstring."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(LearningConfig)))
    body = tree.body[0].body
    out = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            doc = " ".join(str(nxt.value.value).split())
            if "Default:" in doc:
                text = doc.rsplit("Default:", 1)[1].strip()
                assert text.endswith("."), (node.target.id, text)
                out[node.target.id] = ast.literal_eval(text[:-1])
    return out


def test_documented_defaults_are_the_dataclass_defaults():
    """The docs (each field's docstring) and the code cannot drift apart."""
    documented = _documented_defaults()
    fields = {f.name: f.default for f in dataclasses.fields(LearningConfig) if f.init and f.name != "unknown_keys"}
    assert set(documented) == set(fields)
    for name, value in fields.items():
        assert documented[name] == value and type(documented[name]) is type(value), (name, documented[name], value)


def test_frozen_and_replace_validates():
    cfg = LearningConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 3  # type: ignore[misc]
    assert dataclasses.replace(cfg, batch_size=64).batch_size == 64
    with pytest.raises(ConfigError, match="batch_size"):
        dataclasses.replace(cfg, batch_size=0)


def test_direct_construction_coerces():
    cfg = LearningConfig(train_freq="1d", max_bid_price=50, actor_hidden_sizes=[64])
    assert cfg.train_freq == 24 and isinstance(cfg.max_bid_price, float)
    assert cfg.actor_hidden_sizes == (64,)


# --------------------------------------------------------------------------- ASSUME examples


@pytest.mark.skipif(not ASSUME_CASES, reason="ASSUME example scenarios not present")
@pytest.mark.parametrize("source,block", ASSUME_CASES)
def test_assume_example_learning_configs(source, block):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownConfigKeyWarning)  # every key must be known
        if block.get("actor_architecture") == "lstm":
            with pytest.raises(ConfigError) as info:
                LearningConfig.from_dict(block, source=source)
            msg = str(info.value)
            assert "actor_architecture" in msg and "lstm" in msg
            assert "not supported" in msg and source in msg
            assert info.value.keys == ("actor_architecture",)
            return
        cfg = LearningConfig.from_dict(block, source=source)
    assert cfg.unknown_keys == ()
    assert cfg.max_bid_price == float(block["max_bid_price"])
    assert cfg.learning_rate == pytest.approx(block["learning_rate"])
    assert cfg.train_freq == parse_duration_hours(block["train_freq"])
    assert cfg.gradient_steps == block["gradient_steps"]
    assert cfg.batch_size == block["batch_size"]
    assert cfg.training_episodes == block["training_episodes"]
    assert cfg.noise_scale == 1.0 and isinstance(cfg.noise_scale, float)


@pytest.mark.skipif(not ASSUME_CASES, reason="ASSUME example scenarios not present")
def test_load_assume_scenario_file():
    path = ASSUME_DIR / "example_02a" / "config.yaml"
    if not path.exists():
        pytest.skip("example_02a absent")
    cfg = LearningConfig.load(path, study_case="base")
    assert cfg.train_freq == 100 and cfg.action_noise_schedule == "linear"
    with pytest.raises(ConfigError, match="study_case"):
        LearningConfig.load(path, study_case="nope")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "given,hours",
    [
        ("100h", 100),
        ("24h", 24),
        ("24H", 24),
        ("1d", 24),
        ("2 days", 48),
        ("1w", 168),
        ("120min", 2),
        ("48", 48),
        (24, 24),
        (24.0, 24),
        ("1.5d", 36),
        ("1 day", 24),
        ("P1D", 24),
        ("90min", None),
        ("1D", 24),
        ("2W", 336),
    ],
)
def test_train_freq_durations(given, hours):
    """Durations are read by pandas.Timedelta (a bare number is hours), without warnings."""
    if hours is None:  # 1.5 h: not whole hours
        with pytest.raises(ConfigError, match="whole hours"):
            LearningConfig.from_dict({"train_freq": given})
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = LearningConfig.from_dict({"train_freq": given})
    assert cfg.train_freq == hours and type(cfg.train_freq) is int


@pytest.mark.parametrize("given", ["30min", "0h", "-5h", "1.5h", "abc", "10s", "nan", "", True, 0, [24]])
def test_train_freq_refused(given):
    with pytest.raises(ConfigError) as info:
        LearningConfig.from_dict({"train_freq": given}, source="cfg.yaml")
    msg = str(info.value)
    assert "train_freq" in msg and "cfg.yaml" in msg and "hours" in msg


# --------------------------------------------------------------------------- gradient steps


def test_gradient_steps_minus_one_means_train_freq():
    cfg = LearningConfig.from_dict({"train_freq": "24h", "gradient_steps": -1})
    assert cfg.gradient_steps == 24
    assert cfg.gradient_steps_from_train_freq
    assert cfg.to_dict()["gradient_steps"] == 24
    # follows a new train_freq unless overridden itself
    assert cfg.with_overrides(["train_freq=48h"]).gradient_steps == 48
    assert cfg.with_overrides(["train_freq=48h", "gradient_steps=5"]).gradient_steps == 5
    assert not LearningConfig().gradient_steps_from_train_freq


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many"])
def test_gradient_steps_refused(bad):
    with pytest.raises(ConfigError, match="gradient_steps"):
        LearningConfig.from_dict({"gradient_steps": bad})


# --------------------------------------------------------------------------- wrong values


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("batch_size", "abc", "integer"),
        ("batch_size", 0, ">= 1"),
        ("batch_size", 12.5, "integer"),
        ("max_bid_price", -1, "> 0"),
        ("max_bid_price", 0, "> 0"),
        ("learning_rate", 0.0, "> 0"),
        ("learning_rate", float("nan"), "> 0"),
        ("gamma", 1.5, "[0, 1]"),
        ("gamma", "high", "[0, 1]"),
        ("tau", 0, "(0, 1]"),
        ("learning_mode", "maybe", "boolean"),
        ("learning_mode", 2, "boolean"),
        ("algorithm", "ppo", "matd3"),
        ("actor_architecture", "lstm", "mlp"),
        ("algorithm", "foo", "matd3"),
        ("algorithm", 3, "matd3"),
        ("device", "gpu", "cuda:N"),
        ("learning_rate_schedule", "cosine", "linear"),
        ("action_noise_schedule", "exp", "linear"),
        ("training_episodes", 0, ">= 1"),
        ("episodes_collecting_initial_experience", -1, ">= 0"),
        ("early_stopping_steps", 0, ">= 1"),
        ("actor_hidden_sizes", [], "list of integers"),
        ("critic_hidden_sizes", [64, 0], "list of integers"),
        ("seed", -3, ">= 0"),
        ("num_envs", 0, ">= 1"),
        ("torch_threads", 0, ">= 1"),
        ("max_grad_norm", -1, ">= 0"),
        ("trained_policies_save_path", 5, "path"),
        ("noise_dt", 0, "> 0"),
        ("policy_delay", 0, ">= 1"),
        ("episode_hours", 0, ">= 1"),
        ("holdout_hours", -5, ">= 1"),
        ("demand_noise", 1.5, "[0, 1]"),
        ("availability_noise", -0.1, "[0, 1]"),
        ("random_start", "sometimes", "boolean"),
        ("analysis_max_agents", -1, ">= 0"),
        ("equilibrium_reference", 3, "boolean"),
    ],
)
def test_wrong_values_name_source_key_value_and_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as info:
        LearningConfig.from_dict({key: value}, source="scenario/config.yaml [base]")
    err = info.value
    msg = str(err)
    assert isinstance(err, ValueError)
    assert "scenario/config.yaml [base]" in msg
    assert repr(key) in msg
    assert repr(value) in msg
    assert allowed in msg
    assert err.keys == (key,)
    assert err.source == "scenario/config.yaml [base]"


def test_all_problems_in_one_error():
    with pytest.raises(ConfigError) as info:
        LearningConfig.from_dict({"batch_size": -1, "gamma": 2, "device": "tpu"}, source="s")
    assert set(info.value.keys) == {"batch_size", "gamma", "device"}
    assert "3 invalid" in str(info.value)


def test_replay_buffer_must_hold_a_batch():
    with pytest.raises(ConfigError, match="replay_buffer_size.*batch_size"):
        LearningConfig.from_dict({"batch_size": 256, "replay_buffer_size": 100})


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        LearningConfig.from_dict([1, 2], source="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key,given,stored",
    [
        ("learning_rate", 1, 1.0),
        ("learning_rate", "1e-3", 1e-3),
        ("batch_size", 64.0, 64),
        ("replay_buffer_size", "5e5", 500_000),
        ("replay_buffer_size", "1_000", 1000),
        ("learning_mode", "false", False),
        ("learning_mode", "True", True),
        ("continue_learning", "yes", True),
        ("algorithm", "MATD3", "matd3"),
        ("device", "CUDA:1", "cuda:1"),
        ("device", "auto", "auto"),
        ("actor_hidden_sizes", [64, 32], (64, 32)),
        ("critic_hidden_sizes", "64,64", (64, 64)),
        ("seed", "None", None),
        ("early_stopping_steps", 10, 10),
        ("max_grad_norm", 0, 0.0),
        ("max_grad_norm", None, None),
        ("learning_rate_schedule", "Linear", "linear"),
        ("trained_policies_save_path", Path("out/p"), os.path.join("out", "p")),
    ],
)
def test_coercion(key, given, stored):
    extra = {"trained_policies_load_path": "p"} if key in ("learning_mode", "continue_learning") else {}
    value = getattr(LearningConfig.from_dict({key: given, **extra}), key)
    assert value == stored and type(value) is type(stored)


# --------------------------------------------------------------------------- unknown keys


def test_unknown_keys_warned_with_hint_and_kept():
    with pytest.warns(UnknownConfigKeyWarning) as record:
        cfg = LearningConfig.from_dict(
            {"learnig_rate": 0.1, "batchsize": 3, "zzz_qqq": 1, "gamma": 0.9},
            source="my.yaml",
        )
    assert cfg.unknown_keys == ("learnig_rate", "batchsize", "zzz_qqq")
    assert cfg.learning_rate == 1e-3 and cfg.gamma == 0.9
    msg = str(record[0].message)
    assert "my.yaml" in msg
    assert "'learnig_rate' (did you mean 'learning_rate'?)" in msg
    assert "'batchsize' (did you mean 'batch_size'?)" in msg
    assert "zzz_qqq" in msg
    assert "unknown_keys" not in cfg.to_dict()


def test_newer_assume_sections_are_read_as_top_level_keys(tmp_path):
    """Newer ASSUME configs group keys in ``off_policy:`` (or ``matd3:``) blocks; their
    values must reach the config, not be dropped as one unknown key."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"base": {"learning_config": {
        "algorithm": "matd3", "learning_rate": 0.002, "train_freq": "100h",
        "off_policy": {"episodes_collecting_initial_experience": 4, "gradient_steps": 7,
                       "noise_sigma": 0.25, "replay_buffer_size": 20000},
        "matd3": {"batch_size": 64},
    }}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = LearningConfig.load(path)
    assert (cfg.episodes_collecting_initial_experience, cfg.gradient_steps, cfg.noise_sigma) == (4, 7, 0.25)
    assert (cfg.replay_buffer_size, cfg.batch_size, cfg.learning_rate) == (20000, 64, 0.002)
    assert cfg.unknown_keys == ()
    # the same value in both places is fine; different values name both places
    LearningConfig.from_dict({"batch_size": 64, "matd3": {"batch_size": 64}})
    with pytest.raises(ConfigError, match=r"matd3\.batch_size.*learning_config\.batch_size \(128\)"):
        LearningConfig.from_dict({"batch_size": 128, "matd3": {"batch_size": 64}}, source="x.yaml")
    # keys of on-policy algorithms are not marketzoo's: one unknown key, warned
    with pytest.warns(UnknownConfigKeyWarning, match="on_policy"):
        cfg = LearningConfig.from_dict({"on_policy": {"clip_ratio": 0.2}})
    assert cfg.unknown_keys == ("on_policy",)


def test_known_keys_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LearningConfig.from_dict(LearningConfig().to_dict())


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "item,key,stored",
    [
        ("batch_size=256", "batch_size", 256),
        ("learning_rate=3e-4", "learning_rate", 3e-4),
        ("learning_rate=0.0003", "learning_rate", 3e-4),
        ("gamma=1", "gamma", 1.0),
        ("learning_mode=false", "learning_mode", False),
        ("continue_learning=true", "continue_learning", True),
        ("actor_hidden_sizes=[64, 64]", "actor_hidden_sizes", (64, 64)),
        ("seed=null", "seed", None),
        ("seed=", "seed", None),
        ("seed=7", "seed", 7),
        ("early_stopping_steps=None", "early_stopping_steps", None),
        ("train_freq=24h", "train_freq", 24),
        ("device=cuda:0", "device", "cuda:0"),
        ("trained_policies_save_path=runs/a=b", "trained_policies_save_path", "runs/a=b"),
        ("batch-size=32", "batch_size", 32),
        (" num_envs = 4 ", "num_envs", 4),
    ],
)
def test_overrides_parse(item, key, stored):
    base = LearningConfig(seed=1, early_stopping_steps=3, trained_policies_load_path="p")
    value = getattr(base.with_overrides([item]), key)
    assert value == stored and type(value) is type(stored)


def test_overrides_leave_original_untouched_and_keep_unknown_keys():
    with pytest.warns(UnknownConfigKeyWarning):
        base = LearningConfig.from_dict({"foo": 1})
    new = base.with_overrides(["batch_size=64", "batch_size=32"])  # last wins
    assert new.batch_size == 32 and base.batch_size == 128
    assert new.unknown_keys == ("foo",)
    assert base.with_overrides([]) == base
    assert base.with_overrides({"gamma": 0.5}).gamma == 0.5
    assert base.with_overrides("gamma=0.5").gamma == 0.5


def test_unknown_override_key_is_an_error_with_hint():
    with pytest.raises(ConfigError) as info:
        LearningConfig().with_overrides(["learning_rat=0.1"])
    msg = str(info.value)
    assert "--set" in msg and "'learning_rat'" in msg and "did you mean 'learning_rate'" in msg
    with pytest.raises(ConfigError, match="unknown_keys"):
        LearningConfig().with_overrides(["unknown_keys=[a]"])


@pytest.mark.parametrize("item", ["batch_size", "=5", ""])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        LearningConfig().with_overrides([item])


def test_override_bad_value_and_bad_yaml():
    with pytest.raises(ConfigError) as info:
        LearningConfig().with_overrides(["batch_size=-4"])
    msg = str(info.value)
    assert "--set" in msg and "'batch_size'" in msg and "-4" in msg
    with pytest.raises(ConfigError, match="actor_hidden_sizes"):
        LearningConfig().with_overrides(["actor_hidden_sizes=[1,"])
    with pytest.raises(ConfigError, match="actor_architecture.*not supported"):
        LearningConfig().with_overrides(["actor_architecture=lstm"])


# --------------------------------------------------------------------------- round trip and save


def _non_default():
    return LearningConfig(
        learning_mode=False,
        trained_policies_save_path="out/policies",
        max_bid_price=250,
        learning_rate=3e-4,
        learning_rate_schedule="constant",
        train_freq="2d",
        gradient_steps=-1,
        batch_size=64,
        device="auto",
        action_noise_schedule="constant",
        early_stopping_steps=4,
        actor_hidden_sizes=(32,),
        critic_hidden_sizes=(128, 64, 32),
        max_grad_norm=None,
        regret_scale=0.5,
        seed=123,
        num_envs=8,
        torch_threads=2,
        episode_hours=168,
        random_start=True,
        demand_noise=0.05,
        availability_noise=0.02,
        holdout_hours=168,
        analysis_max_agents=10,
        equilibrium_reference=False,
    )


def test_round_trip_to_dict_from_dict():
    for cfg in (LearningConfig(), _non_default()):
        d = cfg.to_dict()
        assert json.loads(json.dumps(d)) == d  # plain JSON-able
        assert all(not isinstance(v, tuple) for v in d.values())
        assert LearningConfig.from_dict(d) == cfg
        assert LearningConfig.from_dict(yaml.safe_load(yaml.safe_dump(d))) == cfg


@pytest.mark.parametrize("name", ["config.yaml", "config.yml", "config.json"])
def test_atomic_save_and_load(tmp_path, name):
    cfg = _non_default()
    target = tmp_path / "run" / name
    assert cfg.save(target) == target
    cfg.save(target)  # overwrite in place
    assert sorted(p.name for p in target.parent.iterdir()) == [name]  # no temp files left
    text = target.read_text()
    data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert LearningConfig.from_dict(data) == cfg
    assert LearningConfig.load(target) == cfg


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    LearningConfig().save(target)
    before = target.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _non_default().save(target)
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_load_nested_learning_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"learning_config": {"batch_size": 32}}))
    assert LearningConfig.load(path).batch_size == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        LearningConfig.load(bad)


def test_module_does_not_import_torch():
    """config.py itself stays light (the agents package may import torch elsewhere)."""
    import subprocess
    import sys

    module = Path(__file__).resolve().parents[1] / "agents" / "config.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('mz_config_alone', {str(module)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "sys.modules['mz_config_alone'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "mod.LearningConfig()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- paths needed by a mode


@pytest.mark.parametrize("key,value", [("continue_learning", True), ("learning_mode", False)])
def test_mode_without_any_policy_path_is_refused_in_one_line(key, value):
    with pytest.raises(ConfigError) as info:
        LearningConfig.from_dict({key: value}, source="cfg.yaml")
    msg = str(info.value)
    assert "\n" not in msg and key in msg and "trained_policies_load_path" in msg and "cfg.yaml" in msg
    # either path is enough
    for path_key in ("trained_policies_load_path", "trained_policies_save_path"):
        cfg = LearningConfig.from_dict({key: value, path_key: "somewhere"})
        assert getattr(cfg, key) is value


def test_policy_load_path_falls_back_to_the_save_paths_best():
    from agents.learner import policy_load_path, warm_start_path

    assert policy_load_path(LearningConfig()) is None
    cfg = LearningConfig(continue_learning=True, trained_policies_save_path="out/pol")
    assert policy_load_path(cfg) == warm_start_path(cfg) == Path("out/pol/best")
    cfg = LearningConfig(continue_learning=True, trained_policies_save_path="out/pol", trained_policies_load_path="x")
    assert policy_load_path(cfg) == Path("x")
    cfg = LearningConfig(learning_mode=False, trained_policies_load_path="x")
    assert policy_load_path(cfg) == Path("x") and warm_start_path(cfg) is None
