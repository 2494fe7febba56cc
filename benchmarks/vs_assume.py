"""marketzoo vs ASSUME on the same ASSUME scenarios, from one invocation.

For each scenario (default: ASSUME's ``example_02a`` and ``example_02b`` from
``../shared/scenarios/assume``) it runs both systems and prints one JSON line per
measurement, then one line of ratios (ASSUME time / marketzoo time, > 1 = marketzoo faster;
for ``quality`` marketzoo's share / ASSUME's):

``sim``
    Plain simulation, every unit bidding by rule: ASSUME's world with learning switched off
    and every ``*_learning`` bidding strategy replaced by its ``*_naive`` counterpart (bid
    the marginal cost), timed around ``World.run()`` (scenario loading excluded), once with
    no output (``sim``) and once writing its results to SQLite (``sim_db``, ASSUME's usual
    set-up; its prices feed the parity check). marketzoo: the PettingZoo ``ParallelEnv``
    (dict API) and ``envs.VectorMarketEnv`` at ``B = 1`` and ``B = 256``, every learner
    bidding its marginal cost (:func:`envs.single_agent.rule_actions`), whole episodes
    including resets. Figure: ``clearings_per_s`` (hourly markets cleared per second; one
    per copy for the vector env).
``train_episode``
    One MATD3 training episode at the scenario's ``learning_config`` (``train_freq``,
    ``gradient_steps``, ``batch_size``, networks 256-128): ASSUME's ``run_learning`` with
    ``training_episodes = 4``, ``episodes_collecting_initial_experience = 1`` (no
    evaluation episode), each ``World.run()`` timed (``setup_s``: the world set-up
    ASSUME repeats between episodes, not in the figure); marketzoo's
    :class:`agents.trainer.Trainer` (``num_envs = 1``) with the same schedule,
    ``Trainer.run_episode`` timed. Episode 0 collects random experience (no updates,
    ``collect_episode_s``), episodes 1-3 learn (``learning_episode_s``: their median). ASSUME shortens
    ``train_freq`` so that it divides the horizon (100h over 720h -> 90h); marketzoo is given
    the same shortened value so both do the same number of gradient steps.
``grad_step``
    One MATD3 gradient step (critic update every step, actor and targets every
    ``policy_delay = 2``-th; timed over an even number of steps) at the scenario's
    batch size on a replay buffer of random transitions: ASSUME's
    ``TD3.update_policy()`` with ``gradient_steps = G`` (divided by ``G``), marketzoo's
    ``MATD3.update``.

Both systems train with the same number of torch threads (``--threads``, default 1 --
marketzoo's default; ASSUME would otherwise take one per core, and on a busy 2-core
machine two threads make every gradient step several times slower for either system).
Timings are best-of-repeats (gradient steps) or medians (episodes); other load on the
machine still shows, so compare ratios from one run.
``parity``
    Hourly clearing prices when both are fed identical bids -- every unit at its marginal
    cost: ASSUME's SQLite ``market_meta`` prices vs the marketzoo ``ParallelEnv``'s, on the
    hours both cleared (ASSUME's first product delivers one hour after the start, so it
    clears one hour fewer). Tolerance ``1e-6`` EUR/MWh: both read the same CSV inputs and
    clear the same merit order in float64, so any difference beyond rounding is a real
    disagreement (the CSV export would round to 5 significant digits; SQLite keeps float64).

``quality``
    Learning quality after the same wall-clock budget (``--quality-budget``, default 60 s
    of training per system; 0 skips it). ASSUME: ``run_learning`` with the scenario's own
    learning_config (its evaluation episodes count towards the budget, they are part of
    its training procedure); the episode loop is cut before the episode that would end
    further past the budget than it starts before it, the last policies are saved, and
    ASSUME's own final run (learning off, ``trained_policies_load_path`` = the last
    policies, no noise) writes its orders to SQLite. Those orders become an
    :class:`envs.record.EpisodeRecord` (``benchmarks/assume_record.py``: every unit's bids
    per hour, the unit's marginal cost from the marketzoo scenario, the inelastic demand,
    ASSUME's accepted volumes and prices; ``reclear_max_abs_diff`` checks that
    :func:`envs.market.clear_market` re-clears them to ASSUME's prices) and
    :func:`envs.analysis.exploitability` gives ``br_share`` (recorded profit / exact
    per-hour best-response profit, mean over the learning units) and the joint
    ``exploitability``. marketzoo: the :class:`agents.trainer.Trainer` with
    ``bench_quality.RECOMMENDED`` settings (``--quality-settings assume``: the scenario's
    learning_config), same cut rule, at most its ``training_episodes``; then
    ``Trainer.evaluate(analysis=True)``. Seed 0 for marketzoo, ASSUME's own seeding; one
    run each, so the figure is noisy. ``quality_summary`` puts the two shares side by side;
    the ratio line gets ``quality_br_share`` (marketzoo / ASSUME) when ASSUME's share is
    positive. ASSUME's evaluation covers 719 hours (its first product delivers at 01:00),
    marketzoo's 720.

ASSUME runs in a subprocess (``--assume-python``, default: this interpreter), so it can
live in its own virtual environment when it cannot be installed next to marketzoo;
``assume-framework[learning]==0.6.0`` installs into marketzoo's environment
(``pip install -e ".[bench-assume]"``; checked with torch 2.13, pandas 3.1, numpy 2.4,
mango-agents 2.4). Without ASSUME the marketzoo half still runs and the ASSUME lines
say why they are missing.

Examples::

    python benchmarks/vs_assume.py                     # both scenarios, ~12 minutes (~5 of them the quality rows)
    python benchmarks/vs_assume.py --quick             # example_02a only, shorter timings
    python benchmarks/vs_assume.py --assume-python /path/to/assume-venv/bin/python
    python benchmarks/vs_assume.py --only-quality --quality-budget 60   # the quality row only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSUME_DIR = ROOT.parent / "shared" / "scenarios" / "assume"


# =========================================================================== ASSUME side
# Runs inside the ASSUME interpreter: imports only the standard library, numpy, pandas,
# yaml, torch and assume (never marketzoo).


def _assume_copy(src: Path, dst: Path, *, naive: bool, overrides: dict | None = None) -> None:
    """Copy an ASSUME scenario folder; with ``naive`` every learning strategy becomes its
    naive counterpart and learning is switched off; ``overrides`` update learning_config."""
    import pandas as pd
    import yaml

    shutil.copytree(src, dst)
    if naive:
        for f in dst.glob("*_units.csv"):
            df = pd.read_csv(f)
            for col in [c for c in df.columns if c.startswith("bidding_")]:
                df[col] = df[col].astype(str).str.replace("_learning", "_naive", regex=False).where(df[col].notna())
            df.to_csv(f, index=False)
    cfg_path = dst / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    for case in cfg.values():
        lc = case.setdefault("learning_config", {})
        if naive:
            lc["learning_mode"] = False
        lc.update(overrides or {})
    cfg_path.write_text(yaml.safe_dump(cfg))


def _assume_world(inputs: Path, scenario: str, study_case: str, db: str = ""):
    import logging

    from assume import World
    from assume.scenario.loader_csv import load_scenario_folder

    logging.getLogger("assume").setLevel(logging.ERROR)
    world = World(database_uri=db, export_csv_path="", log_level="ERROR")
    load_scenario_folder(world, inputs_path=str(inputs), scenario=scenario, study_case=study_case)
    return world


def _assume_sim(args: dict) -> dict:
    """Plain naive simulation; with ``db`` also the clearing prices (float64 from SQLite)."""
    import pandas as pd

    src = Path(args["scenario_dir"])
    name = src.name
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        _assume_copy(src, inputs / name, naive=True)
        os.chdir(tmp)
        for variant, db in (("sim", ""), ("sim_db", f"sqlite:///{tmp}/out/assume.db")):
            world = _assume_world(inputs, name, args["study_case"], db)
            t0 = time.perf_counter()
            world.run()
            dt = time.perf_counter() - t0
            res = {"seconds": dt}
            if db:
                import sqlalchemy

                eng = sqlalchemy.create_engine(db)
                df = pd.read_sql("SELECT product_start, price FROM market_meta", eng)
                df = df.sort_values("product_start")
                res["hours"] = int(len(df))
                res["times"] = pd.to_datetime(df["product_start"]).dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()
                res["prices"] = df["price"].astype(float).tolist()
                if args.get("orders"):
                    res["orders"] = _read_orders(eng, f"{name}_{args['study_case']}")
            out[variant] = res
    hours = out["sim_db"]["hours"]
    for v in ("sim", "sim_db"):
        out[v]["hours"] = hours
        out[v]["clearings_per_s"] = hours / out[v]["seconds"]
    return out


def _assume_train(args: dict) -> dict:
    """``training_episodes = 4`` (1 collecting + 3 learning), each ``World.run`` timed."""
    import assume.scenario.loader_csv as loader
    from assume import World

    src = Path(args["scenario_dir"])
    name = src.name
    runs: list[float] = []
    starts: list[float] = []
    orig_run = World.run

    def timed_run(self):
        t0 = time.perf_counter()
        starts.append(t0)
        orig_run(self)
        runs.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        # validation interval 3: evaluation would need episode % 3 == 0 and episode >= 1 + 3
        overrides = {"training_episodes": 4, "episodes_collecting_initial_experience": 1,
                     "validation_episodes_interval": 3, "trained_policies_save_path": f"{tmp}/policies",
                     "device": "cpu"}
        _assume_copy(src, inputs / name, naive=False, overrides=overrides)
        os.chdir(tmp)
        world = _assume_world(inputs, name, args["study_case"], db="")
        World.run = timed_run
        try:
            t0 = time.perf_counter()
            loader.run_learning(world)
            total = time.perf_counter() - t0
        finally:
            World.run = orig_run
        lc = world.scenario_data["config"]["learning_config"]
    cycle = [b - a for a, b in zip(starts, starts[1:])]
    return {"episode_run_seconds": runs, "episode_cycle_seconds": cycle, "total_seconds": total,
            "train_freq": str(lc["train_freq"]), "gradient_steps": lc["gradient_steps"], "batch_size": lc["batch_size"],
            "threads": __import__("torch").get_num_threads()}


def _read_orders(eng, simulation: str) -> dict:
    """ASSUME's ``market_orders`` rows of one simulation (columns as lists) and its
    ``market_meta`` clearing prices, float64 from SQLite."""
    import pandas as pd

    q = ("SELECT start_time, unit_id, bid_id, price, volume, accepted_volume FROM market_orders "
         "WHERE simulation = :sim")
    od = pd.read_sql(sqlalchemy_text(q), eng, params={"sim": simulation})
    mm = pd.read_sql(sqlalchemy_text("SELECT product_start, price FROM market_meta WHERE simulation = :sim"), eng,
                     params={"sim": simulation})
    od["start_time"] = pd.to_datetime(od["start_time"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    mm["product_start"] = pd.to_datetime(mm["product_start"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return {"orders": {c: od[c].tolist() for c in od.columns},
            "market": {c: mm[c].tolist() for c in mm.columns}}


def sqlalchemy_text(q: str):
    import sqlalchemy

    return sqlalchemy.text(q)


def _assume_quality(args: dict) -> dict:
    """Train with the scenario's own learning_config for about ``budget`` wall-clock
    seconds (``run_learning``'s episode loop is cut before the episode that would end
    further past the budget than it starts before it), save the last policies, then
    ASSUME's own final run -- learning off, the trained policies loaded, no noise --
    written to SQLite; returns that run's orders and prices."""
    import sqlalchemy

    import assume.scenario.loader_csv as loader

    src = Path(args["scenario_dir"])
    name = src.name
    budget = float(args["budget"])
    episodes: list[float] = []
    state: dict = {"stopped_before": None}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        # relative to the scenario folder (ASSUME prefixes every *_path with it)
        overrides = {"trained_policies_save_path": "trained_policies", "device": "cpu", "continue_learning": False}
        if args.get("training_episodes"):
            overrides["training_episodes"] = int(args["training_episodes"])
        _assume_copy(src, inputs / name, naive=False, overrides=overrides)
        os.chdir(tmp)
        db = f"sqlite:///{tmp}/out/assume.db"
        world = _assume_world(inputs, name, args["study_case"], db)

        def last_dir() -> str:
            return f"{world.learning_role.learning_config.trained_policies_save_path}/last_policies"

        def save_last():
            world.learning_role.rl_algorithm.save_params(directory=last_dir())

        def budgeted(iterable, *_, **__):
            start = last = time.perf_counter()
            for ep in iterable:
                now = time.perf_counter()
                if ep > 1:
                    episodes.append(now - last)
                    if (now - start) + 0.5 * (now - last) > budget:
                        state["stopped_before"] = ep
                        save_last()
                        return
                last = now
                yield ep
            episodes.append(time.perf_counter() - last)
            if not Path(last_dir()).is_dir():  # fewer episodes than ASSUME saves after
                save_last()

        orig = loader.tqdm
        loader.tqdm = budgeted
        try:
            t0 = time.perf_counter()
            loader.run_learning(world)
            train_s = time.perf_counter() - t0
        finally:
            loader.tqdm = orig
        lc = world.scenario_data["config"]["learning_config"]
        t1 = time.perf_counter()
        world.run()  # learning_mode off, policies from last_policies, no noise
        eval_s = time.perf_counter() - t1
        eng = sqlalchemy.create_engine(db)
        sims = pd_read(eng, "SELECT DISTINCT simulation FROM market_orders")["simulation"].tolist()
        sim = f"{name}_{args['study_case']}"
        out = _read_orders(eng, sim)
        eng.dispose()
    n_done = (state["stopped_before"] - 1) if state["stopped_before"] else len(episodes)
    return {**out, "train_s": train_s, "eval_s": eval_s, "episodes_done": n_done,
            "episode_cycle_seconds": episodes, "stopped_by_budget": state["stopped_before"] is not None,
            "training_episodes_config": int(lc["training_episodes"]),
            "episodes_collecting_initial_experience": int(lc["episodes_collecting_initial_experience"]),
            "simulations_in_db": sims, "threads": __import__("torch").get_num_threads()}


def pd_read(eng, q: str):
    import pandas as pd

    return pd.read_sql(sqlalchemy_text(q), eng)


def _assume_grad(args: dict) -> dict:
    """ASSUME's ``update_policy`` on a buffer of random transitions."""
    from collections import defaultdict

    import numpy as np
    import torch

    from assume.reinforcement_learning.buffer import ReplayBuffer

    src = Path(args["scenario_dir"])
    name = src.name
    G = int(args["grad_steps"])
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        _assume_copy(src, inputs / name, naive=False,
                     overrides={"gradient_steps": G, "trained_policies_save_path": f"{tmp}/policies", "device": "cpu"})
        os.chdir(tmp)
        world = _assume_world(inputs, name, args["study_case"], db="")
        role = world.learning_role
        algo = role.rl_algorithm
        algo.initialize_policy()
        n = len(role.rl_strats)
        buf = ReplayBuffer(buffer_size=10_000, obs_dim=algo.obs_dim, act_dim=algo.act_dim, n_rl_units=n,
                           device=role.device, float_type=role.float_type)
        rng = np.random.default_rng(0)
        T = 2_000
        buf.add(rng.standard_normal((T, n, algo.obs_dim)).astype(np.float32),
                rng.uniform(-1, 1, (T, n, algo.act_dim)).astype(np.float32),
                rng.standard_normal((T, n, 1)).astype(np.float32))
        role.load_inter_episodic_data({
            "buffer": buf, "actors_and_critics": algo.extract_policy(), "max_eval": defaultdict(lambda: -1e9),
            "all_eval": defaultdict(list), "avg_all_eval": [], "episodes_done": 2, "eval_episodes_done": 0,
        })
        algo.update_policy()  # warm-up
        best = float("inf")
        for _ in range(int(args["repeats"])):
            t0 = time.perf_counter()
            algo.update_policy()
            best = min(best, (time.perf_counter() - t0) / G)
        actor = next(iter(role.rl_strats.values())).actor
        hidden = [m.out_features for m in actor.modules() if isinstance(m, torch.nn.Linear)][:-1]
    return {"seconds_per_step": best, "n_agents": n, "obs_dim": algo.obs_dim, "act_dim": algo.act_dim,
            "batch_size": role.learning_config.batch_size, "actor_hidden": hidden, "threads": torch.get_num_threads()}


def assume_worker(task: str, args: dict, out_path: str) -> None:
    fn = {"sim": _assume_sim, "train": _assume_train, "grad": _assume_grad, "quality": _assume_quality}[task]
    if args.get("threads"):
        import torch

        torch.set_num_threads(int(args["threads"]))
    res = fn(args)
    import assume

    res["assume_version"] = getattr(assume, "__version__", None) or _dist_version("assume-framework")
    Path(out_path).write_text(json.dumps(res))


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def run_assume(python: str, task: str, args: dict, timeout: float) -> dict:
    """Run one ASSUME task in a subprocess; ``{"error": ...}`` when it cannot run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, str(Path(__file__).resolve()), "--assume-worker", task, json.dumps(args), str(out)]
        env = {**os.environ, "TQDM_DISABLE": "1"}
        try:
            # cwd: importing assume creates "assume.log" in the working directory
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"error": f"ASSUME {task} took longer than {timeout:.0f} s"}
        if p.returncode != 0 or not out.exists():
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            return {"error": f"ASSUME {task} failed (exit {p.returncode}): " + " | ".join(tail)}
        return json.loads(out.read_text())


def assume_available(python: str) -> str | None:
    """``None`` if ``python`` can import assume, else the reason."""
    try:
        with tempfile.TemporaryDirectory() as tmp:  # importing assume writes assume.log into the cwd
            p = subprocess.run([python, "-c", "import assume, assume.scenario.loader_csv"], capture_output=True,
                               text=True, timeout=300, cwd=tmp)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot run {python}: {err}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return f"assume-framework is not importable by {python}: {last} (pip install -e \".[bench-assume]\")"
    return None


# =========================================================================== marketzoo side


def _mz_imports():
    sys.path.insert(0, str(ROOT))
    import numpy as np

    import envs
    from envs.single_agent import rule_actions

    return np, envs, rule_actions


def mz_sim(scenario, min_time: float) -> list[dict]:
    """Clearings/s of the ParallelEnv and the vector env, every learner at marginal cost."""
    np, envs, rule_actions = _mz_imports()
    out = []
    env = envs.parallel_env(scenario)
    core = env.core
    # the rule actions must be valid env actions (within [-1, 1]) to go through the dict API
    horizon = core.max_cycles
    acts = np.zeros((horizon, core.n, core.max_act))
    core.reset(np.random.default_rng(0))
    for t in range(horizon):
        acts[t] = rule_actions(core)[0]
        core.step(acts[t][None])
    clipped = bool(np.abs(acts).max() > 1.0)
    dims = [int(env.action_space(a).shape[0]) for a in env.possible_agents]
    dict_acts = [{a: acts[t, i, :d].astype(np.float32) for i, (a, d) in enumerate(zip(env.possible_agents, dims))}
                 for t in range(horizon)]
    steps, t0 = 0, time.perf_counter()
    while True:
        env.reset(seed=0)
        for t in range(horizon):
            env.step(dict_acts[t])
        steps += horizon
        if time.perf_counter() - t0 >= min_time:
            break
    dt = time.perf_counter() - t0
    out.append({"impl": "parallel_env", "B": 1, "clearings": steps, "seconds": dt, "clearings_per_s": steps / dt,
                "actions_clipped": clipped})
    for B in (1, 256):
        v = envs.VectorMarketEnv(scenario, num_envs=B)
        a = np.broadcast_to(acts[:, None], (horizon, B, core.n, core.max_act)).astype(np.float32)
        steps, t0 = 0, time.perf_counter()
        while True:
            v.reset(seed=0)
            for t in range(horizon):
                v.step(a[t])
            steps += horizon * B
            if time.perf_counter() - t0 >= min_time:
                break
        dt = time.perf_counter() - t0
        out.append({"impl": f"vector_env_B{B}", "B": B, "clearings": steps, "seconds": dt,
                    "clearings_per_s": steps / dt})
    return out


def mz_prices(scenario):
    """Hourly prices of one ParallelEnv episode, every learner at marginal cost."""
    np, envs, rule_actions = _mz_imports()
    env = envs.parallel_env(scenario)
    core = env.core
    env.reset(seed=0)
    prices = []
    while env.agents:
        a = rule_actions(core)[0]
        if np.abs(a).max() > 1.0:  # not an env action: step the core itself (no clipping)
            out = core.step(a[None])
            prices.append(float(out.price[0]))
            if core.done:
                break
            continue
        acts = {ag: a[i, : env.action_space(ag).shape[0]] for i, ag in enumerate(env.possible_agents)}
        _, _, _, _, info = env.step(acts)
        prices.append(next(iter(info.values()))["clearing_price"])
    times = [str(np.datetime_as_string(t, unit="s")) for t in core.scenario.times[: len(prices)]]
    return times, prices


def _assume_train_freq_hours(scenario, train_freq_h: float) -> int:
    """ASSUME's ``sync_train_freq_with_simulation_horizon``: the largest whole number of
    hours that splits the horizon (end - start) into equal intervals of at most train_freq."""
    total_h = scenario.n_hours * scenario.time_step_hours  # end_date - start_date
    q, r = divmod(total_h, train_freq_h)
    if r == 0:
        return int(train_freq_h)
    return int(total_h / (int(q) + 1))


def mz_train(scenario, train_freq_h: int | None, threads: int | None = None) -> dict:
    """Per-episode wall time of the Trainer at the scenario's learning_config."""
    sys.path.insert(0, str(ROOT))
    from agents.config import LearningConfig
    from agents.trainer import Trainer

    lc = dict(scenario.learning_config or {})
    lc.update({"training_episodes": 4, "episodes_collecting_initial_experience": 1,
               "validation_episodes_interval": 100, "device": "cpu", "num_envs": 1, "torch_threads": threads})
    if train_freq_h:
        lc["train_freq"] = f"{train_freq_h}h"
    cfg = LearningConfig.from_dict(lc)
    tr = Trainer(scenario, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, analysis=False)
    times = []
    for ep in range(4):
        t0 = time.perf_counter()
        tr.run_episode()  # training episode ep
        times.append(time.perf_counter() - t0)
    import torch

    return {"episode_seconds": times, "n_updates": tr.n_updates, "train_freq": cfg.train_freq,
            "gradient_steps": cfg.gradient_steps, "batch_size": cfg.batch_size,
            "actor_hidden": list(cfg.actor_hidden_sizes), "critic_hidden": list(cfg.critic_hidden_sizes),
            "threads": torch.get_num_threads()}


def mz_grad(scenario, batch: int, steps: int, repeats: int, threads: int | None = None) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from agents.config import LearningConfig
    from agents.trainer import Trainer

    lc = dict(scenario.learning_config or {})
    lc.update({"device": "cpu", "num_envs": 1, "batch_size": batch, "torch_threads": threads})
    tr = Trainer(scenario, LearningConfig.from_dict(lc), run_dir=None, seed=0, progress=False,
                 tensorboard=False, analysis=False)
    rng = np.random.default_rng(0)
    core = tr.core
    obs = core.reset(rng)
    for _ in range(min(core.max_cycles, 2_000)):  # a buffer of random transitions
        a = rng.uniform(-1, 1, (core.B, core.n, core.max_act)) * tr.mask
        out = core.step(a)
        nxt = core.observe()
        tr.buffer.add(obs, a, out.reward)
        obs = nxt
        if core.done:
            break
    for _ in range(4):
        tr.algo.update(tr.buffer.sample(batch))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            m = tr.algo.update(tr.buffer.sample(batch))
        float(m["losses/critic_loss"])  # one synchronisation at the end
        best = min(best, (time.perf_counter() - t0) / steps)
    return {"seconds_per_step": best, "n_agents": core.n, "obs_dim": core.obs_dim, "batch_size": batch,
            "actor_hidden": list(tr.config.actor_hidden_sizes), "threads": torch.get_num_threads()}


def _bench_quality():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_quality", ROOT / "benchmarks" / "bench_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def mz_quality(scenario, budget: float, settings: str = "recommended", seed: int = 0,
               threads: int | None = 1) -> dict:
    """Train the :class:`agents.trainer.Trainer` for about ``budget`` wall-clock seconds
    (same cut rule as the ASSUME side: stop before the episode that would end further past
    the budget than it starts before it; at most the config's ``training_episodes``), then
    one deterministic evaluation episode and its exact best responses."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from agents.config import LearningConfig
    from agents.trainer import Trainer
    from envs.analysis import exploitability

    overrides = list(_bench_quality().RECOMMENDED) if settings == "recommended" else []
    if threads:
        torch.set_num_threads(int(threads))
        overrides.append(f"torch_threads={int(threads)}")
    cfg = LearningConfig.from_dict(scenario.learning_config).with_overrides(overrides + ["device=cpu"])
    tr = Trainer(scenario, cfg, run_dir=None, seed=seed, progress=False, tensorboard=False, analysis=False)
    clock, times = 0.0, []
    for ep in range(cfg.training_episodes):
        t0 = time.perf_counter()
        tr.run_episode()  # training episode ep
        times.append(time.perf_counter() - t0)
        clock += times[-1]
        if clock + 0.5 * times[-1] > budget:
            break
    t1 = time.perf_counter()
    ev = tr.evaluate(analysis=True)
    ex = exploitability(ev.record) if ev.record is not None else None
    eval_s = time.perf_counter() - t1
    out = {"train_s": clock, "eval_s": eval_s, "episodes_done": len(times), "settings": settings,
           "overrides": overrides, "training_episodes_config": cfg.training_episodes,
           "br_share": float(np.mean(ev.br_share)), "agent_profit": ev.agent_profit.tolist(),
           "br_profit": ev.br_profit.tolist(), "exploitability": ev.exploitability,
           "mean_price": ev.mean_price, "eval_hours": int(len(ev.prices)) if ev.prices is not None else None}
    if ex is not None:
        out["br_share_recheck"] = float(np.mean(ex.share))
    return out


def quality_from_assume(res: dict, scenario) -> dict:
    """ASSUME's evaluation-run orders -> EpisodeRecord -> exact best responses."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np

    from assume_record import episode_record_from_assume, reclear_prices
    from envs.analysis import exploitability

    rec = episode_record_from_assume(res["orders"], res["market"], scenario)
    ex = exploitability(rec)
    reclear = float(np.abs(reclear_prices(rec) - rec.clearing_price).max())
    return {"br_share": float(np.mean(ex.share)), "agent_share": dict(zip(ex.agents, map(float, ex.share))),
            "agent_profit": ex.recorded_profit.tolist(), "br_profit": ex.best_response_profit.tolist(),
            "exploitability": ex.joint, "mean_price": float(np.mean(rec.clearing_price)), "eval_hours": rec.n_hours,
            "reclear_max_abs_diff": reclear}


# =========================================================================== main


def machine() -> dict:
    import numpy as np
    import torch

    return {"machine": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "loadavg_1min_at_start": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=None,
                   help="ASSUME scenario folders or names under --assume-dir (default: example_02a example_02b)")
    p.add_argument("--assume-dir", default=str(ASSUME_DIR))
    p.add_argument("--study-case", default="base")
    p.add_argument("--assume-python", default=sys.executable, help="interpreter with assume-framework installed")
    p.add_argument("--skip-assume", action="store_true", help="marketzoo figures only")
    p.add_argument("--quick", action="store_true", help="example_02a only, shorter timings")
    p.add_argument("--grad-steps", type=int, default=50, help="gradient steps per timing (even)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both systems (default 1, marketzoo's default; 0: each system's own "
                        "default -- ASSUME then uses torch's, one per core)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per ASSUME task")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--quality-budget", type=float, default=60.0,
                   help="wall-clock training seconds per system for the learning-quality row (0: skip it)")
    p.add_argument("--quality-settings", choices=["recommended", "assume"], default="recommended",
                   help="marketzoo's learning settings in the quality row: bench_quality.RECOMMENDED "
                        "(default) or the scenario's own learning_config (ASSUME always uses its own)")
    p.add_argument("--only-quality", action="store_true", help="skip sim/train_episode/grad_step")
    a = p.parse_args(argv)
    names = a.scenarios or (["example_02a"] if a.quick else ["example_02a", "example_02b"])
    min_time = 1.0 if a.quick else 3.0
    repeats = 2 if a.quick else 5
    G = a.grad_steps + (a.grad_steps % 2)
    info = machine()
    sink = open(a.out, "a") if a.out else None

    def emit(rec: dict) -> None:
        line = json.dumps({**rec, **info, "quick": a.quick}, default=float)
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")

    why_not = "skipped (--skip-assume)" if a.skip_assume else assume_available(a.assume_python)
    if why_not:
        emit({"bench": "vs_assume", "system": "assume", "error": why_not})
    _, envs, _ = _mz_imports()
    for name in names:
        path = Path(name) if Path(name).is_dir() else Path(a.assume_dir) / name
        if not path.is_dir():
            emit({"bench": "vs_assume", "scenario": name, "error": f"scenario folder {path} not found"})
            continue
        sc = envs.load_scenario(str(path), study_case=a.study_case)
        common = {"bench": "vs_assume", "scenario": path.name, "study_case": a.study_case,
                  "hours": sc.n_hours, "n_agents": len(sc.learning_units)}
        threads = a.threads or None
        wargs = {"scenario_dir": str(path), "study_case": a.study_case, "grad_steps": G, "repeats": repeats,
                 "threads": threads}
        ratios = {}

        if not a.only_quality:
            ratios.update(_speed_rows(a, sc, common, wargs, why_not, emit, min_time, repeats, G, threads))

        # ---- learning quality after the same wall-clock budget
        if a.quality_budget > 0:
            mq = mz_quality(sc, a.quality_budget, a.quality_settings, threads=threads)
            emit({**common, "system": "marketzoo", "what": "quality", "budget_s": a.quality_budget, **mq})
            aq = None if why_not else run_assume(a.assume_python, "quality", {**wargs, "budget": a.quality_budget},
                                                 a.timeout + a.quality_budget)
            if aq is not None and "error" in aq:
                emit({**common, "system": "assume", "what": "quality", "budget_s": a.quality_budget, **aq})
            elif aq is not None:
                q = quality_from_assume(aq, sc)
                keep = ("train_s", "eval_s", "episodes_done", "stopped_by_budget", "training_episodes_config",
                        "episodes_collecting_initial_experience", "assume_version", "threads")
                emit({**common, "system": "assume", "what": "quality", "budget_s": a.quality_budget,
                      **{k: aq[k] for k in keep if k in aq}, **q})
                emit({**common, "system": "both", "what": "quality_summary", "budget_s": a.quality_budget,
                      "marketzoo_br_share": round(mq["br_share"], 4), "assume_br_share": round(q["br_share"], 4),
                      "marketzoo_train_s": round(mq["train_s"], 1), "assume_train_s": round(aq["train_s"], 1),
                      "marketzoo_exploitability": mq["exploitability"], "assume_exploitability": q["exploitability"],
                      "marketzoo_settings": a.quality_settings})
                # a ratio only means something when ASSUME's policy earns money
                if q["br_share"] > 0:
                    ratios["quality_br_share"] = mq["br_share"] / q["br_share"]
        if ratios:
            emit({**common, "system": "both", "what": "ratios (marketzoo speed-up: ASSUME time / marketzoo time; "
                                                      "quality: marketzoo share / ASSUME share)",
                  **{k: round(v, 2) for k, v in ratios.items()}})
    if sink:
        sink.close()
    return 0


def _speed_rows(a, sc, common, wargs, why_not, emit, min_time, repeats, G, threads) -> dict:
    """sim + parity, train_episode and grad_step rows; returns their ratios."""
    ratios = {}
    if True:
        # ---- plain simulation + parity
        mz = mz_sim(sc, min_time)
        for rec in mz:
            emit({**common, "system": "marketzoo", "what": "sim", **rec})
        asim = None if why_not else run_assume(a.assume_python, "sim", wargs, a.timeout)
        if asim is not None and "error" in asim:
            emit({**common, "system": "assume", "what": "sim", **asim})
            asim = None
        if asim is not None:
            for v in ("sim", "sim_db"):
                emit({**common, "system": "assume", "what": v, "assume_version": asim["assume_version"],
                      **{k: asim[v][k] for k in ("hours", "seconds", "clearings_per_s")}})
            base = asim["sim"]["clearings_per_s"]
            for rec in mz:
                ratios[f"sim_{rec['impl']}"] = rec["clearings_per_s"] / base
            ratios["sim_parallel_env_vs_assume_sim_db"] = mz[0]["clearings_per_s"] / asim["sim_db"]["clearings_per_s"]
            import numpy as np

            times, prices = mz_prices(sc)
            mzp = dict(zip(times, prices))
            at, ap = asim["sim_db"]["times"], asim["sim_db"]["prices"]
            common_t = [t for t in at if t in mzp]
            d = np.abs(np.array([mzp[t] for t in common_t]) - np.array([ap[at.index(t)] for t in common_t]))
            tol = 1e-6
            emit({**common, "system": "both", "what": "parity", "hours_compared": len(common_t),
                  "hours_marketzoo": len(prices), "hours_assume": len(ap), "max_abs_diff": float(d.max()),
                  "mean_abs_diff": float(d.mean()), "hours_over_tol": int((d > tol).sum()), "tolerance": tol,
                  "mean_price": float(np.mean(ap)), "equal": bool((d <= tol).all())})

        # ---- training episode
        tf = sc.learning_config.get("train_freq", "24h") if sc.learning_config else "24h"
        tf_h = float(str(tf).rstrip("h")) if str(tf).endswith("h") else None
        mt = mz_train(sc, _assume_train_freq_hours(sc, tf_h) if tf_h else None, threads)
        emit({**common, "system": "marketzoo", "what": "train_episode", **mt,
              "collect_episode_s": mt["episode_seconds"][0],
              "learning_episode_s": statistics.median(mt["episode_seconds"][1:])})
        at_ = None if why_not else run_assume(a.assume_python, "train", wargs, a.timeout)
        if at_ is not None and "error" in at_:
            emit({**common, "system": "assume", "what": "train_episode", **at_})
        elif at_ is not None:
            runs = at_["episode_run_seconds"]
            cyc = at_["episode_cycle_seconds"]
            rec = {**common, "system": "assume", "what": "train_episode", **at_,
                   "collect_episode_s": runs[0], "learning_episode_s": statistics.median(runs[1:]),
                   "setup_s": statistics.median([c - r for c, r in zip(cyc, runs)]) if cyc else None}
            emit(rec)
            ratios["train_learning_episode"] = rec["learning_episode_s"] / statistics.median(mt["episode_seconds"][1:])
            ratios["train_collect_episode"] = rec["collect_episode_s"] / mt["episode_seconds"][0]

        # ---- gradient step
        batch = int((sc.learning_config or {}).get("batch_size", 128))
        mg = mz_grad(sc, batch, G, repeats, threads)
        emit({**common, "system": "marketzoo", "what": "grad_step", **mg})
        ag = None if why_not else run_assume(a.assume_python, "grad", wargs, a.timeout)
        if ag is not None and "error" in ag:
            emit({**common, "system": "assume", "what": "grad_step", **ag})
        elif ag is not None:
            emit({**common, "system": "assume", "what": "grad_step", **ag})
            ratios["grad_step"] = ag["seconds_per_step"] / mg["seconds_per_step"]
    return ratios


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--assume-worker":
        assume_worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
