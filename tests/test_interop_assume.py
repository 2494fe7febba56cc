"""benchmarks/vs_assume.py: the marketzoo half runs; with ASSUME installed, both systems
clear ASSUME's example_02a at identical prices when every unit bids its marginal cost."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
from _examples import ASSUME_DIR  # noqa: E402 - the one helper for the shared ASSUME examples

EX_02A = ASSUME_DIR / "example_02a"

pytestmark = pytest.mark.skipif(not EX_02A.is_dir(), reason="shared ASSUME scenarios not present")


def load_bench():
    spec = importlib.util.spec_from_file_location("_bench_vs_assume", ROOT / "benchmarks" / "vs_assume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_marketzoo_half_runs_without_assume(capsys):
    bench = load_bench()
    assert bench.main(["--quick", "--skip-assume", "--scenarios", str(EX_02A), "--grad-steps", "4",
                       "--quality-budget", "1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    quality = next(r for r in lines if r.get("what") == "quality")
    assert quality["system"] == "marketzoo" and 0 < quality["episodes_done"] and quality["br_share"] <= 1 + 1e-9
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


def load_converter():
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("_assume_record", ROOT / "benchmarks" / "assume_record.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_converter_on_synthetic_orders():
    # two hours of example_02a written the way ASSUME's market_orders table holds them:
    # the learning unit pp_6 bids two parts (pp_6_1 inflexible, pp_6_2 flexible), the
    # demand one order at the price cap with a negative volume
    import numpy as np

    from envs import load_scenario
    from envs.analysis import exploitability, recorded_profit

    conv = load_converter()
    sc = load_scenario(str(EX_02A))
    mc = dict(zip(sc.plants.names, sc.plants.marginal_cost[1]))
    rows = []
    for t, demand, p6 in (("2019-03-01T01:00:00", 4000.0, (40.0, 60.0)), ("2019-03-01T02:00:00", 6000.0, (40.0, 50.0))):
        for u in ("pp_1", "pp_2", "pp_3", "pp_4", "pp_5", "pp_7"):
            rows.append({"start_time": t, "unit_id": u, "bid_id": f"{u}_1", "price": mc[u],
                         "volume": 1000.0 if u != "pp_7" else 5000.0})
        rows.append({"start_time": t, "unit_id": "pp_6", "bid_id": "pp_6_1", "price": p6[0], "volume": 1.0})
        rows.append({"start_time": t, "unit_id": "pp_6", "bid_id": "pp_6_2", "price": p6[1], "volume": 2499.0})
        rows.append({"start_time": t, "unit_id": "demand_EOM", "bid_id": "demand_EOM_1", "price": 3000.0,
                     "volume": -demand})
    # accepted volumes and prices from marketzoo's own clearing of these bids
    from envs.market import clear_market

    hours = sorted({r["start_time"] for r in rows})
    market = {"product_start": hours, "price": []}
    for t in hours:
        sup = [r for r in rows if r["start_time"] == t and r["volume"] > 0]
        dem = -sum(r["volume"] for r in rows if r["start_time"] == t and r["volume"] < 0)
        res = clear_market(np.array([r["price"] for r in sup]), np.array([r["volume"] for r in sup]),
                           np.zeros(0), np.zeros(0), fixed_demand=dem)
        market["price"].append(float(res.price[0]))
        for r, acc in zip(sup, res.supply_accepted[0]):
            r["accepted_volume"] = float(acc)
        for r in rows:
            if r["start_time"] == t and r["volume"] < 0:
                r["accepted_volume"] = r["volume"]
    rec = conv.episode_record_from_assume(rows, market, sc)
    assert rec.agents == ("pp_6",) and list(rec.hours) == [1, 2]
    assert np.allclose(rec.fixed_demand, [4000.0, 6000.0])
    cols = rec.agent_supply_columns(0)
    assert np.allclose(rec.supply_volume[:, cols], [[1.0, 2499.0]] * 2)
    assert np.allclose(rec.supply_cost[:, cols], mc["pp_6"])
    assert np.allclose(conv.reclear_prices(rec), market["price"])
    # hour 2 (6000 MW): pp_6's flexible part at 50 sets the price; hour 1 it is not needed
    assert market["price"][1] == 50.0
    assert np.allclose(rec.agent_profit[:, 0], recorded_profit(rec, 0))
    # 5000 MW of cheaper plants, pp_6 the last 1000 MW below its cost: a loss
    assert np.isclose(rec.agent_profit[1, 0], 1000.0 * (50.0 - mc["pp_6"]))
    ex = exploitability(rec)
    assert ex.best_response_profit[0] >= ex.recorded_profit[0] - 1e-6


@pytest.mark.skipif(importlib.util.find_spec("assume") is None, reason="assume-framework not installed")
def test_converter_on_assume_parity_run():
    # every unit at marginal cost: the converted record re-clears to ASSUME's prices and the
    # learning unit's best response earns at least what it earned
    import numpy as np

    from envs.analysis import exploitability

    bench = load_bench()
    conv = load_converter()
    res = bench.run_assume(sys.executable, "sim", {"scenario_dir": str(EX_02A), "study_case": "base", "orders": True},
                           timeout=600)
    assert "error" not in res, res.get("error")
    sc = bench._mz_imports()[1].load_scenario(str(EX_02A))
    out = res["sim_db"]["orders"]
    rec = conv.episode_record_from_assume(out["orders"], out["market"], sc)
    assert rec.n_hours == 719 and rec.agents == ("pp_6",)
    assert np.allclose(rec.clearing_price, res["sim_db"]["prices"])
    assert np.abs(conv.reclear_prices(rec) - rec.clearing_price).max() < 1e-6
    # accepted volumes as ASSUME reports them: supply meets demand every hour
    assert np.allclose(rec.supply_accepted.sum(axis=1), rec.fixed_demand, atol=1e-6)
    ex = exploitability(rec)
    assert ex.best_response_profit[0] >= ex.recorded_profit[0] - 1e-6 and ex.best_response_profit[0] > 0
