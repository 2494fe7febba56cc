"""Diagnostic (dev): how much of a plant's best response runs below its min power.

The env clears a learning plant's inflexible (``min_power``) offer like any other offer:
at a shared price or as the marginal unit it may be dispatched for part of it, and any
dispatch counts as running (no start-up the hour after). ASSUME instead raises the output
of a dispatched plant to its min power. This script evaluates a policy once, then scores
each learning plant with start-up costs against the others' recorded bids three ways:

* ``any``: the env's rule (should come close to ``envs.analysis.best_response``; the
  candidate prices here are coarser: each other offer and a tick under it, the plant's
  marginal cost, and a price far below and far above, inflexible ≤ flexible);
* ``block``: an hour counts as running only when the plant sells at least its min power
  (an all-or-nothing min-power block; other hours it must stay out);
* ``raised``: any dispatch, but the plant produces at least its min power and pays its
  cost, paid only for what it sold (ASSUME's output rule if the extra energy earns
  nothing).

Each is an exact best schedule over the hours (dynamic programming over on/off with the
start-up cost) of the best candidate per hour. The policy's own profit is shown as the env
pays it and under ``raised``. RESULTS.md, twenty-eighth round, has the figures for
``default``. The market itself is unchanged (the others' bids and the clearing are as
recorded); the question it answers is how much of the yardstick's best response, and of
the policy's profit, rests on dispatch below min power.

    PYTHONPATH=$PWD python benchmarks/diag_min_power.py RUN/policies/best [--scenario default]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from agents.config import LearningConfig
from agents.trainer import evaluate_policy
from envs import load_scenario
from envs.analysis import _reference_hour, _slots, best_response, recorded_profit


def best_schedule(on_value: np.ndarray, start_up: float, on_before: bool) -> float:
    """Largest Σ value over the hours a plant runs less ``start_up`` per start (staying out
    is worth 0; ``-inf`` where it cannot run)."""
    on, off = on_value[0] - (0.0 if on_before else start_up), 0.0
    for v in on_value[1:]:
        on, off = v + max(on, off - start_up), max(on, off)
    return max(on, off)


def hour_values(record, i: int, h: int) -> tuple[float, float, float]:
    """Best one-hour profit of agent ``i`` when it runs in hour ``h``: (any dispatch, at
    least min power, output raised to min power)."""
    sl = _slots(record, i)
    cols = list(sl.s_cols)
    own = set(cols)
    v_in, mc = float(record.supply_volume[h, cols[0]]), float(record.supply_cost[h, cols[0]])
    others = [float(record.supply_price[h, j]) for j in range(record.supply_price.shape[1]) if j not in own]
    others += [float(x) for x in np.ravel(record.demand_price[h])]
    base = np.unique(np.round(np.asarray(others), 4))
    lo, hi = float(record.price_floor), float(record.price_cap)
    cands = np.unique(np.concatenate([base - 0.01, base, [mc, lo + 100.0, hi - 100.0]]))
    cands = cands[(cands > lo) & (cands < hi)]
    best = [-np.inf, -np.inf, -np.inf]
    for a, p_in in enumerate(cands):
        for p_fx in cands[a:]:
            profit, q, _ = _reference_hour(record, sl, h, (p_in, p_fx))
            if q <= 1e-6:
                continue
            best[0] = max(best[0], profit)
            if q >= v_in - 1e-6:
                best[1] = max(best[1], profit)
            best[2] = max(best[2], profit - mc * max(v_in - q, 0.0) * record.dt)
    return best[0], best[1], best[2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy", help="a checkpoint folder, e.g. RUN/policies/best")
    ap.add_argument("--scenario", default="default")
    args = ap.parse_args(argv)
    sc = load_scenario(args.scenario)
    cfg = LearningConfig.from_dict(sc.learning_config or {})
    ev, _ = evaluate_policy(sc, cfg, args.policy, seed=0, analysis=False)
    rec = ev.record
    H = rec.n_hours
    suc_all = np.asarray(rec.agent_start_up_cost, dtype=float)
    for i, agent in enumerate(rec.agents):
        if not agent.startswith("plant_") or suc_all[i] <= 0:
            continue
        t0 = time.perf_counter()
        cols = list(_slots(rec, i).s_cols)
        v_in, mc = rec.supply_volume[:, cols[0]], rec.supply_cost[:, cols[0]]
        vals = np.array([hour_values(rec, i, h) for h in range(H)])  # (H, 3)
        on_before = bool(rec.agent_prev_dispatch[0, i] > 0)
        q = rec.supply_accepted[:, cols].sum(axis=1)
        short = (q > 1e-6) & (q < v_in - 1e-6)
        policy = float(recorded_profit(rec, i).sum())
        raised = policy - float((mc * np.maximum(v_in - q, 0.0) * rec.dt)[short].sum())
        br = best_response(rec, i)
        print(f"{agent}: best response {br.best_profit:,.0f} EUR (envs.analysis); here: any dispatch "
              f"{best_schedule(vals[:, 0], suc_all[i], on_before):,.0f}, min-power block "
              f"{best_schedule(vals[:, 1], suc_all[i], on_before):,.0f}, output raised to min power "
              f"{best_schedule(vals[:, 2], suc_all[i], on_before):,.0f}; the policy earns {policy:,.0f} "
              f"({raised:,.0f} with its output raised; below min power in {int(short.sum())} of "
              f"{int((q > 1e-6).sum())} hours it runs) [{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
