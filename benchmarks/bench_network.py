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
    mc = MarketConfig(
        market_id="DAM", market_products=[MarketProduct(timedelta(hours=1), 1, timedelta(hours=1))],
        maximum_bid_price=args["cap"], minimum_bid_price=args["floor"], maximum_bid_volume=1e5,
        additional_fields=["node"], market_mechanism=mech, param_dict=pdict,
    )
    role = clearing_mechanisms[mech](mc)
    hours = args["hours"]  # list of [[unit, node, price, volume], ...] per hour
    start = datetime(2020, 1, 1)
    books = []
    for h, orders in enumerate(hours):
        t = start + timedelta(hours=h)
        books.append([{"bid_id": f"{u}_1", "unit_id": u, "agent_addr": None, "node": node, "price": p, "volume": v,
                       "start_time": t, "end_time": t + timedelta(hours=1), "only_hours": None, "bid_type": "SB"}
                      for u, node, p, v in orders])
    prices, n = [], 0
    t0 = time.perf_counter()
    while True:
        for h, book in enumerate(books):
            t = start + timedelta(hours=h)
            ob = [dict(o) for o in book]
            role.validate_orderbook(ob, None) if hasattr(role, "validate_orderbook") else None
            _, _, meta, _ = role.clear(ob, [(t, t + timedelta(hours=1), None)])
            if len(prices) < len(books):
                prices.append({str(m["node"]): float(m["price"]) for m in meta})
            n += 1
        dt = time.perf_counter() - t0
        if dt >= args["min_time"]:
            break
    return {"clearings": n, "seconds": dt, "clearings_per_s": n / dt, "prices": prices}


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
