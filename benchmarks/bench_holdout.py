"""Held-out evaluation: train on varied weeks vs one fixed week, evaluate on a held-out week.

    python benchmarks/bench_holdout.py [--scenario PATH] [--seeds 0 1] [--episodes 30]
                                       [--holdout 168] [--set KEY=VALUE ...]

Two training setups, the same seed, episode length, number of episodes and settings:

* ``varied``: every training episode is a random week (``episode_hours=168,
  random_start=True``) of the hours before the held-out window, with 5 % demand and
  availability noise -- ``envs.episode_options`` of a learning_config with
  ``episode_hours``, ``random_start``, ``demand_noise``, ``availability_noise`` and
  ``holdout_hours``;
* ``fixed``: every training episode is the same first week, noise-free (what training
  did before these options, cut to one week so that both see as many hours).

Both are evaluated (deterministic policy, no noise) on the held-out last
``--holdout`` hours (``envs.episode_options(cfg, evaluation=True)``: ``holdout_hours``
+ ``eval_window=True``) after every training episode from the end of the initial
exploration on; each run prints one JSON line with the final and best held-out
evaluation reward, profit, mean price and best-response share, and the curve. Defaults:
example_02a from ``../shared/scenarios/assume`` (720 hours: three weeks to train on and
the fourth held out) with bench_quality.py's recommended settings; the built-in
``default`` (336 hours) when the folder is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXAMPLE_02A = ROOT.parent / "shared" / "scenarios" / "assume" / "example_02a"
RECOMMENDED = [
    "episodes_collecting_initial_experience=2", "validation_episodes_interval=1", "action_noise_schedule=linear",
    "gamma=0", "train_freq=24h", "gradient_steps=24", "actor_preactivation_penalty=0.01", "noise_sigma=0.05",
]


def setups(holdout: int, week: int) -> dict[str, dict]:
    """learning_config episode keys of the two setups."""
    return {
        "varied": {"episode_hours": week, "random_start": True, "demand_noise": 0.05, "availability_noise": 0.05,
                   "holdout_hours": holdout},
        "fixed": {"episode_hours": week, "holdout_hours": holdout},
    }


def run(scenario, name: str, keys: dict, seed: int, episodes: int, overrides: list[str]) -> dict:
    import torch

    import envs
    from agents.config import LearningConfig
    from agents.trainer import Trainer

    torch.set_num_threads(1)
    # the episode keys go into the config, so that the trainer knows the held-out hours:
    # its evaluations run exactly them, and its best-response teacher learns on the training
    # hours instead (RESULTS.md, thirtieth round: before, this script refreshed the teacher
    # from the held-out evaluations)
    cfg = LearningConfig.from_dict(scenario.learning_config).with_overrides(
        overrides + [f"training_episodes={episodes}", "torch_threads=1"]).with_overrides(keys)
    train_opts = envs.episode_options(keys)
    eval_opts = envs.episode_options(keys, evaluation=True)
    tr = Trainer(scenario, cfg, run_dir=None, seed=seed, progress=False, tensorboard=False, analysis=False)
    clock = 0.0
    curve = []
    starts = []
    for ep in range(episodes):
        t0 = time.perf_counter()
        tr.run_episode()
        starts.append(tr.core.t0)
        clock += time.perf_counter() - t0
        if ep + 1 < cfg.episodes_collecting_initial_experience:
            continue
        ev = tr.evaluate(analysis=True)
        curve.append({"episode": ep, "reward": round(ev.reward, 5), "profit": round(ev.profit, 1),
                      "mean_price": round(ev.mean_price, 3),
                      "br_share": None if ev.br_share is None else round(float(ev.metrics()["br_share"]), 4)})
    last = curve[-1]
    best = max(curve, key=lambda r: r["reward"])
    return {
        "bench": "holdout", "setup": name, "scenario": scenario.name, "seed": seed, "episodes": episodes,
        "train_options": train_opts, "eval_options": eval_opts, "eval_window": list(tr.eval_core.window),
        "train_starts": sorted(set(starts)), "train_seconds": round(clock, 1),
        "final": last, "best": best, "curve": curve,
        "machine": platform.node(), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", help="scenario folder or built-in name (default: example_02a, else 'default')")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--holdout", type=int, default=168, help="held-out hours at the end (default 168: one week)")
    ap.add_argument("--week", type=int, default=168, help="training episode length in hours")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="learning_config overrides")
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)

    import envs

    name = args.scenario or (str(EXAMPLE_02A) if (EXAMPLE_02A / "config.yaml").is_file() else "default")
    sc = envs.load_scenario(name)
    for seed in args.seeds:
        for setup, keys in setups(args.holdout, args.week).items():
            rec = run(sc, setup, keys, seed, args.episodes, RECOMMENDED + args.set)
            line = json.dumps(rec)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
