"""How much of a storage unit's exact best response the env's storage action can reach.

    python benchmarks/bench_storage_bound.py [SCENARIO ...]   (default: default example_02e)

For each scenario, the equilibrium reference (``envs.analysis.equilibrium``; for a
scenario where it does not converge, its last iterate) fixes everyone's bids; for every
learning storage unit this prints its best response over the episode with every net
injection (``storage_moves="any"``, the analysis's yardstick, which may withhold) and with
whole-volume bids only (``storage_moves="full"``: the env's own storage action, the whole
feasible volume at one price, accepted in part where it sets the price), both with the
search off the state-of-charge grid, and their ratio: how much of the yardstick a policy
of the env's storage action can reach against those bids.
A bare name that is not a built-in is looked up in ``../shared/scenarios/assume``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envs import list_builtin_scenarios, load_scenario  # noqa: E402
from envs.analysis import best_response, equilibrium  # noqa: E402

ASSUME = ROOT.parent / "shared" / "scenarios" / "assume"


def main(argv: list[str]) -> None:
    for name in argv or ["default", "example_02e"]:
        path = name if name in list_builtin_scenarios() or Path(name).exists() else ASSUME / name
        if not Path(path).exists() and name not in list_builtin_scenarios():
            print(json.dumps({"scenario": name, "skipped": "not found"}))
            continue
        sc = load_scenario(str(path))
        t0 = time.perf_counter()
        eq = equilibrium(sc)
        for i, a in enumerate(eq.agents):
            if eq.kinds[i] != "storage":
                continue
            anym = best_response(eq.record, a, scenario=sc).best_profit
            full = best_response(eq.record, a, scenario=sc, storage_moves="full").best_profit
            print(json.dumps({"scenario": name, "agent": a, "equilibrium_converged": eq.converged,
                              "profile_profit": round(float(eq.profit[i])), "best_response_any": round(anym),
                              "best_response_full_moves": round(full), "ratio": round(full / anym, 3),
                              "wall_s": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
