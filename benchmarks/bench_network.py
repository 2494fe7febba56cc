"""Zonal and nodal clearing: speed against ASSUME, and ASSUME's reference prices.

Three modes:

* ``python benchmarks/bench_network.py`` — clearings per second of marketzoo's network
  clearing (:mod:`envs.network`) on a 3-zone market (``example_01d`` ``zonal_case``) and
  a 3-bus market (``example_04a`` ``nodal_case``), side by side with ASSUME 0.6's own
  clearing role of the same case (``ComplexClearingRole`` / ``NodalClearingRole``),
  timed in the same run. ASSUME runs in a subprocess (``--assume-python``, e.g. a
  separate virtual environment with ``assume-framework[learning]==0.6.0`` and
  ``pypsa``); without it only the marketzoo rows are printed. One JSON line per row.
* ``--write-refs`` — runs ASSUME 0.6 (``--assume-python``) on the shared example folders
  with every unit bidding its marginal cost and writes the hourly prices to
  ``tests/data/assume_prices_<example>_<case>.csv`` (the files the parity tests read).
* ``--assume-worker ...`` — internal: the ASSUME side, run inside ASSUME's interpreter.

How the ASSUME inputs are prepared (in a temporary copy; the shared folders are not
touched), so that ASSUME 0.6 runs the case and every unit bids its marginal cost:

* only the energy market of the study case is kept (redispatch markets are dropped);
* every unit's ``bidding_<market>`` column is set to ASSUME's naive strategy
  (``powerplant_energy_naive`` / ``demand_energy_naive`` / ``storage_energy_naive``):
  marginal-cost bids, simple hourly orders;
* ``network_path`` is made absolute (ASSUME 0.6 resolves it against the working
  directory);
* mechanism names that ASSUME 0.6 does not register are mapped to the 0.6 ones:
  ``pay_as_clear_complex`` -> ``complex_clearing``, ``nodal`` -> ``nodal_clearing``;
  when ``zones_identifier`` names a column that ``buses.csv`` lacks (example_04a
  ``zonal_case``), the key is dropped, so every bus is its own zone (ASSUME 0.6 would
  stop with a KeyError; marketzoo does the same, see :func:`envs.network.load_network`).

Usage::

    python benchmarks/bench_network.py --assume-python /tmp/assume-venv/bin/python
    python benchmarks/bench_network.py --assume-python /tmp/assume-venv/bin/python --write-refs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSUME_DIR = ROOT.parent / "shared" / "scenarios" / "assume"
DATA_DIR = ROOT / "tests" / "data"

# (example folder, study case): the parity cases with stored reference prices
NETWORK_CASES = [("example_01d", "zonal_case"), ("example_04a", "zonal_case"), ("example_04a", "nodal_case")]
PLAIN_CASES = [("example_02a", "base"), ("example_02b", "base")]
BENCH_CASES = {"3-zone": ("example_01d", "zonal_case"), "3-bus": ("example_04a", "nodal_case")}

_NAIVE = {"powerplant_units.csv": "powerplant_energy_naive", "demand_units.csv": "demand_energy_naive",
          "storage_units.csv": "storage_energy_naive"}
_MECH_06 = {"pay_as_clear_complex": "complex_clearing", "nodal": "nodal_clearing"}


# =========================================================================== ASSUME side
# Runs inside ASSUME's interpreter: only the standard library, pandas, yaml and assume.


def _prepare(src: Path, dst: Path, study_case: str) -> str:
    """Copy ``src`` to ``dst`` for a marginal-cost run of ``study_case`` (see the module
    docstring); returns the energy market's id."""
    import pandas as pd
    import yaml

    shutil.copytree(src, dst)
    cfg_path = dst / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    case = cfg[study_case]
    markets = case["markets_config"]
    market_id = next(k for k, v in markets.items() if v.get("market_mechanism") != "redispatch")
    spec = markets[market_id]
    case["markets_config"] = {market_id: spec}
    spec["market_mechanism"] = _MECH_06.get(spec["market_mechanism"], spec["market_mechanism"])
    pdict = spec.setdefault("param_dict", {}) or {}
    spec["param_dict"] = pdict
    if "network_path" in pdict:
        pdict["network_path"] = str(dst)
        zid = pdict.get("zones_identifier")
        if zid and zid not in pd.read_csv(dst / "buses.csv", nrows=0).columns:
            del pdict["zones_identifier"]
    case.setdefault("learning_config", {})["learning_mode"] = False
    cfg_path.write_text(yaml.safe_dump(cfg))
    for fname, strategy in _NAIVE.items():
        f = dst / fname
        if f.is_file():
            df = pd.read_csv(f)
            df[f"bidding_{market_id}"] = strategy
            df.to_csv(f, index=False)
    return market_id


def _assume_prices(args: dict) -> dict:
    """Run one study case in ASSUME with an SQLite output; hourly prices per node."""
    import logging

    import pandas as pd
    import sqlalchemy
    from assume import World
    from assume.scenario.loader_csv import load_scenario_folder

    src = Path(args["scenario_dir"])
    name, case = src.name, args["study_case"]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        market_id = _prepare(src, inputs / name, case)
        os.chdir(tmp)
        db = f"sqlite:///{tmp}/assume.db"
        logging.getLogger("assume").setLevel(logging.ERROR)
        world = World(database_uri=db, export_csv_path="", log_level="ERROR")
        load_scenario_folder(world, inputs_path=str(inputs), scenario=name, study_case=case)
        t0 = time.perf_counter()
        world.run()
        seconds = time.perf_counter() - t0
        eng = sqlalchemy.create_engine(db)
        df = pd.read_sql("SELECT product_start, node, price, market_id FROM market_meta", eng)
    df = df[df["market_id"] == market_id]
    df["product_start"] = pd.to_datetime(df["product_start"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    df["node"] = df["node"].fillna("").astype(str)
    df = df.sort_values(["product_start", "node"])
    return {"market_id": market_id, "seconds": seconds, "times": df["product_start"].tolist(),
            "nodes": df["node"].tolist(), "prices": df["price"].astype(float).tolist()}


def _assume_clear_speed(args: dict) -> dict:
    """Time ASSUME's clearing role alone on the same orders marketzoo clears: one hour
    (one product) per call, every unit at marginal cost."""
    import logging
    from datetime import datetime, timedelta

    from assume.common.market_objects import MarketConfig, MarketProduct
    from assume.markets.clearing_algorithms import clearing_mechanisms
    from assume.scenario.loader_csv import read_grid

    logging.disable(logging.WARNING)
    mech = _MECH_06.get(args["mechanism"], args["mechanism"])
    pdict = {"grid_data": read_grid(args["network_dir"]), "solver": "highs", "pricing_mechanism": "pay_as_clear"}
    if args.get("zones_identifier"):
        pdict["zones_identifier"] = args["zones_identifier"]
    from dateutil import rrule

    start = datetime(2020, 1, 1)
    mc = MarketConfig(
        market_id="DAM", opening_hours=rrule.rrule(rrule.HOURLY, dtstart=start, until=start + timedelta(days=30)),
        market_products=[MarketProduct(timedelta(hours=1), 1, timedelta(hours=1))],
        maximum_bid_price=args["cap"], minimum_bid_price=args["floor"], maximum_bid_volume=1e5,
        additional_fields=["node"], market_mechanism=mech, param_dict=pdict,
    )
    role = clearing_mechanisms[mech](mc)
    hours = args["hours"]  # list of [[unit, node, price, volume], ...] per hour
    books = []
    for h, orders in enumerate(hours):
        t = start + timedelta(hours=h)
        books.append([{"bid_id": f"{u}_1", "unit_id": u, "agent_addr": None, "node": node, "price": p, "volume": v,
                       "start_time": t, "end_time": t + timedelta(hours=1), "only_hours": None, "bid_type": "SB"}
                      for u, node, p, v in orders])
    prices, n = [], 0
    t0 = time.perf_counter()
    done = False
    while not done:  # one hour (one product) per call, as marketzoo's env clears
        for h, book in enumerate(books):
            t = start + timedelta(hours=h)
            ob = [dict(o) for o in book]
            role.validate_orderbook(ob, None)
            _, _, meta, _ = role.clear(ob, [(t, t + timedelta(hours=1), None)])
            if len(prices) < len(books):
                prices.append({str(m["node"]): float(m["price"]) for m in meta})
            n += 1
            dt = time.perf_counter() - t0
            if dt >= args["min_time"]:
                done = True
                break
    out = {"clearings": n, "seconds": dt, "clearings_per_s": n / dt, "prices": prices}
    # ASSUME's own unit: the whole day-ahead product set (24 hours) in one call
    mc.market_products = [MarketProduct(timedelta(hours=1), len(books), timedelta(hours=1))]
    role = clearing_mechanisms[mech](mc)
    products = [(start + timedelta(hours=h), start + timedelta(hours=h + 1), None) for h in range(len(books))]
    n24, t0 = 0, time.perf_counter()
    while True:
        ob = [dict(o) for book in books for o in book]
        role.validate_orderbook(ob, None)
        role.clear(ob, products)
        n24 += len(books)
        dt = time.perf_counter() - t0
        if dt >= args["min_time"]:
            break
    out.update({"day_clearings": n24, "day_seconds": dt, "day_clearings_per_s": n24 / dt})
    return out


def assume_worker(task: str, args: dict, out_path: str) -> None:
    fn = {"prices": _assume_prices, "speed": _assume_clear_speed}[task]
    try:
        res = fn(args)
        from importlib.metadata import version

        res["assume_version"] = version("assume-framework")
    except Exception as exc:  # reported to the parent as one line
        import traceback

        res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    Path(out_path).write_text(json.dumps(res))


def run_assume(python: str, task: str, args: dict, timeout: float = 1800) -> dict:
    """Run :func:`assume_worker` in ``python`` (a subprocess in a temporary folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [python, str(Path(__file__).resolve()), "--assume-worker", task, json.dumps(args), str(out)]
        try:
            p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"ASSUME run timed out after {timeout:g} s"}
        if not out.is_file():
            return {"error": f"ASSUME worker failed (exit {p.returncode}): {p.stderr.strip()[-2000:]}"}
        return json.loads(out.read_text())


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--assume-worker":
    assume_worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    sys.exit(0)


# =========================================================================== marketzoo side


def ref_path(example: str, case: str) -> Path:
    return DATA_DIR / f"assume_prices_{example}_{case}.csv"


def write_refs(python: str, cases) -> int:
    """Run ASSUME on every case and store its hourly prices (``datetime,node,price``)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    failed = 0
    for ex, case in cases:
        res = run_assume(python, "prices", {"scenario_dir": str(ASSUME_DIR / ex), "study_case": case})
        if "error" in res:
            print(json.dumps({"case": f"{ex}/{case}", "error": res["error"]}))
            failed += 1
            continue
        lines = ["datetime,node,price"] + [f"{t},{n},{p!r}" for t, n, p in zip(res["times"], res["nodes"], res["prices"])]
        out = ref_path(ex, case)
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, out)
        print(json.dumps({"case": f"{ex}/{case}", "rows": len(res["prices"]), "file": str(out.relative_to(ROOT)),
                          "assume_version": res.get("assume_version")}))
    return failed


def _mz_bench(example: str, case: str, min_time: float) -> tuple[list[dict], dict]:
    """marketzoo rows: one hour per call (B = 1) and a batch of 64 hours per call."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from envs import load_scenario
    from envs.network import clear_network, marginal_cost_bids

    sc = load_scenario(str(ASSUME_DIR / example), case)
    net, m = sc.network, sc.market
    sp, sv, s_node, dp, dv, d_node = marginal_cost_bids(sc)
    T = sc.n_hours
    rows = []
    for B in (1, 24, 64):
        n, t0 = 0, time.perf_counter()
        while True:
            h = (n // 1) % T
            idx = (np.arange(B) + h) % T
            clear_network(net, sp[idx], sv[idx], s_node, dp[idx], dv[idx], d_node, price_cap=m.price_cap,
                          price_floor=m.price_floor)
            n += B
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        rows.append({"system": "marketzoo", "impl": f"clear_network_B{B}", "clearings": n, "seconds": dt,
                     "clearings_per_s": n / dt})
    # whole environment steps (2 plants made learners, random actions): parallel env and vector env
    import dataclasses

    import envs

    learn = np.zeros(len(pl := sc.plants), bool)
    learn[[0, len(pl) - 1]] = True
    sc_l = dataclasses.replace(sc, plants=dataclasses.replace(pl, learning=learn))
    rng = np.random.default_rng(0)
    for B in (1, 64):
        env = envs.VectorMarketEnv(sc_l, num_envs=B, autoreset=True)
        env.reset(seed=0)
        a = rng.uniform(-1, 1, (B, env.n_agents, env.core.max_act))
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_time:
            env.step(a)
            n += B
        dt = time.perf_counter() - t0
        rows.append({"system": "marketzoo", "impl": f"vector_env_B{B}_step", "clearings": n, "seconds": dt,
                     "clearings_per_s": n / dt})
    # the same orders for ASSUME's role (unit, bus/zone name as ASSUME's orders carry it, price, volume)
    pl, rn, dm = sc.plants, sc.renewables, sc.demands
    names = list(pl.names) + list(rn.names)
    node_name = [net.buses[int(np.flatnonzero(net.bus_node == k)[0])] for k in range(net.n_nodes)]
    hours = []
    for t in range(min(T, 24)):
        o = [[u, node_name[s_node[i]], float(np.clip(sp[t, i], m.price_floor, m.price_cap)), float(sv[t, i])]
             for i, u in enumerate(names)]
        o += [[u, node_name[d_node[j]], float(dp[t, j]), -float(dv[t, j])] for j, u in enumerate(dm.names)]
        hours.append(o)
    zid = None
    if net.kind == "zonal":
        import yaml

        cfg = yaml.safe_load((ASSUME_DIR / example / "config.yaml").read_text())[case]
        spec = next(iter(cfg["markets_config"].values()))
        z = (spec.get("param_dict") or {}).get("zones_identifier")
        import pandas as pd

        if z and z in pd.read_csv(ASSUME_DIR / example / "buses.csv", nrows=0).columns:
            zid = z
    args = {"mechanism": net.mechanism, "network_dir": str(ASSUME_DIR / example), "zones_identifier": zid,
            "cap": m.price_cap, "floor": m.price_floor, "hours": hours, "min_time": min_time}
    return rows, args


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assume-python", default=None, help="interpreter with assume-framework 0.6 (and pypsa)")
    ap.add_argument("--write-refs", action="store_true", help="store ASSUME's prices in tests/data/")
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds per timed row")
    args = ap.parse_args(argv)
    if args.write_refs:
        if not args.assume_python:
            ap.error("--write-refs needs --assume-python")
        return 1 if write_refs(args.assume_python, NETWORK_CASES + PLAIN_CASES) else 0
    import platform

    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}))
    for label, (ex, case) in BENCH_CASES.items():
        rows, assume_args = _mz_bench(ex, case, args.min_time)
        for r in rows:
            print(json.dumps({"market": label, "case": f"{ex}/{case}", **r}))
        if args.assume_python:
            res = run_assume(args.assume_python, "speed", assume_args, timeout=600)
            if "error" in res:
                print(json.dumps({"market": label, "system": "assume", "error": res["error"]}))
                continue
            # same orders, same prices: check before reporting the speed
            import numpy as np

            sys.path.insert(0, str(ROOT))
            from envs import load_scenario
            from envs.network import marginal_cost_prices

            sc = load_scenario(str(ASSUME_DIR / ex), case)
            ours = marginal_cost_prices(sc)[: len(res["prices"])]
            node_name = [sc.network.buses[int(np.flatnonzero(sc.network.bus_node == k)[0])]
                         for k in range(sc.network.n_nodes)]
            diff = max(abs(ours[t, k] - hp.get(node_name[k], hp.get(sc.network.nodes[k], np.nan)))
                       for t, hp in enumerate(res["prices"]) for k in range(sc.network.n_nodes))
            print(json.dumps({"market": label, "case": f"{ex}/{case}", "system": "assume",
                              "impl": f"{sc.network.mechanism}_role_1h_per_call", "clearings": res["clearings"],
                              "seconds": res["seconds"], "clearings_per_s": res["clearings_per_s"],
                              "max_price_diff": float(diff), "assume_version": res.get("assume_version")}))
            print(json.dumps({"market": label, "case": f"{ex}/{case}", "system": "assume",
                              "impl": f"{sc.network.mechanism}_role_24h_per_call", "clearings": res["day_clearings"],
                              "seconds": res["day_seconds"], "clearings_per_s": res["day_clearings_per_s"],
                              "assume_version": res.get("assume_version")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
