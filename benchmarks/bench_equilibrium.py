"""Equilibrium reference on the built-in and ASSUME example scenarios: convergence and
wall time. Prints one JSON line per scenario.

    PYTHONPATH=$PWD python benchmarks/bench_equilibrium.py [--scenarios tiny default ...]
        [--max-passes 50] [--soc-points 201] [--tick 0.01]

ASSUME examples are read by path from ../shared/scenarios/assume (skipped when absent).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs import load_scenario  # noqa: E402
from envs.analysis import equilibrium  # noqa: E402

ASSUME = ROOT.parent / "shared" / "scenarios" / "assume"
DEFAULT = ["tiny", "default", "example_02a", "example_02b", "example_02e"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="*", default=DEFAULT)
    p.add_argument("--max-passes", type=int, default=50)
    p.add_argument("--soc-points", type=int, default=201)
    p.add_argument("--tick", type=float, default=0.01)
    a = p.parse_args(argv)
    for name in a.scenarios:
        src = name
        if name.startswith("example_"):
            src = ASSUME / name
            if not src.is_dir():
                print(json.dumps({"scenario": name, "skipped": f"{src} not present"}), flush=True)
                continue
        sc = load_scenario(src)
        eq = equilibrium(sc, max_passes=a.max_passes, soc_points=a.soc_points, tick=a.tick)
        print(json.dumps({
            "scenario": name, "hours": int(sc.n_hours), "agents": len(eq.agents), "kinds": sorted(set(eq.kinds)),
            "converged": eq.converged, "reason": eq.reason, "passes": eq.passes, "adoptions": eq.adoptions,
            "damping": eq.damping, "exploitability": round(eq.exploitability, 6),
            "max_relative_gain": round(eq.max_relative_gain, 6), "mean_price": round(float(eq.prices.mean()), 3),
            "profit": {k: round(float(v), 1) for k, v in zip(eq.agents, eq.profit)},
            "residual_gain": {k: round(float(v), 1) for k, v in zip(eq.agents, eq.residual_gain)},
            "hours_still_changing": int(len(eq.changing_hours)),
            "wall_time_s": round(eq.wall_time, 2), "soc_points": a.soc_points, "tick": a.tick,
            "python": platform.python_version(),
        }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
