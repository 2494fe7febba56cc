"""benchmarks/vs_assume.py: the marketzoo half runs; with ASSUME installed, both systems
clear ASSUME's example_02a at identical prices when every unit bids its marginal cost."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EX_02A = ROOT.parent / "shared" / "scenarios" / "assume" / "example_02a"

pytestmark = pytest.mark.skipif(not EX_02A.is_dir(), reason="shared ASSUME scenarios not present")


def load_bench():
    spec = importlib.util.spec_from_file_location("_bench_vs_assume", ROOT / "benchmarks" / "vs_assume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_marketzoo_half_runs_without_assume(capsys):
    bench = load_bench()
    assert bench.main(["--quick", "--skip-assume", "--scenarios", str(EX_02A), "--grad-steps", "4"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines[0]["system"] == "assume" and "skipped" in lines[0]["error"]
    what = {(r.get("what"), r.get("impl")) for r in lines[1:]}
    assert {("sim", "parallel_env"), ("sim", "vector_env_B256"), ("train_episode", None), ("grad_step", None)} <= what
    train = next(r for r in lines if r.get("what") == "train_episode")
    assert train["train_freq"] == 90  # ASSUME's 100h shortened to divide the 720-hour horizon
    assert train["n_updates"] == 3 * 8 * 10  # 3 learning episodes x 8 updates x 10 gradient steps


@pytest.mark.skipif(importlib.util.find_spec("assume") is None, reason="assume-framework not installed")
def test_same_prices_as_assume():
    # not imported here: importing assume writes assume.log into the working directory;
    # the benchmark runs it in a subprocess in a temporary folder
    bench = load_bench()
    res = bench.run_assume(sys.executable, "sim", {"scenario_dir": str(EX_02A), "study_case": "base"}, timeout=600)
    assert "error" not in res, res.get("error")
    times, prices = bench.mz_prices(bench._mz_imports()[1].load_scenario(str(EX_02A)))
    ours = dict(zip(times, prices))
    theirs = dict(zip(res["sim_db"]["times"], res["sim_db"]["prices"]))
    assert len(theirs) == 719 and set(theirs) <= set(ours)  # ASSUME's first product delivers at 01:00
    assert max(abs(ours[t] - p) for t, p in theirs.items()) < 1e-6
