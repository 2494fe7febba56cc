"""Learning quality: train scenarios x seeds as ``train.py`` does and score the result.

    python benchmarks/bench_quality.py [--scenario default example_02a ...] [--seeds 0 1 2]
                                       [--study-case base] [--set KEY=VALUE ...]
                                       [--no-equilibrium] [--variants STRENGTH] [--out FILE.jsonl]

Each run trains with the scenario's own ``learning_config`` as written (marketzoo's
defaults for the keys it leaves out; ``--set`` overrides, e.g. ``--set
best_response_teacher=100``), one torch thread, then evaluates ``policies/best`` (chosen
by ``best_policy_metric``) in one
deterministic episode, as ``train.py`` does at the end of a run, and scores it with the
exact best-response analysis (``envs.analysis``, storage exact over the episode). Prints
one JSON line per run and a table per scenario: share of the best-response profit (all
learners together, and the worst single learner), joint exploitability, distance to the
equilibrium reference (``envs.analysis.equilibrium``: hourly price RMSE and mean price
difference; "n/a" when the reference does not converge), training wall time, and for each
the mean with a 95 % interval over the seeds (Student t). Storage agents also get
``full_moves_best_response_profit`` in the JSON line: their best response restricted to
whole-volume bids (``storage_moves="full"``, off the state-of-charge grid: the whole
feasible volume at one price, accepted in part where it sets the price), i.e. the best
the env's storage action can do against the same bids. Plants that bid on the env's
grid (``plant_bids: undercut``) get ``grid_best_response_profit``: their best response
restricted to the grid's prices, the best their actions can reach, and
``undercut_learners_best_response_profit``: the same with the prices a tick under another
learner's offer allowed too (the Bertrand-Edgeworth race at a shared price); the line's
``gain_split`` sums the plants' gain within the grid, in that race and at other off-grid
prices, and the other learners' gain (EUR), and the table prints its mean over the seeds
(``agents.evaluation.plant_gain_split``). Plants with start-up costs get
``on_off``: hours run and starts, theirs and their best response's
(``envs.analysis.on_off_comparison``). Every analysed agent gets ``gain_by_hours``: its
gain from deviating split by hour type (``envs.analysis.gain_by_hours``), e.g. the hours
where both sell and its best response withholds more, or less.

``--variants 1`` asks whether a method generalises beyond the markets it was tuned on:
each seed then trains on its own seeded variant of the scenario
(:func:`envs.perturb_scenario`: every unit's costs and capacities, the storage units'
sizes and efficiencies and the demand drawn around the original), scored against that
variant's own best responses and equilibrium.

A bare name that is not a built-in scenario is looked up in ``../shared/scenarios/assume``
(skipped with a JSON line when absent).

Time to quality (the earlier mode of this script: wall clock until an evaluation reaches a
share of the best-response profit, with marketzoo's recommended 02a settings)::

    python benchmarks/bench_quality.py --time-to-quality [--target 0.95] [--budget 120] [--seeds ...]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ASSUME = ROOT.parent / "shared/scenarios/assume"

RECOMMENDED = [
    "episodes_collecting_initial_experience=2", "validation_episodes_interval=1", "action_noise_schedule=linear",
    "gamma=0", "train_freq=24h", "gradient_steps=24", "actor_preactivation_penalty=0.01", "noise_sigma=0.05",
    "training_episodes=30",
]

# two-sided 95 % Student t quantiles by degrees of freedom
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def resolve_scenario(arg: str) -> str | None:
    """A built-in name or folder as given; else the folder of that name among the shared
    ASSUME examples; ``None`` when neither exists."""
    from envs.scenario import list_builtin_scenarios

    if arg in list_builtin_scenarios() or Path(arg).exists():
        return arg
    alt = ASSUME / arg
    return str(alt) if alt.exists() else None


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % interval (Student t; 0 for one value)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = statistics.mean(vals)
    if len(vals) < 2:
        return m, 0.0
    t = _T95.get(len(vals) - 1, 1.96)
    return m, t * statistics.stdev(vals) / math.sqrt(len(vals))


def train_and_score(sc, seed: int, overrides: list[str], eq=None) -> dict:
    """Train one seed like ``train.py`` (best policy reloaded), evaluate and score it."""
    import numpy as np
    import torch

    from agents.config import LearningConfig
    from agents.trainer import Trainer

    torch.set_num_threads(1)
    cfg = LearningConfig.from_dict(sc.learning_config or {}).with_overrides(list(overrides) + ["torch_threads=1"])
    with tempfile.TemporaryDirectory(prefix="mz-quality-") as tmp:
        tr = Trainer(sc, cfg, run_dir=tmp, seed=seed, progress=False, tensorboard=False)
        res = tr.train()
        best = Path(tmp) / "policies" / "best"
        if best.exists():
            tr.learner.load(best)
        ev = tr.evaluate(analysis=True)
        tr.close()
    m = ev.metrics()
    shares = np.asarray(ev.br_share, dtype=float)
    row = {
        "seed": seed, "br_share": m.get("br_share"), "worst_share": float(np.nanmin(shares)) if len(shares) else None,
        "exploitability": m.get("exploitability"), "gain": m.get("gain"), "mean_price": m["mean_price"], "train_s": round(res.wall_time, 1),
        "episodes": res.episodes,
        "agents": {a: {"profit": round(float(p)), "best_response_profit": round(float(b)), "share": round(float(s), 4)}
                   for a, p, b, s in zip(tr.agents, ev.agent_profit, ev.br_profit, shares)},
        "curve": [(r["episode"], round(r["eval/br_share"], 4), round(r["eval/exploitability"], 4),
                   round(r["eval/reward"], 6), round(r["eval/gain"]) if math.isfinite(r.get("eval/gain", math.nan)) else None,
                   round(min((v for k, v in r.items() if k.startswith("eval/br_share_")), default=math.nan), 4))
                  for r in res.history if "eval/br_share" in r],
    }
    if tr.stay_out_report is not None:  # stay_out_fallback acted (or tried)
        row["stay_out"] = tr.stay_out_report
    if tr.markup_report is not None:  # start_up_markup_fallback tried
        row["start_up_markup"] = tr.markup_report
    if tr.tie_report is not None:  # tie_below_cost_fallback tried
        row["tie_below_cost"] = tr.tie_report
    if tr.mix_report is not None:  # actor_mix_fallback tried
        row["actor_mix"] = tr.mix_report
    if tr.search_report is not None:  # profile_search ran
        row["profile_search"] = tr.search_report
    fe = tr.fit_evaluation
    if fe is not None and "br_share" in fe:  # the actors right after the equilibrium teacher's fit
        row["fit_evaluation"] = [-1, round(fe["br_share"], 4), round(fe["exploitability"], 4), round(fe["reward"], 6),
                                 round(fe["gain"])]
    from agents.evaluation import (
        full_moves_best_responses, gain_by_hours_rows, grid_best_responses, on_off_rows, plant_gain_split,
    )

    for a, p in full_moves_best_responses(sc, tr.core, ev).items():  # storage: a lower reference, see the docstring
        row["agents"][a]["full_moves_best_response_profit"] = round(p)
    for a, p in grid_best_responses(tr.eval_core, ev).items():  # plants on the env's grid: what its actions reach
        row["agents"][a]["grid_best_response_profit"] = round(p)
    for a, p in grid_best_responses(tr.eval_core, ev, undercut_learners=True).items():  # ... or a tick under a learner
        row["agents"][a]["undercut_learners_best_response_profit"] = round(p)
    split = plant_gain_split(row["agents"])
    if split:  # the plants' gain by the prices it needs, and the rest (storage, renewables)
        g, r, o = np.sum(list(split.values()), axis=0)
        rest = sum(v["best_response_profit"] - v["profit"] for a, v in row["agents"].items() if a not in split)
        row["gain_split"] = {"grid": round(float(g)), "race": round(float(r)), "other_off_grid": round(float(o)),
                             "others": round(float(rest))}
    for a, o in on_off_rows(ev).items():  # plants with start-up costs
        row["agents"][a]["on_off"] = {k: v for k, v in o.items() if k != "start_up_cost"}
    for a, parts in gain_by_hours_rows(ev).items():  # where each gain lies, by hour type
        row["agents"][a]["gain_by_hours"] = {k: {"hours": v["hours"], "gain": round(v["gain"])} for k, v in parts.items()}
    curve = ([row["fit_evaluation"]] if "fit_evaluation" in row else []) + row["curve"]
    row["select"] = selections(curve, LearningConfig.from_dict(sc.learning_config or {}), res.episodes)
    if eq is not None and eq.converged:
        from envs.equilibrium import distance_to_equilibrium

        d = distance_to_equilibrium(ev.record, eq)
        row.update({"price_rmse_to_eq": d.price_rmse, "mean_price_diff_to_eq": d.mean_price_difference,
                    "profit_ratio_to_eq": {a: (None if not math.isfinite(r) else round(float(r), 4))
                                           for a, r in zip(d.agents, d.profit_ratio)}})
    return row


def selections(curve: list, own, total: int) -> dict:
    """What each ``best_policy_metric`` would have kept, read off one run's evaluation curve
    (training does not depend on the evaluations, so a run with
    ``validation_episodes_interval=1`` shows every choice): for ``reward`` and
    ``br_share`` (highest each) and ``gain`` (lowest), over the evaluations the scenario's
    own config runs (``own``: its ``validation_episodes_interval``) and over all
    evaluations of this run (``all``; with ``best_policy_interval`` also its extra ones).
    Both include the evaluation right after the equilibrium teacher's fit (episode -1)
    when the curve starts with one. Each: ``[episode, share, exploitability]`` of the
    evaluation kept, and for ``gain`` its Σ gain in EUR (its re-evaluation scores the
    same: the evaluation episode is deterministic)."""
    from agents.recorder import validation_due

    out = {}
    for where, rows in (("own", [c for c in curve if c[0] < 0 or validation_due(own, c[0], total)]), ("all", curve)):
        if not rows:
            continue
        by_r = max(rows, key=lambda c: c[3])  # first of equals, as compare_policies keeps
        by_s = max(rows, key=lambda c: c[1] if math.isfinite(c[1]) else -math.inf)
        out[f"reward_{where}"] = list(by_r[:3])
        out[f"br_share_{where}"] = list(by_s[:3])
        if all(len(c) > 4 for c in rows):
            by_g = min(rows, key=lambda c: c[4] if c[4] is not None and math.isfinite(c[4]) else math.inf)
            out[f"gain_{where}"] = list(by_g[:3]) + [by_g[4]]
    return out


def fmt(values: list[float], digits: int = 3) -> str:
    m, h = mean_ci(values)
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{digits}f} ± {h:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def quality(args) -> None:
    from envs import load_scenario, perturb_scenario

    machine = f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}".strip()
    table = []
    for name in args.scenario:
        path = resolve_scenario(name)
        if path is None:
            print(json.dumps({"bench": "quality", "scenario": name, "skipped": "not found"}), flush=True)
            continue
        base = load_scenario(path, study_case=args.study_case)
        eq = None
        rows = []
        for seed in args.seeds:
            # --variants: every seed trains on its own seeded variant (and reference)
            sc = perturb_scenario(base, seed, args.variants) if args.variants else base
            if not args.no_equilibrium and (eq is None or args.variants):
                from envs.analysis import equilibrium

                t0 = time.perf_counter()
                eq = equilibrium(sc)
                print(json.dumps({"bench": "quality_equilibrium", "scenario": sc.name, "converged": bool(eq.converged),
                                  "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
            r = train_and_score(sc, seed, args.overrides, eq)
            r.update({"bench": "quality", "scenario": sc.name, "study_case": sc.study_case,
                      "overrides": args.overrides, "machine": machine, "date": time.strftime("%Y-%m-%d")})
            if args.variants:
                r["variant"] = {"of": base.name, "seed": seed, "strength": args.variants}
            line = json.dumps(r)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
            rows.append(r)
        table.append((f"{base.name} (variants, strength {args.variants:g})" if args.variants else base.name, rows))
    print()
    print("| scenario | seeds | share of BR profit | worst learner's share | exploitability | price RMSE to eq. "
          "| mean price diff. to eq. | training wall time s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in table:
        col = lambda k: [r.get(k) for r in rows if r.get(k) is not None]  # noqa: E731
        print(f"| {name} | {len(rows)} | {fmt(col('br_share'))} | {fmt(col('worst_share'))} | "
              f"{fmt(col('exploitability'))} | {fmt(col('price_rmse_to_eq'), 2)} | {fmt(col('mean_price_diff_to_eq'), 2)} "
              f"| {fmt(col('train_s'), 0)} |")
        per_seed = ", ".join(f"{r['seed']}: {r['br_share']:.3f}/{r['exploitability']:.3f}" for r in rows)
        print(f"|   per seed (share/exploitability) | {per_seed} | | | | | | |")
        splits = [r["gain_split"] for r in rows if "gain_split" in r]
        if splits:  # mean k EUR over the seeds
            m = {k: statistics.fmean(s[k] for s in splits) / 1e3 for k in splits[0]}
            print(f"|   gain, k EUR: plants within the grid / a tick under another learner / other off-grid prices; "
                  f"the other learners | {len(splits)} | {m['grid']:.0f} / {m['race']:.0f} / {m['other_off_grid']:.0f}; "
                  f"{m['others']:.0f} | | | | | |")
        for key in sorted({k for r in rows for k in r.get("select", {})}):
            sel = [r["select"][key] for r in rows if key in r.get("select", {})]
            print(f"|   kept by {key} | {len(sel)} | {fmt([v[1] for v in sel])} | | {fmt([v[2] for v in sel])} | | | "
                  f"episodes {[v[0] for v in sel]} |")


# ---------------------------------------------------------------------------- time to quality


def run_seed(scenario, seed: int, target: float, budget: float, overrides: list[str]) -> dict:
    import torch

    from agents.config import LearningConfig
    from agents.trainer import Trainer

    torch.set_num_threads(1)
    cfg = LearningConfig.from_dict(scenario.learning_config).with_overrides(overrides + ["torch_threads=1"])
    tr = Trainer(scenario, cfg, run_dir=None, seed=seed, progress=False, tensorboard=False, analysis=False)
    train_clock = 0.0
    eval_clock = 0.0
    best = 0.0
    reached = None
    curve = []
    for ep in range(cfg.training_episodes):
        t0 = time.perf_counter()
        tr.run_episode()  # training episode ep
        train_clock += time.perf_counter() - t0
        if ep + 1 < cfg.episodes_collecting_initial_experience:
            continue
        t1 = time.perf_counter()
        ev = tr.evaluate(analysis=True)
        eval_clock += time.perf_counter() - t1
        share = float(ev.br_share.mean())
        curve.append((ep, round(train_clock, 2), round(share, 4)))
        best = max(best, share)
        if share >= target and reached is None:
            reached = train_clock
            break
        if train_clock > budget:
            break
    return {"seed": seed, "reached_s": reached, "best_share": round(best, 4), "train_s": round(train_clock, 2),
            "eval_s": round(eval_clock, 2), "episodes": ep + 1, "curve": curve}


def time_to_quality(args) -> None:
    from envs import load_scenario

    path = resolve_scenario(args.scenario[0]) if args.scenario else str(ASSUME / "example_02a")
    if path is None or not Path(path).exists() and "/" in path:
        print(json.dumps({"skipped": f"{args.scenario} not found"}))
        return
    sc = load_scenario(path)
    overrides = ([] if args.assume_config else list(RECOMMENDED)) + args.overrides
    rows = []
    for s in args.seeds:
        r = run_seed(sc, s, args.target, args.budget, overrides)
        r.update({"bench": "time_to_quality", "scenario": sc.name, "target": args.target, "overrides": overrides})
        print(json.dumps(r), flush=True)
        rows.append(r)
    reached = [r["reached_s"] for r in rows if r["reached_s"] is not None]
    summary = {
        "bench": "time_to_quality_summary", "scenario": sc.name, "target": args.target, "seeds": args.seeds,
        "reached": f"{len(reached)}/{len(rows)}",
        "mean_s": round(statistics.mean(reached), 2) if reached else None,
        "stdev_s": round(statistics.stdev(reached), 2) if len(reached) > 1 else None,
        "min_s": round(min(reached), 2) if reached else None, "max_s": round(max(reached), 2) if reached else None,
        "best_share_mean": round(statistics.mean(r["best_share"] for r in rows), 4),
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}".strip(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(summary))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=None,
                   help="built-in names, folders or names of ../shared/scenarios/assume examples "
                   "(default: default example_02a example_02b many; time-to-quality: example_02a)")
    p.add_argument("--study-case", default="base")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--no-equilibrium", action="store_true", help="skip the equilibrium reference (distance columns n/a)")
    p.add_argument("--variants", type=float, default=0.0, metavar="STRENGTH",
                   help="train each seed on its own seeded variant of the scenario (envs.perturb_scenario: "
                        "costs, capacities, storage and demand drawn around the original; 1 = the documented "
                        "ranges), with its own equilibrium reference: does the method generalise?")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--time-to-quality", action="store_true", help="the time-to-quality mode (see above)")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--budget", type=float, default=120.0, help="time to quality: training seconds per seed")
    p.add_argument("--assume-config", action="store_true", help="time to quality: the scenario's own learning_config")
    args = p.parse_args()
    if args.time_to_quality:
        time_to_quality(args)
        return
    if args.scenario is None:
        args.scenario = ["default", "example_02a", "example_02b", "many"]
    quality(args)


if __name__ == "__main__":
    main()
