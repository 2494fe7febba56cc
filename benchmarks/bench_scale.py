"""German-market scale: ~150 learning plants, 720 hours, train_freq 10 h, 1 gradient step,
batch 128 (the cadence of ASSUME's 143-learner example_03a).

    python benchmarks/bench_scale.py [--learners 150] [--rule 50] [--hours 720] [--episodes 2]
                                     [--set critic_hidden_sizes=[256,128] ...]

Builds a synthetic scenario in memory (seeded), trains, and prints one JSON line per
training episode (wall time split into simulation and updates) and the peak resident
memory of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def german_scenario(learners: int = 150, rule: int = 50, hours: int = 720, seed: int = 0):
    from envs.data import Demands, MarketConfig, Plants, Renewables, Scenario, Storages

    rng = np.random.default_rng(seed)
    P = learners + rule
    cap = rng.choice([200.0, 400.0, 600.0, 800.0, 1000.0], size=P)
    mc = np.sort(rng.uniform(5, 140, size=P))
    t = np.arange(hours)
    demand = 0.55 * cap.sum() * (1 + 0.15 * np.sin(2 * np.pi * (t - 8) / 24) - 0.08 * ((t // 24) % 7 >= 5))
    learning = np.zeros(P, dtype=bool)
    learning[rng.choice(P, size=learners, replace=False)] = True
    names = tuple(f"unit_{i}" for i in range(P))
    z = np.zeros(P)
    plants = Plants(
        names=names, technology=("thermal",) * P, fuel_type=("gas",) * P, operator=("op",) * P,
        bidding=tuple("powerplant_energy_learning" if f else "powerplant_energy_naive" for f in learning),
        max_power=cap, min_power=0.2 * cap, efficiency=np.full(P, 0.5), emission_factor=z, additional_cost=z,
        start_up_cost=z, marginal_cost=np.broadcast_to(mc, (hours, P)).copy(), availability=np.ones((hours, P)),
        learning=learning,
    )
    e = np.zeros(0)
    ren = Renewables((), (), (), (), e, np.zeros((hours, 0)), e, np.zeros(0, bool))
    sto = Storages((), (), (), (), e, e, e, e, e, e, e, e, e, e, np.zeros(0, bool))
    dem = Demands(("demand",), ("inflex",), demand[:, None], np.array([3000.0]))
    times = np.datetime64("2019-01-01T00:00", "ns") + np.arange(hours) * np.timedelta64(1, "h")
    return Scenario("german_scale", "base", "generated", times, 1.0, plants, ren, sto, dem, MarketConfig(), {"max_bid_price": 100})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learners", type=int, default=150)
    p.add_argument("--rule", type=int, default=50)
    p.add_argument("--hours", type=int, default=720)
    p.add_argument("--episodes", type=int, default=2, help="training episodes with updates (after 1 exploration episode)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    import torch

    from agents.config import LearningConfig
    from agents.trainer import Trainer

    sc = german_scenario(args.learners, args.rule, args.hours)
    over = ["train_freq=10h", "gradient_steps=1", "batch_size=128", "episodes_collecting_initial_experience=1",
            f"training_episodes={args.episodes + 1}", "validation_episodes_interval=1000", f"device={args.device}",
            "replay_buffer_size=100000"] + args.overrides
    if args.threads:
        over.append(f"torch_threads={args.threads}")
    cfg = LearningConfig.from_dict({}).with_overrides(over)
    t0 = time.perf_counter()
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, analysis=False)
    setup = time.perf_counter() - t0
    for ep in range(args.episodes + 1):
        t = time.perf_counter()
        s = tr.run_episode()  # training episode ep
        wall = time.perf_counter() - t
        print(json.dumps({
            "bench": "german_scale", "episode": ep, "exploration_only": ep == 0, "learners": args.learners,
            "units": args.learners + args.rule, "hours": args.hours, "wall_s": round(wall, 2),
            "sim_s": round(s["sim_seconds"], 2), "update_s": round(s["update_seconds"], 2), "updates": tr.n_updates,
            "critic_hidden": list(cfg.critic_hidden_sizes), "actor_hidden": list(cfg.actor_hidden_sizes),
            "critic_input": tr.algo.critic_input_dim, "threads": torch.get_num_threads(), "device": args.device,
        }), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"bench": "german_scale_memory", "peak_rss_mib": round(rss, 1), "setup_s": round(setup, 2),
                      "buffer_mib": round(tr.buffer.nbytes / 2**20, 1)}))


if __name__ == "__main__":
    main()
