#!/usr/bin/env python
"""Simulated hours per second: the mango runtime against the plain training loop.

For each scenario the same training run (same config and seed) is timed as

* ``loop``: :meth:`agents.trainer.Trainer.train`;
* ``mango`` with 1 container (this process, mango's external clock);
* ``mango`` with 2 and 4 containers (this process plus 1 or 3 worker processes on
  127.0.0.1, TCP, mango's distributed clock; at most one worker per learning unit).

Simulated hours count every market hour cleared, training and evaluation. The rate is
measured over the episodes only (``hours_per_s``; process start-up is in ``startup_s``).
Each configuration is run ``--repeat`` times after one warm-up run of the loop; the best
rate is reported. One JSON line per measurement; ``ratio_vs_loop`` = loop rate / this rate
(the overhead factor, goal <= 2 for one container).

    python benchmarks/bench_mango.py                      # tiny and default, small networks
    python benchmarks/bench_mango.py --scenario default --episodes 4 --containers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SMALL = ["actor_hidden_sizes=[32,32]", "critic_hidden_sizes=[32,32]", "train_freq=6h", "gradient_steps=2",
         "batch_size=16", "episodes_collecting_initial_experience=1", "validation_episodes_interval=2"]


def _config(scenario, episodes: int, preset: str):
    from agents.config import LearningConfig

    cfg = LearningConfig.from_dict(scenario.learning_config or {}, source=scenario.name)
    extra = list(SMALL) if preset == "small" else ["episodes_collecting_initial_experience=1"]
    return cfg.with_overrides(extra + [f"training_episodes={episodes}", "seed=0"])


def run_loop(scenario, cfg, env_options):
    from agents.trainer import Trainer

    tr = Trainer(scenario, cfg, run_dir=None, seed=0, env_options=env_options, progress=False, tensorboard=False,
                 analysis=False)
    t0 = time.perf_counter()
    res = tr.train()
    wall = time.perf_counter() - t0
    H = tr.core.max_cycles
    evals = sum(1 for r in res.history if "eval/reward" in r)
    hours = (res.episodes + evals) * H
    return {"hours": hours, "wall_s": wall, "startup_s": 0.0}


def run_mango(scenario, cfg, env_options, containers: int):
    from agents.mango.runtime import train_mango

    t0 = time.perf_counter()
    res = train_mango(scenario, cfg, seed=0, containers=containers, env_options=env_options, tensorboard=False,
                      analysis=False)
    total = time.perf_counter() - t0
    return {"hours": res.hours, "wall_s": res.wall_time, "startup_s": total - res.wall_time,
            "containers_used": res.containers}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", nargs="*", default=["tiny", "default"])
    p.add_argument("--episodes", type=int, default=None, help="training episodes (default: tiny 12, others 3)")
    p.add_argument("--max-cycles", type=int, default=None, help="episode length in hours (default: whole horizon)")
    p.add_argument("--preset", choices=["small", "scenario"], default="small",
                   help="small networks (32x32, train_freq 6h, 2 gradient steps) or the scenario's learning_config")
    p.add_argument("--containers", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from envs import load_scenario

    torch.set_num_threads(1)
    for name in args.scenario:
        sc = load_scenario(name)
        episodes = args.episodes or (12 if name == "tiny" else 3)
        cfg = _config(sc, episodes, args.preset).with_overrides(["torch_threads=1"])
        env_options = {"max_cycles": args.max_cycles} if args.max_cycles else None
        base = {"bench": "mango_runtime", "scenario": name, "episodes": episodes, "preset": args.preset,
                "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                "torch_threads": 1}
        run_loop(sc, cfg, env_options)  # warm-up (imports, allocator, first updates)
        variants = [("loop", 1)] + [("mango", c) for c in args.containers]
        best: dict[tuple, dict] = {}
        for _ in range(max(1, args.repeat)):
            for kind, c in variants:
                r = run_loop(sc, cfg, env_options) if kind == "loop" else run_mango(sc, cfg, env_options, c)
                r["hours_per_s"] = r["hours"] / max(r["wall_s"], 1e-9)
                key = (kind, c)
                if key not in best or r["hours_per_s"] > best[key]["hours_per_s"]:
                    best[key] = r
        loop_rate = best[("loop", 1)]["hours_per_s"]
        for (kind, c), r in best.items():
            line = dict(base, runtime=kind, containers=c, **{k: (round(v, 3) if isinstance(v, float) else v)
                                                             for k, v in r.items()})
            line["ratio_vs_loop"] = round(loop_rate / r["hours_per_s"], 3)
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
