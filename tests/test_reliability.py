"""Bad input and faults (issue 10): each test asserts the one clear error, or the state
recovered after the fault.

Classes covered here: checkpoint names that collide (2), a crash inside the checkpoint
swap (3), numbers that are not finite or out of bounds where they enter (5, env side),
checkpoints validated as data (6), messages for bad actions, seeds, JSON and CSV outputs
and the memory estimate (8).

Phase 2 (below the marker "phase 2"): run folders that are unique, refused when taken and
locked against a second writer, with a concurrent-runs test (1); true resume from
RUN_DIR/state.pt, bit-identical after SIGKILL (4); every CLI and ``--set`` number checked
where it enters (5, CLI side); mango agents that survive hostile meta and a run that
stops at once when an inbox loop ends anyway (7); one-line user errors with exit 2 from
train.py and evaluate (8, CLI side).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import agents.checkpoint as ckpt
from agents.checkpoint import (
    CheckpointError, file_stems, load_checkpoint, read_manifest, recover_checkpoint, save_checkpoint,
)
from agents.evaluation import neutralise_cell, neutralise_frame, write_market_csvs
from agents.jsonio import dump_json_strict, to_json_safe, write_json_strict
from agents.buffer import ReplayBufferSamples
from agents.matd3 import MATD3
from agents.resources import (
    ResourceError, available_memory_bytes, check_memory, check_training_memory, estimate_for_config,
    estimate_training_memory,
)
from envs.data import ScenarioError
from envs.parallel import parallel_env
from envs.scenario import BUILTIN_DIR, load_scenario
from envs.validate import check_finite, check_seed, validate_scenario
from envs.vector import VectorMarketEnv

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def make_algo(n: int = 2, seed: int = 0, act_dims=None) -> MATD3:
    return MATD3(n, 8, act_dims or [2] * n, 2, actor_hidden_sizes=(8,), critic_hidden_sizes=(8,), seed=seed)


def actor_weights(algo: MATD3, i: int) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in algo.actor_state_dict(i).items()}


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def tiny_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(BUILTIN_DIR / "tiny", dst)
    return dst


def edit_csv(path: Path, row: int, column: str, value: str) -> None:
    """Set data row ``row`` (0-based) of ``column`` to ``value`` (as text)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(path, index=False)


# --------------------------------------------------------------------------- class 2: names


def test_agents_differing_only_in_mapped_characters_get_their_own_files_and_weights(tmp_path):
    agents = ["plant_x/1", "plant_x:1"]
    a = make_algo(2, seed=1)
    save_checkpoint(tmp_path / "ck", a, agents)
    m = read_manifest(tmp_path / "ck")
    files = {m["files"][x]["actor"] for x in agents}
    assert len(files) == 2 and all((tmp_path / "ck" / f).is_file() for f in files)
    assert len(list((tmp_path / "ck" / "actors").iterdir())) == 2
    b = make_algo(2, seed=2)
    load_checkpoint(tmp_path / "ck", b, agents)
    for i in range(2):
        assert same(actor_weights(a, i), actor_weights(b, i))
    assert not same(actor_weights(b, 0), actor_weights(b, 1))


def test_agents_differing_only_in_case_get_distinct_files_for_case_insensitive_file_systems():
    stems = file_stems(["plant_A", "plant_a", "plant_b"])
    assert stems["plant_b"] == "plant_b"
    assert stems["plant_A"].lower() != stems["plant_a"].lower()
    assert stems["plant_A"].startswith("plant_A-") and stems["plant_a"].startswith("plant_a-")


def test_unique_agent_names_keep_the_assume_file_layout(tmp_path):
    save_checkpoint(tmp_path / "ck", make_algo(2), ["plant_a", "storage_b"])
    assert (tmp_path / "ck" / "actors" / "actor_plant_a.pt").is_file()
    assert (tmp_path / "ck" / "critics" / "critic_storage_b.pt").is_file()


def test_very_long_and_non_ascii_agent_names_save_and_load(tmp_path):
    agents = ["plant_" + "x" * 300, "plant_Kraftwerk-Süd"]
    a = make_algo(2, seed=3)
    save_checkpoint(tmp_path / "ck", a, agents)
    m = read_manifest(tmp_path / "ck")
    assert all(len(Path(m["files"][x]["actor"]).name) < 200 for x in agents)
    assert all(m["files"][x]["actor"].isascii() for x in agents)
    b = make_algo(2, seed=4)
    load_checkpoint(tmp_path / "ck", b, agents)
    assert same(actor_weights(a, 1), actor_weights(b, 1))


def test_duplicate_agent_ids_are_refused_when_saving(tmp_path):
    with pytest.raises(CheckpointError, match=r"appear more than once") as e:
        save_checkpoint(tmp_path / "ck", make_algo(2), ["plant_a", "plant_a"])
    one_line(e)
    assert not (tmp_path / "ck").exists()


def test_an_old_checkpoint_whose_agents_share_one_file_is_refused(tmp_path):
    """A checkpoint written before the fix mapped x/1 and x:1 to one file."""
    agents = ["plant_x/1", "plant_x:1"]
    save_checkpoint(tmp_path / "ck", make_algo(2), agents)
    mpath = tmp_path / "ck" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"]["plant_x:1"] = dict(m["files"]["plant_x/1"])
    mpath.write_text(json.dumps(m))
    b = make_algo(2, seed=9)
    before = actor_weights(b, 1)
    with pytest.raises(CheckpointError, match=r"share the file") as e:
        load_checkpoint(tmp_path / "ck", b, agents)
    assert "'plant_x/1'" in one_line(e) and "'plant_x:1'" in str(e.value)
    assert same(before, actor_weights(b, 1))


def test_continuing_from_a_checkpoint_that_shares_no_agent_is_an_error(tmp_path):
    save_checkpoint(tmp_path / "ck", make_algo(2), ["plant_a", "plant_b"])
    b = make_algo(2, seed=4)
    before = actor_weights(b, 0)
    with pytest.raises(CheckpointError, match=r"shares no agent with the environment") as e:
        load_checkpoint(tmp_path / "ck", b, ["plant_c", "plant_d"], remap=True)
    assert "plant_a" in one_line(e) and "plant_c" in str(e.value)
    assert same(before, actor_weights(b, 0))


# --------------------------------------------------------------------------- class 3: the swap


def test_error_at_the_second_rename_puts_the_previous_checkpoint_back(tmp_path, monkeypatch):
    a = make_algo(2)
    save_checkpoint(tmp_path / "ck", a, ["p_a", "p_b"], episode=1)
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old -> .old went through; new -> target fails
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path / "ck", a, ["p_a", "p_b"], episode=2)
    monkeypatch.setattr(ckpt.os, "replace", real)
    assert read_manifest(tmp_path / "ck")["episode"] == 1
    assert leftovers(tmp_path, "ck") == []


def _crash_script(target: Path, episode: int) -> str:
    return textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        import agents.checkpoint as ckpt
        from agents.matd3 import MATD3
        algo = MATD3(2, 8, [2, 2], 2, actor_hidden_sizes=(8,), critic_hidden_sizes=(8,), seed=5)
        real, calls = os.replace, []
        def crash(src, dst):
            calls.append(1)
            if len(calls) == 2:
                os._exit(9)  # hard crash between the two renames: no cleanup, no rollback
            return real(src, dst)
        ckpt.os.replace = crash
        ckpt.save_checkpoint({str(target)!r}, algo, ["p_a", "p_b"], episode={episode})
    """)


def _crash_mid_swap(tmp_path: Path) -> Path:
    target = tmp_path / "last"
    save_checkpoint(target, make_algo(2), ["p_a", "p_b"], episode=1)
    r = subprocess.run([sys.executable, "-c", _crash_script(target, 2)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    assert not target.exists()
    names = leftovers(tmp_path, "last")
    assert any(".old-" in n for n in names) and any(".tmp-" in n for n in names), names
    return target


def _state_after_crash(tmp_path: Path) -> Path:
    """The folders a writer killed between the renames leaves (built directly, fast)."""
    target = tmp_path / "last"
    save_checkpoint(target, make_algo(2), ["p_a", "p_b"], episode=1)
    pid = dead_pid()
    save_checkpoint(tmp_path / "newer", make_algo(2), ["p_a", "p_b"], episode=2)
    os.replace(tmp_path / "newer", tmp_path / f".last.tmp-{pid}-k3j2")
    os.replace(target, tmp_path / f".last.old-{pid}-{time.time_ns()}")
    return target


@pytest.mark.slow
def test_kill_9_between_the_renames_is_restored_by_the_loader(tmp_path):
    """A real hard crash: a child process exits at the second rename (os._exit)."""
    target = _crash_mid_swap(tmp_path)
    m = read_manifest(target)  # recovers first
    assert m["episode"] == 1
    assert target.is_dir() and leftovers(tmp_path, "last") == []
    load_checkpoint(target, make_algo(2, seed=7), ["p_a", "p_b"])


def test_crash_between_the_renames_is_restored_by_the_loader(tmp_path):
    target = _state_after_crash(tmp_path)
    assert not target.exists()
    m = read_manifest(target)
    assert m["episode"] == 1
    assert target.is_dir() and leftovers(tmp_path, "last") == []
    load_checkpoint(target, make_algo(2, seed=7), ["p_a", "p_b"])


def test_crash_between_the_renames_is_restored_by_the_next_save(tmp_path):
    target = _state_after_crash(tmp_path)
    notes = recover_checkpoint(target)
    assert any("restored" in n for n in notes)
    save_checkpoint(target, make_algo(2), ["p_a", "p_b"], episode=3)
    assert read_manifest(target)["episode"] == 3
    assert leftovers(tmp_path, "last") == []


def test_stale_temporary_folders_are_removed_and_live_ones_kept(tmp_path):
    save_checkpoint(tmp_path / "ck", make_algo(2), ["p_a", "p_b"], episode=1)
    dead, live = dead_pid(), os.getppid()
    (tmp_path / f".ck.tmp-{dead}-abc").mkdir()
    (tmp_path / f".ck.old-{dead}-123").mkdir()
    (tmp_path / f".ck.tmp-{live}-def").mkdir()
    legacy = tmp_path / ".ck.tmp-q1w2e3"  # older versions: no pid in the name
    legacy.mkdir()
    old_time = time.time() - 2 * 3600
    os.utime(legacy, (old_time, old_time))
    save_checkpoint(tmp_path / "ck", make_algo(2), ["p_a", "p_b"], episode=2)
    assert leftovers(tmp_path, "ck") == [f".ck.tmp-{live}-def"]
    assert read_manifest(tmp_path / "ck")["episode"] == 2


def test_missing_checkpoint_whose_previous_copy_belongs_to_a_running_writer_is_named(tmp_path):
    target = tmp_path / "ck"
    save_checkpoint(target, make_algo(2), ["p_a", "p_b"])
    moved = tmp_path / f".ck.old-{os.getppid()}-{time.time_ns()}"
    os.replace(target, moved)
    with pytest.raises(CheckpointError, match="interrupted save") as e:
        read_manifest(target)
    assert moved.name in one_line(e) and "rename it" in str(e.value)
    assert moved.is_dir()  # left alone: its writer may still be running


# --------------------------------------------------------------------------- class 6: manifest as data


@pytest.fixture
def ck(tmp_path):
    save_checkpoint(tmp_path / "ck", make_algo(2), ["p_a", "p_b"], episode=1,
                    extra={"trainer": {"seed": 3, "foresight": 12, "max_bid_price": 100.0}})
    return tmp_path / "ck"


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


def _del_files_entry(m):
    del m["files"]["p_b"]


def _del_critic_path(m):
    del m["files"]["p_a"]["critic"]


@pytest.mark.parametrize("change, pattern", [
    (_del_files_entry, r"files has no entry for agent 'p_b'"),
    (_del_critic_path, r"files\['p_a'\] has no 'critic' path"),
    (lambda m: m.update(actor_hidden_sizes=[]), r"'actor_hidden_sizes' must be a non-empty list"),
    (lambda m: m.update(act_dims=[]), r"'act_dims' must be a list of 2 positive integers"),
    (lambda m: m.update(obs_dim=0), r"'obs_dim' must be an integer in \[1, "),
    (lambda m: m.update(obs_dim="8"), r"'obs_dim' must be an integer"),
    (lambda m: m["trainer"].update(seed="abc"), r"'trainer.seed' must be an integer"),
    (lambda m: m["trainer"].update(seed=1.5), r"'trainer.seed' must be an integer"),
    (lambda m: m.update(agents="p_a"), r"'agents' must be a non-empty list of agent ids"),
    (lambda m: m.update(agents=["p_a", "p_a"]), r"'agents' must be a list of distinct ids"),
    (lambda m: m.update(unique_obs_len=99), r"'unique_obs_len' must be an integer in \[0, obs_dim=8\]"),
    (lambda m: m.update(format="other/1"), r"format 'other/1' is not"),
    (lambda m: m.update(files=["x"]), r"'files' must be an object"),
    (lambda m: m.update(episode=-1), r"'episode' must be a non-negative integer"),
    (lambda m: m["trainer"].update(max_bid_price=float("inf")), r"'trainer.max_bid_price' must be a positive finite"),
])
def test_manifest_schema_errors_are_one_line_naming_the_key(ck, change, pattern):
    edit_manifest(ck, change)
    with pytest.raises(CheckpointError, match=pattern) as e:
        read_manifest(ck)
    assert "manifest.json" in one_line(e)


def test_manifest_that_is_not_an_object_is_refused(ck):
    (ck / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object") as e:
        read_manifest(ck)
    one_line(e)


@pytest.mark.parametrize("bad_path", ["../outside.pt", "actors/../../outside.pt", "/etc/passwd"])
def test_file_paths_outside_the_checkpoint_folder_are_refused(ck, bad_path):
    (ck.parent / "outside.pt").write_bytes(b"x")
    edit_manifest(ck, lambda m: m["files"]["p_a"].update(actor=bad_path))
    with pytest.raises(CheckpointError, match="leaves the checkpoint folder") as e:
        read_manifest(ck)
    assert repr(bad_path) in one_line(e)


def test_a_link_that_leads_out_of_the_checkpoint_folder_is_refused(ck):
    outside = ck.parent / "elsewhere.pt"
    shutil.copy(ck / "actors" / "actor_p_a.pt", outside)
    (ck / "actors" / "link.pt").symlink_to(outside)
    edit_manifest(ck, lambda m: m["files"]["p_a"].update(actor="actors/link.pt"))
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        read_manifest(ck)


def _poison(path: Path, key: str, sub: str | None, value: float) -> None:
    obj = torch.load(path, weights_only=True)
    if sub is None:
        t = next(iter(obj[key].values()))
    else:
        t = next(iter(obj[key]["state"].values()))[sub]
    t.view(-1)[0] = value
    torch.save(obj, path)


@pytest.mark.parametrize("key, sub, value", [
    ("actor", None, float("nan")),
    ("actor_target", None, float("inf")),
    ("actor_optimizer", "exp_avg", float("-inf")),
])
def test_nan_or_inf_weights_are_refused_at_load_and_nothing_changes(tmp_path, key, sub, value):
    a = make_algo(2)
    # one optimizer step so that Adam has moments to save
    g = torch.Generator().manual_seed(0)
    batch = ReplayBufferSamples(torch.rand(16, 2, 8, generator=g), torch.rand(16, 2, 2, generator=g) * 2 - 1,
                                torch.rand(16, 2, 8, generator=g), torch.rand(16, 2, generator=g))
    for _ in range(2):
        a.update(batch)
    save_checkpoint(tmp_path / "ck", a, ["p_a", "p_b"])
    path = tmp_path / "ck" / "actors" / "actor_p_a.pt"
    assert torch.load(path, weights_only=True)["actor_optimizer"]["state"]
    _poison(path, key, sub, value)
    b = make_algo(2, seed=5)
    before = actor_weights(b, 0)
    with pytest.raises(CheckpointError, match="NaN or infinite") as e:
        load_checkpoint(tmp_path / "ck", b, ["p_a", "p_b"])
    assert "actor_p_a.pt" in one_line(e) and key in str(e.value)
    assert same(before, actor_weights(b, 0))


def test_manifest_network_sizes_that_would_need_gigabytes_are_refused_before_allocation(ck):
    edit_manifest(ck, lambda m: m.update(actor_hidden_sizes=[1_000_000, 1_000_000], critic_hidden_sizes=[1_000_000]))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"needs at least .* GiB .* available") as e:
        read_manifest(ck)
    assert time.perf_counter() - t0 < 1.0
    one_line(e)


def test_manifest_is_standard_json_even_with_nan_metrics(tmp_path):
    save_checkpoint(tmp_path / "ck", make_algo(2), ["p_a", "p_b"], metrics={"reward": float("nan"), "profit": 1.5})

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    m = json.loads((tmp_path / "ck" / "manifest.json").read_text(), parse_constant=refuse)
    assert m["metrics"] == {"reward": None, "profit": 1.5}


# --------------------------------------------------------------------------- class 5: numbers in scenarios


def test_overflowing_fuel_price_names_the_fuel_file_line_and_column(tmp_path):
    sc = tiny_copy(tmp_path)
    edit_csv(sc / "fuel_prices_df.csv", 0, "natural gas", "1e308")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one error, no overflow warnings before it
        with pytest.raises(ScenarioError) as e:
            load_scenario(sc)
    msg = one_line(e)
    assert "fuel_prices_df.csv: line 2, column 'natural gas'" in msg and "'1e308'" in msg and "learner_1" in msg


def test_infinite_fuel_price_in_the_long_form_is_refused(tmp_path):
    sc = tiny_copy(tmp_path)
    (sc / "fuel_prices_df.csv").write_text("fuel,price\nuranium,2.5\nlignite,5\nnatural gas,inf\noil,32\nco2,0\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(sc)
    msg = one_line(e)
    assert "fuel_prices_df.csv: line 4, column 'price' (fuel 'natural gas')" in msg and "'inf'" in msg


def test_overflowing_fuel_price_time_series_names_its_line(tmp_path):
    sc = tiny_copy(tmp_path)
    times = pd.date_range("2023-01-02", periods=48, freq="h")
    df = pd.DataFrame({"datetime": times, "uranium": 2.5, "lignite": 5.0, "natural gas": 16.0, "oil": 32.0, "co2": 0.0})
    df.loc[5, "oil"] = 1e300
    df.to_csv(sc / "fuel_prices_df.csv", index=False)
    with pytest.raises(ScenarioError) as e:
        load_scenario(sc)
    assert "fuel_prices_df.csv: line 7, column 'oil'" in one_line(e) and "peak_1" in str(e.value)


def test_capacity_of_1e308_is_refused_naming_file_line_and_column(tmp_path):
    sc = tiny_copy(tmp_path)
    edit_csv(sc / "powerplant_units.csv", 2, "max_power", "1e308")
    with pytest.raises(ScenarioError) as e:
        load_scenario(sc)
    msg = one_line(e)
    assert "powerplant_units.csv: line 4, unit 'learner_1', column 'max_power'" in msg and "outside the allowed" in msg


def test_nan_in_a_unit_table_is_refused(tmp_path):
    sc = tiny_copy(tmp_path)
    # an empty/NaN cell of an optional column takes ASSUME's default; a required one is refused
    edit_csv(sc / "powerplant_units.csv", 1, "max_power", "NaN")
    with pytest.raises(ScenarioError, match=r"powerplant_units.csv: line 3, unit 'mid_1', column 'max_power'") as e:
        load_scenario(sc)
    one_line(e)


def test_tiny_efficiency_that_would_overflow_marginal_cost_is_refused(tmp_path):
    sc = tiny_copy(tmp_path)
    edit_csv(sc / "powerplant_units.csv", 0, "efficiency", "1e-300")
    with pytest.raises(ScenarioError, match=r"line 2, unit 'base_1', column 'efficiency'"):
        load_scenario(sc)


def test_huge_demand_in_the_time_series_names_line_and_column(tmp_path):
    sc = tiny_copy(tmp_path)
    edit_csv(sc / "demand_df.csv", 3, "demand_EOM", "1e200")
    with pytest.raises(ScenarioError, match=r"demand_df.csv: line 5, column 'demand_EOM': 1e\+200 is outside"):
        load_scenario(sc)


def test_env_refuses_a_scenario_object_with_infinite_marginal_cost():
    sc = load_scenario("tiny")
    mc = sc.plants.marginal_cost.copy()
    mc[3, 2] = np.inf
    bad = dataclasses.replace(sc, plants=dataclasses.replace(sc.plants, marginal_cost=mc))
    with pytest.raises(ScenarioError, match=r"learner_1.*marginal cost|marginal cost.*learner_1"):
        parallel_env(bad)
    with pytest.raises(ScenarioError):
        VectorMarketEnv(bad, num_envs=2)


def test_largest_allowed_numbers_still_give_finite_rewards_and_observations():
    sc = load_scenario("tiny")
    big = dataclasses.replace(
        sc,
        plants=dataclasses.replace(sc.plants, max_power=np.full(len(sc.plants), 1e8),
                                   marginal_cost=np.full_like(sc.plants.marginal_cost, 1e9)),
        market=dataclasses.replace(sc.market, price_cap=1e6, price_floor=-1e6),
        demands=dataclasses.replace(sc.demands, volume=np.full_like(sc.demands.volume, 1e8)),
    )
    env = parallel_env(validate_scenario(big), max_bid_price=1e-3)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    while env.agents:
        obs, rew, _, _, _ = env.step({a: rng.uniform(-1, 1, 2) for a in env.agents})
        assert all(np.isfinite(r) for r in rew.values()) and all(np.isfinite(o).all() for o in obs.values())


def test_check_finite_names_file_line_unit_and_column():
    df = pd.DataFrame({"name": ["a", "b", "c"], "max_power": ["10", "", "inf"]})
    with pytest.raises(ScenarioError, match=r"units.csv: line 4, unit 'c', column 'max_power': 'inf' is not a finite"):
        check_finite(df, "units.csv", ["max_power"], 0, 1e8, allow_empty=True)
    with pytest.raises(ScenarioError, match=r"line 3, unit 'b'"):
        check_finite(df, "units.csv", ["max_power"], 0, 1e8)
    check_finite(df.iloc[:2], "units.csv", ["max_power"], 0, 1e8, allow_empty=True)


@pytest.mark.parametrize("opts, pattern", [
    ({"reward_scale": float("nan")}, r"reward_scale=nan"),
    ({"max_bid_price": 1e-300}, r"max_bid_price=1e-300"),
    ({"foresight": 2.5}, r"foresight=2.5: expected an integer"),
    ({"regret_scale": float("inf")}, r"regret_scale=inf"),
])
def test_environment_options_must_be_finite_and_typed(opts, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        parallel_env("tiny", **opts)


# --------------------------------------------------------------------------- class 8: actions, seeds


@pytest.fixture(scope="module")
def env_t():
    return parallel_env("tiny")


@pytest.mark.parametrize("action, kind", [
    ("0.5", "text"), (["0.1", "0.2"], "text"), (1 + 2j, "complex"), (np.array([0.1 + 1j, 0.2]), "complex"),
    (None, "object"), ({"price": 1}, "object"), (np.array([True, False]), "bool"),
])
def test_wrong_action_types_name_the_agent(env_t, action, kind):
    env_t.reset(seed=0)
    agent = env_t.agents[0]
    with pytest.raises(TypeError) as e:
        env_t.step({agent: action})
    msg = one_line(e)
    assert f"action for {agent!r} is of type {kind}" in msg


def test_integer_actions_are_accepted_like_floats():
    a, b = parallel_env("tiny"), parallel_env("tiny")
    a.reset(seed=1), b.reset(seed=1)
    agent = a.agents[0]
    ra = a.step({agent: np.array([1, 0])})[1]
    rb = b.step({agent: np.array([1.0, 0.0], dtype=np.float32)})[1]
    assert ra == rb


def test_vector_env_refuses_complex_actions():
    v = VectorMarketEnv("tiny", num_envs=2)
    v.reset(seed=0)
    with pytest.raises(TypeError, match="actions array is of type complex"):
        v.step(np.zeros((2, 1, 2), dtype=complex))


@pytest.mark.parametrize("seed, exc, pattern", [
    (-1, ValueError, r"in \[0, 2\*\*64 - 1\], got -1"),
    (1.5, TypeError, r"got float 1.5"),
    (2**70, ValueError, r"got 1180591620717411303424"),
    ("42", TypeError, r"got str '42'"),
    (True, TypeError, r"got bool True"),
])
def test_bad_seeds_in_reset_give_one_clear_error(env_t, seed, exc, pattern):
    with pytest.raises(exc, match=pattern) as e:
        env_t.reset(seed=seed)
    assert "reset(seed=...)" in one_line(e)
    v = VectorMarketEnv("tiny", num_envs=1)
    with pytest.raises(exc, match=pattern):
        v.reset(seed=seed)


def test_numpy_integer_seeds_are_accepted_and_reproducible():
    assert check_seed(np.int64(7)) == 7 and check_seed(None) is None and check_seed(2**64 - 1) == 2**64 - 1
    a, b = parallel_env("tiny", start="random"), parallel_env("tiny", start="random")
    assert np.array_equal(a.reset(seed=np.uint32(5))[0][a.possible_agents[0]], b.reset(seed=5)[0][b.possible_agents[0]])


# --------------------------------------------------------------------------- class 8: JSON and CSV outputs


def test_dump_json_strict_writes_null_for_non_finite_values_and_converts_numpy():
    obj = {"a": float("nan"), "b": [np.float32(1.5), np.inf], "c": np.array([1.0, -np.inf]), "d": (np.int64(3),),
           "e": Path("x/y")}
    text = dump_json_strict(obj)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": [1.0, None], "d": [3], "e": "x/y"}


def test_dump_json_strict_can_refuse_non_finite_values_naming_the_key():
    with pytest.raises(ValueError, match=r"\$\.evaluation\.reward is nan"):
        to_json_safe({"evaluation": {"reward": float("nan")}}, nonfinite="error")


def test_write_json_strict_is_atomic_and_standard(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_json_strict(path, {"x": float("inf")})
    assert json.loads(path.read_text()) == {"x": None}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("name", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=1"])
def test_csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote(name):
    assert neutralise_cell(name) == "'" + name
    df = pd.DataFrame({"unit": [name, "plant_1"], "volume": [-5.0, 3.0], name: [1, 2]})
    out = neutralise_frame(df)
    assert out["unit"].tolist() == ["'" + name, "plant_1"]
    assert out["volume"].tolist() == [-5.0, 3.0]  # numbers untouched
    assert "'" + name in out.columns


def test_orders_csv_neutralises_hostile_unit_names(tmp_path):
    sc = tiny_copy(tmp_path)
    for f in ("powerplant_units.csv",):
        text = (sc / f).read_text().replace("learner_1", "=HYPERLINK(x)").replace("peak_1", "@peak")
        (sc / f).write_text(text)
    env = parallel_env(load_scenario(sc), record=True, max_cycles=3)
    env.reset(seed=0)
    while env.agents:
        env.step({a: np.array([0.1, 0.2]) for a in env.agents})
    _, orders = write_market_csvs(tmp_path / "out", env.episode_record())
    with open(orders, newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert "'=HYPERLINK(x)" in cells and "'@peak" in cells
    assert not any(c.startswith(("=", "@", "+")) for c in cells)


# --------------------------------------------------------------------------- memory estimate


def test_memory_estimate_counts_exactly_the_parameters_matd3_allocates():
    algo = MATD3(3, 14, [2, 1, 1], 2, actor_hidden_sizes=(16, 8), critic_hidden_sizes=(32, 16))
    est = estimate_training_memory(3, 14, [2, 1, 1], unique_obs_len=2, actor_hidden_sizes=(16, 8),
                                   critic_hidden_sizes=(32, 16), buffer_size=1000, batch_size=64)
    allocated = sum(p.numel() for p in algo.actor_params + algo.critic_params)
    assert est.n_params == allocated
    assert est.networks >= 2 * allocated * 4 and est.gradients == allocated * 4 and est.optimizers == 2 * allocated * 4
    assert est.buffer == 1000 * (3 * (14 + 2 + 1) * 4 + 1)


def test_a_thousand_learners_with_default_networks_are_refused_in_one_line():
    est = estimate_training_memory(1000, 38, 2, buffer_size=500_000, batch_size=128)
    assert est.networks > 9 * 1024**3  # critics grow with n^2: ~8.5 GB per copy
    with pytest.raises(ResourceError) as e:
        check_memory(est, available=32 * 1024**3)
    msg = one_line(e)
    assert "needs at least" in msg and "32.0 GiB" in msg and "replay_buffer_size" in msg and "networks" in msg


def test_a_small_configuration_fits_and_available_memory_is_known():
    est = estimate_training_memory(3, 38, [2, 1, 1], buffer_size=10_000, batch_size=128)
    assert check_memory(est) is est
    avail = available_memory_bytes()
    assert avail is None or avail > 0


def test_available_memory_falls_back_to_proc_meminfo_without_psutil(monkeypatch):
    if not Path("/proc/meminfo").is_file():
        pytest.skip("no /proc/meminfo")
    monkeypatch.setitem(sys.modules, "psutil", None)
    avail = available_memory_bytes()
    assert isinstance(avail, int) and avail > 0


def test_memory_estimate_from_a_learning_config_and_device_split():
    from agents.config import LearningConfig

    cfg = LearningConfig()
    est = estimate_for_config(cfg, 1000, 38, 2)
    assert est == estimate_training_memory(1000, 38, 2, buffer_size=cfg.replay_buffer_size, batch_size=cfg.batch_size,
                                           actor_hidden_sizes=cfg.actor_hidden_sizes,
                                           critic_hidden_sizes=cfg.critic_hidden_sizes)
    # on a GPU the networks must fit the GPU and the buffer the host
    with pytest.raises(ResourceError, match=r"training on cuda:0 needs") as e:
        check_training_memory(est, "cuda:0", host_available=10**15, device_available=40 * 1024**3)
    one_line(e)
    with pytest.raises(ResourceError, match=r"the replay buffer needs .* reduce replay_buffer_size"):
        check_training_memory(est, "cuda:0", host_available=1024**3, device_available=10**15)
    assert check_training_memory(est, "cuda:0", host_available=10**15, device_available=10**15) is est
    with pytest.raises(ResourceError, match=r"^training needs"):
        check_training_memory(est, "cpu", host_available=64 * 1024**3)


# =========================================================================== phase 2: run folders,
# true resume, CLI numbers and messages (classes 1, 4, 5, 8 on the train.py side)

import signal  # noqa: E402
import train as train_cli  # noqa: E402
from agents.recorder import STATE_NAME, ResumeError, RunRecorder, read_run_state  # noqa: E402
from agents.rundir import LOCK_NAME, RunDirError, RunLock, claim_run_dir, default_run_dir  # noqa: E402

_TIMING = {"wall_time", "train/sim_seconds", "train/update_seconds", "train/sps"}


def cli(capsys, *argv) -> tuple[int, str]:
    """Run train.py's main in-process; returns (exit code, stderr)."""
    try:
        rc = train_cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_one_line(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def history_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in _TIMING} for r in csv.DictReader(f)]


def tiny_config(**over):
    from agents.config import LearningConfig

    sc = load_scenario("tiny")
    return sc, LearningConfig.from_dict(sc.learning_config).with_overrides(over)


# --------------------------------------------------------------------------- class 1: run folders


def test_default_run_folders_of_the_same_second_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    dirs = [default_run_dir("tiny", tmp_path) for _ in range(3)]
    assert [d.name for d in dirs] == ["tiny-20260101-000000", "tiny-20260101-000000-2", "tiny-20260101-000000-3"]
    assert all(d.is_dir() for d in dirs)


def test_existing_run_folder_is_refused_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("episode\n0\n")
    with pytest.raises(RunDirError, match="already holds a run.*--resume.*--overwrite"):
        claim_run_dir(out)
    assert (out / "history.csv").read_text() == "episode\n0\n"  # untouched


def test_overwrite_empties_the_folder_and_resume_keeps_it(tmp_path):
    out = tmp_path / "run"
    (out / "policies" / "best").mkdir(parents=True)
    (out / "history.csv").write_text("x")
    path, lock = claim_run_dir(out, resume=True)
    assert (out / "history.csv").exists()
    lock.release()
    path, lock = claim_run_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    lock.release()


def test_empty_existing_folder_is_accepted(tmp_path):
    path, lock = claim_run_dir(tmp_path / "new")
    assert path.is_dir() and lock.held
    lock.release()


def test_lock_refuses_a_second_writer_naming_the_pid(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunDirError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()
    with pytest.raises(RunDirError, match="in use"):
        claim_run_dir(tmp_path, resume=True)
    first.release()
    RunLock(tmp_path).acquire().release()


def test_lock_of_a_killed_process_is_stale_and_taken_over(tmp_path):
    code = f"from agents.rundir import RunLock; RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); " \
           "import time; time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"process {p.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        p.kill()
        p.wait()
    assert (tmp_path / LOCK_NAME).exists()  # left behind by kill -9
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the flock: not stale for us
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    lock.release()


@pytest.mark.parametrize("target", ["file", "file/sub"])
def test_bad_out_targets_are_one_line(tmp_path, capsys, target):
    (tmp_path / "file").write_text("not a folder")
    rc, err = cli(capsys, "--scenario", "tiny", "--out", tmp_path / target, "--quiet")
    assert_one_line(rc, err, "--out")


def test_train_refuses_an_existing_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("keep: me\n")
    rc, err = cli(capsys, "--scenario", "tiny", "--episodes", "1", "--out", out, "--quiet", "--no-plots")
    assert_one_line(rc, err, "already holds a run")
    assert (out / "config.yaml").read_text() == "keep: me\n"


def test_resume_never_replaces_a_better_saved_best(tmp_path):
    from agents.learner import Learner

    sc, cfg = tiny_config(seed=1, actor_hidden_sizes=[8], critic_hidden_sizes=[8])
    learner = Learner(cfg, ["a"], 8, [1])
    rec = RunRecorder(cfg, learner, run_dir=tmp_path, tensorboard=False)
    rec.save("best", {"reward": 10.0, "profit": 5.0, "regret": 1.0})
    fresh = RunRecorder(cfg, learner, run_dir=tmp_path, tensorboard=False)  # e.g. state.pt older than best
    assert fresh.guard_best() == ["best"]  # only "best" was saved
    assert fresh.best["reward"] == 10.0
    saved = fresh.compare_and_save_policies({"reward": 5.0, "profit": 1.0, "regret": 9.0})
    assert "best" not in saved and "best_profit" in saved
    assert fresh.compare_and_save_policies({"reward": 11.0, "profit": 0.0, "regret": 99.0}) == ["best"]
    fresh.best["reward"] = 10.0  # back, to check the file below kept the better one before
    assert read_manifest(tmp_path / "policies" / "best")["metrics"]["reward"] == 11.0


@pytest.mark.slow
def test_concurrent_runs_never_share_a_folder(tmp_path):
    """Two runs on one --out at once: one trains, the other is refused (exit 2). Two runs
    with the default folder at once: two folders."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--episodes", "2", "--quiet", "--no-plots",
            "--seed", "1"]
    procs = [subprocess.Popen(base + ["--out", str(tmp_path / "same")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    procs += [subprocess.Popen(base, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    res = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    same = sorted(rc for rc, _ in res[:2])
    assert same == [0, 2], res[:2]
    refused = [err for rc, err in res[:2] if rc == 2][0]
    # "in use by process PID" once the holder has written its pid, "in use by another process" when
    # the refused run looks in the instant between the holder's flock and its pid write.
    assert "is in use by" in refused or "already holds a run" in refused
    assert len(history_rows(tmp_path / "same" / "history.csv")) == 2
    assert [rc for rc, _ in res[2:]] == [0, 0], res[2:]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(len(history_rows(r / "history.csv")) == 2 for r in runs)


# --------------------------------------------------------------------------- class 4: true resume


def _interrupt_after(trainer, k: int) -> None:
    orig = trainer.recorder.record_episode

    def record(ep, *a, **kw):
        out = orig(ep, *a, **kw)
        if ep == k - 1:
            raise KeyboardInterrupt
        return out

    trainer.recorder.record_episode = record


def test_resume_in_process_is_bit_identical(tmp_path):
    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=4, seed=5, episodes_collecting_initial_experience=1)
    kw = dict(progress=False, tensorboard=False, analysis=False, save_replay_buffer=True)
    full = Trainer(sc, cfg, run_dir=tmp_path / "full", **kw)
    full.train()
    cut = Trainer(sc, cfg, run_dir=tmp_path / "cut", **kw)
    _interrupt_after(cut, 2)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    state = read_run_state(tmp_path / "cut")
    assert state["episode"] == 2 and state["buffer"] is not None
    resumed = Trainer(sc, cfg, run_dir=tmp_path / "cut", resume=state, **kw)
    assert resumed.episode == 2 and resumed.learner.n_updates == cut.learner.n_updates > 0
    resumed.train()
    a, b = full.learner.algo.state_dict(), resumed.learner.algo.state_dict()
    for key in ("actor", "critic", "actor_target", "critic_target"):
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key])), key
    assert history_rows(tmp_path / "full" / "history.csv") == history_rows(tmp_path / "cut" / "history.csv")
    assert len(history_rows(tmp_path / "cut" / "history.csv")) == 4


def test_resume_without_the_buffer_continues_counters_and_generators(tmp_path):
    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=3, seed=2)
    t = Trainer(sc, cfg, run_dir=tmp_path, progress=False, tensorboard=False, analysis=False)
    _interrupt_after(t, 1)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    state = read_run_state(tmp_path)
    assert state["buffer"] is None and state["episode"] == 1
    r = Trainer(sc, cfg, run_dir=tmp_path, progress=False, tensorboard=False, analysis=False, resume=state)
    assert r.episode == 1 and r.buffer.size() == 0
    assert r.learner.generators.env.bit_generator.state == t.learner.generators.env.bit_generator.state
    assert torch.equal(r.learner.algo.state_dict()["actor"][0], t.learner.algo.state_dict()["actor"][0])


def test_run_state_is_written_atomically_after_every_episode(tmp_path):
    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=2, seed=2)
    t = Trainer(sc, cfg, run_dir=tmp_path, progress=False, tensorboard=False, analysis=False)
    seen = []
    orig = t.recorder.save_state
    t.recorder.save_state = lambda: seen.append(t.learner.episode) or orig()
    t.train()
    assert seen == [1, 2]
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    assert read_run_state(tmp_path)["episode"] == 2


def test_read_run_state_refuses_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(ResumeError, match="no state.pt"):
        read_run_state(tmp_path)
    (tmp_path / STATE_NAME).write_bytes(b"\x00garbage")
    with pytest.raises(ResumeError, match="cannot be read"):
        read_run_state(tmp_path)
    torch.save({"format": "other"}, tmp_path / STATE_NAME)
    with pytest.raises(ResumeError, match="not a marketzoo.run-state"):
        read_run_state(tmp_path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_run_state_with_a_pickle_payload_runs_no_code(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with open(tmp_path / STATE_NAME, "wb") as f:
        pickle.dump({"format": "marketzoo.run-state/1", "x": Boom()}, f)
    with pytest.raises(ResumeError, match="cannot be read"):
        read_run_state(tmp_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("extra,needle", [
    (["--set", "batch_size=8"], "drop --set"),
    (["--seed", "3"], "drop --seed"),
    (["--runtime", "mango"], "--runtime loop only"),
])
def test_resume_refuses_changed_options(tmp_path, capsys, extra, needle):
    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=2, seed=2)
    t = Trainer(sc, cfg, run_dir=tmp_path, progress=False, tensorboard=False, analysis=False,
                state_info={"scenario": "tiny", "study_case": "base"})
    _interrupt_after(t, 1)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    rc, err = cli(capsys, "--resume", tmp_path, *extra)
    assert_one_line(rc, err, needle)


def test_resume_of_a_folder_without_state_or_a_finished_run(tmp_path, capsys):
    rc, err = cli(capsys, "--resume", tmp_path / "nope")
    assert_one_line(rc, err, "no state.pt")
    rc, err = cli(capsys, "--resume", tmp_path)
    assert_one_line(rc, err, "no state.pt")
    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=1, seed=2)
    Trainer(sc, cfg, run_dir=tmp_path, progress=False, tensorboard=False, analysis=False,
            state_info={"scenario": "tiny", "study_case": "base"}).train()
    rc, err = cli(capsys, "--resume", tmp_path)
    assert_one_line(rc, err, "already completed 1 of 1", "--episodes")


def test_continue_learning_needs_a_path_and_a_shared_agent(tmp_path, capsys):
    rc, err = cli(capsys, "--scenario", "tiny", "--set", "continue_learning=true", "--out", tmp_path / "a")
    assert_one_line(rc, err, "continue_learning")
    core_sc, cfg = tiny_config()
    from envs import MarketCore

    core = MarketCore(core_sc, num_envs=1)
    algo = MATD3(1, core.obs_dim, core.act_dims.tolist(), 2, actor_hidden_sizes=cfg.actor_hidden_sizes,
                 critic_hidden_sizes=cfg.critic_hidden_sizes)
    save_checkpoint(tmp_path / "other", algo, ["someone_else"])
    rc, err = cli(capsys, "--scenario", "tiny", "--set", "continue_learning=true", "--set",
                  f"trained_policies_load_path={tmp_path / 'other'}", "--out", tmp_path / "b", "--quiet", "--no-plots")
    assert_one_line(rc, err, "shares no agent")
    rc, err = cli(capsys, "--scenario", "tiny", "--set", "continue_learning=true", "--set",
                  f"trained_policies_load_path={tmp_path / 'missing'}", "--out", tmp_path / "c", "--quiet")
    assert_one_line(rc, err, "missing")


@pytest.mark.slow
def test_sigkill_after_episode_k_and_resume_is_bit_identical(tmp_path):
    """An uninterrupted run and a run killed with SIGKILL mid-run and resumed end with
    bit-identical weights and identical history.csv rows (wall times aside)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    n = 8
    base = [sys.executable, str(ROOT / "train.py"), "--scenario", "tiny", "--episodes", str(n), "--seed", "7",
            "--quiet", "--no-plots", "--save-replay-buffer", "--set", "validation_episodes_interval=1"]
    full = tmp_path / "full"
    r = subprocess.run(base + ["--out", str(full)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cut = tmp_path / "cut"
    p = subprocess.Popen(base + ["--out", str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = None
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if (cut / STATE_NAME).exists():
            try:
                ep = read_run_state(cut)["episode"]
            except ResumeError:
                ep = 0
            if ep >= 2:
                p.send_signal(signal.SIGKILL)
                killed_at = ep
                break
        time.sleep(0.01)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    k = read_run_state(cut)["episode"]
    assert 2 <= k < n and killed_at is not None
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(cut), "--quiet", "--no-plots"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"after episode {k}" in r.stdout
    assert history_rows(full / "history.csv") == history_rows(cut / "history.csv")
    assert len(history_rows(cut / "history.csv")) == n
    for name in ("last", "best"):
        _, a = ckpt.load_actor_files(full / "policies" / name)
        _, b = ckpt.load_actor_files(cut / "policies" / name)
        for agent in a:
            for key in a[agent]["actor"]:
                assert torch.equal(a[agent]["actor"][key], b[agent]["actor"][key]), (name, agent, key)
    sa = read_run_state(full)["learner"]["algo"]
    sb = read_run_state(cut)["learner"]["algo"]
    assert all(torch.equal(x, y) for x, y in zip(sa["critic"], sb["critic"]))
    assert sa["actor_optimizer"]["state"][0]["exp_avg"].equal(sb["actor_optimizer"]["state"][0]["exp_avg"])


# --------------------------------------------------------------------------- class 5: CLI numbers


@pytest.mark.parametrize("argv,needle", [
    (["--episodes", "1e30"], "--episodes"),
    (["--episodes", "100000000000"], "--episodes"),
    (["--episodes", "0"], "--episodes"),
    (["--episodes", "-5"], "--episodes"),
    (["--episodes", "nan"], "--episodes"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "99999999999999999999999"], "--seed"),
    (["--containers", "0"], "--containers"),
    (["--mango-port", "70000"], "--mango-port"),
    (["--set", "torch_threads=100000"], "torch_threads"),
    (["--set", "training_episodes=1e30"], "training_episodes"),
    (["--set", "learning_rate=nan"], "learning_rate"),
    (["--set", "gamma=inf"], "gamma"),
    (["--set", "batch_size=-1"], "batch_size"),
    (["--set", "num_envs=1000000000"], "num_envs"),
    (["--set", "replay_buffer_size=1e300"], "replay_buffer_size"),
    (["--set", "actor_hidden_sizes=[10000000]"], "actor_hidden_sizes"),
    (["--set", "seed=-3"], "seed"),
])
def test_cli_numbers_are_checked_where_they_enter(tmp_path, capsys, argv, needle):
    rc, err = cli(capsys, "--scenario", "tiny", "--out", tmp_path / "run", *argv)
    assert_one_line(rc, err, needle)
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("runtime", ["loop", "mango"])
def test_memory_estimate_refuses_huge_networks_before_allocation(tmp_path, capsys, runtime):
    rc, err = cli(capsys, "--scenario", "tiny", "--out", tmp_path / "run", "--quiet", "--runtime", runtime,
                  "--set", "actor_hidden_sizes=[300000,300000]", "--set", "critic_hidden_sizes=[300000,300000]")
    assert_one_line(rc, err, "reduce")


def test_summary_json_is_strict_and_history_is_neutralised(tmp_path):
    from agents.evaluation import write_json_atomic
    from agents.learner import Learner

    write_json_atomic(tmp_path / "s.json", {"a": float("nan"), "b": [float("inf"), 1.0]})
    text = (tmp_path / "s.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    assert data == {"a": None, "b": [None, 1.0]}
    sc, cfg = tiny_config(actor_hidden_sizes=[8], critic_hidden_sizes=[8])
    rec = RunRecorder(cfg, Learner(cfg, ["=cmd|' /C calc'!A0"], 8, [1]), run_dir=tmp_path, tensorboard=False)
    rec.history = [{"episode": 0, "=SUM(A1)": 1.5, "saved": "+best"}]
    rec._write_history(tmp_path / "history.csv")
    rows = list(csv.reader(open(tmp_path / "history.csv", newline="")))
    assert rows[0] == ["episode", "'=SUM(A1)", "saved"]
    assert rows[1] == ["0", "1.5", "'+best"]


# --------------------------------------------------------------------------- class 8: CLI messages


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    rc, err = cli(capsys, "--scenario", "tiny", "--device", "cuda", "--out", tmp_path / "r")
    assert_one_line(rc, err, "CUDA is not available")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("runtime", ["loop", "mango"])
def test_no_learning_units_is_one_line(tmp_path, capsys, runtime):
    scen = tmp_path / "norl"
    shutil.copytree(BUILTIN_DIR / "tiny", scen)
    pp = scen / "powerplant_units.csv"
    pp.write_text(pp.read_text().replace("powerplant_energy_learning", "powerplant_energy_naive"))
    rc, err = cli(capsys, "--scenario", scen, "--out", tmp_path / "r", "--quiet", "--no-plots", "--runtime", runtime)
    assert_one_line(rc, err, "no learning units")


def test_bad_checkpoint_on_the_continue_path_is_one_line(tmp_path, capsys):
    bad = tmp_path / "ckpt"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"agents": "oops"}')
    rc, err = cli(capsys, "--scenario", "tiny", "--set", "continue_learning=true", "--set",
                  f"trained_policies_load_path={bad}", "--out", tmp_path / "r", "--quiet")
    assert_one_line(rc, err)


def test_evaluate_bad_paths_are_one_line(tmp_path, capsys):
    rc, err = cli(capsys, "evaluate", "--policy", tmp_path / "none")
    assert_one_line(rc, err)
    (tmp_path / "file").write_text("x")
    rc, err = cli(capsys, "evaluate", "--policy", tmp_path / "none", "--out", tmp_path / "file")
    assert_one_line(rc, err, "is a file")
    rc, err = cli(capsys, "evaluate", "--policy", tmp_path / "none", "--json", tmp_path)
    assert_one_line(rc, err, "is a folder")


# --------------------------------------------------------------------------- class 7: mango hostile messages

OBS_M = 38


def _mango_unit_and_peer(container):
    from mango import Agent

    from agents.mango.agents import UnitAgent
    from agents.mango.protocol import UnitSpec

    class Peer(Agent):
        def __init__(self):
            super().__init__()
            self.received = []

        def handle_message(self, content, meta):
            self.received.append(content)

    unit = container.register(UnitAgent(UnitSpec("plant_a", 0, 2, OBS_M, 2, 2, 1, [8], [8], 0.1, 3)), "plant_a")
    return unit, container.register(Peer(), "market")


def _observation():
    from agents.mango.protocol import MARKET

    return {"context": MARKET, "type": "observation", "episode": 0, "hour": 0, "mode": "train", "noise_scale": 1.0,
            "obs": np.zeros((1, OBS_M), dtype=np.float32)}


@pytest.mark.parametrize("meta", [{"tracking_id": [1, 2], "reply": True}, {"tracking_id": {"a": 1}},
                                  {"conversation_id": ["x"]}, {"conversation_id": {"k": []}}])
def test_hostile_meta_does_not_stop_a_unit_agents_inbox(meta):
    import asyncio

    from mango import ExternalClock, activate, create_ec_container
    from mango.util.termination_detection import tasks_complete_or_sleeping

    from agents.mango.protocol import dead_inbox_loops, guard_container, make_codec

    async def main():
        c = guard_container(create_ec_container(codec=make_codec(), clock=ExternalClock(0), addr="world"))
        unit, peer = _mango_unit_and_peer(c)
        async with activate(c):
            await peer.send_message(_observation(), unit.addr, **meta)
            await peer.send_message(_observation(), unit.addr)
            await asyncio.wait_for(tasks_complete_or_sleeping(c), 20)
            assert dead_inbox_loops(c) == []
        return unit, peer

    unit, peer = asyncio.run(main())
    assert unit.hostile_messages == 1
    assert [m["type"] for m in peer.received] == ["bid"]  # the good message after it was answered


def test_without_the_guard_mango_loses_the_inbox_loop_and_we_see_it():
    """The failure the guard prevents (mango 2.4): the loop ends; dead_inbox_loops names it."""
    import asyncio

    from mango import ExternalClock, activate, create_ec_container

    from agents.mango.protocol import dead_inbox_loops, make_codec

    async def main():
        c = create_ec_container(codec=make_codec(), clock=ExternalClock(0), addr="world")
        unit, peer = _mango_unit_and_peer(c)
        async with activate(c):
            await peer.send_message(_observation(), unit.addr, conversation_id=["x"])
            for _ in range(50):
                await asyncio.sleep(0.01)
                if dead_inbox_loops(c):
                    break
            return dead_inbox_loops(c)

    assert asyncio.run(main()) == ["plant_a"]


def test_a_raising_dispatch_is_logged_and_the_loop_survives(caplog):
    import asyncio

    from mango import Agent, ExternalClock, activate, create_ec_container
    from mango.util.termination_detection import tasks_complete_or_sleeping

    from agents.mango.protocol import dead_inbox_loops, guard_container, make_codec

    class Fragile(Agent):
        seen = 0

        def handle_message(self, content, meta):
            if content == "boom":
                raise RuntimeError("boom")
            Fragile.seen += 1

    async def main():
        c = guard_container(create_ec_container(codec=make_codec(), clock=ExternalClock(0), addr="world"))
        a = c.register(Fragile(), "fragile")
        b = c.register(Fragile(), "other")
        async with activate(c):
            await b.send_message("boom", a.addr)
            await b.send_message("fine", a.addr)
            await asyncio.wait_for(tasks_complete_or_sleeping(c), 20)
            assert dead_inbox_loops(c) == []
        return a

    a = asyncio.run(main())
    assert Fragile.seen == 1 and a.hostile_messages == 1
    assert any("dispatch raised RuntimeError: boom" in r.message for r in caplog.records)


def test_hostile_meta_over_tcp_is_dropped_at_the_container():
    import asyncio

    from mango import ExternalClock, activate, create_tcp_container
    from mango.util.termination_detection import tasks_complete_or_sleeping

    from agents.mango.protocol import dead_inbox_loops, guard_container, make_codec

    async def main():
        c1 = guard_container(create_tcp_container(("127.0.0.1", 0), codec=make_codec(), clock=ExternalClock(0),
                                                  auto_port=True))
        c2 = create_tcp_container(("127.0.0.1", 0), codec=make_codec(), clock=ExternalClock(0), auto_port=True)
        unit, _ = _mango_unit_and_peer(c1)
        _, peer = _mango_unit_and_peer(c2)
        async with activate(c1, c2):
            from mango import AgentAddress

            target = AgentAddress(tuple(c1.addr), "plant_a")
            await peer.send_message(_observation(), target, tracking_id=[1], reply=True)
            await peer.send_message(_observation(), target)
            for _ in range(200):
                await asyncio.sleep(0.02)
                if peer.received:
                    break
            await asyncio.wait_for(tasks_complete_or_sleeping(c1), 20)
            assert dead_inbox_loops(c1) == []
        return c1, peer

    c1, peer = asyncio.run(main())
    assert c1.hostile_messages == 1
    assert [m["type"] for m in peer.received] == ["bid"]


def test_meta_problem_names_the_key():
    from agents.mango.protocol import meta_problem

    assert meta_problem({"tracking_id": "abc", "conversation_id": None}) is None
    assert "tracking_id" in meta_problem({"tracking_id": [1]})
    assert "conversation_id" in meta_problem({"conversation_id": {"a": 1}})
    assert "not a dict" in meta_problem(None)
    from mango import Agent

    assert callable(getattr(Agent, "_dispatch_message", None)), "mango changed: guard_agent needs a new hook"


def test_a_dead_inbox_loop_fails_the_mango_run_at_once(monkeypatch):
    """If an inbox loop ends anyway, the run stops within a second or two with an error
    naming the agent, not after the 60 s bid timeout."""
    from mango import Agent

    from agents.config import LearningConfig
    from agents.mango import runtime
    from agents.mango.agents import UnitAgent

    monkeypatch.setattr(runtime, "guard_container", lambda c: c)  # as if the guard were missing
    calls = {"n": 0}
    original = Agent._dispatch_message

    def dying(self, content, meta):
        calls["n"] += 1
        if calls["n"] == 30:
            raise TypeError("unhashable type: 'list'")  # what mango raises for a list tracking_id
        return original(self, content, meta)

    monkeypatch.setattr(UnitAgent, "_dispatch_message", dying)
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        {"training_episodes": 3, "actor_hidden_sizes": [8], "critic_hidden_sizes": [8]})
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="inbox loop of agent\\(s\\) learner_1|inbox loop of agent\\(s\\) "):
        runtime.train_mango(sc, cfg, analysis=False, tensorboard=False,
                            timeouts=runtime.Timeouts(bids=60, acks=60, step=60))
    assert time.monotonic() - t0 < 30
    assert calls["n"] >= 30


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=1, seed=2, actor_hidden_sizes=[8], critic_hidden_sizes=[8])
    Trainer(sc, cfg, run_dir=tmp_path / "run", progress=False, tensorboard=False, analysis=False).train()
    rc, err = cli(capsys, "evaluate", "--policy", tmp_path / "run" / "policies" / "last", "--device", "cuda",
                  "--out", tmp_path / "ev")
    assert_one_line(rc, err, "CUDA is not available")
    assert not (tmp_path / "ev").exists()


def test_resume_purges_tensorboard_steps_logged_after_the_state(tmp_path):
    """Killed after episode 2 logged but before its state.pt: the resumed run logs episode 2
    again, and TensorBoard keeps one value per step, also when the first run's event file
    was made in the same second as the resumed run's (TensorBoard reads files in name
    order; a name starts with the second, then host, process id and a per-process counter,
    and "10" sorts before "9": this failed in CI once)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.trainer import Trainer

    sc, cfg = tiny_config(training_episodes=4, seed=5, actor_hidden_sizes=[8], critic_hidden_sizes=[8])
    t = Trainer(sc, cfg, run_dir=tmp_path, progress=False, analysis=False)
    orig = t.recorder.record_episode

    def record(ep, *a, **kw):
        out = orig(ep, *a, **kw)
        if ep == 1:
            shutil.copy(tmp_path / STATE_NAME, tmp_path / "keep.pt")
        if ep == 2:
            t.recorder.flush()
            raise KeyboardInterrupt
        return out

    t.recorder.record_episode = record
    with pytest.raises(KeyboardInterrupt):
        t.train()
    t.close()
    shutil.move(tmp_path / "keep.pt", tmp_path / STATE_NAME)
    state = read_run_state(tmp_path)
    assert state["episode"] == 2
    # the first run's file as if made in the second the resumed run starts (a second late)
    (first,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    parts = first.name.split(".")
    parts[3] = "%010d" % (int(time.time()) + 1)
    first.rename(first.with_name(".".join(parts)))
    r = Trainer(sc, cfg, run_dir=tmp_path, progress=False, analysis=False, resume=state)
    r.train()
    r.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/reward")] == [0, 1, 2, 3]
    assert [int(row["episode"]) for row in history_rows(tmp_path / "history.csv")] == [0, 1, 2, 3]


def test_resume_with_the_equilibrium_teacher_is_bit_identical(tmp_path):
    """`many` on 24 hours trains with the equilibrium teacher (fit and DAgger rollouts
    before the first episode); a run cut after episode 2 and resumed from its run state
    (which holds the rollout rows: they cannot be recomputed) ends bit-identical to the
    uncut run."""
    from agents.config import LearningConfig
    from agents.trainer import Trainer

    sc = load_scenario("many")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides([
        "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "train_freq=12h", "gradient_steps=2",
        "batch_size=16", "episodes_collecting_initial_experience=1", "training_episodes=4", "seed=5",
        "equilibrium_teacher_steps=150", "torch_threads=1"])
    kw = dict(progress=False, tensorboard=False, analysis=False, save_replay_buffer=True,
              env_options={"max_cycles": 24})
    full = Trainer(sc, cfg, run_dir=tmp_path / "full", **kw)
    full.train()
    assert len(full.learner.equilibrium_rollout_rows) == 3
    cut = Trainer(sc, cfg, run_dir=tmp_path / "cut", **kw)
    _interrupt_after(cut, 2)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    resumed = Trainer(sc, cfg, run_dir=tmp_path / "cut", resume=read_run_state(tmp_path / "cut"), **kw)
    assert resumed.episode == 2 and len(resumed.learner.equilibrium_rollout_rows) == 3
    resumed.train()
    a, b = full.learner.algo.state_dict(), resumed.learner.algo.state_dict()
    for key in ("actor", "critic", "actor_target", "critic_target"):
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key])), key
    assert history_rows(tmp_path / "full" / "history.csv") == history_rows(tmp_path / "cut" / "history.csv")


def test_a_run_records_its_foresight_as_a_number_and_old_run_states_resume_with_12(tmp_path, capsys):
    """train.py writes the resolved foresight into the run's config (a resume then observes
    what the run did, whatever "auto" becomes); a run state from before the key existed
    resumes with the env's 12 steps that every such run had."""
    from agents.config import LearningConfig

    rc, err = cli(capsys, "--scenario", "tiny", "--episodes", "1", "--out", tmp_path / "r", "--quiet", "--no-plots",
                  "--set", "equilibrium_reference=false")
    assert rc == 0, err
    saved = LearningConfig.load(tmp_path / "r" / "config.yaml")
    assert saved.foresight == 12 and "foresight: 12" in (tmp_path / "r" / "config.yaml").read_text()
    assert read_run_state(tmp_path / "r")["config"]["foresight"] == 12
    assert train_cli._resumed_config({"batch_size": 8}, "old state").foresight == 12
    assert train_cli._resumed_config({"foresight": 72}, "new state").foresight == 72
    assert train_cli._resumed_config({"foresight": "auto"}, "new state").foresight == "auto"
