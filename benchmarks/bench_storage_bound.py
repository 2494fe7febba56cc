"""How much of a storage unit's exact best response the env's storage action can reach.

    python benchmarks/bench_storage_bound.py [SCENARIO ...]   (default: default example_02e)

For each scenario, the equilibrium reference (``envs.analysis.equilibrium``; for a
scenario where it does not converge, its last iterate) fixes everyone's bids; for every
learning storage unit this prints its best response over the episode with every net
injection the state-of-charge grid allows (``storage_moves="any"``, the analysis's
yardstick) and with full-volume moves only (``storage_moves="full"``: idle, the largest
grid move within the power limit, or onto an end level -- what the env's one-price
storage action does when its bid is accepted in full), and their ratio: a policy of the
env's action reaches at least about the "full" profit and at most the "any" one.
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
