"""Screening driver: train like ``train.py`` (best policy reloaded at the end) and score.

    python benchmarks/quality_runs.py --scenario default [--study-case base] [--seeds 0 1 2]
                                      [--set KEY=VALUE ...] [--tag NAME]

Prints one JSON line per seed: final evaluation of ``policies/best`` (share of
best-response profit, total and worst agent, exploitability, per-agent shares), the
evaluation curve and wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def resolve_scenario(arg: str) -> str:
    p = Path(arg)
    if p.exists() or arg in ("default", "tiny", "many"):
        return arg
    alt = ROOT.parent / "shared/scenarios/assume" / arg
    return str(alt) if alt.exists() else arg


def teacher_trainer_class(weight: float, mode: str, margin: float, refresh: int = 0, steps: int = 1, window: int = 1):
    """Phase-A prototype: a Trainer whose evaluations refresh a best-response teacher
    (behaviour cloning of the exact per-hour best responses, one imitation step per actor step)."""
    import numpy as np

    from agents.trainer import Trainer, evaluation_episode, run_episode
    from envs.analysis import exploitability

    class TeacherTrainer(Trainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.teacher = None
            self.n_evals = 0
            self.eval_seconds = 0.0
            self.t_rng = np.random.default_rng([self.seed, 77])
            orig = self.algo.update

            def upd(batch, **kw):
                im = None
                if self.teacher is not None and weight > 0 and (self.algo.n_updates + 1) % self.algo.policy_delay == 0:
                    obs, tgt, w = self.teacher
                    idx = self.t_rng.integers(len(obs), size=len(batch.observations))
                    im = (obs[idx], tgt[idx], w)
                met = orig(batch, imitation=im, **kw)
                if im is not None:
                    for _ in range(steps - 1):
                        idx = self.t_rng.integers(len(obs), size=len(batch.observations))
                        self.algo.imitation_step(obs[idx], tgt[idx], w)
                return met

            self.algo.update = upd

        def run_training_episode(self):
            st = super().run_training_episode()
            ep = self.episode
            if refresh and ep >= self.config.episodes_collecting_initial_experience - 1 and ep % refresh == 0 \
                    and not self.evaluation_due(ep, self.config.training_episodes):
                self.evaluate()
            return st

        def evaluate(self, *, analysis=None):
            t0 = time.perf_counter()
            seen = []

            def act(o):
                seen.append(o.copy())
                return self.act(o, explore=False)

            ev = run_episode(evaluation_episode(self.eval_core, self.scenario, seed=self.seed, analysis=False), act)
            ex = exploitability(ev.record)
            ev.br_profit = np.asarray(ex.best_response_profit, dtype=float)
            ev.br_share = np.asarray(ex.share, dtype=float)
            ev.exploitability = float(ex.joint)
            obs = np.concatenate(seen, axis=0)  # (H, n, od)
            H, n, mact = obs.shape[0], self.n, self.core.max_act
            tgt = np.full((H, n, mact), np.nan, dtype=np.float32)
            for k, a in enumerate(self.agents):
                r = ex.responses[a]
                if r.kind == "storage":
                    continue  # per-hour storage analysis is not a best response over the episode
                ba = r.best_action[:, : self.core.act_dims[k]] - margin
                tgt[:, k, : self.core.act_dims[k]] = np.clip(ba, -1, 1)
            if mode == "all":
                w = np.ones(n)
            else:  # round robin: one agent at a time
                w = np.zeros(n)
                w[self.n_evals % n] = 1.0
            self.t_hist = (getattr(self, "t_hist", []) + [(obs, tgt)])[-window:]
            self.teacher = (np.concatenate([o for o, _ in self.t_hist]), np.concatenate([t for _, t in self.t_hist]), weight * w)
            self.n_evals += 1
            self.eval_seconds += time.perf_counter() - t0
            return ev

    return TeacherTrainer


def one_run(sc, seed: int, overrides: list[str], *, policy: str = "best", teacher: float = 0.0,
            teacher_mode: str = "all", teacher_margin: float = 0.0, teacher_refresh: int = 0, teacher_steps: int = 1, teacher_window: int = 1) -> dict:
    import numpy as np
    import torch

    from agents.checkpoint import load_checkpoint
    from agents.config import LearningConfig
    from agents.trainer import Trainer

    if teacher > 0:
        Trainer = teacher_trainer_class(teacher, teacher_mode, teacher_margin, teacher_refresh, teacher_steps, teacher_window)  # noqa: N806

    torch.set_num_threads(1)
    cfg = LearningConfig.from_dict(sc.learning_config or {}).with_overrides(list(overrides) + ["torch_threads=1"])
    with tempfile.TemporaryDirectory(prefix="mzq-") as tmp:
        t0 = time.perf_counter()
        tr = Trainer(sc, cfg, run_dir=tmp, seed=seed, progress=False, tensorboard=False)
        res = tr.train()
        train_s = time.perf_counter() - t0
        best = Path(tmp) / "policies" / policy
        if os.environ.get("MZQ_KEEP"):
            import shutil
            shutil.copytree(Path(tmp) / "policies", Path(os.environ["MZQ_KEEP"]) / f"s{seed}", dirs_exist_ok=True)
        if best.exists():
            load_checkpoint(best, tr.algo, tr.agents)
        ev = tr.evaluate(analysis=True)
        eval_s = getattr(tr, "eval_seconds", None)
        total_s = time.perf_counter() - t0
        tr.close()
    m = ev.metrics()
    shares = [float(x) for x in ev.br_share]
    curve = [(r["episode"], round(r.get("eval/br_share", float("nan")), 3), round(r.get("eval/exploitability", float("nan")), 3))
             for r in res.history if "eval/br_share" in r]
    return {
        "seed": seed, "br_share": round(m["br_share"], 4), "worst": round(float(np.nanmin(shares)), 4),
        "exploitability": round(m["exploitability"], 4), "mean_price": round(m["mean_price"], 2),
        "shares": {a: round(s, 3) for a, s in zip(tr.agents, shares)},
        "profit": {a: round(float(p)) for a, p in zip(tr.agents, ev.agent_profit)},
        "br_profit": {a: round(float(p)) for a, p in zip(tr.agents, ev.br_profit)},
        "episodes": res.episodes, "eval_s": eval_s and round(eval_s, 1), "train_s": round(train_s, 1), "total_s": round(total_s, 1), "curve": curve,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="default")
    p.add_argument("--study-case", default="base")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--policy", default="best")
    p.add_argument("--tag", default="")
    p.add_argument("--teacher", type=float, default=0.0)
    p.add_argument("--teacher-mode", default="all")
    p.add_argument("--teacher-margin", type=float, default=0.0)
    p.add_argument("--teacher-refresh", type=int, default=0)
    p.add_argument("--teacher-steps", type=int, default=1)
    p.add_argument("--teacher-window", type=int, default=1)
    args = p.parse_args()
    from envs import load_scenario

    sc = load_scenario(resolve_scenario(args.scenario), study_case=args.study_case)
    for s in args.seeds:
        r = one_run(sc, s, args.overrides, policy=args.policy, teacher=args.teacher,
                    teacher_mode=args.teacher_mode, teacher_margin=args.teacher_margin,
                    teacher_refresh=args.teacher_refresh, teacher_steps=args.teacher_steps,
                    teacher_window=args.teacher_window)
        r.update({"scenario": sc.name, "tag": args.tag, "overrides": args.overrides})
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
