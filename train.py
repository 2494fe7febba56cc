#!/usr/bin/env python
"""marketzoo's main job: train MATD3 bidding agents on a market scenario, or evaluate them.

Train (defaults: the built-in ``default`` scenario, its ``base`` study case)::

    python train.py [--scenario NAME|PATH] [--study-case base] [--episodes N] [--seed S]
                    [--device cpu|cuda] [--runtime loop|mango] [--containers N] [--out DIR]
                    [--set KEY=VALUE ...]

Evaluate a saved policy (one deterministic episode; writes market.csv, orders.csv and a
JSON summary with each agent's best-response profit)::

    python train.py evaluate --policy DIR/policies/best [--scenario ...] [--out DIR] [--json FILE]

Also installed as the ``marketzoo`` console script.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path



def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train MATD3 bidding agents on an electricity market scenario (ASSUME format), "
        "or evaluate a trained policy (`train.py evaluate --policy DIR`).",
    )
    p.add_argument("--scenario", default="default", help="built-in scenario name (default, tiny) or scenario folder path")
    p.add_argument("--study-case", default=None, help="study case in config.yaml (default: base)")
    p.add_argument("--episodes", type=int, default=None, help="training episodes (overrides training_episodes)")
    p.add_argument("--seed", type=int, default=None, help="seed of every random generator of the run (default: config seed or 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides learning_config.device)")
    p.add_argument("--runtime", choices=["loop", "mango"], default="loop", help="plain training loop, or the mango-agents runtime")
    p.add_argument("--containers", type=int, default=1, help="mango runtime: number of TCP containers (processes)")
    p.add_argument("--mango-host", default="127.0.0.1", help="mango runtime: address the main container binds to")
    p.add_argument("--mango-port", type=int, default=0, help="mango runtime: port of the main container (0: a free one)")
    p.add_argument("--mango-worker", dest="mango_workers", action="append", default=None, metavar="HOST:PORT",
                   help="mango runtime: a worker started with `python -m agents.mango_runtime worker --bind HOST:PORT` "
                   "(repeatable; used instead of local worker processes)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<scenario>-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a learning_config key, e.g. --set batch_size=256 (repeatable)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py evaluate", description="Run one deterministic episode with a saved policy.")
    p.add_argument("--policy", required=True, help="checkpoint folder, e.g. runs/X/policies/best")
    p.add_argument("--scenario", default=None, help="scenario (default: the one recorded in the checkpoint)")
    p.add_argument("--study-case", default=None)
    p.add_argument("--out", default=None, help="output folder (default: <policy>/../../evaluation)")
    p.add_argument("--json", default=None, help="path of the JSON summary (default: OUT/summary.json)")
    p.add_argument("--device", default=None)
    return p


def _load(args, scenario_arg: str, study_case: str | None):
    from agents.config import LearningConfig
    from envs import load_scenario

    sc = load_scenario(scenario_arg, study_case=study_case or "base")
    src = f"{sc.source}/config.yaml [{sc.study_case}].learning_config"
    cfg = LearningConfig.from_dict(sc.learning_config or {}, source=src)
    return sc, cfg


def cmd_train(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from agents.config import ConfigError

    try:
        sc, cfg = _load(args, args.scenario, args.study_case)
        extra = list(args.overrides)
        if args.episodes is not None:
            extra.append(f"training_episodes={args.episodes}")
        if args.device is not None:
            extra.append(f"device={args.device}")
        if args.seed is not None:
            extra.append(f"seed={args.seed}")
        if extra:
            cfg = cfg.with_overrides(extra)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seed = cfg.seed if cfg.seed is not None else (sc.seed if sc.seed is not None else 0)
    out = Path(args.out) if args.out else Path("runs") / f"{sc.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(sc.summary())
    print(f"run folder: {out}   seed {seed}   device {cfg.device}   episodes {cfg.training_episodes}")
    if args.runtime == "mango":
        try:
            from agents.mango_runtime import run_mango_training
        except ImportError as exc:
            print(f"error: the mango runtime is not available: {exc}", file=sys.stderr)
            return 2
        return run_mango_training(sc, cfg, out, seed=seed, containers=args.containers, progress=not args.quiet,
                                  workers=args.mango_workers, host=args.mango_host, port=args.mango_port,
                                  plots=not args.no_plots)
    if args.containers != 1:
        print("error: --containers needs --runtime mango", file=sys.stderr)
        return 2
    from agents.trainer import Trainer, print_run_summary, run_summary, write_json_atomic

    trainer = Trainer(sc, cfg, run_dir=out, seed=seed, progress=not args.quiet)
    try:
        result = trainer.train()
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last complete episode is saved in {out / 'policies' / 'last'}", file=sys.stderr)
        return 130
    finally:
        trainer.close()
    # final evaluation with the best policy (by reward)
    from agents.checkpoint import load_checkpoint

    best = out / "policies" / "best"
    if best.exists():
        load_checkpoint(best, trainer.algo, trainer.agents)
    ev = trainer.evaluate()
    summary = run_summary(trainer, ev, result)
    write_json_atomic(out / "summary.json", summary)
    print_run_summary(summary)
    if not args.no_plots:
        from agents.plots import make_plots

        paths = make_plots(out, trainer.history, ev, trainer.agents)
        print("plots: " + ", ".join(str(p) for p in paths))
    print(f"TensorBoard: tensorboard --logdir {out / 'tb'}")
    print(f"evaluate:    python train.py evaluate --policy {best}")
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    args = _eval_parser().parse_args(argv)
    from agents.checkpoint import CheckpointError, load_checkpoint, read_manifest
    from agents.trainer import Trainer, write_json_atomic

    try:
        manifest = read_manifest(args.policy)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scen = manifest.get("scenario") or {}
    scenario_arg = args.scenario or scen.get("source") or scen.get("name") or "default"
    sc, cfg = _load(args, scenario_arg, args.study_case or scen.get("study_case"))
    overrides = [f"actor_hidden_sizes={list(manifest['actor_hidden_sizes'])}",
                 f"critic_hidden_sizes={list(manifest['critic_hidden_sizes'])}", "num_envs=1"]
    tr_info = manifest.get("trainer") or {}
    if tr_info.get("max_bid_price"):
        overrides.append(f"max_bid_price={tr_info['max_bid_price']}")
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = cfg.with_overrides(overrides)
    env_opts = {"foresight": tr_info["foresight"]} if tr_info.get("foresight") else None
    trainer = Trainer(sc, cfg, run_dir=None, seed=int(tr_info.get("seed", 0)), env_options=env_opts, progress=False)
    try:
        load_checkpoint(args.policy, trainer.algo, trainer.agents, load_optimizers=False, load_critics=False)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ev = trainer.evaluate()
    out = Path(args.out) if args.out else Path(args.policy).resolve().parent.parent / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    from agents.evaluation import write_market_csvs

    write_market_csvs(out, ev.record, sc)
    summary = {
        "policy": str(args.policy), "scenario": sc.name, "study_case": sc.study_case, "hours": int(ev.record.n_hours),
        "evaluation": ev.metrics(), "agents": {},
    }
    for i, a in enumerate(trainer.agents):
        row = {"unit": trainer.core.agent_unit[i], "kind": trainer.core.agent_kind[i], "profit": float(ev.agent_profit[i])}
        if ev.br_profit is not None:
            row["best_response_profit"] = float(ev.br_profit[i])
            row["share_of_best_response"] = float(ev.br_share[i])
        summary["agents"][a] = row
    json_path = Path(args.json) if args.json else out / "summary.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, summary)
    print(f"wrote {out / 'market.csv'}, {out / 'orders.csv'}, {json_path}")
    for a, r in summary["agents"].items():
        br = f", best response {r['best_response_profit']:,.0f} EUR ({r['share_of_best_response']:.1%})" if "best_response_profit" in r else ""
        print(f"  {a}: profit {r['profit']:,.0f} EUR{br}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.simplefilter("default")
    if argv and argv[0] == "evaluate":
        return cmd_evaluate(argv[1:])
    if argv and argv[0] == "train":
        argv = argv[1:]
    return cmd_train(argv)


if __name__ == "__main__":
    sys.exit(main())
