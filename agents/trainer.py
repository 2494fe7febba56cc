"""The plain MATD3 training loop: a :class:`~agents.learner.Learner` and a
:class:`~agents.recorder.RunRecorder` on one market.

:class:`Trainer` owns one :class:`envs.MarketCore` (``num_envs`` synchronised copies of
the market) for training and a one-copy core for evaluation, and composes the learner
core (networks, buffer, schedule, noise, generators; see :mod:`agents.learner` for the
schedule) with the run's books (history, TensorBoard, best policies, early stopping,
``policies/last``; see :mod:`agents.recorder`). :meth:`Trainer.train` is::

    for episode in range(learner.episode, total):
        stats = learner.run_episode(core)
        ev = learner.evaluate(eval_core, scenario) if recorder.evaluation_due(episode, total) else None
        row, stop = recorder.record_episode(episode, stats, ev, wall_time)

The mango runtime (:mod:`agents.mango`) composes the same two objects.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs import MarketCore, Scenario

from .analysis_pool import AnalysisPool
from .config import LearningConfig
from .evaluation import EvalResult, evaluation_episode, print_run_summary, run_episode, run_summary, write_json_atomic
from .checkpoint import read_manifest
from .learner import (EQ_TEACHER_COPIES, EpisodeStats, Learner, configure_torch_threads, default_torch_threads,
                      policy_load_path)
from .recorder import RunRecorder, TrainResult, actor_mix_size, best_metric, early_stop_message, finish_run
from .seeding import agent_generators, draw_seed

__all__ = [
    "EvalResult", "EpisodeStats", "evaluate_policy", "Learner", "RunRecorder", "TrainResult", "Trainer", "agent_generators",
    "default_torch_threads", "evaluation_episode", "finish_run", "print_run_summary", "resolve_seed", "run_episode",
    "run_summary", "write_json_atomic",
]


def resolve_seed(seed: int | None, config: LearningConfig, scenario: Scenario | None = None) -> int:
    """The run seed: ``seed`` if given, else ``config.seed``, else the scenario's seed,
    else one drawn from the operating system (:func:`agents.seeding.draw_seed`)."""
    for s in (seed, config.seed, getattr(scenario, "seed", None)):
        if s is not None:
            return int(s)
    return draw_seed()


def env_options_for(config: LearningConfig, env_options: dict[str, Any] | None, *,
                    evaluation: bool = False, scenario: Scenario | None = None) -> dict[str, Any]:
    """:class:`envs.MarketCore` options of a run: ``env_options`` plus the config's
    ``max_bid_price``, ``regret_scale``, ``storage_bids``, ``storage_prices``,
    ``start_up_markup_hours``, ``min_power_rule``, ``cost_snap`` (resolved), ``tie_below_cost``,
    ``grid_learner_costs``, ``foresight`` and ``plant_bids`` (both resolved for ``scenario``; left to the env's defaults without
    one) and the episode options of :func:`envs.episode_options` (training env, or with
    ``evaluation=True`` the evaluation env: the held-out window when ``holdout_hours`` is
    set) unless given."""
    from envs.episodes import episode_options

    opts = dict(env_options or {})
    opts.setdefault("max_bid_price", config.max_bid_price)
    opts.setdefault("regret_scale", config.regret_scale)
    opts.setdefault("storage_bids", config.storage_bids)
    opts.setdefault("storage_prices", config.resolved_storage_prices())
    opts.setdefault("start_up_markup_hours", config.start_up_markup_hours)
    opts.setdefault("min_power_rule", config.min_power_rule)
    opts.setdefault("cost_snap", config.resolved_cost_snap())
    opts.setdefault("tie_below_cost", config.tie_below_cost)
    opts.setdefault("grid_learner_costs", config.grid_learner_costs)
    if scenario is not None:
        opts.setdefault("foresight", config.resolved_foresight(scenario))
        opts.setdefault("plant_bids", config.resolved_plant_bids(scenario))
    for k, v in episode_options(config, evaluation=evaluation).items():
        opts.setdefault(k, v)
    return opts


def core_run_info(core: MarketCore) -> dict[str, Any]:
    """What a run records of its env in every checkpoint's manifest (``trainer``), so that
    ``evaluate`` replays a policy with the env it was trained on (:func:`evaluate_policy`)."""
    return {"foresight": core.foresight, "max_bid_price": core.max_bid_price, "plant_bids": core.plant_bids,
            "storage_prices": core.storage_prices, "start_up_markup_hours": core.start_up_markup_hours,
            "min_power_rule": core.min_power_rule, "cost_snap": core.cost_snap,
            "tie_below_cost": core.tie_below_cost, "grid_learner_costs": core.grid_learner_costs}


def analysis_allowed(config: LearningConfig, n_agents: int, *, echo=print) -> bool:
    """Whether the per-evaluation best-response analysis runs: up to ``analysis_max_agents``
    learning agents; above, one note says it is skipped (it grows fast with the agents)."""
    if n_agents <= config.analysis_max_agents:
        return True
    echo(f"note: {n_agents} learning agents > analysis_max_agents ({config.analysis_max_agents}): the best-response "
         "analysis of the evaluations is skipped (train.py --force-analysis runs the final one)")
    return False


def scenario_info(scenario: Scenario, config: LearningConfig) -> dict[str, Any]:
    """What every checkpoint manifest records about the run's market: the scenario, its
    learning units (so ``train.py evaluate`` rebuilds the same agents, also those made to
    learn with ``--learning-units``) and the held-out hours (evaluated by ``evaluate``)."""
    return {"name": scenario.name, "study_case": scenario.study_case, "source": scenario.source,
            "learning_units": [name for _, name in scenario.learning_units], "holdout_hours": config.holdout_hours}


class Trainer:
    """MATD3 on one scenario (see the module docstring).

    Args:
        scenario: the loaded scenario.
        config: the validated learning config.
        run_dir: output folder (created); ``None`` writes nothing (tests, benchmarks)
            except policies when ``trained_policies_save_path`` is set.
        seed: seeds every generator of the run (env, buffer, noise, networks); ``None``:
            ``config.seed``, else the scenario's, else drawn from the OS. The seed used is
            recorded in ``config.yaml`` (:attr:`config`).
        env_options: passed to :class:`envs.MarketCore` (foresight, max_cycles, ...).
        progress: show a tqdm progress bar.
        tensorboard: write TensorBoard scalars to ``run_dir/tb``.
        analysis: run the best-response analysis at every evaluation.
        resume: a run state from :func:`agents.recorder.read_run_state` to continue from
            (episode counter, generators, networks, optimizers, history, best values and,
            when saved, the replay buffer); no warm start is applied on top.
        save_replay_buffer: also write the replay buffer into ``RUN_DIR/state.pt``.
        state_info: facts stored in ``state.pt`` for ``train.py --resume`` (scenario,
            study case).

    With a ``run_dir`` the run state is written to ``RUN_DIR/state.pt`` (atomically)
    after every episode, after ``policies/last``.

    ``continue_learning`` loads ``trained_policies_load_path`` (else
    ``trained_policies_save_path``) into the fresh learner: a warm start (networks and
    optimizer states), not a resume (episode counter, buffer and generators start anew).
    With ``learning_mode: false`` the policies from that path are only run:
    :meth:`train` evaluates them once and changes nothing.
    """

    def __init__(self, scenario: Scenario, config: LearningConfig, *, run_dir: str | os.PathLike | None = None,
                 seed: int | None = None, env_options: dict[str, Any] | None = None, progress: bool = True,
                 tensorboard: bool = True, analysis: bool = True, resume: dict[str, Any] | None = None,
                 save_replay_buffer: bool = False, state_info: dict[str, Any] | None = None) -> None:
        self.scenario = scenario
        self.seed = resolve_seed(seed, config, scenario)
        self.config = cfg = config.with_overrides({"seed": self.seed}) if config.seed != self.seed else config
        configure_torch_threads(cfg)
        self.env_options = dict(env_options or {})
        self.equilibrium_teacher_report: str | None = None
        self.stay_out_report: str | None = None  # stay_out_fallback's line, when it tried
        self.markup_report: str | None = None  # start_up_markup_fallback's line, when it tried
        self.tie_report: str | None = None  # tie_below_cost_fallback's line, when it tried
        self.mix_report: str | None = None  # actor_mix_fallback's line, when it tried
        self.search_report: str | None = None  # profile_search_fallback's line, when it tried
        self.fit_evaluation: dict[str, float] | None = None  # evaluate_fit
        self._pending_reference = None  # start_equilibrium_reference
        self.core = MarketCore(scenario, num_envs=cfg.num_envs, **env_options_for(cfg, env_options, scenario=scenario))
        self.eval_core = MarketCore(scenario, num_envs=1, **env_options_for(cfg, env_options, evaluation=True, scenario=scenario))
        self.eval_core.recording = True
        self._teacher_core: MarketCore | None = None  # teacher_core, built when first needed
        core = self.core
        if core.n == 0:
            raise ValueError(f"{scenario.summary()}: no learning units to train")
        self.agents = list(core.agents)
        self.n = core.n
        from .learner import replay_capacity
        from .resources import check_training_memory, estimate_for_config

        max_transitions = cfg.training_episodes * core.max_cycles * core.B  # the buffer is no larger (replay_capacity)
        device = cfg.resolved_device()  # a ConfigError for cuda without a GPU, before anything is allocated
        sized = cfg.with_overrides({"replay_buffer_size": replay_capacity(cfg, max_transitions)})
        check_training_memory(estimate_for_config(sized, core.n, core.obs_dim, core.act_dims.tolist()), device)
        self.learner = Learner(cfg, self.agents, core.obs_dim, core.act_dims.tolist(), num_envs=core.B, seed=self.seed,
                               device=device, max_transitions=max_transitions)
        self.device = self.learner.device
        self.learner.apply_unit_roles(core)
        self.progress = progress
        self.analysis = analysis and analysis_allowed(cfg, self.n)
        # the evaluations' best responses split over two cores where that pays (same results)
        self.learner.analysis_pool = AnalysisPool() if self.analysis and self.n >= 2 else None
        self.recorder = RunRecorder(
            cfg, self.learner, run_dir=run_dir, tensorboard=tensorboard,
            run_info=core_run_info(core),
            scenario_info=scenario_info(scenario, cfg),
            agent_kind=list(core.agent_kind), resume_state=run_dir is not None,
            save_replay_buffer=save_replay_buffer, state_info=state_info,
        )
        if resume is not None:  # continue an interrupted run (RUN_DIR/state.pt): no warm start on top
            self.recorder.restore(resume)
            return
        path = policy_load_path(cfg)
        if path is not None:  # continue_learning (warm start) or learning_mode: false (fixed policies)
            self.learner.load(path, load_optimizers=cfg.learning_mode)

    # ------------------------------------------------------------------ views
    @property
    def algo(self):
        return self.learner.algo

    @property
    def buffer(self):
        return self.learner.buffer

    @property
    def n_updates(self) -> int:
        return self.learner.n_updates

    @property
    def episode(self) -> int:
        """Training episodes completed (= the next one's index)."""
        return self.learner.episode

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.recorder.history

    @property
    def best(self) -> dict[str, float]:
        return self.recorder.best

    @property
    def run_dir(self) -> Path | None:
        return self.recorder.run_dir

    @property
    def mask(self) -> np.ndarray:
        return self.learner.mask

    def noise_scale(self, episode: int) -> float:
        """Scale of the first noise draw of training episode ``episode``."""
        return self.learner.noise_scale(episode, self.core.max_cycles)

    def learning_rate(self, episode: int) -> float:
        return self.learner.learning_rate(episode)

    def evaluation_due(self, episode: int, total: int) -> bool:
        return self.recorder.evaluation_due(episode, total)

    def compare_and_save_policies(self, metrics: dict[str, float]) -> list[str]:
        return self.recorder.compare_and_save_policies(metrics)

    # ------------------------------------------------------------------ episodes
    def run_episode(self) -> dict[str, float]:
        """Run the next training episode (:attr:`episode`) on the training market;
        returns its statistics."""
        return self.learner.run_episode(self.core)

    @property
    def teacher_core(self) -> MarketCore | None:
        """Where the evaluations run hours outside the training env's window (``holdout_hours``
        in the config, or in ``env_options`` with an :attr:`eval_core` set to the held-out
        hours by hand): a one-copy recording market over the
        first training window without noise, on which the best-response teacher gets its
        own analysed episode (:meth:`refresh_teacher`). ``None`` where the evaluation
        hours lie within the training hours (the evaluation's episode is used)."""
        (t0, t1), (e0, e1) = self.core.window, self.eval_core.window  # hours episodes may cover
        if t0 <= e0 and e1 <= t1:
            return None
        if self._teacher_core is None:
            opts = {k: v for k, v in env_options_for(self.config, self.env_options, scenario=self.scenario).items()
                    if k not in ("random_start", "demand_noise", "availability_noise")}
            self._teacher_core = MarketCore(self.scenario, num_envs=1, **opts)  # the training env's markup too
            self._teacher_core.recording = True
        return self._teacher_core

    def evaluate(self, *, analysis: bool | None = None) -> EvalResult:
        """One deterministic episode on copy 0 (no noise); with the best-response analysis.
        An analysed evaluation also refreshes the best-response teacher (from the
        evaluation's own episode only where it runs training hours: see
        :meth:`refresh_teacher`)."""
        analysis = self.analysis if analysis is None else analysis
        own = self.teacher_core is None
        ev = self.learner.evaluate(self.eval_core, self.scenario, analysis=analysis, refresh=own)
        if analysis and not own:
            self.refresh_teacher()
        return ev

    def refresh_teacher(self) -> None:
        """Refresh the best-response teacher (``best_response_teacher``) from an analysed
        deterministic episode: the evaluation's, or where the evaluations run hours the
        training env never plays (``holdout_hours``) one on the training hours
        (:attr:`teacher_core`), so that training never imitates best responses on the
        held-out hours. Nothing when the teacher is off."""
        if self.learner.best_response_teaching:
            core = self.teacher_core
            self.learner.evaluate(self.eval_core if core is None else core, self.scenario, analysis=True)

    def train(self, episodes: int | None = None) -> TrainResult:
        """Train up to ``episodes`` (default ``training_episodes``) episodes in total,
        continuing from :attr:`episode`; then :meth:`stay_out_fallback`,
        :meth:`start_up_markup_fallback`, :meth:`tie_below_cost_fallback`,
        :meth:`actor_mix_fallback` and :meth:`profile_search_fallback`."""
        cfg = self.config
        if not cfg.learning_mode:  # run the loaded policies, as ASSUME does; no training
            t0 = time.perf_counter()
            ev = self.evaluate()
            return TrainResult(self.run_dir, 0, time.perf_counter() - t0, dict(self.best), self.history, ev, False)
        total = int(episodes or cfg.training_episodes)
        from tqdm.auto import tqdm

        start = time.perf_counter()
        first_call = self.equilibrium_teacher_report is None  # the teacher is prepared once per trainer
        self.prepare_equilibrium_teacher()
        if first_call and self.learner.equilibrium_fitted:  # fitted only before the first episode
            self.evaluate_fit()
        stopped = False
        bar = tqdm(range(self.episode, total), desc="training", unit="ep", disable=not self.progress, dynamic_ncols=True)
        for ep in bar:
            stats = self.run_episode()
            due = self.evaluation_due(ep, total)
            if not due and self.learner.teacher_due(ep):  # best_response_teacher: refresh it
                self.refresh_teacher()
            wall_time = time.perf_counter() - start
            ev = self.evaluate() if due else None
            row, stopped = self.recorder.record_episode(ep, stats, ev, wall_time)
            postfix = {"reward": f"{stats['reward']:.3f}", "price": f"{stats['mean_price']:.1f}",
                       "profit": f"{stats['profit'] / 1e6:.2f}M"}
            if "eval/br_share" in row:
                postfix["br"] = f"{row['eval/br_share']:.2f}"
            bar.set_postfix(postfix)
            if stopped:
                bar.write(early_stop_message(cfg, ep, self.recorder))
                break
        bar.close()
        self.recorder.flush()
        self.stay_out_fallback()
        self.start_up_markup_fallback()
        self.tie_below_cost_fallback()
        self.actor_mix_fallback()
        self.profile_search_fallback()
        return TrainResult(self.run_dir, self.episode, time.perf_counter() - start, dict(self.best),
                           self.history, None, stopped)

    def stay_out_fallback(self) -> list[str]:
        """``stay_out_fallback`` after training (:func:`stay_out_fallback`); its line is
        kept in :attr:`stay_out_report`. Returns the plants kept out."""
        names, report = stay_out_fallback(self.learner, self.recorder, self.scenario, self.eval_core,
                                          analysis=self.analysis, progress=self.progress)
        if report is not None:
            self.stay_out_report = report
        return names

    def start_up_markup_fallback(self) -> float:
        """``start_up_markup_fallback`` after training (:func:`start_up_markup_fallback`);
        its line is kept in :attr:`markup_report`. Returns the markup kept (hours, 0: none)."""
        hours, report = start_up_markup_fallback(self.learner, self.recorder, self.scenario, self.eval_core,
                                                 analysis=self.analysis, progress=self.progress)
        if report is not None:
            self.markup_report = report
        return hours

    def tie_below_cost_fallback(self) -> bool:
        """``tie_below_cost_fallback`` after training (:func:`tie_below_cost_fallback`); its
        line is kept in :attr:`tie_report`. Returns the reading kept."""
        flag, report = tie_below_cost_fallback(self.learner, self.recorder, self.scenario, self.eval_core,
                                               analysis=self.analysis, progress=self.progress)
        if report is not None:
            self.tie_report = report
        return flag

    def actor_mix_fallback(self) -> dict[str, int]:
        """``actor_mix_fallback`` after training (:func:`actor_mix_fallback`); its line is
        kept in :attr:`mix_report`. Returns ``{agent: episode}`` of the actors taken."""
        taken, report = actor_mix_fallback(self.learner, self.recorder, self.scenario, self.eval_core,
                                           analysis=self.analysis, progress=self.progress)
        if report is not None:
            self.mix_report = report
        return taken

    def profile_search_fallback(self) -> dict[str, Any] | None:
        """``profile_search`` after training (:func:`profile_search_fallback`); its line is
        kept in :attr:`search_report`. Returns what was kept (None: nothing)."""
        kept, report = profile_search_fallback(self.learner, self.recorder, self.scenario, self.eval_core,
                                               analysis=self.analysis, progress=self.progress)
        if report is not None:
            self.search_report = report
        return kept

    def prepare_equilibrium_teacher(self) -> None:
        """``equilibrium_teacher``: compute the equilibrium reference of the training hours
        and teach it (:meth:`agents.learner.Learner.set_equilibrium_teacher`; the actors
        are fitted to it only before the first episode, not on a resume), once per
        trainer; the report line is printed with the progress bar and kept in
        :attr:`equilibrium_teacher_report`."""
        if self.equilibrium_teacher_report is not None or not self.learner.equilibrium_teacher_wanted(self.core):
            return
        opts = {k: v for k, v in env_options_for(self.config, self.env_options, scenario=self.scenario).items()
                if k not in ("random_start", "demand_noise", "availability_noise")}
        # the training window from hour 0, no noise; copies for the rollouts after the fit
        # (equilibrium_teacher_rollouts; a resume neither fits nor rolls out)
        fit = self.episode == 0
        copies = EQ_TEACHER_COPIES if fit and self.config.equilibrium_teacher_rollouts else 1
        core = MarketCore(self.scenario, num_envs=copies, **opts)
        if self.progress:
            print(f"equilibrium teacher: computing the equilibrium reference of {core.max_cycles} training hours "
                  "(equilibrium_teacher: false skips it) ...", flush=True)
        self.equilibrium_teacher_report = self.learner.set_equilibrium_teacher(core, self.scenario, fit=fit)
        if self.progress:
            print(self.equilibrium_teacher_report, flush=True)

    def evaluate_fit(self) -> EvalResult:
        """Evaluate the actors right after the equilibrium teacher's fit, before the first
        training episode, and let them compete for ``policies/best`` like any evaluation
        (training can move a fitted profile away from equilibrium, e.g. in a competitive
        market where every learner's equilibrium bid is its marginal cost). Its metrics
        are kept in :attr:`fit_evaluation` (not in the per-episode history)."""
        ev = self.evaluate()
        self.fit_evaluation = m = {**ev.metrics(), "before_training": 1.0}  # the manifest says where it comes from
        self.recorder.compare_and_save_policies(m)
        if self.progress and "gain" in m:
            print(f"equilibrium teacher: the fitted actors, evaluated: the learners could gain {m['gain']:,.0f} EUR "
                  f"together by deviating alone (share of the best-response profit {m['br_share']:.3f})", flush=True)
        return ev

    def start_equilibrium_reference(self) -> None:
        """Start the equilibrium reference of the final summary now, in a separate process,
        so that it is computed while the run trains (:class:`agents.reference.PendingEquilibrium`:
        on two or more usable cores, when the summary will compute it, and for at least
        :data:`agents.reference.BACKGROUND_MIN_TRAINING_HOURS` training hours); :meth:`finish`
        then waits only for what is left of it. ``train.py`` calls this before :meth:`train`."""
        from . import reference

        cfg = self.config
        hours = max(0, cfg.training_episodes - self.episode) * self.core.max_cycles
        if self._pending_reference is not None or not cfg.learning_mode or hours < reference.BACKGROUND_MIN_TRAINING_HOURS:
            return
        ec = self.eval_core
        first = ec.window[0] if ec.start_mode != "random" else -1
        self._pending_reference = reference.PendingEquilibrium.start(self.scenario, cfg, self.n, ec.max_cycles, first)

    def finish(self, result: TrainResult, *, plots: bool = True, extra: dict[str, Any] | None = None,
               force_analysis: bool = False) -> dict[str, Any]:
        """:func:`agents.recorder.finish_run` for this trainer (``force_analysis``: the final
        best-response analysis even above ``analysis_max_agents``)."""
        if self.equilibrium_teacher_report is not None:  # say where the learned bids come from
            extra = {"equilibrium_teacher": self.equilibrium_teacher_report, **(extra or {})}
        if self.stay_out_report is not None:
            extra = {"stay_out": self.stay_out_report, **(extra or {})}
        if self.markup_report is not None:
            extra = {"start_up_markup": self.markup_report, **(extra or {})}
        if self.tie_report is not None:
            extra = {"tie_below_cost_fallback": self.tie_report, **(extra or {})}
        if self.mix_report is not None:
            extra = {"actor_mix_fallback": self.mix_report, **(extra or {})}
        if self.search_report is not None:
            extra = {"profile_search": self.search_report, **(extra or {})}
        pending, self._pending_reference = self._pending_reference, None
        return finish_run(self.learner, self.recorder, self.scenario, self.eval_core, result,
                          analysis=self.analysis or force_analysis, plots=plots, extra=extra, pending_reference=pending)

    def close(self) -> None:
        if self.learner.analysis_pool is not None:
            self.learner.analysis_pool.close()
        if self._pending_reference is not None:
            self._pending_reference.close()
            self._pending_reference = None
        self.recorder.close()


@contextmanager
def _actors_restored(learner: Learner):
    """The learner's actors and target actors as they are now, put back on exit (the
    fallbacks below load ``policies/best`` and change actors only to evaluate them)."""
    algo = learner.algo
    kept = [[p.detach().clone() for p in ps] for ps in (algo.actor_params, algo.actor_target_params)]
    try:
        yield
    finally:
        for ps, old in zip((algo.actor_params, algo.actor_target_params), kept):
            for p, o in zip(ps, old):
                p.data.copy_(o)


def _better(by: str, new: dict[str, float], old: dict[str, float]) -> bool:
    """Whether evaluation metrics ``new`` beat ``old`` by ``best_metric``'s ``by`` (lower
    total gain, else higher share or reward)."""
    return new[by] < old[by] if by == "gain" else new[by] > old[by]


def _gain_change(m0: dict, m: dict) -> str:
    nan = float("nan")
    return f"total gain from deviating {m0.get('gain', nan):,.0f} -> {m.get('gain', nan):,.0f} EUR"


LOSS_TOLERANCE_EUR = 1.0
"""A plant "loses money" over an episode below this many EUR of loss: at a zero-profit
equilibrium (learners at cost) the profits are 0 up to float rounding (-1e-9 EUR)."""


def losing_plants(kinds, profit) -> list[int]:
    """Indices of the plant agents whose episode profit is a loss of more than
    :data:`LOSS_TOLERANCE_EUR` (what :func:`stay_out_fallback` tries to keep out)."""
    return [i for i, (k, p) in enumerate(zip(kinds, profit)) if k == "plant" and p < -LOSS_TOLERANCE_EUR]


def stay_out_fallback(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore, *,
                      analysis: bool, progress: bool = False) -> tuple[list[str], str | None]:
    """``stay_out_fallback``: evaluate the run's ``policies/best`` with the analysis; where
    learning plants lose money over that episode, evaluate it again with their actors set
    to stay out (:meth:`agents.learner.Learner.stay_out`) and keep that as ``policies/best``
    when it is better by ``best_policy_metric`` (its manifest names the plants under
    ``trainer.stay_out``; ``best_profit`` and ``best_regret`` do not compete). The
    learner's own actors are left as they were. Returns the plants kept out (empty when
    none lost money or staying out was not better) and a one-line report (``None`` when
    nothing was tried). Both runtimes call it when training ends."""
    cfg = learner.config
    run_dir = recorder.run_dir
    best = None if run_dir is None else Path(run_dir) / "policies" / "best"
    if (not cfg.stay_out_fallback or not cfg.learning_mode or not analysis or best is None
            or not (best / "manifest.json").exists()):
        return [], None
    kinds = np.asarray(eval_core.agent_kind)
    with _actors_restored(learner):
        manifest = learner.load(best, load_optimizers=False, load_critics=False)
        if manifest.get("trainer", {}).get("stay_out"):  # already kept out (a resumed run)
            return [], None
        ev = learner.evaluate(eval_core, scenario, analysis=True, refresh=False)
        if ev.br_share is None:
            return [], None
        losing = losing_plants(kinds, ev.agent_profit)
        if not losing:
            return [], None
        learner.stay_out(losing)
        ev2 = learner.evaluate(eval_core, scenario, analysis=True, refresh=False)
        names = [learner.agents[i] for i in losing]
        m0, m = ev.metrics(), {**ev2.metrics(), "stay_out": len(losing)}
        # only policies/best competes (best_profit would keep a market some plants withhold from)
        by = best_metric(cfg.best_policy_metric, m, recorder.best)
        better = _better(by, m, m0)
        what = ", ".join(f"{a} ({ev.agent_profit[i]:,.0f} EUR)" for a, i in zip(names, losing))
        change = _gain_change(m0, m)
        report = f"stay_out_fallback: {what} lost money in the kept policy's evaluation; "
        if better:
            recorder.save("best", dict(m), episode=manifest.get("episode"), trainer_info={"stay_out": names})
            recorder.best[by] = float(m[by])
            report += f"kept with {'it' if len(names) == 1 else 'them'} offering at the top of the bid range ({change})"
        else:
            report += f"staying out was not better ({change}), kept as it was"
        if progress:
            print(report, flush=True)
        return (names if better else []), report


def _markup_fallback_acts(cfg: LearningConfig, eval_core: MarketCore) -> bool:
    """Whether ``start_up_markup_fallback`` has markups to try here (a learning plant with a start-up cost)."""
    return bool(cfg.start_up_markup_fallback) and bool((eval_core.agent_start_up_cost[eval_core.sl_plant] > 0).any())


def _tie_fallback_acts(cfg: LearningConfig, eval_core: MarketCore) -> bool:
    """Whether ``tie_below_cost_fallback`` acts here (learning plants bid on the grid)."""
    return bool(cfg.tie_below_cost_fallback) and eval_core.plant_bids == "undercut" and len(eval_core.lp) > 0


def _tie_setter(eval_core: MarketCore):
    """``apply`` for the ``tie_below_cost`` reading of ``eval_core``."""
    def apply(flag):
        eval_core.tie_below_cost = bool(flag)
    return apply


_KEPT_READINGS = ("stay_out", "start_up_markup_hours", "tie_below_cost", "actor_mix")
"""What the fallbacks below record of ``policies/best`` in its manifest's ``trainer`` part:
a later fallback that saves it again keeps what an earlier one chose."""


def _reading_fallback(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore, *,
                      key: str, own, candidates: list, apply, read, analysis: bool) -> tuple[Any, list | None]:
    """The shared part of the fallbacks that try the kept policy under another reading of
    its bids (:func:`start_up_markup_fallback`, :func:`tie_below_cost_fallback`):
    evaluate ``policies/best`` with the exact analysis with ``apply(own)`` (the reading
    as trained), then with each of ``candidates``, keep the best by
    ``best_policy_metric`` and save it as ``policies/best`` with its manifest's
    ``trainer.<key>`` set to it (``eval_core`` is left with the choice applied). ``read``
    maps the manifest's recorded value (``None`` when absent) to a reading. Returns the
    choice and ``[(reading, metrics), ...]`` of every evaluation, the one as trained first
    (``None`` when nothing was tried, or when ``policies/best`` already records a reading
    of its own, e.g. in a resumed run: that one is then applied)."""
    cfg = learner.config
    run_dir = recorder.run_dir
    best = None if run_dir is None else Path(run_dir) / "policies" / "best"
    if not candidates or not cfg.learning_mode or not analysis or best is None or not (best / "manifest.json").exists():
        return own, None
    with _actors_restored(learner):
        manifest = learner.load(best, load_optimizers=False, load_critics=False)
        info = manifest.get("trainer") or {}
        recorded = read(info.get(key))
        if recorded != own:  # chosen before (a resumed run, or a second call)
            apply(recorded)
            return recorded, None
        apply(own)
        m0 = learner.evaluate(eval_core, scenario, analysis=True, refresh=False).metrics()
        if "gain" not in m0:
            return own, None
        by = best_metric(cfg.best_policy_metric, m0, recorder.best)
        choice, mc = own, m0
        results = [(own, m0)]
        for value in candidates:
            apply(value)
            m = learner.evaluate(eval_core, scenario, analysis=True, refresh=False).metrics()
            results.append((value, m))
            if _better(by, m, mc):
                choice, mc = value, m
        apply(choice)
        if choice != own:
            earlier = {k: info[k] for k in _KEPT_READINGS if k in info}  # earlier fallbacks' choices
            recorder.save("best", {**mc, key: choice}, episode=manifest.get("episode"),
                          trainer_info={**earlier, key: choice})
            recorder.best[by] = float(mc[by])
        return choice, results


def start_up_markup_fallback(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore, *,
                             analysis: bool, progress: bool = False) -> tuple[float, str | None]:
    """``start_up_markup_fallback``: evaluate the run's ``policies/best`` with the analysis
    (after :func:`stay_out_fallback`), then again with each of the key's
    ``start_up_markup_hours`` in ``eval_core`` (a cold plant with a start-up cost offers at
    least its cost plus that cost spread over so many hours at minimum power), and keep
    the best of them as ``policies/best`` when it is better by ``best_policy_metric`` (its
    manifest records the markup under ``trainer.start_up_markup_hours``, which
    ``train.py evaluate`` and :func:`evaluate_policy` read; ``eval_core`` keeps it, so the
    run's summary evaluates what was kept). The actors are not changed. Returns the
    markup kept (the training env's when none was better) and a one-line report
    (``None`` when nothing was tried: the key is empty, no learning plant has a start-up
    cost, no analysis, no run folder, or ``policies/best`` already records a markup of
    its own, e.g. in a resumed run). Both runtimes call it when training ends."""
    cfg = learner.config
    own = float(recorder.run_info.get("start_up_markup_hours", eval_core.start_up_markup_hours))  # as trained
    hours = ([float(h) for h in cfg.start_up_markup_fallback if float(h) != own]
             if _markup_fallback_acts(cfg, eval_core) else [])
    choice, results = _reading_fallback(learner, recorder, scenario, eval_core, key="start_up_markup_hours", own=own,
                                        candidates=hours, apply=eval_core.set_start_up_markup,
                                        read=lambda v: float(v or 0.0), analysis=analysis)
    if results is None:
        return choice, None
    if choice != own:
        report = (f"start_up_markup_fallback: kept with a start-up markup over {choice:g} h "
                  f"(cold plants offer at least cost + start-up cost / ({choice:g} h x min power); "
                  f"{_gain_change(results[0][1], dict(results)[choice])})")
    else:
        tried = ", ".join(f"{h:g}" for h in hours)
        report = f"start_up_markup_fallback: no start-up markup ({tried} h) was better, kept as it was"
    if progress:
        print(report, flush=True)
    return choice, report


def tie_below_cost_fallback(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore, *,
                            analysis: bool, progress: bool = False) -> tuple[bool, str | None]:
    """``tie_below_cost_fallback``: where ``eval_core`` reads plant offers on its grid
    (``plant_bids="undercut"``), evaluate the run's ``policies/best`` with the analysis
    (after :func:`start_up_markup_fallback`) with the env's ``tie_below_cost`` as trained
    and switched the other way (a plant's offer that the grid would put a tick under a
    rule offer priced below its cost ties with that offer instead), and keep the better
    as ``policies/best`` by ``best_policy_metric`` (its manifest records it under
    ``trainer.tie_below_cost``, which ``train.py evaluate`` and :func:`evaluate_policy`
    read; ``eval_core`` keeps it). The actors are not changed. Returns the reading kept
    and a one-line report (``None`` when nothing was tried: the key is off, no plant
    bids on the grid, no analysis, no run folder, or ``policies/best`` already records a
    reading of its own). Both runtimes call it when training ends."""
    cfg = learner.config
    own = bool(recorder.run_info.get("tie_below_cost", eval_core.tie_below_cost))  # as trained
    tried = [not own] if _tie_fallback_acts(cfg, eval_core) else []
    choice, results = _reading_fallback(learner, recorder, scenario, eval_core, key="tie_below_cost", own=own,
                                        candidates=tried, apply=_tie_setter(eval_core), read=lambda v: bool(v),
                                        analysis=analysis)
    if results is None:
        return choice, None
    (_, m0), (other, m1) = results
    change = _gain_change(m0, m1)
    if choice != own:
        how = ("offers a tick under a rule offer below the plant's cost tie with it" if choice
               else "offers go a tick under every rule offer")
        report = f"tie_below_cost_fallback: kept with tie_below_cost {str(choice).lower()} ({how}; {change})"
    else:
        report = f"tie_below_cost_fallback: tie_below_cost {str(other).lower()} was not better ({change}), kept as it was"
    if progress:
        print(report, flush=True)
    return choice, report


ACTOR_MIX_PASSES = 2
""":func:`actor_mix_fallback` stops after this many passes over the learners."""


def _mix_readings(cfg: LearningConfig, eval_core: MarketCore, recorder: RunRecorder) -> list[tuple[str, list, Any]]:
    """The readings :func:`actor_mix_fallback` tries again once an actor changed: those
    whose fallback is on and acts in this market, as ``(manifest key, values, apply)``."""
    out: list[tuple[str, list, Any]] = []
    if _markup_fallback_acts(cfg, eval_core):
        own = float(recorder.run_info.get("start_up_markup_hours", 0.0))
        out.append(("start_up_markup_hours", list(dict.fromkeys([own, *map(float, cfg.start_up_markup_fallback)])),
                    eval_core.set_start_up_markup))
    if _tie_fallback_acts(cfg, eval_core):
        out.append(("tie_below_cost", [False, True], _tie_setter(eval_core)))
    return out


def _reading_now(eval_core: MarketCore, key: str):
    return float(eval_core.start_up_markup_hours) if key == "start_up_markup_hours" else bool(getattr(eval_core, key))


def actor_mix_fallback(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore, *,
                       analysis: bool, progress: bool = False) -> tuple[dict[str, int], str | None]:
    """``actor_mix_fallback``: starting from the run's ``policies/best`` (evaluated in
    ``eval_core`` with the readings the fallbacks before it chose), try each learner's
    actor from each of the evaluations :attr:`RunRecorder.actor_candidates` kept (the
    ones with the lowest total gain), one learner at a time, the one with the largest
    gain from deviating first, the others as they are; keep a change when the evaluation
    with the exact analysis is better by ``best_policy_metric``. After a pass in which an
    actor changed, the readings whose fallbacks are on (``start_up_markup_fallback``'s
    markups, ``tie_below_cost`` either way) are tried again the same way, since the
    choice made for the old actors need not hold for the new ones. At most
    :data:`ACTOR_MIX_PASSES` passes and ``actor_mix_evaluations`` evaluations; a
    learner's candidate is not evaluated again where only that learner's own actor
    changed since (the evaluation is deterministic: it would score the same). When an
    actor changed, save the result as ``policies/best`` (its manifest records
    ``trainer.actor_mix``: the episode of the evaluation each changed actor comes from,
    and the readings; ``eval_core`` keeps them). The learner's own actors are left as
    they were. Returns ``{agent: episode}`` of the actors taken (empty when none) and a
    one-line report (``None`` when nothing was tried: the key is 0, no candidates, no
    analysis, no run folder, or ``policies/best`` already records a mix, e.g. in a
    resumed run). Both runtimes call it when training ends."""
    cfg = learner.config
    cands = recorder.actor_candidates
    run_dir = recorder.run_dir
    best = None if run_dir is None else Path(run_dir) / "policies" / "best"
    if (actor_mix_size(cfg, len(learner.agents)) <= 0 or not cands or not cfg.learning_mode or not analysis
            or best is None or not (best / "manifest.json").exists()):
        return {}, None
    params = learner.algo.actor_params
    readings = _mix_readings(cfg, eval_core, recorder)
    with _actors_restored(learner):
        manifest = learner.load(best, load_optimizers=False, load_critics=False)
        info = manifest.get("trainer") or {}
        if info.get("actor_mix") is not None:  # chosen before (a resumed run)
            return {}, None
        ev = learner.evaluate(eval_core, scenario, analysis=True, refresh=False)
        m0 = ev.metrics()
        if "gain" not in m0:
            return {}, None
        by = best_metric(cfg.best_policy_metric, m0, recorder.best)
        current = [p.detach().clone() for p in params]
        mc, gains = m0, np.asarray(ev.br_profit) - np.asarray(ev.agent_profit)
        read0 = {key: _reading_now(eval_core, key) for key, _, _ in readings}
        taken: dict[str, int] = {}
        runs = 0
        # what changed when: an evaluation of learner a with candidate k repeats an earlier
        # one (the same bids: deterministic) unless another learner or a reading changed since
        changes: list = []
        seen: dict[tuple[int, int], int] = {}
        for _ in range(ACTOR_MIX_PASSES):
            changed = False
            for a in np.argsort(-gains, kind="stable"):
                for k, (_gain, episode, cand) in enumerate(cands):
                    if all(torch.equal(c[a].to(cur.device), cur[a]) for c, cur in zip(cand, current)):
                        continue  # this learner's actor already
                    if (a, k) in seen and all(who == a for who in changes[seen[a, k]:]):
                        continue  # evaluated before against the same bids of the others
                    if runs >= cfg.actor_mix_evaluations:
                        break
                    seen[a, k] = len(changes)
                    with torch.no_grad():
                        for p, cur, c in zip(params, current, cand):
                            p.copy_(cur)
                            p[a].copy_(c[a])
                    ev = learner.evaluate(eval_core, scenario, analysis=True, refresh=False)
                    runs += 1
                    m = ev.metrics()
                    if _better(by, m, mc):
                        mc, changed = m, True
                        current = [p.detach().clone() for p in params]
                        gains = np.asarray(ev.br_profit) - np.asarray(ev.agent_profit)
                        taken[learner.agents[a]] = int(episode)
                        changes.append(a)
            with torch.no_grad():
                for p, cur in zip(params, current):
                    p.copy_(cur)
            if not changed:
                break
            for key, values, apply in readings:  # the actors changed: the readings again
                now = _reading_now(eval_core, key)
                for v in values:
                    if v == now or runs >= cfg.actor_mix_evaluations:
                        continue
                    apply(v)
                    ev = learner.evaluate(eval_core, scenario, analysis=True, refresh=False)
                    runs += 1
                    m = ev.metrics()
                    if _better(by, m, mc):
                        mc, now = m, v
                        gains = np.asarray(ev.br_profit) - np.asarray(ev.agent_profit)
                        changes.append(-1)
                apply(now)
            if runs >= cfg.actor_mix_evaluations:
                break
        if taken:
            earlier = {k: info[k] for k in _KEPT_READINGS if k in info}
            if earlier.get("stay_out"):  # a plant kept out that now bids with another actor is no longer out
                earlier["stay_out"] = [a for a in earlier["stay_out"] if a not in taken]
            now = {key: _reading_now(eval_core, key) for key, _, _ in readings}
            recorder.save("best", {**mc, "actor_mix": len(taken)}, episode=manifest.get("episode"),
                          trainer_info={**earlier, **now, "actor_mix": taken})
            recorder.best[by] = float(mc[by])
            what = ", ".join(f"{a} from episode {e}" for a, e in taken.items())
            moved = [f"{k} {str(v).lower() if isinstance(v, bool) else f'{v:g} h'}" for k, v in now.items()
                     if v != read0[k]]
            report = (f"actor_mix_fallback: kept with {what}" + (f", then {', '.join(moved)}" if moved else "")
                      + f" ({_gain_change(m0, mc)}; {runs} evaluations of {len(cands)} evaluations' actors)")
        else:
            report = (f"actor_mix_fallback: no actor of the {len(cands)} best evaluations was better "
                      f"({runs} evaluations), kept as it was")
    if progress:
        print(report, flush=True)
    return taken, report


def _search_score(ev: EvalResult) -> tuple[float, float]:
    """An evaluation scored by the figure that ``profile_search_tolerance`` reads and that
    decides whether the searched policy is kept (:func:`agents.profile_search.score`,
    objective "both"): ``(max(largest gain share, exploitability), total gain)``."""
    from .profile_search import score

    return score({"br": np.asarray(ev.br_profit, dtype=float), "profit": np.asarray(ev.agent_profit, dtype=float)},
                 "both")


#: what ``profile_search`` lowers step by step (:func:`agents.profile_search.score`): a
#: smooth maximum of the learners' gain shares and the exploitability (RESULTS.md, round 41)
SEARCH_OBJECTIVE = "smooth"


def profile_search_fallback(learner: Learner, recorder: RunRecorder, scenario: Scenario, eval_core: MarketCore, *,
                            analysis: bool, progress: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """``profile_search``: starting from the run's ``policies/best`` (evaluated in
    ``eval_core`` with the readings the fallbacks chose), run
    :func:`agents.profile_search.search` over its evaluation episode for
    ``profile_search`` proposals (generator seeded by the run's seed; the analysis on two
    cores where the learner has a pool), fit the actors to the best profile found
    (:func:`agents.distil.distil`) and evaluate them; where they score better than
    ``policies/best`` by the larger of the largest gain share and the exploitability
    (:func:`_search_score`; the search itself lowers a smooth maximum of the same figures,
    :data:`SEARCH_OBJECTIVE`), save them as ``policies/best`` (manifest:
    ``trainer.profile_search``, with the readings kept). The learner's own actors and
    their optimizer are left as they were. Returns what was kept (``None``: nothing) and
    a one-line report (``None`` when nothing was tried: the key is 0, no analysis, no run
    folder, or the episode's bids cannot be rebuilt as actions, which the report says)."""
    cfg = learner.config
    run_dir = recorder.run_dir
    best = None if run_dir is None else Path(run_dir) / "policies" / "best"
    if (cfg.profile_search <= 0 or not cfg.learning_mode or not analysis or best is None
            or not (best / "manifest.json").exists() or eval_core.B != 1):
        return None, None
    import copy

    from tqdm.auto import tqdm

    from .distil import distil_profile
    from .profile_search import Replay, search, start_profile, start_search_helper

    opt = learner.algo.actor_optimizer
    opt_state, lr = copy.deepcopy(opt.state_dict()), learner.algo.learning_rate
    pool = learner.analysis_pool
    fn = None if pool is None else (lambda rec, agents, sc: pool.best_responses(rec, agents, sc))
    kept_info = None
    with _actors_restored(learner):
        try:
            manifest = learner.load(best, load_optimizers=False, load_critics=False)
            info = manifest.get("trainer") or {}
            if info.get("profile_search") is not None:  # chosen before (a resumed run)
                return None, None
            ev0 = learner.evaluate(eval_core, scenario, analysis=True, refresh=False)
            if ev0.br_profit is None:
                return None, None
            replay = Replay(eval_core, scenario, learner.generators.evaluation, responses_fn=fn)
            try:
                start = start_profile(replay, ev0.record, ev0.agent_profit)
            except ValueError as exc:
                report = f"profile_search: not run ({exc})"
                if progress:
                    print(report, flush=True)
                return None, report
            bar = tqdm(total=cfg.profile_search, desc="profile search", unit="step", disable=not progress,
                       dynamic_ncols=True, leave=False)
            state = {"kept": 0, "made": 0}
            tol = float(cfg.profile_search_tolerance)

            def step(it, new, what, k):
                state["made"] = it
                bar.update(1)
                if new is not None:
                    state["kept"] += 1
                    gain = new["br"] - new["profit"]
                    bar.set_postfix({"kept": state["kept"],
                                     "worst": f"{1.0 - float(np.max(gain / np.maximum(np.abs(new['br']), 1.0))):.3f}"})
            helper = start_search_helper(replay, start, cfg.profile_search)
            try:
                found, kept = search(replay, start, cfg.profile_search,
                                     np.random.default_rng([int(learner.seed), 0x5EA7C4]), objective=SEARCH_OBJECTIVE,
                                     on_step=step, helper=helper, stop_at=tol if tol > 0 else None)
            finally:
                if helper is not None:
                    helper.close()
            bar.close()
            made = int(state["made"])
            w0 = _search_score(ev0)
            if made < cfg.profile_search and progress:
                print(f"profile_search: stopped after {made} of {cfg.profile_search} proposals, at or below "
                      f"profile_search_tolerance {tol:g}", flush=True)
            if kept == 0:
                report = (f"profile_search: no change of {made} proposals lowered the search's smooth maximum of "
                          f"the learners' gain shares and the exploitability (the larger of the largest share of "
                          f"gain and the exploitability: {w0[0]:.3f}), kept as it was")
            else:
                ev, loss, same = distil_profile(learner, eval_core, scenario, found, learning_rate=cfg.learning_rate,
                                                seed=learner.seed)
                w1 = _search_score(ev)
                m0, m = ev0.metrics(), ev.metrics()
                s0, s1 = (np.asarray(e.br_share, dtype=float) for e in (ev0, ev))
                what = (f"{kept} of {made} proposals kept; the fitted actors "
                        f"{'bid the profile found' if same else 'do not bid the profile found exactly'} "
                        f"(imitation loss {loss:.2g}): exploitability {m0['exploitability']:.3f} -> "
                        f"{m['exploitability']:.3f}, lowest share of the best response {np.nanmin(s0):.3f} -> "
                        f"{np.nanmin(s1):.3f}")
                if w1 < w0:
                    kept_info = {"proposals": made, "kept": int(kept), "reproduced": same,
                                 "objective": SEARCH_OBJECTIVE, "score": [round(w0[0], 6), round(w1[0], 6)]}
                    earlier = {k: info[k] for k in _KEPT_READINGS if k in info}  # the fallbacks' choices
                    recorder.save("best", {**m, "profile_search": int(kept)}, episode=manifest.get("episode"),
                                  trainer_info={**earlier, "profile_search": kept_info})
                    by = best_metric(cfg.best_policy_metric, m, recorder.best)
                    if by in m:
                        recorder.best[by] = float(m[by])
                    report = f"profile_search: kept, {what}"
                else:
                    report = f"profile_search: not kept, {what}"
        finally:
            opt.load_state_dict(opt_state)
            learner.algo.set_learning_rate(lr)
    if progress:
        print(report, flush=True)
    return kept_info, report


def evaluate_policy(scenario: Scenario, config: LearningConfig, policy: str | os.PathLike, *, seed: int | None = None,
                    env_options: dict[str, Any] | None = None, analysis: bool = True,
                    device: str | None = None) -> tuple[EvalResult, MarketCore]:
    """One deterministic episode with the actors of checkpoint ``policy`` (no training;
    ``train.py evaluate``), set up by :func:`load_policy`. Returns the result and the
    (one-copy, recording) core it ran on."""
    learner, core = load_policy(scenario, config, policy, seed=seed, env_options=env_options, device=device)
    return learner.evaluate(core, scenario, analysis=analysis), core


def load_policy(scenario: Scenario, config: LearningConfig, policy: str | os.PathLike, *, seed: int | None = None,
                env_options: dict[str, Any] | None = None,
                device: str | None = None) -> tuple[Learner, MarketCore]:
    """A learner with the actors of checkpoint ``policy`` and the one-copy, recording
    evaluation core they bid in. Network sizes, ``max_bid_price``, foresight,
    ``plant_bids`` and ``storage_prices`` ("free" for checkpoints that do not record them),
    ``start_up_markup_hours`` (0 where not recorded), ``min_power_rule`` ("partial" where
    not recorded), ``cost_snap`` (0 where not recorded), ``tie_below_cost`` and
    ``grid_learner_costs`` (off where not recorded) and the seed come from
    the checkpoint's manifest unless given."""
    manifest = read_manifest(policy)
    info = manifest.get("trainer") or {}
    over: dict[str, Any] = {"actor_hidden_sizes": list(manifest["actor_hidden_sizes"]),
                            "critic_hidden_sizes": list(manifest["critic_hidden_sizes"]), "num_envs": 1,
                            "replay_buffer_size": config.batch_size}  # nothing is stored
    if info.get("max_bid_price"):
        over["max_bid_price"] = info["max_bid_price"]
    if device:
        over["device"] = device
    cfg = config.with_overrides(over)
    opts = dict(env_options or {})
    # the checkpoint's foresight (recorded, else implied by its observation size:
    # 3 x foresight + the unique values)
    fs = info.get("foresight") or (int(manifest["obs_dim"]) - int(manifest["unique_obs_len"])) // 3
    if fs >= 1:
        opts.setdefault("foresight", fs)
    # how the policy's plants and storage bid: recorded; checkpoints from before these
    # options read prices as given
    opts.setdefault("plant_bids", info.get("plant_bids", "free"))
    opts.setdefault("storage_prices", info.get("storage_prices", "free"))
    opts.setdefault("start_up_markup_hours", float(info.get("start_up_markup_hours") or 0.0))
    opts.setdefault("min_power_rule", info.get("min_power_rule", "partial"))
    opts.setdefault("cost_snap", float(info.get("cost_snap") or 0.0))
    opts.setdefault("tie_below_cost", bool(info.get("tie_below_cost", False)))
    opts.setdefault("grid_learner_costs", bool(info.get("grid_learner_costs", False)))
    core = MarketCore(scenario, num_envs=1, **env_options_for(cfg, opts, evaluation=True, scenario=scenario))
    core.recording = True
    run_seed = int(seed if seed is not None else info.get("seed", cfg.seed if cfg.seed is not None else 0))
    learner = Learner(cfg, list(core.agents), core.obs_dim, core.act_dims.tolist(), num_envs=1, seed=run_seed)
    learner.load(policy, load_optimizers=False, load_critics=False)
    return learner, core
