"""One `python train.py` (default scenario) training episode, timed with the fused
`core.step_observe` path and with the former `core.step` + `core.observe`, in one run
(alternating, best of N each). Prints a markdown table for RESULTS.md.

    PYTHONPATH=$PWD python benchmarks/bench_train_episode.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

from agents.config import LearningConfig
from agents.trainer import Trainer
from envs import MarketCore, load_scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sc = load_scenario("default")
    base = LearningConfig.from_dict(sc.learning_config)
    fast = MarketCore.step_observe

    def slow(self, actions, active=None):
        return self.step(actions, active), self.observe()

    rows = []
    for label, extra in (("exploration episode (no updates)", {}),
                         ("training episode (updates every train_freq)", {"episodes_collecting_initial_experience": 0})):
        cfg = base.with_overrides({"training_episodes": 1000, **extra})
        times = {"step + observe": [], "step_observe": []}
        for _ in range(args.repeats):
            for name, fn in (("step + observe", slow), ("step_observe", fast)):
                MarketCore.step_observe = fn
                tr = Trainer(sc, cfg, run_dir=None, seed=1, progress=False, tensorboard=False, analysis=False)
                t0 = time.perf_counter()
                tr.run_episode()
                times[name].append(time.perf_counter() - t0)
        MarketCore.step_observe = fast
        b, a = min(times["step + observe"]), min(times["step_observe"])
        rows.append((label, b, a))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"default scenario, {sc.n_hours if hasattr(sc, 'n_hours') else ''} hours per episode; best of {args.repeats}")
    print("| episode | step + observe (s) | step_observe (s) | speed-up |")
    print("| --- | --- | --- | --- |")
    for label, b, a in rows:
        print(f"| {label} | {b:.3f} | {a:.3f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
