"""ASSUME's German-market case (example_03a: 143 learning plants, 720 hours, train_freq
10 h) trained with its own learning_config: wall time of a training episode and peak
memory.

    python benchmarks/bench_03a.py [--scenario ../shared/scenarios/assume/example_03a]
                                   [--episodes 2] [--set KEY=VALUE ...]

Episode 0 collects experience with random bids (no updates); every later episode is a
training episode (72 update rounds of gradient_steps each). Prints one JSON line per
episode (wall time, and CPU time of the process, which a loaded machine inflates less)
and a summary line with the peak resident memory and the load average. The GPU
that the scenario asks for (``device: cuda:0``) falls back to the CPU with one warning
when there is none (``envs.scenario.scenario_device``). The replay buffer is sized to
what the run can fill (training_episodes x hours, by the trainer), unless ``--set replay_buffer_size=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default=str(ROOT.parent / "shared" / "scenarios" / "assume" / "example_03a"))
    p.add_argument("--study-case", default="base")
    p.add_argument("--episodes", type=int, default=2, help="episodes to run (the first one only collects)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    import torch

    from agents.config import LearningConfig
    from agents.trainer import Trainer
    from envs.scenario import load_scenario, scenario_device

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 03a's ignored plural columns
        sc = load_scenario(args.scenario, args.study_case)
    cfg = LearningConfig.from_dict(sc.learning_config or {}, source=f"{sc.source} learning_config")
    device = scenario_device(cfg.device, from_scenario=True, cuda_available=torch.cuda.is_available())
    overrides = [f"device={device}", "episodes_collecting_initial_experience=1"]  # the trainer caps the buffer
    cfg = cfg.with_overrides(overrides + list(args.overrides))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, analysis=False)
    setup = time.perf_counter() - t0
    print(json.dumps({"scenario": sc.name, "study_case": sc.study_case, "learners": tr.n, "hours": sc.n_hours,
                      "device": str(tr.device), "train_freq": cfg.train_freq, "gradient_steps": cfg.gradient_steps,
                      "batch_size": cfg.batch_size, "actor": list(cfg.actor_hidden_sizes),
                      "critic": list(cfg.critic_hidden_sizes), "replay_buffer_size": cfg.replay_buffer_size,
                      "torch_threads": torch.get_num_threads(), "setup_s": round(setup, 2)}), flush=True)
    for ep in range(args.episodes):
        t1, c1 = time.perf_counter(), time.process_time()
        stats = tr.run_episode()
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
        print(json.dumps({"episode": ep, "training": ep >= cfg.episodes_collecting_initial_experience,
                          "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "sim_s": round(stats["sim_seconds"], 2),
                          "update_s": round(stats["update_seconds"], 2), "updates": tr.n_updates,
                          "threads": tr.learner.threads.summary}), flush=True)
    t2 = time.perf_counter()
    tr.evaluate(analysis=False)
    ev = time.perf_counter() - t2
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(json.dumps({"evaluation_s": round(ev, 2), "peak_rss_gib": round(peak, 3),
                      "load_before": [round(x, 1) for x in load0], "load_after": [round(x, 1) for x in os.getloadavg()]}))
    tr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
