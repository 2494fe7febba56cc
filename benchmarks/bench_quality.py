"""Time to quality: wall clock until a trained policy reaches a share of its exact
best-response profit in a deterministic evaluation episode.

    python benchmarks/bench_quality.py [--scenario PATH] [--seeds 0 1 2] [--target 0.95]
                                       [--budget 120] [--set KEY=VALUE ...]

Evaluates after every training episode (the evaluation and the best-response analysis
are *not* counted in the training wall clock, reported separately), prints one JSON
line per seed and a summary line with mean and spread. Defaults: example_02a from
``../shared/scenarios/assume`` and marketzoo's recommended settings for it (see
RESULTS.md); pass ``--assume-config`` to use the scenario's own learning_config.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECOMMENDED = [
    "episodes_collecting_initial_experience=2", "validation_episodes_interval=1", "action_noise_schedule=linear",
    "gamma=0", "train_freq=24h", "gradient_steps=24", "actor_preactivation_penalty=0.01", "noise_sigma=0.05",
    "training_episodes=30",
]


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default=str(ROOT.parent / "shared/scenarios/assume/example_02a"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per seed before giving up")
    p.add_argument("--assume-config", action="store_true", help="use the scenario's learning_config unchanged")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    from envs import load_scenario

    if not Path(args.scenario).exists() and "/" in args.scenario:
        print(json.dumps({"skipped": f"{args.scenario} not found"}))
        return
    sc = load_scenario(args.scenario)
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


if __name__ == "__main__":
    main()
