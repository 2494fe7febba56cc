"""Wall time of one evaluation's exact analysis: the residual merit-order path against
clearing every candidate market in full.

    python benchmarks/bench_analysis.py [--scenario default ...] [--policy DIR] [--seed 0] [--repeat 2]

For each scenario one episode is recorded, with the actors of ``--policy`` (a checkpoint
folder, e.g. a run's ``policies/best``; one scenario only) or with seeded random actions,
and ``envs.analysis.exploitability`` (every learner's exact best response, as each
training evaluation runs it) is timed twice: as it runs (plants and renewables placed on
the others' merit order and demand curve, sorted once per hour; storage on its own
path) and with every plant's candidate markets cleared in full by
``envs.market.clear_market``. Both must give the same best-response profits; the script
stops with an error where they do not. Prints one JSON line per scenario and a table.
A bare name that is not a built-in is looked up in ``../shared/scenarios/assume``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs import analysis as an  # noqa: E402
from envs import list_builtin_scenarios, load_scenario  # noqa: E402
from envs.core import MarketCore  # noqa: E402

ASSUME = ROOT.parent / "shared" / "scenarios" / "assume"


def _record(sc, policy: str | None, seed: int):
    if policy:
        from agents.config import LearningConfig
        from agents.trainer import evaluate_policy

        cfg = LearningConfig.from_dict(sc.learning_config or {}, source="learning_config")
        res, _core = evaluate_policy(sc, cfg, policy, seed=seed, analysis=False)
        return res.record
    core = MarketCore(sc)
    core.recording = True
    rng = np.random.default_rng(seed)
    core.reset(rng)
    level = rng.uniform(-1.0, 1.0, (1, core.n, core.max_act))  # each agent's own habit
    while not core.done:
        a = level + 0.3 * rng.standard_normal(level.shape)
        core.step(np.clip(a, -1.0, 1.0))
    return core.episode_record()


def _timed(record, sc, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = an.exploitability(record, scenario=sc)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", nargs="+", default=["default", "example_02e"])
    p.add_argument("--policy", default=None, help="checkpoint folder whose actors bid (one scenario only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=2, help="timed calls per path; the fastest counts")
    args = p.parse_args(argv)
    if args.policy and len(args.scenario) != 1:
        p.error("--policy needs exactly one --scenario")
    rows = []
    for name in args.scenario:
        path = name if name in list_builtin_scenarios() or Path(name).exists() else ASSUME / name
        if name not in list_builtin_scenarios() and not Path(path).exists():
            print(json.dumps({"scenario": name, "skipped": "not found"}))
            continue
        sc = load_scenario(str(path))
        rec = _record(sc, args.policy, args.seed)
        fast_s, fast = _timed(rec, sc, args.repeat)
        plain = an._evaluate
        an._evaluate = lambda *a, **k: plain(*a, **{**k, "via_clearing": True})
        try:
            full_s, full = _timed(rec, sc, args.repeat)
        finally:
            an._evaluate = plain
        for a in rec.agents:
            x, y = fast.responses[a].best_profit, full.responses[a].best_profit
            if not np.isclose(x, y, rtol=1e-9, atol=1e-6):
                raise SystemExit(f"{name}: {a}'s best-response profit differs between the paths: {x} vs {y}")
        row = {"scenario": name, "policy": args.policy or f"random actions, seed {args.seed}",
               "hours": int(rec.n_hours), "learners": len(rec.agents),
               "demand_bids": int(rec.demand_price.shape[1]), "full_clearing_s": round(full_s, 3),
               "residual_s": round(fast_s, 3), "speedup": round(full_s / fast_s, 1),
               "exploitability": round(float(fast.joint), 6)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if rows:
        print("\n| scenario | learners | demand bids | full clearing | residual path | speed-up |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['scenario']} | {r['learners']} | {r['demand_bids']} | {r['full_clearing_s']} s | "
                  f"{r['residual_s']} s | {r['speedup']}x |")


if __name__ == "__main__":
    main()
