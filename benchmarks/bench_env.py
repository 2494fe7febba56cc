"""Environment throughput: market clearings per second, single env and vector env.

Measurements (one JSON line each):

* ``headline``: the PettingZoo ``ParallelEnv`` through its dict API on example_02a (when
  ``../shared`` has it) and the built-in ``default``, in interleaved rounds (median
  reported): ``variant="fast"`` (the fused single-copy step, what the env uses),
  ``variant="generic"`` (the same env with ``use_fast_path = False``: the array path)
  and, with ``--ref GITREF``, ``variant="ref:GITREF"``: the env as committed at that
  git revision (its ``envs/`` exported with ``git archive`` and run in a subprocess), so
  before/after figures come from one run on one machine. ``steps_per_s`` is wall-clock;
  ``steps_per_cpu_s`` divides by the process's CPU time instead, which is closer to an
  idle machine's wall-clock rate when other processes share the cores.
* ``parallel_dict``: the PettingZoo ``ParallelEnv`` through its dict API (one dict of
  actions per step, as an RL library drives it); ``B = 1``.
* ``core``: the raw :class:`envs.MarketCore` array path with ``B = 1`` (actions as one
  array; no dict handling, validation or info dicts). Since the fused single-copy step
  (``envs/fast.py``) the ``ParallelEnv`` is faster than this path.
* ``vector``: :class:`envs.VectorMarketEnv` at ``B`` = 1, 64, 1024, 4096.
* ``scaling_parallel`` / ``scaling_vector``: generated scenarios from 2 to 200 units
  and 1 to 100 learning agents (168 hours), single env and vector env at ``B = 256``.
* ``memory``: peak memory of the vector env at the recommended batch (the smallest
  measured batch within 10 % of the best clearings/s), measured in a fresh subprocess:
  ``tracemalloc`` peak of the Python/NumPy allocations while building the env and
  stepping it, and the process's ``ru_maxrss`` before and after.

``clearings_per_s = steps * B / seconds`` (one clearing = one hourly market of one copy);
``agent_steps_per_s = clearings_per_s * n_agents``. Actions are random but fixed
(drawn once from a seeded generator, cycled); episodes that end are reset inside the
timed loop (the reset time is included). Each measurement runs for at least
``--min-time`` seconds after one warm-up step.

Examples::

    python benchmarks/bench_env.py --quick
    python benchmarks/bench_env.py --headline-only --ref e98ed4c   # before/after, one run
    python benchmarks/bench_env.py --out benchmarks/env_results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# a child measuring another revision's envs/ (see --ref) puts that copy first instead
sys.path.insert(0, os.environ.get("MARKETZOO_BENCH_ENVS_ROOT", str(ROOT)))

import envs  # noqa: E402
from envs.data import Demands, MarketConfig, Plants, Renewables, Scenario, Storages  # noqa: E402

EXAMPLE_02A = ROOT.parent / "shared" / "scenarios" / "assume" / "example_02a"
BATCHES = (1, 64, 1024, 4096)
SWEEP = ((2, 1), (10, 1), (10, 10), (50, 1), (50, 10), (50, 50), (200, 1), (200, 10), (200, 100))
SWEEP_QUICK = ((2, 1), (50, 10), (200, 100))
SWEEP_BATCH = 256
N_ACTION_SETS = 64  # distinct random action sets, cycled


def machine() -> dict:
    return {
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def synthetic_scenario(n_units: int, n_agents: int, hours: int = 168, seed: int = 0) -> Scenario:
    """``n_units`` thermal plants with marginal costs 10..150 EUR/MWh, the ``n_agents``
    first (by a random draw) learning; inelastic demand around 70 % of the capacity with a
    daily swing."""
    if not 1 <= n_agents <= n_units:
        raise ValueError(f"need 1 <= n_agents <= n_units, got {n_agents}, {n_units}")
    rng = np.random.default_rng(seed)
    P, T = n_units, hours
    max_power = rng.uniform(100.0, 1000.0, P).round()
    min_power = (max_power * rng.uniform(0.0, 0.4, P)).round()
    base_mc = rng.uniform(10.0, 150.0, P)
    mc = base_mc[None, :] * (1.0 + 0.05 * rng.standard_normal((T, P)))  # fuel price noise
    learning = np.zeros(P, bool)
    learning[rng.choice(P, n_agents, replace=False)] = True
    names = tuple(f"pp_{i}" for i in range(P))
    plants = Plants(
        names=names, technology=("thermal",) * P, fuel_type=("natural gas",) * P, operator=("op",) * P,
        bidding=tuple("powerplant_energy_learning" if f else "powerplant_energy_naive" for f in learning),
        max_power=max_power, min_power=min_power, efficiency=np.full(P, 0.5), emission_factor=np.zeros(P),
        additional_cost=np.zeros(P), start_up_cost=(max_power * rng.uniform(10.0, 100.0, P)).round(),
        marginal_cost=mc, availability=np.ones((T, P)), learning=learning,
    )
    hour = np.arange(T)
    demand = 0.7 * max_power.sum() * (1.0 + 0.15 * np.sin(2 * np.pi * (hour - 6) / 24))
    e = np.zeros(0)
    ren = Renewables(names=(), technology=(), operator=(), bidding=(), capacity=e, availability=np.zeros((T, 0)),
                     marginal_cost=e, learning=np.zeros(0, bool))
    sto = Storages(names=(), technology=(), operator=(), bidding=(), max_power_charge=e, max_power_discharge=e,
                   efficiency_charge=e, efficiency_discharge=e, min_soc=e, max_soc=e, capacity=e, initial_soc=e,
                   additional_cost_charge=e, additional_cost_discharge=e, learning=np.zeros(0, bool))
    dem = Demands(names=("demand",), technology=("inflex",), volume=demand[:, None], price=np.array([3000.0]))
    times = np.datetime64("2023-01-02T00:00", "ns") + hour * np.timedelta64(1, "h")
    return Scenario(
        name=f"synthetic_{n_units}u_{n_agents}a", study_case="base", source="bench_env.py", times=times,
        time_step_hours=1.0, plants=plants, renewables=ren, storages=sto, demands=dem, market=MarketConfig(),
        learning_config={"max_bid_price": 200.0},
    )


def n_units(sc: Scenario) -> int:
    return len(sc.plants) + len(sc.renewables) + len(sc.storages)


def _timed(step, reset, min_time: float) -> tuple[int, float]:
    """Call ``step(k)`` (returns True when the episode ended) until ``min_time`` passed."""
    reset()
    step(0)  # warm-up
    global LAST_CPU_SECONDS
    reset()
    k = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    while True:
        for _ in range(16):
            if step(k):
                reset()
            k += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            LAST_CPU_SECONDS = time.process_time() - c0
            return k, dt


LAST_CPU_SECONDS = float("nan")  # CPU time of the last _timed loop (this process)


def bench_parallel(sc: Scenario, min_time: float, fast: bool = True) -> tuple[int, float, int]:
    env = envs.parallel_env(sc)
    if not fast:
        env.use_fast_path = False
    rng = np.random.default_rng(0)
    acts = [{a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.possible_agents}
            for _ in range(N_ACTION_SETS)]

    def step(k):
        env.step(acts[k % N_ACTION_SETS])
        return not env.agents

    steps, dt = _timed(step, lambda: env.reset(seed=0), min_time)
    return steps, dt, len(env.possible_agents)


def bench_core(sc: Scenario, min_time: float) -> tuple[int, float, int]:
    core = envs.MarketCore(sc, num_envs=1)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (N_ACTION_SETS, 1, core.n, core.max_act))
    gen = np.random.default_rng(0)

    def step(k):
        core.step(acts[k % N_ACTION_SETS])
        core.observe()
        return core.done

    steps, dt = _timed(step, lambda: core.reset(gen), min_time)
    return steps, dt, core.n


def bench_vector(sc: Scenario, B: int, min_time: float) -> tuple[int, float, int]:
    env = envs.VectorMarketEnv(sc, num_envs=B)
    rng = np.random.default_rng(0)
    sets = max(1, min(N_ACTION_SETS, (64 << 20) // max(1, 8 * B * env.n_agents * env.max_act)))  # <= 64 MB
    acts = rng.uniform(-1, 1, (sets, B, env.n_agents, env.max_act)).astype(np.float32)

    def step(k):
        return bool(env.step(acts[k % sets])[3].all())

    steps, dt = _timed(step, lambda: env.reset(seed=0), min_time)
    return steps, dt, env.n_agents


def record(what: str, sc: Scenario, B: int, steps: int, dt: float, n_agents: int, **extra) -> dict:
    cps = steps * B / dt
    return {
        "bench": "env", "what": what, "scenario": sc.name, "n_units": n_units(sc), "n_agents": n_agents,
        "hours": sc.n_hours, "B": B, "steps": steps, "seconds": round(dt, 4),
        "clearings_per_s": round(cps, 1), "agent_steps_per_s": round(cps * n_agents, 1), **extra,
    }


def memory_probe(scenario: str, B: int, steps: int) -> dict:
    """Run in a fresh process: peak memory of building and stepping the vector env."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sc = envs.load_scenario(scenario) if not scenario.startswith("synthetic") else synthetic_scenario(50, 10)
    tracemalloc.start()
    env = envs.VectorMarketEnv(sc, num_envs=B)
    env.reset(seed=0)
    acts = np.random.default_rng(0).uniform(-1, 1, (B, env.n_agents, env.max_act)).astype(np.float32)
    for _ in range(steps):
        if env.step(acts)[3].all():
            env.reset()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"tracemalloc_peak_mib": round(peak / 2**20, 2), "ru_maxrss_before_mib": round(rss0 / 1024, 1),
            "ru_maxrss_peak_mib": round(rss1 / 1024, 1), "memory_steps": steps}


def _headline_scenarios() -> list[str]:
    out = [str(EXAMPLE_02A)] if (EXAMPLE_02A / "config.yaml").is_file() else []
    return out + ["default"]


def _ref_probe(ref_root: Path, scenario: str, min_time: float) -> dict:
    """steps/s of the ParallelEnv of the revision exported to ``ref_root``, in a child."""
    env = {**os.environ, "MARKETZOO_BENCH_ENVS_ROOT": str(ref_root)}
    child = subprocess.run(
        [sys.executable, __file__, "--ref-probe", scenario, str(min_time)],
        capture_output=True, text=True, check=True, env=env,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def headline(min_time: float, rounds: int, ref: str | None, emit) -> None:
    """The single-env figures of issue 12: fast vs generic (vs a git revision), interleaved."""
    import tempfile

    tmp = None
    if ref:
        tmp = tempfile.TemporaryDirectory()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "envs"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp.name], input=archive.stdout, check=True)
    try:
        for scenario in _headline_scenarios():
            sc = envs.load_scenario(scenario)
            rates: dict[str, list[float]] = {}
            cpu_rates: dict[str, list[float]] = {}
            n = 0
            for _ in range(rounds):
                for variant in ("fast", "generic") + ((f"ref:{ref}",) if ref else ()):
                    if variant.startswith("ref:"):
                        r = _ref_probe(Path(tmp.name), scenario, min_time)
                        rate, cpu_rate = r["steps_per_s"], r["steps_per_cpu_s"]
                    else:
                        steps, dt, n = bench_parallel(sc, min_time, fast=variant == "fast")
                        rate, cpu_rate = steps / dt, steps / LAST_CPU_SECONDS
                    rates.setdefault(variant, []).append(rate)
                    cpu_rates.setdefault(variant, []).append(cpu_rate)
            for variant, rs in rates.items():
                emit({"bench": "env", "what": "headline", "variant": variant, "scenario": sc.name, "n_agents": n,
                      "B": 1, "rounds": rounds, "steps_per_s_median": round(float(np.median(rs)), 1),
                      "steps_per_s_rounds": [round(r, 1) for r in rs],
                      "steps_per_cpu_s_median": round(float(np.median(cpu_rates[variant])), 1),
                      "speedup_vs_fast": round(float(np.median(rates["fast"]) / np.median(rs)), 2),
                      "load_avg_1min": round(os.getloadavg()[0], 2)})
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs and a small sweep (about 20 s)")
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    ap.add_argument("--min-time", type=float, help="seconds per measurement (default 2, --quick 0.3)")
    ap.add_argument("--scenario", help="scenario for the main measurements (default: example_02a if present, "
                                       "else the built-in 'default')")
    ap.add_argument("--ref", help="also measure the ParallelEnv of this git revision (e.g. the commit before "
                                  "a change) in the headline, in the same run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the headline (median reported)")
    ap.add_argument("--headline-only", action="store_true", help="only the headline single-env measurements")
    ap.add_argument("--memory-probe", nargs=3, metavar=("SCENARIO", "B", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument("--ref-probe", nargs=2, metavar=("SCENARIO", "MIN_TIME"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_probe:  # child process of the memory measurement
        name, B, steps = args.memory_probe
        print(json.dumps(memory_probe(name, int(B), int(steps))))
        return 0
    if args.ref_probe:  # child process measuring another revision's env (see --ref)
        name, mt = args.ref_probe
        steps, dt, n = bench_parallel(envs.load_scenario(name), float(mt))
        print(json.dumps({"steps_per_s": steps / dt, "steps_per_cpu_s": steps / LAST_CPU_SECONDS, "n_agents": n,
                          "envs": str(Path(envs.__file__).parent)}))
        return 0

    min_time = args.min_time if args.min_time is not None else (0.3 if args.quick else 2.0)
    if args.scenario:
        scenario = args.scenario
    else:
        scenario = str(EXAMPLE_02A) if (EXAMPLE_02A / "config.yaml").is_file() else "default"
    info = machine()
    out = open(args.out, "a") if args.out else None

    def emit(rec: dict) -> None:
        line = json.dumps({**rec, **info, "quick": args.quick})
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    headline(min_time, 1 if args.quick else args.rounds, args.ref, emit)
    if args.headline_only:
        if out:
            out.close()
        return 0

    sc = envs.load_scenario(scenario)
    steps, dt, n = bench_parallel(sc, min_time)
    emit(record("parallel_dict", sc, 1, steps, dt, n))
    steps, dt, n = bench_core(sc, min_time)
    emit(record("core", sc, 1, steps, dt, n))
    rates = {}
    for B in BATCHES:
        steps, dt, n = bench_vector(sc, B, min_time)
        rec = record("vector", sc, B, steps, dt, n)
        rates[B] = rec["clearings_per_s"]
        emit(rec)

    for units, agents in SWEEP_QUICK if args.quick else SWEEP:
        ssc = synthetic_scenario(units, agents)
        steps, dt, n = bench_parallel(ssc, min_time / 2)
        emit(record("scaling_parallel", ssc, 1, steps, dt, n))
        steps, dt, n = bench_vector(ssc, SWEEP_BATCH, min_time / 2)
        emit(record("scaling_vector", ssc, SWEEP_BATCH, steps, dt, n))

    best = max(rates.values())
    rec_B = min(B for B, r in rates.items() if r >= 0.9 * best)
    mem_steps = 50 if args.quick else 200
    child = subprocess.run(
        [sys.executable, __file__, "--memory-probe", scenario, str(rec_B), str(mem_steps)],
        capture_output=True, text=True, check=True,
    )
    mem = json.loads(child.stdout.strip().splitlines()[-1])
    emit({"bench": "env", "what": "memory", "scenario": sc.name, "n_units": n_units(sc),
          "B": rec_B, "recommended_batch": rec_B, "clearings_per_s": rates[rec_B], **mem})
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
