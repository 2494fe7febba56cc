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


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="default", help="built-in scenario name (default, tiny) or scenario folder path")
    p.add_argument("--study-case", default=None, help="study case in config.yaml (default: base)")
    p.add_argument("--episodes", type=int, default=None, help="training episodes (overrides training_episodes)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of every random generator of the run (default: learning_config seed, else the scenario's, "
                   "else drawn from the OS; the seed used is written to RUN/config.yaml)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides learning_config.device)")
    p.add_argument("--runtime", choices=["loop", "mango"], default="loop", help="plain training loop, or the mango-agents runtime")
    p.add_argument("--containers", type=int, default=1, help="mango runtime: number of TCP containers (processes)")
    p.add_argument("--mango-host", default="127.0.0.1", help="mango runtime: address the main container binds to")
    p.add_argument("--mango-port", type=int, default=0, help="mango runtime: port of the main container (0: a free one)")
    p.add_argument("--mango-worker", dest="mango_workers", action="append", default=None, metavar="HOST:PORT",
                   help="mango runtime: a worker started with `python -m agents.mango worker --bind HOST:PORT` "
                   "(repeatable; used instead of local worker processes)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<scenario>-<time>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a learning_config key, e.g. --set batch_size=256 (repeatable)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, help="checkpoint folder, e.g. runs/X/policies/best")
    p.add_argument("--scenario", default=None, help="scenario (default: the one recorded in the checkpoint)")
    p.add_argument("--study-case", default=None)
    p.add_argument("--out", default=None, help="output folder (default: <policy>/../../evaluation)")
    p.add_argument("--json", default=None, help="path of the JSON summary (default: OUT/summary.json)")
    p.add_argument("--device", default=None)


COMMANDS = ("train", "evaluate")


def parser() -> argparse.ArgumentParser:
    """The command line: ``train`` (the default command; its options also work without
    the word ``train``) and ``evaluate``."""
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train MATD3 bidding agents on an electricity market scenario (ASSUME format), "
        "or evaluate a trained policy. Without a command, the options below train.",
    )
    _add_train_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=False)
    t = sub.add_parser("train", help="train (the default command)", description="Train MATD3 bidding agents.")
    _add_train_options(t)
    e = sub.add_parser("evaluate", help="run one deterministic episode with a saved policy; writes market.csv, "
                       "orders.csv and a JSON summary", description="Run one deterministic episode with a saved policy.")
    _add_evaluate_options(e)
    return p


def _load(args, scenario_arg: str, study_case: str | None):
    from agents.config import LearningConfig
    from envs import load_scenario

    sc = load_scenario(scenario_arg, study_case=study_case or "base")
    src = f"{sc.source}/config.yaml [{sc.study_case}].learning_config"
    cfg = LearningConfig.from_dict(sc.learning_config or {}, source=src)
    return sc, cfg


def cmd_train(args: argparse.Namespace) -> int:
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
    from agents.trainer import resolve_seed

    seed = resolve_seed(None, cfg, sc)
    cfg = cfg.with_overrides({"seed": seed})  # recorded in the run's config.yaml
    out = Path(args.out) if args.out else Path("runs") / f"{sc.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(sc.summary())
    print(f"run folder: {out}   seed {seed}   device {cfg.device}   episodes {cfg.training_episodes}")
    if not cfg.learning_mode:
        return cmd_run_fixed(sc, cfg, out, seed)
    if args.runtime == "mango":
        try:
            from agents.mango.runtime import run_mango_training
        except ImportError as exc:
            print(f"error: the mango runtime is not available: {exc}", file=sys.stderr)
            return 2
        return run_mango_training(sc, cfg, out, seed=seed, containers=args.containers, progress=not args.quiet,
                                  workers=args.mango_workers, host=args.mango_host, port=args.mango_port,
                                  plots=not args.no_plots)
    if args.containers != 1:
        print("error: --containers needs --runtime mango", file=sys.stderr)
        return 2
    from agents.trainer import Trainer

    trainer = Trainer(sc, cfg, run_dir=out, seed=seed, progress=not args.quiet)
    try:
        result = trainer.train()
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last complete episode is saved in {out / 'policies' / 'last'}", file=sys.stderr)
        trainer.close()
        return 130
    try:
        trainer.finish(result, plots=not args.no_plots)
    finally:
        trainer.close()
    return 0


def _write_evaluation(out: Path, json_path: Path, sc, core, ev, policy: str) -> None:
    from agents.evaluation import evaluation_summary, write_json_atomic, write_market_csvs

    out.mkdir(parents=True, exist_ok=True)
    write_market_csvs(out, ev.record, sc)
    summary = evaluation_summary(sc, core, ev, policy=policy)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, summary)
    print(f"wrote {out / 'market.csv'}, {out / 'orders.csv'}, {json_path}")
    for a, r in summary["agents"].items():
        br = f", best response {r['best_response_profit']:,.0f} EUR ({r['share_of_best_response']:.1%})" if "best_response_profit" in r else ""
        print(f"  {a}: profit {r['profit']:,.0f} EUR{br}")


def cmd_run_fixed(sc, cfg, out: Path, seed: int) -> int:
    """``learning_mode: false``: run the policies from ``trained_policies_load_path`` (else
    ``trained_policies_save_path``) for one deterministic episode, without training; writes
    RUN/config.yaml, market.csv, orders.csv and summary.json."""
    from agents.checkpoint import CheckpointError
    from agents.learner import policy_load_path
    from agents.trainer import evaluate_policy

    policy = policy_load_path(cfg)
    print(f"learning_mode is false: running the policies in {policy} without training")
    try:
        ev, core = evaluate_policy(sc, cfg, policy, seed=seed)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg.save(out / "config.yaml")
    _write_evaluation(out, out / "summary.json", sc, core, ev, str(policy))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.checkpoint import CheckpointError, read_manifest
    from agents.config import ConfigError
    from agents.trainer import evaluate_policy

    try:
        manifest = read_manifest(args.policy)
        scen = manifest.get("scenario") or {}
        scenario_arg = args.scenario or scen.get("source") or scen.get("name") or "default"
        sc, cfg = _load(args, scenario_arg, args.study_case or scen.get("study_case"))
        cfg = cfg.with_overrides({"learning_mode": True, "continue_learning": False})
        ev, core = evaluate_policy(sc, cfg, args.policy, device=args.device)
    except (CheckpointError, ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.policy).resolve().parent.parent / "evaluation"
    json_path = Path(args.json) if args.json else out / "summary.json"
    _write_evaluation(out, json_path, sc, core, ev, str(args.policy))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.simplefilter("default")
    args = parser().parse_args(argv)
    if args.command == "evaluate":
        return cmd_evaluate(args)
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
