"""Soak test: a million market clearings of the ParallelEnv and the VectorMarketEnv, with
the process's resident memory sampled along the way. Not part of CI.

What is counted: a *clearing* is one market hour of one environment copy. The
ParallelEnv clears once per ``step()``; the VectorMarketEnv clears ``num_envs`` times per
``step()`` (one per copy), so ``--steps 1000000`` means 1,000,000 ``step()`` calls of the
ParallelEnv and 1,000,000 / num_envs calls of the vector env. *Agent steps* are clearings
x agents (every agent acts once per clearing). Episodes run to their end and are reset
with a fresh seed each time (``reset(seed=...)``), with random actions from a seeded
generator, so resets, the action dict path and the clearing are all exercised.

Output: JSON lines -- one per sample (``{"env", "clearings", "rss_mib", "objects",
"elapsed_s", "clearings_per_s"}``) and one summary per env with the RSS after warm-up
(10 % of the run), at the end, the peak, the growth and the slope of a least-squares line
through the samples after warm-up (KiB per 100,000 clearings). Memory is flat when the
growth is a few MiB at most and the slope is near 0.

    nice -n 10 python benchmarks/soak.py                      # both, 1e6 clearings each
    python benchmarks/soak.py --env vector --steps 200000 --num-envs 16
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.parallel import parallel_env  # noqa: E402
from envs.vector import VectorMarketEnv  # noqa: E402


def rss_bytes() -> int:
    """Resident set size of this process now (not the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil  # not Linux: psutil (extra "bench")

        return int(psutil.Process().memory_info().rss)


def _sample(env_name: str, clearings: int, t0: float, samples: list) -> None:
    rss = rss_bytes() / 2**20
    el = time.perf_counter() - t0
    rec = {"env": env_name, "clearings": clearings, "rss_mib": round(rss, 2), "objects": len(gc.get_objects()),
           "elapsed_s": round(el, 1), "clearings_per_s": round(clearings / max(el, 1e-9))}
    samples.append(rec)
    print(json.dumps(rec), flush=True)


def _summary(env_name: str, samples: list, extra: dict) -> dict:
    warm = [s for s in samples if s["clearings"] >= 0.1 * samples[-1]["clearings"]]
    x = np.array([s["clearings"] for s in warm], dtype=float)
    y = np.array([s["rss_mib"] for s in warm], dtype=float)
    slope = float(np.polyfit(x, y, 1)[0]) * 1e5 * 1024 if len(warm) > 2 else 0.0  # KiB per 1e5 clearings
    out = {
        "env": env_name, "summary": True, **extra,
        "clearings": samples[-1]["clearings"], "elapsed_s": samples[-1]["elapsed_s"],
        "clearings_per_s": samples[-1]["clearings_per_s"],
        "rss_after_warmup_mib": warm[0]["rss_mib"], "rss_end_mib": samples[-1]["rss_mib"],
        "rss_peak_mib": max(s["rss_mib"] for s in samples), "rss_growth_mib": round(y[-1] - y[0], 2),
        "rss_slope_kib_per_100k": round(slope, 2),
        "objects_after_warmup": warm[0]["objects"], "objects_end": samples[-1]["objects"],
    }
    print(json.dumps(out), flush=True)
    return out


def soak_parallel(scenario: str, steps: int, n_samples: int, seed: int) -> dict:
    env = parallel_env(scenario)
    rng = np.random.default_rng(seed)
    dims = {a: env.action_space(a).shape[0] for a in env.possible_agents}
    every = max(steps // n_samples, 1)
    samples: list = []
    episode = 0
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for k in range(1, steps + 1):
        if not env.agents:
            episode += 1
            env.reset(seed=seed + episode)
        env.step({a: rng.uniform(-1.0, 1.0, dims[a]).astype(np.float32) for a in env.agents})
        if k % every == 0 or k == steps:
            _sample("parallel", k, t0, samples)
    return _summary("parallel", samples, {"scenario": scenario, "agents": len(env.possible_agents),
                                          "agent_steps": steps * len(env.possible_agents), "episodes": episode + 1,
                                          "step_calls": steps})


def soak_vector(scenario: str, steps: int, num_envs: int, n_samples: int, seed: int) -> dict:
    env = VectorMarketEnv(scenario, num_envs=num_envs)
    rng = np.random.default_rng(seed)
    calls = max(steps // num_envs, 1)
    every = max(calls // n_samples, 1)
    shape = (num_envs, env.n_agents, env.max_act)
    samples: list = []
    episode = 0
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for k in range(1, calls + 1):
        _, _, _, trunc, _ = env.step(rng.uniform(-1.0, 1.0, shape).astype(np.float32))
        if trunc.all():
            episode += 1
            env.reset(seed=seed + episode)
        if k % every == 0 or k == calls:
            _sample("vector", k * num_envs, t0, samples)
    return _summary("vector", samples, {"scenario": scenario, "agents": env.n_agents, "num_envs": num_envs,
                                        "agent_steps": calls * num_envs * env.n_agents, "episodes": episode + 1,
                                        "step_calls": calls})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", choices=("parallel", "vector", "both"), default="both")
    ap.add_argument("--steps", type=int, default=1_000_000, help="clearings per env (default 1,000,000)")
    ap.add_argument("--num-envs", type=int, default=16, help="copies of the vector env (default 16)")
    ap.add_argument("--scenario", default="default", help="scenario name or folder (default: built-in 'default')")
    ap.add_argument("--samples", type=int, default=40, help="RSS samples per env (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(json.dumps({"start": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
                      "numpy": np.__version__, "rss_at_start_mib": round(rss_bytes() / 2**20, 1), **vars(args)}),
          flush=True)
    if args.env in ("parallel", "both"):
        soak_parallel(args.scenario, args.steps, args.samples, args.seed)
    if args.env in ("vector", "both"):
        soak_vector(args.scenario, args.steps, args.num_envs, args.samples, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
