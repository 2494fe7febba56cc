"""The books of a training run: history, TensorBoard, best policies, early stopping.

:class:`RunRecorder` is used by the plain loop (:class:`agents.trainer.Trainer`) and the
mango runtime alike: after every training episode (and its evaluation, when one is
due) the runtime calls :meth:`RunRecorder.record_episode`, which

* logs every scalar to TensorBoard and the same values, under the same names, as one
  row of ``history.csv`` (see the README's metric table);
* compares the evaluation's reward, profit and regret with the best so far, each
  separately (:func:`compare_policies`), and saves ``best`` / ``best_profit`` /
  ``best_regret`` (``best`` by ``best_policy_metric``: the reward, or the share of the
  best-response profit of the exact analysis);
* counts evaluations without improvement for early stopping;
* saves ``last`` (an interrupted run loses at most the episode in progress).

Policies go to ``trained_policies_save_path`` when it is set, else to
``RUN_DIR/policies``. :func:`finish_run` is the one end-of-run sequence: the final
evaluation with the best policy, ``summary.json``, the printed summary and the plots.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .config import LearningConfig
from .evaluation import EvalResult, print_run_summary, run_summary, write_json_atomic

if TYPE_CHECKING:
    import torch

    from envs import MarketCore, Scenario

    from .learner import Learner

__all__ = ["POLICY_CRITERIA", "STATE_NAME", "ResumeError", "RunRecorder", "TrainResult", "actor_mix_size", "best_metric",
           "compare_policies", "best_policy_interval", "evaluation_due", "finish_run", "read_run_state", "validation_due"]

STATE_NAME = "state.pt"  # RUN_DIR/state.pt: what --resume continues from
_RUN_STATE_FORMAT = "marketzoo.run-state/1"


class ResumeError(RuntimeError):
    """A run folder that cannot be resumed (one line, for the command line)."""

# compare_and_save_policies: metric, policy folder, whether larger is better
POLICY_CRITERIA = (("reward", "best", True), ("profit", "best_profit", True), ("regret", "best_regret", False))


def initial_best() -> dict[str, float]:
    return {key: (-math.inf if larger else math.inf) for key, _, larger in POLICY_CRITERIA}


AUTO_BEST_POLICY_METRIC = "gain"
"""What ``best_policy_metric: auto`` means (see the config key)."""


def resolved_best_policy_metric(setting: str) -> str:
    """``best_policy_metric`` with ``"auto"`` replaced by :data:`AUTO_BEST_POLICY_METRIC`."""
    return AUTO_BEST_POLICY_METRIC if setting == "auto" else setting


def best_metric(setting: str, metrics: Mapping[str, float], best: Mapping[str, float] | None = None) -> str:
    """The metric that decides ``policies/best`` for one evaluation (``best_policy_metric``,
    ``"auto"`` = :data:`AUTO_BEST_POLICY_METRIC`): ``"gain"`` (lowest) or ``"br_share"``
    (highest) when so set and the evaluation ran the exact best-response analysis (its
    metrics hold them), else ``"reward"`` (:class:`RunRecorder` prints a note when it has
    to fall back). A share that is undefined (NaN: no learner could earn anything) falls
    back to the reward too, as long as ``best`` (the run's best values) holds no finite
    share yet, so that a run whose every share is undefined still keeps a best policy.

    Not the joint exploitability (Σ gains / Σ |profits|): a policy that loses money has
    a larger denominator, so a worse loss can lower it (measured on example_02e: it kept
    a policy at -1.5 of the best-response profit). The gain in EUR has no denominator: it
    stays defined where the learners' best responses earn nothing (a competitive market
    whose equilibrium profits are zero), where the share is undefined or explodes."""
    setting = resolved_best_policy_metric(setting)
    if setting == "gain" and "gain" in metrics and math.isfinite(float(metrics["gain"])):
        return "gain"
    if setting == "br_share" and "br_share" in metrics:
        undefined = not math.isfinite(float(metrics["br_share"]))
        if undefined and not math.isfinite(float((best or {}).get("br_share", -math.inf))):
            return "reward"
        return "br_share"
    return "reward"


def compare_policies(best: dict[str, float], metrics: Mapping[str, float], *, best_by: str = "reward") -> list[str]:
    """Compare ``metrics`` (``reward``, ``profit``, ``regret``) with ``best``, each
    separately (ASSUME returns after the first); update ``best`` in place and return the
    policy names (``best``, ``best_profit``, ``best_regret``) that improved.

    ``best_by`` (see :func:`best_metric`) is the metric of ``best``: ``"reward"``
    (highest, ASSUME's choice), ``"br_share"`` (highest) or ``"gain"`` (lowest); with
    either of the last two ``best`` also holds the best value under that key, while
    ``best["reward"]`` stays the highest reward, which early stopping follows."""
    missing = [k for k, _, _ in POLICY_CRITERIA if k not in metrics]
    if best_by != "reward" and best_by not in metrics:
        missing.append(best_by)
    if missing:
        raise KeyError(f"compare_and_save_policies: metrics lack {missing}")
    improved = []
    for key, name, larger in POLICY_CRITERIA:
        value = float(metrics[key])
        if (value > best[key]) if larger else (value < best[key]):
            best[key] = value
            if name != "best" or best_by == "reward":
                improved.append(name)
    if best_by == "br_share":
        value = float(metrics["br_share"])  # NaN (no best-response profit at all) never improves
        if value > best.get("br_share", -math.inf):
            best["br_share"] = value
            improved.insert(0, "best")
    elif best_by == "gain":
        value = float(metrics["gain"])
        if value < best.get("gain", math.inf):
            best["gain"] = value
            improved.insert(0, "best")
    return improved


# best_policy_interval "auto": an evaluation after every episode up to this many learning units
BEST_POLICY_AUTO_AGENTS = 5


def validation_due(config: LearningConfig, episode: int, total: int) -> bool:
    """Whether training episode ``episode`` (of ``total``) is followed by a validation:
    every ``validation_episodes_interval`` episodes after initial exploration, and after
    the last one."""
    first = config.episodes_collecting_initial_experience
    return episode >= first and ((episode + 1 - first) % config.validation_episodes_interval == 0
                                 or episode == total - 1)


def best_policy_interval(config: LearningConfig, n_agents: int | None) -> int | None:
    """``best_policy_interval`` as a number of episodes, or None (``"auto"``: 1 for at most
    :data:`BEST_POLICY_AUTO_AGENTS` learning units; None when ``n_agents`` is unknown)."""
    v = config.best_policy_interval
    if v == "auto":
        return 1 if n_agents is not None and n_agents <= BEST_POLICY_AUTO_AGENTS else None
    return v


ACTOR_MIX_AUTO = 6
"""``actor_mix_fallback`` "auto": the evaluations whose actors compete, for at most
:data:`BEST_POLICY_AUTO_AGENTS` learning units (none for more)."""


def actor_mix_size(config: LearningConfig, n_agents: int) -> int:
    """``actor_mix_fallback`` as a number of evaluations (0: off)."""
    v = config.actor_mix_fallback
    if v == "auto":
        return ACTOR_MIX_AUTO if n_agents <= BEST_POLICY_AUTO_AGENTS else 0
    return int(v)


def evaluation_due(config: LearningConfig, episode: int, total: int, n_agents: int | None = None) -> bool:
    """Whether training episode ``episode`` (of ``total``) is followed by an evaluation: a
    validation (:func:`validation_due`) or one of ``best_policy_interval`` (for a run with
    ``n_agents`` learning units)."""
    if validation_due(config, episode, total):
        return True
    k = best_policy_interval(config, n_agents)
    first = config.episodes_collecting_initial_experience
    return k is not None and episode >= first and (episode + 1 - first) % k == 0


@dataclass
class TrainResult:
    run_dir: Path | None
    episodes: int
    wall_time: float
    best: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    final_eval: EvalResult | None = None
    stopped_early: bool = False


class RunRecorder:
    """History, TensorBoard, best-policy keeping, early stopping and ``policies/last``.

    Args:
        config: the run's config (written to ``RUN_DIR/config.yaml``; it should carry
            the run's seed).
        learner: whose policies are saved.
        run_dir: the run folder (created); ``None`` writes no history, config or
            TensorBoard (policies still go to ``trained_policies_save_path`` if set).
        tensorboard: write TensorBoard scalars to ``RUN_DIR/tb``.
        run_info: extra facts stored in every checkpoint manifest under ``"trainer"``
            (e.g. foresight, max_bid_price) next to episode, update count, best and seed.
        scenario_info, agent_kind: stored in every checkpoint manifest.
    """

    def __init__(self, config: LearningConfig, learner: Learner, *, run_dir: str | os.PathLike | None = None,
                 tensorboard: bool = True, run_info: dict[str, Any] | None = None,
                 scenario_info: dict[str, Any] | None = None, agent_kind: list[str] | None = None,
                 resume_state: bool = False, save_replay_buffer: bool = False,
                 state_info: dict[str, Any] | None = None) -> None:
        self.config = config
        self.resume_state = bool(resume_state) and run_dir is not None
        self.save_replay_buffer = bool(save_replay_buffer)
        self.state_info = dict(state_info or {})
        self.learner = learner
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if config.trained_policies_save_path:
            self.policies_dir: Path | None = Path(config.trained_policies_save_path)
        else:
            self.policies_dir = self.run_dir / "policies" if self.run_dir is not None else None
        self.run_info = dict(run_info or {})
        self.scenario_info = scenario_info
        self.agent_kind = agent_kind
        self.best = initial_best()
        self.no_improve = 0
        self.stop_reason: str | None = None  # why training stopped early, when not for the reward
        self.validated_reward = -math.inf  # best reward at the latest validation (early stopping)
        self._fallback_noted = False
        self.history: list[dict[str, Any]] = []
        # actor_mix_fallback: (total gain, episode, actor parameters on the CPU) of the
        # evaluations with the lowest total gain so far, lowest first (this process only)
        self.actor_candidates: list[tuple[float, int, list[torch.Tensor]]] = []
        self.writer = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.yaml")
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                # the event files of earlier runs in this directory (a resumed run's purge
                # must sort after them: restore)
                self._earlier_event_files = sorted((self.run_dir / "tb").glob("events.out.tfevents.*"))
                self.writer = SummaryWriter(str(self.run_dir / "tb"))

    # ------------------------------------------------------------------ policies
    def policy_dir(self, name: str) -> Path | None:
        return self.policies_dir / name if self.policies_dir is not None else None

    def save(self, name: str, metrics: dict[str, Any] | None = None, *, episode: int | None = None,
             trainer_info: Mapping[str, Any] | None = None) -> Path | None:
        """Save the learner's policies as ``name`` (nothing when there is no policies folder).
        ``trainer_info``: entries of the manifest's ``trainer`` part over :attr:`run_info`
        (what a fallback chose for this checkpoint alone)."""
        path = self.policy_dir(name)
        if path is None:
            return None
        ln = self.learner
        ep = ln.episode if episode is None else int(episode)
        extra = {"trainer": {"episode": ep, "n_updates": ln.n_updates, "best": dict(self.best), "seed": ln.seed,
                             **self.run_info, **(trainer_info or {})}}
        return ln.save(path, episode=ep, metrics=metrics, agent_kind=self.agent_kind, scenario=self.scenario_info,
                       extra=extra)

    def compare_and_save_policies(self, metrics: Mapping[str, float], *, episode: int | None = None) -> list[str]:
        """Save ``best`` / ``best_profit`` / ``best_regret`` for every metric that
        improved (all three are compared; ``best`` by ``best_policy_metric``). Returns the
        names of the improved policies."""
        setting = self.config.best_policy_metric
        by = best_metric(setting, metrics, self.best)
        if setting in ("br_share", "gain") and setting not in metrics and not self._fallback_noted:
            self._fallback_noted = True
            print(f"note: best_policy_metric is {setting}, but this evaluation ran no best-response analysis "
                  "(analysis_max_agents or --no-analysis): policies/best is chosen by the reward instead")
        saved = compare_policies(self.best, metrics, best_by=by)
        for name in saved:
            self.save(name, dict(metrics), episode=episode)
        self.keep_actor_candidate(metrics, episode)
        return saved

    def keep_actor_candidate(self, metrics: Mapping[str, float], episode: int | None = None) -> None:
        """``actor_mix_fallback``: keep the learner's actors (a CPU copy) with the
        evaluation's total gain when it is among the ``actor_mix_fallback`` lowest so far
        (evaluations with the analysis only)."""
        k = actor_mix_size(self.config, len(self.learner.agents))
        gain = float(metrics.get("gain", math.nan))
        if k <= 0 or not math.isfinite(gain):
            return
        cands = self.actor_candidates
        if len(cands) >= k and gain >= cands[-1][0]:
            return
        ep = int(self.learner.episode if episode is None else episode)
        params = [p.detach().to("cpu", copy=True) for p in self.learner.algo.actor_params]
        cands.append((gain, ep, params))
        cands.sort(key=lambda c: c[0])  # stable: the earlier of equal gains first
        del cands[k:]

    # ------------------------------------------------------------------ episodes
    def evaluation_due(self, episode: int, total: int) -> bool:
        return evaluation_due(self.config, episode, total, len(self.learner.agents))

    def scalars(self, stats: Mapping[str, Any], ev: EvalResult | None) -> dict[str, Any]:
        """Every scalar of an episode under its TensorBoard tag (= history column):
        ``train/*`` (episode statistics), ``losses/*`` (last gradient step), ``eval/*``
        (evaluation, all agents) and ``eval/profit_<agent>``, ``eval/dispatch_<agent>``,
        ``eval/br_share_<agent>``."""
        out: dict[str, Any] = {f"train/{k}": v for k, v in stats.items() if "/" not in k}
        out.update({k: v for k, v in stats.items() if k.startswith("losses/") and isinstance(v, (int, float))})
        if ev is not None:
            out.update({f"eval/{k}": v for k, v in ev.metrics().items()})
            for i, a in enumerate(self.learner.agents):
                out[f"eval/profit_{a}"] = float(ev.agent_profit[i])
                out[f"eval/dispatch_{a}"] = float(ev.dispatch[i])
                if ev.br_share is not None:
                    out[f"eval/br_share_{a}"] = float(ev.br_share[i])
        return out

    def record_episode(self, episode: int, stats: Mapping[str, Any], evaluation: EvalResult | None,
                       wall_time: float) -> tuple[dict[str, Any], bool]:
        """Bookkeeping after training episode ``episode`` and its evaluation (or None):
        TensorBoard, the history row, ``compare_and_save_policies``, early stopping,
        ``policies/last`` and ``history.csv``. Returns ``(row, stop)``."""
        cfg = self.config
        stop = False
        scalars = self.scalars(stats, evaluation)
        self._log(scalars, episode)
        row: dict[str, Any] = {"episode": int(episode), "wall_time": wall_time, **scalars}
        if evaluation is not None:
            m = evaluation.metrics()
            row["saved"] = "+".join(self.compare_and_save_policies(m, episode=episode))
            if validation_due(cfg, episode, cfg.training_episodes):  # best_policy_interval ones do not count
                prev_best, self.validated_reward = self.validated_reward, self.best["reward"]
                if cfg.early_stopping_steps:
                    gain = ((self.best["reward"] - prev_best) / max(abs(prev_best), 1e-9) if np.isfinite(prev_best)
                            else math.inf)
                    self.no_improve = 0 if gain > cfg.early_stopping_threshold else self.no_improve + 1
                    stop = self.no_improve >= cfg.early_stopping_steps
        if (cfg.stop_at_equilibrium and resolved_best_policy_metric(cfg.best_policy_metric) == "gain"
                and self.best.get("gain", math.inf) <= EQUILIBRIUM_GAIN_EUR):
            stop = True
            self.stop_reason = (f"stopping after episode {episode}: the kept policy is an equilibrium of the "
                                f"evaluation episode (the learners could gain {self.best['gain']:,.2f} EUR together "
                                "by deviating alone; stop_at_equilibrium: false trains on)")
        self.history.append(row)
        self.save("last", {k: v for k, v in row.items() if isinstance(v, (int, float))}, episode=episode + 1)
        if self.run_dir is not None:
            self._write_history(self.run_dir / "history.csv")
        if self.resume_state:
            self.save_state()
        return row, stop

    def _log(self, scalars: Mapping[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for tag, v in scalars.items():
            if isinstance(v, (int, float, np.floating)) and np.isfinite(v):
                self.writer.add_scalar(tag, float(v), step)

    def _write_history(self, path: Path) -> None:
        keys: list[str] = []
        for r in self.history:
            for k in r:
                if k not in keys:
                    keys.append(k)
        from .evaluation import neutralise_cell

        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([neutralise_cell(k) for k in keys])  # unit names are in column names
            for r in self.history:
                w.writerow([neutralise_cell(r.get(k, "")) for k in keys])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Best values, early-stopping counter and the history rows."""
        return {"best": dict(self.best), "no_improve": self.no_improve, "validated_reward": self.validated_reward,
                "history": [dict(r) for r in self.history]}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        self.best = {**initial_best(), **{k: float(v) for k, v in sd["best"].items()}}
        self.no_improve = int(sd["no_improve"])
        self.validated_reward = float(sd.get("validated_reward", self.best["reward"]))
        self.history = [dict(r) for r in sd["history"]]

    def save_state(self) -> Path:
        """Write ``RUN_DIR/state.pt`` atomically: the learner's state (counters,
        generators, networks, optimizers), these books, the config, :attr:`state_info`
        and, with :attr:`save_replay_buffer`, the replay buffer's contents. Called after
        every episode (after ``policies/last``); ``train.py --resume`` continues from it."""
        import torch

        from .jsonio import write_atomic

        assert self.run_dir is not None
        path = self.run_dir / STATE_NAME
        state = {"format": _RUN_STATE_FORMAT, "episode": int(self.learner.episode), "config": self.config.to_dict(),
                 "info": dict(self.state_info), "learner": self.learner.state_dict(), "recorder": self.state_dict(),
                 "buffer": self.learner.buffer_state_dict() if self.save_replay_buffer else None}
        write_atomic(path, lambda f: torch.save(state, f), binary=True, sync_dir=True)
        return path

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a :func:`read_run_state` state: the learner's state, the replay
        buffer when it was saved, these books; then :meth:`guard_best`."""
        self.learner.load_state_dict(state["learner"])
        if state.get("buffer") is not None:
            self.learner.load_buffer_state_dict(state["buffer"])
        self.load_state_dict(state["recorder"])
        self.guard_best()
        if self.writer is not None:  # TensorBoard: drop what episodes after the state logged before the crash
            from torch.utils.tensorboard import SummaryWriter

            log_dir = self.writer.log_dir
            self.writer.close()
            _start_after(self._earlier_event_files)
            self.writer = SummaryWriter(log_dir, purge_step=int(self.learner.episode))

    def guard_best(self) -> list[str]:
        """Raise :attr:`best` to the metrics recorded in the saved ``best`` /
        ``best_profit`` / ``best_regret`` manifests, so that a resumed run only
        replaces a saved best policy by a better one. Returns the names raised."""
        from .checkpoint import CheckpointError, read_manifest

        raised = []
        criteria = list(POLICY_CRITERIA)
        setting = resolved_best_policy_metric(self.config.best_policy_metric)
        if setting == "br_share":  # best by br_share (when its manifest has one)
            criteria.append(("br_share", "best", True))
        elif setting == "gain":
            criteria.append(("gain", "best", False))
        for key, name, larger in criteria:
            d = self.policy_dir(name)
            if d is None or not (d / "manifest.json").exists():
                continue
            try:
                value = float(((read_manifest(d).get("metrics") or {}).get(key)))
            except (CheckpointError, TypeError, ValueError):
                continue
            current = self.best.get(key, -math.inf if larger else math.inf)
            if math.isfinite(value) and ((value > current) if larger else (value < current)):
                self.best[key] = value
                if name not in raised:
                    raised.append(name)
        return raised

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_run_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resume state of a run folder (``RUN_DIR/state.pt``, loaded with
    ``weights_only=True``: no code runs). Raises :class:`ResumeError` (one line) when it
    is missing, unreadable or not a marketzoo run state."""
    import torch

    path = Path(run_dir) / STATE_NAME
    if not path.is_file():
        raise ResumeError(f"--resume {run_dir}: no {STATE_NAME} there (no episode completed, or not a run folder of "
                          "this version); start a new run instead")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one user-facing line
        raise ResumeError(f"--resume {run_dir}: {STATE_NAME} cannot be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); start a new run instead") from None
    if not isinstance(state, dict) or state.get("format") != _RUN_STATE_FORMAT:
        raise ResumeError(f"--resume {run_dir}: {STATE_NAME} is not a {_RUN_STATE_FORMAT} state")
    missing = [k for k in ("episode", "config", "info", "learner", "recorder") if k not in state]
    if missing:
        raise ResumeError(f"--resume {run_dir}: {STATE_NAME} lacks {missing}")
    return state


EQUILIBRIUM_GAIN_EUR = 1.0
"""``stop_at_equilibrium``: the largest total gain from deviating alone (EUR) that counts as
an equilibrium (float rounding of a zero-profit equilibrium is far below it)."""


def early_stop_message(config: LearningConfig, episode: int, recorder: RunRecorder | None = None) -> str:
    """The line printed when training stopped before its last episode."""
    if recorder is not None and recorder.stop_reason:
        return recorder.stop_reason
    return (f"early stopping after episode {episode}: no evaluation improved the reward by more than "
            f"{config.early_stopping_threshold:.0%} for {config.early_stopping_steps} evaluations")


def finish_run(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore,
               result: TrainResult, *, analysis: bool = True, plots: bool = True,
               extra: dict[str, Any] | None = None, echo: Callable[[str], None] = print,
               pending_reference: Any = None) -> dict[str, Any]:
    """The end of a run (both runtimes): load ``best`` (when saved), evaluate it, write
    ``RUN_DIR/summary.json`` (with ``extra`` merged in), print the summary and, with
    ``plots``, draw the PNG figures. Returns the summary. ``pending_reference``: the
    equilibrium reference started while the run trained
    (:class:`agents.reference.PendingEquilibrium`), if any."""
    best = recorder.policy_dir("best")
    if best is not None and best.exists():
        learner.load(best)
        if math.isfinite(recorder.best.get("gain", math.inf)):
            how = "lowest total gain from deviating alone (exact best responses)"
        elif math.isfinite(recorder.best.get("br_share", -math.inf)):
            how = "highest share of the best-response profit"
        else:
            how = "highest reward"
        evaluated = f"best policy: {how} of the evaluations"
        from .checkpoint import CheckpointError, read_manifest

        try:
            manifest = read_manifest(best)
            if (manifest.get("metrics") or {}).get("before_training"):
                evaluated += " (the actors right after the equilibrium teacher's fit, before any training episode)"
            mk = (manifest.get("trainer") or {}).get("start_up_markup_hours")
            if mk is not None and float(mk) != eval_core.start_up_markup_hours:  # start_up_markup_fallback kept it
                eval_core.set_start_up_markup(float(mk))
            tie = (manifest.get("trainer") or {}).get("tie_below_cost")
            if tie is not None:  # tie_below_cost_fallback may have switched it
                eval_core.tie_below_cost = bool(tie)
        except CheckpointError:
            pass
    else:  # no evaluation has run yet (e.g. all episodes were initial exploration)
        best = recorder.policy_dir("last")
        evaluated = "last policy: no evaluation ran during training, so no best policy was kept"
    ev = learner.evaluate(eval_core, scenario, analysis=analysis, refresh=False)  # training is over
    result.final_eval = ev
    summary = run_summary(scenario, eval_core, ev, episodes=result.episodes, wall_time=result.wall_time,
                          stopped_early=result.stopped_early, best=result.best)
    summary["evaluated_policy"] = evaluated
    summary.update(extra or {})
    out = recorder.run_dir
    from .reference import add_equilibrium_reference  # equilibrium profits, verdict, distance, plot

    add_equilibrium_reference(summary, scenario, learner.config, ev, echo=echo, pending=pending_reference,
                              plots_dir=out / "plots" if plots and out is not None else None)
    if out is not None:
        write_json_atomic(out / "summary.json", summary)
    print_run_summary(summary)
    if plots and out is not None:
        from .plots import make_plots

        paths = make_plots(out, recorder.history, ev, learner.agents, rows=summary["agents"])
        echo("plots: " + ", ".join(str(p) for p in paths))
    if out is not None:
        echo(f"TensorBoard: tensorboard --logdir {out / 'tb'}")
        if best is not None and best.exists():
            echo(f"evaluate:    python train.py evaluate --policy {best}")
    return summary


def _start_after(event_files: list[Path]) -> None:
    """Wait (at most two seconds) until a new TensorBoard event file sorts after
    ``event_files``.

    TensorBoard reads a run's event files in name order, and a name starts with the
    creation time in whole seconds followed by the host, process id and a per-process
    counter. Two files made in the same second can therefore sort in either order (the
    counter "10" sorts before "9"), and a purge written by the newer file would be read
    before the steps it should drop. Starting the new file in a later second keeps the
    order by time."""
    import time

    stamps = []
    for f in event_files:
        part = f.name.split(".")[3]
        if part.isdigit():
            stamps.append(int(part))
    if not stamps:
        return
    wait = max(stamps) + 1 - time.time()
    if 0 < wait <= 2:  # a file from the future (clock change) is not worth waiting for
        time.sleep(wait)

