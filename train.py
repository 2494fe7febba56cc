#!/usr/bin/env python
"""marketzoo's main job: train MATD3 bidding agents on a market scenario, or evaluate them.

Train (defaults: the built-in ``default`` scenario, its ``base`` study case)::

    python train.py [--scenario NAME|PATH] [--study-case base] [--episodes N] [--seed S]
                    [--device cpu|cuda] [--runtime loop|mango] [--containers N]
                    [--out DIR [--overwrite]] [--save-replay-buffer] [--set KEY=VALUE ...]
                    [--learning-units UNIT ...] [--holdout-hours H] [--force-analysis]

Continue an interrupted run from its last complete episode (plain loop)::

    python train.py --resume RUN_DIR [--episodes N]

User errors (bad numbers, an unusable or occupied run folder, cuda without a GPU, a bad
checkpoint, ...) are one line on stderr and exit code 2.

Evaluate a saved policy (one deterministic episode; writes market.csv, orders.csv and a
JSON summary with each agent's best-response profit)::

    python train.py evaluate --policy DIR/policies/best [--scenario ...] [--out DIR] [--json FILE]

Equilibrium reference of a scenario's learning agents (no training; writes market.csv,
orders.csv and summary.json; exit 0 when converged, 1 when not, 2 on bad input)::

    python train.py equilibrium [--scenario ...] [--study-case ...] [--out DIR] [--learning-units UNIT ...]

Also installed as the ``marketzoo`` console script.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path


def _bounded_int(name: str, low: int, high: int):
    """An argparse type: a plain integer in ``[low, high]``, else one line naming the option."""

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number in [{low}, {high:_}], got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high:_}], got {value:_}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``train.py: error: ...`` and exit 2 (no usage dump)."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=None, help="built-in scenario name (default, tiny) or scenario folder path "
                   "(default: default)")
    p.add_argument("--study-case", default=None, help="study case in config.yaml (default: base)")
    p.add_argument("--episodes", type=_bounded_int("--episodes", 1, 10_000_000), default=None,
                   help="training episodes (overrides training_episodes)")
    p.add_argument("--seed", type=_bounded_int("--seed", 0, 2**63 - 1), default=None,
                   help="seed of every random generator of the run (default: learning_config seed, else the scenario's, "
                   "else drawn from the OS; the seed used is written to RUN/config.yaml)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (overrides learning_config.device)")
    p.add_argument("--runtime", choices=["loop", "mango"], default="loop", help="plain training loop, or the mango-agents runtime")
    p.add_argument("--containers", type=_bounded_int("--containers", 1, 256), default=1,
                   help="mango runtime: number of TCP containers (processes)")
    p.add_argument("--mango-host", default="127.0.0.1", help="mango runtime: address the main container binds to")
    p.add_argument("--mango-port", type=_bounded_int("--mango-port", 0, 65535), default=0,
                   help="mango runtime: port of the main container (0: a free one)")
    p.add_argument("--mango-worker", dest="mango_workers", action="append", default=None, metavar="HOST:PORT",
                   help="mango runtime: a worker started with `python -m agents.mango worker --bind HOST:PORT` "
                   "(repeatable; used instead of local worker processes)")
    p.add_argument("--out", default=None, help="run folder (default: a new runs/<scenario>-<time>[-k]); an existing "
                   "run folder is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="empty an existing --out folder and start a new run there")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the interrupted run in RUN_DIR from its last complete episode (its scenario, config "
                   "and seed; --episodes may raise the total)")
    p.add_argument("--save-replay-buffer", action="store_true",
                   help="also save the replay buffer after every episode, so that --resume continues bit-identically "
                   "(costs disk and time per episode for large buffers)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a learning_config key, e.g. --set batch_size=256 (repeatable)")
    p.add_argument("--learning-units", nargs="+", default=None, metavar="UNIT",
                   help="names of rule units that learn too (plants, renewables, storage), e.g. ASSUME's "
                   "learning_units; recorded in the checkpoints, so `evaluate` rebuilds the same agents")
    p.add_argument("--holdout-hours", type=_bounded_int("--holdout-hours", 1, 10_000_000), default=None, metavar="H",
                   help="hold the last H hours out of training and evaluate on exactly them "
                   "(= --set holdout_hours=H)")
    p.add_argument("--force-analysis", action="store_true",
                   help="run the final best-response analysis even above learning_config analysis_max_agents")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, help="checkpoint folder, e.g. runs/X/policies/best")
    p.add_argument("--scenario", default=None, help="scenario (default: the one recorded in the checkpoint)")
    p.add_argument("--study-case", default=None)
    p.add_argument("--out", default=None, help="output folder (default: <policy>/../../evaluation)")
    p.add_argument("--json", default=None, help="path of the JSON summary (default: OUT/summary.json)")
    p.add_argument("--device", default=None)
    p.add_argument("--learning-units", nargs="+", default=None, metavar="UNIT",
                   help="rule units that learn too (default: the learning units recorded in the checkpoint)")
    p.add_argument("--force-analysis", action="store_true",
                   help="run the best-response analysis even above learning_config analysis_max_agents")


def _add_equilibrium_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="default", help="built-in scenario name (default, tiny) or scenario folder path")
    p.add_argument("--study-case", default=None, help="study case in config.yaml (default: base)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<scenario>-equilibrium)")
    p.add_argument("--learning-units", nargs="+", default=None, metavar="UNIT", help="rule units that learn too")
    p.add_argument("--max-passes", type=_bounded_int("--max-passes", 1, 100_000), default=50, help="passes over all agents before giving up (default 50)")


COMMANDS = ("train", "evaluate", "equilibrium")


def parser() -> argparse.ArgumentParser:
    """The command line: ``train`` (the default command; its options also work without
    the word ``train``), ``evaluate`` and ``equilibrium``."""
    p = _Parser(
        prog="train.py",
        description="Train MATD3 bidding agents on an electricity market scenario (ASSUME format), "
        "or evaluate a trained policy. Without a command, the options below train.",
    )
    _add_train_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=False, parser_class=_Parser)
    t = sub.add_parser("train", help="train (the default command)", description="Train MATD3 bidding agents.")
    _add_train_options(t)
    e = sub.add_parser("evaluate", help="run one deterministic episode with a saved policy; writes market.csv, "
                       "orders.csv and a JSON summary", description="Run one deterministic episode with a saved policy.")
    _add_evaluate_options(e)
    q = sub.add_parser("equilibrium", help="compute the equilibrium reference of the learning agents (iterated exact "
                       "best responses); exit 0 when converged, 1 when not",
                       description="Iterated exact best responses of the learning agents to each other until no agent "
                       "can gain more than its tolerance. Writes market.csv, orders.csv and summary.json; prints the "
                       "verdict. Exit status 0 when converged; 1 when not (the line names the reason -- a cycle or "
                       "the pass limit -- and the largest residual gain); 2 on bad input.")
    _add_equilibrium_options(q)
    return p


def _load(args, scenario_arg: str, study_case: str | None, learning_units=None):
    from agents.config import LearningConfig
    from envs import load_scenario
    from envs.scenario import scenario_device, with_learning_units

    sc = load_scenario(scenario_arg, study_case=study_case or "base")
    if learning_units:
        sc = with_learning_units(sc, learning_units)
    src = f"{sc.source}/config.yaml [{sc.study_case}].learning_config"
    cfg = LearningConfig.from_dict(sc.learning_config or {}, source=src)
    if cfg.device.startswith("cuda"):  # a GPU asked for by the scenario file: cpu when there is none (one warning)
        import torch

        dev = scenario_device(cfg.device, from_scenario=True, cuda_available=torch.cuda.is_available(),
                              source=f"{sc.source}/config.yaml")
        if dev != cfg.device:
            cfg = cfg.with_overrides({"device": dev})
    return sc, cfg


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are a user's error (one line, exit 2), not a bug."""
    from agents.checkpoint import CheckpointError
    from agents.config import ConfigError
    from agents.recorder import ResumeError
    from agents.resources import ResourceError
    from agents.rundir import RunDirError
    from envs.data import ScenarioError

    return (ConfigError, ScenarioError, CheckpointError, ResourceError, RunDirError, ResumeError, ValueError)


def _fail(exc: BaseException) -> int:
    text = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {text}", file=sys.stderr)
    return 2


def _scenario_ref(arg: str) -> str:
    """The scenario as given, made absolute when it is a folder (for --resume from elsewhere)."""
    p = Path(arg)
    return str(p.resolve()) if p.exists() else arg



# command-line flags that set a learning_config key: flag -> key
_FLAG_KEYS = {"holdout_hours": "holdout_hours", "episodes": "training_episodes", "device": "device", "seed": "seed"}


def _flag_overrides(args: argparse.Namespace, flags: tuple[str, ...]) -> list[str]:
    """``KEY=VALUE`` overrides for those of ``flags`` given on the command line."""
    return [f"{_FLAG_KEYS[f]}={getattr(args, f)}" for f in flags if getattr(args, f) is not None]

def _resumed_config(config: dict, source: str):
    """The learning config of a run to resume, from its run state. Runs started before
    `foresight` was a key observed the env's 12 steps: their config gets that number."""
    from agents.config import AUTO_FORESIGHT_STEPS, LearningConfig

    cfg = LearningConfig.from_dict(config, source=source)
    if "foresight" not in config:
        cfg = cfg.with_overrides({"foresight": AUTO_FORESIGHT_STEPS})
    return cfg


def _setup_train(args: argparse.Namespace):
    """Scenario, config, seed, run folder (claimed and locked) and resume state of a
    ``train`` command; raises one of :func:`_user_errors`."""
    from agents.recorder import read_run_state
    from agents.rundir import claim_run_dir
    from agents.trainer import resolve_seed

    state = None
    if args.resume is not None:
        given = [opt for opt, v in (("--scenario", args.scenario), ("--study-case", args.study_case),
                                    ("--seed", args.seed), ("--set", args.overrides), ("--overwrite", args.overwrite),
                                    ("--out", args.out)) if v]
        if given:
            raise ValueError(f"--resume continues the run with its own scenario, config and seed; drop {', '.join(given)}")
        if args.runtime != "loop":
            raise ValueError("--resume is supported for --runtime loop only")
        state = read_run_state(args.resume)
        info = state["info"]
        sc, _ = _load(args, info.get("scenario", "default"), info.get("study_case"), info.get("learning_units"))
        cfg = _resumed_config(state["config"], f"{args.resume}/state.pt config")
        extra = _flag_overrides(args, ("episodes", "device"))
        if extra:
            cfg = cfg.with_overrides(extra)
        seed = int(cfg.seed)
        if state["episode"] >= cfg.training_episodes:
            raise ValueError(f"--resume {args.resume}: the run already completed {state['episode']} of "
                             f"{cfg.training_episodes} episodes; raise --episodes to train more")
    else:
        scenario = args.scenario or "default"
        sc, cfg = _load(args, scenario, args.study_case, args.learning_units)
        extra = list(args.overrides) + _flag_overrides(args, ("holdout_hours", "episodes", "device", "seed"))
        if extra:
            cfg = cfg.with_overrides(extra)
        seed = resolve_seed(None, cfg, sc)
        # recorded in the run's config.yaml (the foresight as a number, plant_bids,
        # storage_prices, storage_teacher and cost_snap resolved, so that a resume sees what the run
        # did whatever "auto" becomes)
        cfg = cfg.with_overrides({"seed": seed, "foresight": cfg.resolved_foresight(sc),
                                  "plant_bids": cfg.resolved_plant_bids(sc),
                                  "storage_prices": cfg.resolved_storage_prices(),
                                  "storage_teacher": cfg.resolved_storage_teacher(),
                                  "cost_snap": cfg.resolved_cost_snap()})
    cfg.resolved_device()  # cuda without a GPU is one line now, before any work
    if args.containers != 1 and args.runtime != "mango":
        raise ValueError("--containers needs --runtime mango")
    out, lock = claim_run_dir(args.resume or args.out, name=sc.name, resume=state is not None,
                              overwrite=args.overwrite)
    return sc, cfg, seed, out, lock, state


def cmd_train(args: argparse.Namespace) -> int:
    errors = _user_errors()
    try:
        sc, cfg, seed, out, lock, state = _setup_train(args)
    except errors as exc:
        return _fail(exc)
    try:
        return _train(args, sc, cfg, seed, out, state)
    finally:
        lock.release()


def _train(args: argparse.Namespace, sc, cfg, seed: int, out: Path, state) -> int:
    errors = _user_errors()
    print(sc.summary())
    if state is not None:
        print(f"resuming {out} after episode {state['episode']}   seed {seed}   device {cfg.device}   "
              f"episodes {cfg.training_episodes}" + ("" if state.get("buffer") is not None else
                                                     "   (replay buffer not saved: it starts empty)"))
    else:
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
    from agents.trainer import Trainer

    info = dict(state["info"]) if state is not None else {
        "scenario": _scenario_ref(args.scenario or "default"), "study_case": sc.study_case, "runtime": "loop",
        "learning_units": list(args.learning_units or [])}
    info["save_replay_buffer"] = bool(args.save_replay_buffer or info.get("save_replay_buffer"))
    try:
        trainer = Trainer(sc, cfg, run_dir=out, seed=seed, progress=not args.quiet, resume=state,
                          save_replay_buffer=info["save_replay_buffer"], state_info=info)
    except errors as exc:
        return _fail(exc)
    try:
        trainer.start_equilibrium_reference()  # the final summary's reference, computed alongside training
        result = trainer.train()
    except KeyboardInterrupt:
        print(f"\ninterrupted: continue with  python train.py --resume {out}", file=sys.stderr)
        trainer.close()
        return 130
    try:
        trainer.finish(result, plots=not args.no_plots, force_analysis=args.force_analysis)
    finally:
        trainer.close()
    return 0


def _write_evaluation(out: Path, json_path: Path, sc, core, ev, policy: str, cfg=None) -> None:
    from agents.evaluation import evaluation_summary, write_json_atomic, write_market_csvs

    out.mkdir(parents=True, exist_ok=True)
    write_market_csvs(out, ev.record, sc)
    summary = evaluation_summary(sc, core, ev, policy=policy)
    from agents.reference import add_equilibrium_reference, print_reference

    if cfg is not None:  # the env's action scale (evaluate takes it from the checkpoint)
        add_equilibrium_reference(summary, sc, cfg.with_overrides({"max_bid_price": core.max_bid_price,
                                                                    "min_power_rule": core.min_power_rule}), ev,
                                  plots_dir=out / "plots")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, summary)
    print(f"wrote {out / 'market.csv'}, {out / 'orders.csv'}, {json_path}")
    for a, r in summary["agents"].items():
        br = f", best response {r['best_response_profit']:,.0f} EUR ({r['share_of_best_response']:.1%})" if "best_response_profit" in r else ""
        eq = f", equilibrium {r['equilibrium_profit']:,.0f} EUR" if "equilibrium_profit" in r else ""
        full = (f", full-volume moves {r['full_moves_best_response_profit']:,.0f} EUR"
                if "full_moves_best_response_profit" in r else "")
        if "grid_best_response_profit" in r:
            full += f", on the env's grid {r['grid_best_response_profit']:,.0f} EUR"
        if "undercut_learners_best_response_profit" in r:
            full += f" ({r['undercut_learners_best_response_profit']:,.0f} with a tick under another learner)"
        print(f"  {a}: profit {r['profit']:,.0f} EUR{br}{full}{eq}")
        if "on_off" in r:
            from agents.evaluation import on_off_line

            print(f"    {on_off_line(r['on_off'])}")
        if "gain_by_hours" in r:
            from envs.analysis import gain_by_hours_line

            print(f"    {gain_by_hours_line(r['gain_by_hours'])}")
    from agents.evaluation import off_grid_line

    line = off_grid_line(summary["agents"])
    if line:
        print(f"  ({line})")
    print_reference(summary)


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
    except _user_errors() as exc:
        return _fail(exc)
    cfg.save(out / "config.yaml")
    _write_evaluation(out, out / "summary.json", sc, core, ev, str(policy), cfg)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.checkpoint import read_manifest
    from agents.trainer import evaluate_policy

    out = Path(args.out) if args.out else Path(args.policy).resolve().parent.parent / "evaluation"
    json_path = Path(args.json) if args.json else out / "summary.json"
    for what, path in (("--out", out), ("--json", json_path.parent)):
        if path.exists() and not path.is_dir():
            return _fail(ValueError(f"{what} {path} is a file, not a folder; choose a folder path"))
    if json_path.is_dir():
        return _fail(ValueError(f"--json {json_path} is a folder; give a file path"))
    try:
        manifest = read_manifest(args.policy)
        scen = manifest.get("scenario") or {}
        scenario_arg = args.scenario or scen.get("source") or scen.get("name") or "default"
        units = args.learning_units or scen.get("learning_units")
        sc, cfg = _load(args, scenario_arg, args.study_case or scen.get("study_case"), units)
        cfg = cfg.with_overrides({"learning_mode": True, "continue_learning": False})
        if scen.get("holdout_hours") and cfg.holdout_hours is None:  # the run held these hours out: evaluate them
            cfg = cfg.with_overrides({"holdout_hours": scen["holdout_hours"]})
        ev, core = evaluate_policy(sc, cfg, args.policy, device=args.device,
                                   analysis=_analysis_wanted(cfg, sc, args.force_analysis))
    except _user_errors() as exc:
        return _fail(exc)
    try:
        _write_evaluation(out, json_path, sc, core, ev, str(args.policy), cfg)
    except OSError as exc:
        return _fail(ValueError(f"cannot write the evaluation to {out} / {json_path} ({exc.strerror or exc}); "
                                "choose writable --out / --json paths"))
    return 0


def _analysis_wanted(cfg, sc, force: bool) -> bool:
    """The exact best-response analysis runs up to ``analysis_max_agents`` learning agents
    (or with ``--force-analysis``); else one note says it is skipped."""
    n = len(sc.learning_units)
    if force or n <= cfg.analysis_max_agents:
        return True
    print(f"note: {n} learning agents > analysis_max_agents ({cfg.analysis_max_agents}): best-response analysis "
          "skipped (--force-analysis runs it)")
    return False


def cmd_equilibrium(args: argparse.Namespace) -> int:
    """``train.py equilibrium``: the equilibrium reference (see the ``equilibrium`` help)."""
    from agents.evaluation import write_market_csvs
    from agents.jsonio import write_json_strict
    from envs.equilibrium import equilibrium

    try:
        sc, cfg = _load(args, args.scenario, args.study_case, args.learning_units)
        t0 = time.perf_counter()
        eq = equilibrium(sc, max_bid_price=cfg.max_bid_price, max_passes=args.max_passes,
                         min_power_rule=cfg.min_power_rule)
    except _user_errors() as exc:
        return _fail(exc)
    out = Path(args.out) if args.out else Path("runs") / f"{sc.name}-equilibrium"
    summary = {"scenario": sc.name, "study_case": sc.study_case, "wall_time_s": time.perf_counter() - t0,
               **eq.summary_dict()}
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_market_csvs(out, eq.record, sc)
        write_json_strict(out / "summary.json", summary)
    except OSError as exc:
        return _fail(ValueError(f"cannot write the equilibrium to {out} ({exc.strerror or exc}); choose a writable --out"))
    print(sc.summary())
    for k, a in enumerate(eq.agents):
        print(f"  {a}: equilibrium profit {eq.profit[k]:,.0f} EUR, best response {eq.best_response_profit[k]:,.0f} EUR")
    print(eq.verdict())
    print(f"wrote {out / 'market.csv'}, {out / 'orders.csv'}, {out / 'summary.json'}")
    if not eq.converged:
        worst = int(eq.residual_gain.argmax())
        print(f"not converged ({eq.reason}): largest residual gain {eq.residual_gain[worst]:,.0f} EUR "
              f"({eq.agents[worst]})", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.simplefilter("default")
    args = parser().parse_args(argv)
    if args.command == "evaluate":
        return cmd_evaluate(args)
    if args.command == "equilibrium":
        return cmd_equilibrium(args)
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
