"""Diagnostic (dev): train some learners while the others keep a fixed policy.

Loads a checkpoint (e.g. a run's ``policies/best``), then trains only the units named in
``--learn``. The other learning units act with their loaded actors, without exploration
noise and without updates, so each trained unit faces a stationary market: a single-agent
problem with the same networks, buffer, noise and schedule as in training. Every
``--every`` episodes the deterministic evaluation and its exact best-response analysis
print each unit's profit against its best response.

If a unit cannot come near its exact best response even here, the gap is in learning a
best response at all, not in the learners chasing each other. RESULTS.md, nineteenth
round, has the figures for ``default``.

    PYTHONPATH=$PWD python benchmarks/diag_frozen_opponents.py RUN/policies/best --learn plant_ccgt-1
    PYTHONPATH=$PWD python benchmarks/diag_frozen_opponents.py RUN/policies/best --learn plant_ccgt-2 --reinit

``--reinit`` gives the trained units fresh networks (actor and critics) instead of the
loaded ones. Not part of the test suite; it reaches into the learner (it wraps
``Learner.act`` and ``MATD3.update``), so it is a tool for reading the trainer, not an API.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from agents.config import LearningConfig
from agents.matd3 import MATD3
from agents.trainer import Trainer
from envs import load_scenario


def _copy_agents(dst: list[torch.Tensor], src: list[torch.Tensor], agents: list[int]) -> None:
    with torch.no_grad():
        for d, s in zip(dst, src):
            for j in agents:
                d[j].copy_(s[j])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy", help="checkpoint folder, e.g. RUN/policies/best")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--learn", required=True, help="comma-separated learning units to train")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=3, help="evaluate every N episodes")
    ap.add_argument("--reinit", action="store_true", help="fresh networks for the trained units")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="learning_config overrides")
    a = ap.parse_args()

    sc = load_scenario(a.scenario)
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["torch_threads=1", f"training_episodes={a.episodes}", *a.set])
    tr = Trainer(sc, cfg, run_dir=None, seed=a.seed, progress=False, tensorboard=False)
    learner, algo = tr.learner, tr.learner.algo
    learner.load(a.policy)
    names = learner.agents
    unknown = [u for u in a.learn.split(",") if u not in names]
    if unknown:
        raise SystemExit(f"--learn: {unknown} are not learning units of {a.scenario!r}; they are {names}")
    trained = [names.index(u) for u in a.learn.split(",")]
    fixed = [i for i in range(learner.n) if i not in trained]
    if a.reinit:
        fresh = MATD3(learner.n, learner.obs_dim, learner.act_dims, learner.unique_obs_len,
                      actor_hidden_sizes=cfg.actor_hidden_sizes, critic_hidden_sizes=cfg.critic_hidden_sizes,
                      seed=a.seed + 99)
        for mine, new in ((algo.actor_params, fresh.actor_params), (algo.actor_target_params, fresh.actor_target_params),
                          (algo.critic_params, fresh.critic_params),
                          (algo.critic_target_params, fresh.critic_target_params)):
            _copy_agents(mine, new, trained)
    kept = [[p.detach().clone() for p in ps] for ps in (algo.actor_params, algo.actor_target_params)]
    update = algo.update

    def update_trained_only(*args, **kw):
        out = update(*args, **kw)
        for ps, ks in zip((algo.actor_params, algo.actor_target_params), kept):
            _copy_agents(ps, ks, fixed)  # the fixed units' actors stay as loaded
        return out

    algo.update = update_trained_only
    act = learner.act

    def act_fixed_plain(obs, *, explore, random=False, noise_scale=None):
        out = act(obs, explore=explore, random=random, noise_scale=noise_scale)
        if explore or random:  # the fixed units bid their loaded actor's action, no noise
            out[:, fixed] = act(obs, explore=False)[:, fixed]
        return out

    learner.act = act_fixed_plain

    def report(tag: str) -> None:
        ev = tr.evaluate(analysis=True)
        share = np.asarray(ev.agent_profit) / np.maximum(np.asarray(ev.br_profit), 1e-9)
        units = "  ".join(f"{n} {p / 1e3:,.0f}k of {b / 1e3:,.0f}k ({s:.2f})"
                          for n, p, b, s in zip(names, ev.agent_profit, ev.br_profit, share))
        print(f"{tag:>22}  exploitability {ev.exploitability:.3f}  {units}", flush=True)

    print(f"training {[names[i] for i in trained]}; fixed: {[names[i] for i in fixed]}", flush=True)
    report("loaded")
    t0 = time.perf_counter()
    for ep in range(a.episodes):
        tr.run_episode()
        if ep + 1 >= cfg.episodes_collecting_initial_experience and ((ep + 1) % a.every == 0 or ep + 1 == a.episodes):
            report(f"episode {ep + 1} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
