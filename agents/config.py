"""The training configuration: ASSUME's ``learning_config`` as a validated dataclass.

One :class:`LearningConfig` field per key of ASSUME's ``learning_config`` block (as read
from a scenario's ``config.yaml``), plus a few keys of marketzoo's own. Each field has a
docstring under it giving its meaning, unit and default; the rules that check and coerce
the values live in one table (``_RULES``) next to the class, so the two cannot drift.

Reading::

    cfg = LearningConfig.from_dict(yaml_dict["base"]["learning_config"],
                                   source="example_02a/config.yaml [base]")
    cfg = cfg.with_overrides(["batch_size=256", "train_freq=24h"])   # from --set
    cfg.save(run_dir / "config.yaml")                               # resolved config

* Values are coerced the way YAML and a command line give them: ``1`` for a float field,
  ``1.0`` or ``"5e5"`` for an int field (PyYAML reads ``5e5`` as a string), ``"true"`` /
  ``"false"`` for a bool, ``"100h"`` / ``"1d"`` for ``train_freq``, a list for a tuple.
* Wrong types or ranges raise one :class:`ConfigError` (a ``ValueError``) listing every
  bad key with its value and what is allowed, and naming where the values came from.
* Keys that are not known are not an error in a file (ASSUME grows keys; other tools put
  their own there): they are kept in :attr:`LearningConfig.unknown_keys` and reported
  with :func:`warnings.warn` (category :class:`UnknownConfigKeyWarning`) together with
  the closest known key. On the command line (:meth:`LearningConfig.with_overrides`) an
  unknown key is an error, since it is almost always a typo.

The config is frozen: derive changed copies with :meth:`LearningConfig.with_overrides`
or :func:`dataclasses.replace` (both validate again).

This module imports neither torch nor anything else heavy.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import yaml

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "LearningConfig",
    "UnknownConfigKeyWarning",
    "parse_duration_hours",
]


# --------------------------------------------------------------------------- errors


class ConfigProblem(NamedTuple):
    """One refused value: which key, the value given, and what would be allowed."""

    key: str
    value: Any
    allowed: str


class ConfigError(ValueError):
    """Bad configuration values. The message names the source, each key, each bad value
    and what is allowed; the same facts are in :attr:`source` and :attr:`problems`."""

    def __init__(self, source: str, problems: Iterable[ConfigProblem]):
        self.source = source
        self.problems = tuple(problems)
        super().__init__(self._format())

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys that were refused, in the order they were checked."""
        return tuple(p.key for p in self.problems)

    def _format(self) -> str:
        def one(p: ConfigProblem) -> str:
            if p.value is _MISSING:
                return f"{p.key!r}: {p.allowed}"
            return (
                f"{p.key!r} = {p.value!r} ({type(p.value).__name__}) is not allowed; "
                f"expected {p.allowed}"
            )

        if len(self.problems) == 1:
            return f"{self.source}: {one(self.problems[0])}"
        lines = [f"{self.source}: {len(self.problems)} invalid entries:"]
        lines += [f"  - {one(p)}" for p in self.problems]
        return "\n".join(lines)


class UnknownConfigKeyWarning(UserWarning):
    """A configuration file holds keys that marketzoo does not know (they are ignored)."""


class _Bad(Exception):
    """Raised by a coercer; carries the description of what is allowed."""

    def __init__(self, allowed: str):
        super().__init__(allowed)
        self.allowed = allowed


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


_MISSING: Any = _Missing()


# --------------------------------------------------------------------------- the config


@dataclass(frozen=True, kw_only=True)
class LearningConfig:
    """Hyperparameters and switches of a MATD3 training run (ASSUME's ``learning_config``).

    Build it with :meth:`from_dict` (a mapping read from YAML) or with keywords; every
    value is checked and coerced on construction, so an instance is always valid.
    """

    # ---- mode and persistence (ASSUME) ----
    learning_mode: bool = True
    """Train the learning units (True), or only run fixed policies (False, as in ASSUME):
    the policies in `trained_policies_load_path` (else `trained_policies_save_path`/best)
    run one deterministic evaluation episode and nothing is trained or changed. False
    without either path is refused. Default: True."""

    continue_learning: bool = False
    """Start training from the policies (networks and optimizer states) in
    `trained_policies_load_path`, else in `trained_policies_save_path`/best, instead of
    from fresh networks; refused when neither path is set. A warm start, not a resume:
    the episode counter, the replay buffer and the generators start anew.
    Default: False."""

    trained_policies_save_path: str | None = None
    """Folder the trained policies are written to (its subfolders best, best_profit,
    best_regret and last are complete checkpoints); a relative path is relative to the
    working directory. None: the run folder's `policies`. Default: None."""

    trained_policies_load_path: str | None = None
    """Checkpoint folder (e.g. a run's `policies/best`) to load for `continue_learning`
    or `learning_mode: false`. None: `trained_policies_save_path`/best.
    Default: None."""

    # ---- market and algorithm ----
    max_bid_price: float = 100.0
    """Price that an action of +1 maps to, in EUR/MWh (actions in [-1, 1] are scaled by
    it); also the scale of price observations. Must be > 0. Default: 100.0."""

    algorithm: str = "matd3"
    """Learning algorithm. Only "matd3" (multi-agent TD3 with centralised critics) is
    implemented; any other name is refused rather than silently replaced.
    Default: "matd3"."""

    actor_architecture: str = "mlp"
    """Actor network type. Only "mlp" is supported ("lstm", which ASSUME offers, is
    refused with a clear message). Default: "mlp"."""

    learning_rate: float = 1e-3
    """Adam step size of actors and critics (initial value when a schedule is used).
    Must be > 0. Default: 0.001."""

    learning_rate_schedule: str | None = "linear"
    """How the learning rate changes over training: "linear" decays it linearly from
    `learning_rate` towards 0 over the training episodes; None or "constant" keep it
    fixed (ASSUME's default when the key is left out). marketzoo decays it by default:
    with the teachers, the late evaluations then settle instead of swinging, and
    `default` and its seeded variants come out better on every seed measured, the other
    examples the same (benchmarks/RESULTS.md, twenty-sixth round). Default: "linear"."""

    training_episodes: int = 100
    """Number of training episodes (each one a pass over the scenario horizon).
    Must be >= 1. Default: 100."""

    episodes_collecting_initial_experience: int = 5
    """Number of first episodes in which actions are random exploration (no policy, no
    gradient updates) to fill the replay buffer. Must be >= 0. Default: 5."""

    train_freq: int = 100
    """Simulated time between two policy updates, in hours. Accepts an int (hours) or
    a duration string that pandas.Timedelta reads, such as "100h", "24h", "1d", "1w",
    "2 days" (whole hours only); always stored as int hours. Must be >= 1 hour.
    Default: 100."""

    gradient_steps: int = 10
    """Gradient steps per policy update. Must be >= 1, or -1 meaning "as many as
    `train_freq` hours" (one step per simulated hour, ASSUME's convention): -1 is
    resolved on construction, so the stored value is always >= 1. Default: 10."""

    batch_size: int = 128
    """Transitions per gradient step, sampled from the replay buffer. Must be >= 1.
    Default: 128."""

    gamma: float = 0.99
    """Discount factor per market step (hour), in [0, 1]. Default: 0.99."""

    device: str = "cpu"
    """Torch device of the networks: "cpu", "cuda", "cuda:N" or "auto" (cuda when
    available, else cpu). Default: "cpu"."""

    # ---- exploration noise ----
    noise_sigma: float = 0.1
    """Standard deviation of the Gaussian action noise, in action units ([-1, 1]).
    Must be >= 0. Default: 0.1."""

    noise_scale: float = 1.0
    """Multiplier of the action noise (the value the schedule starts from).
    Must be >= 0. Default: 1.0."""

    noise_dt: float = 1.0
    """Per-draw decay factor of the noise scale (ASSUME's `dt`): the k-th noisy draw of
    the run (one draw per agent and hour of the training episodes after initial
    exploration, all market copies at once; k from 0) has the schedule's scale times
    noise_dt**k. 1.0 = no decay. Must be > 0. Default: 1.0."""

    action_noise_schedule: str | None = None
    """How the exploration noise changes over training: None or "constant" keep it
    fixed; "linear" decays it linearly to 0 over the training episodes.
    Default: None."""

    # ---- validation and early stopping ----
    validation_episodes_interval: int = 5
    """Run a deterministic validation episode every this many training episodes (after
    initial exploration); the best policies are chosen on these. Must be >= 1.
    Default: 5."""

    early_stopping_steps: int | None = None
    """Stop training after this many validation runs in a row without an improvement of
    at least `early_stopping_threshold`. None: never stop early. Must be >= 1.
    Default: None."""

    early_stopping_threshold: float = 0.05
    """Smallest relative improvement of the validation reward that counts as progress
    for early stopping (0.05 = 5 %). Must be >= 0. Default: 0.05."""

    stop_at_equilibrium: bool = True
    """Stop training once the kept policy (`policies/best`, chosen by the total gain from
    deviating alone, `best_policy_metric` "gain") is certified by the exact analysis as an
    equilibrium of the evaluation episode: the learners together can gain at most 1 EUR by
    deviating alone. Nothing later can be kept over it. It happens where the equilibrium
    teacher's fitted actors are exact (a market where learners compete at cost, with
    `cost_snap`: ten learning CCGTs of one cost stop after the first episode instead of
    running 100). Needs the per-evaluation analysis. Default: True."""

    # ---- TD3 ----
    tau: float = 0.005
    """Polyak coefficient of the target-network update (target <- tau*online +
    (1-tau)*target), in (0, 1]. Default: 0.005."""

    policy_delay: int = 2
    """Critic updates per actor (and target) update. Must be >= 1. Default: 2."""

    target_policy_noise: float = 0.2
    """Standard deviation of the smoothing noise added to target actions, in action
    units. Must be >= 0. Default: 0.2."""

    target_noise_clip: float = 0.5
    """Clip of the target smoothing noise, in action units. Must be >= 0.
    Default: 0.5."""

    replay_buffer_size: int = 500_000
    """Capacity of the replay buffer, in transitions (market steps, all agents
    together). Must be >= `batch_size`. Default: 500000."""

    # ---- marketzoo's own keys ----
    actor_hidden_sizes: tuple[int, ...] = (256, 128)
    """Widths of the actor's hidden layers (a list in YAML). Each >= 1, at least one
    layer. Fixed here rather than chosen by agent count. Default: (256, 128)."""

    critic_hidden_sizes: tuple[int, ...] = (256, 128)
    """Widths of each critic's hidden layers. Each >= 1, at least one layer.
    Default: (256, 128)."""

    max_grad_norm: float | None = 1.0
    """Gradient clipping: maximal global L2 norm of each network's gradient. 0 or None
    disables clipping. Must be >= 0. Default: 1.0."""

    actor_preactivation_penalty: float = 0.01
    """Weight of the mean squared pre-tanh activation added to each actor's loss; keeps
    the deterministic policy out of tanh saturation, where its gradient vanishes and a
    bid stuck at the price bound never comes back. 0 disables. Must be >= 0.
    Default: 0.01."""

    best_response_teacher: float | str = "auto"
    """Weight of a behaviour-cloning term that pulls each learning unit's actor towards
    the hourly bids of its exact best response (:func:`envs.analysis.best_response`:
    over the episode, with start-ups and, for storage, the state of charge) to the other
    agents' bids of recent deterministic evaluation episodes, added to the MATD3 actor
    loss whose Q term is then normalised by max(mean |Q|, 1) (TD3+BC style, see
    "Imitation" in agents/matd3.py). Needs the analysis, i.e. the plain training loop (the
    mango runtime does not refresh a teacher); 0 disables. A storage unit that bids
    two-sided (`storage_bids`) is taught the break-even prices ("water values") of its
    best response with whole-volume moves at the states of charge the episode visited
    (:func:`envs.analysis.storage_break_even_prices`); one that bids signed, the best
    response's hourly bid. Where the env reads plant offers on its grid (`plant_bids`
    "undercut"), a plant is taught its best response within that grid
    (`envs.analysis.best_response(..., plant_prices=...)`: the unrestricted one often
    needs a price between two rule offers, e.g. one tick under another learner, which no
    action of the env produces), each price at the middle of the range of actions the
    grid moves to it (`envs.MarketCore.undercut_centre`) instead of lowered by
    `best_response_teacher_margin`. "auto": 100 when the run has exactly one learning
    unit (measured on example_02a, see benchmarks/RESULTS.md); with several, 100 for the
    storage units that bid two-sided and, on the grid, for the plants (`default`:
    exploitability 0.47 -> 0.16, twenty-third round; the unrestricted teacher on plants
    made it worse), none for the others. Must be >= 0 or "auto". Default: "auto"."""

    storage_teacher: str = "auto"
    """What the best-response teacher (`best_response_teacher`, and
    `equilibrium_teacher_storage_refresh`) teaches a storage unit that bids two-sided:
    "break_even", the break-even prices ("water values") of its best response with
    whole-volume moves on the state-of-charge grid, at the states of charge the episode
    visited (:func:`envs.analysis.storage_break_even_prices`): it charges and discharges
    where its best response would, but as a price taker; "best_move", the bids of its best
    response read as a policy (:class:`envs.analysis.StorageResponsePolicy`, off the
    grid) at those states: on the side it trades, the price of its best move, which can
    set the price with part of its volume, and on the other side the nearest price that
    trades nothing. With `storage_prices` "undercut" each price is taught at the middle of
    the range of actions the env's grid moves to it (`envs.MarketCore.undercut_centre`,
    `outbid_centre`). Targets are clipped to the episode's clearing prices +- 2 % of
    `max_bid_price`. "auto": "best_move" (example_02e, with the equilibrium teacher's
    storage refresh that "auto" turns on: exploitability 0.149 -> 0.106 / 0.104 / 0.100
    over seeds 0-2, every unit 0.903-0.909 of its best response; `default`: 0.161 -> 0.155
    over seeds 0-3, the storage 0.86-0.91 -> 0.91-0.93 of its best response;
    benchmarks/RESULTS.md, twenty-fourth round). Default: "auto"."""

    best_response_teacher_interval: int = 1
    """With `best_response_teacher`: training episodes between two teacher refreshes (a
    deterministic episode plus the exact best-response analysis, ~1-4 s for 1-5 agents
    on 720 hours); every regular evaluation refreshes it too. Must be >= 1.
    Default: 1."""

    best_response_teacher_window: int = 10
    """With `best_response_teacher`: how many of the latest refreshes the teacher's data
    holds (observations and best-response actions of each one's episode, sampled
    uniformly). Must be >= 1. Default: 10."""

    best_response_teacher_margin: float = 0.3
    """With `best_response_teacher`: EUR/MWh subtracted from the best-response bid prices
    before they are taught. A best response often sits just below the next offer (a
    cliff: a little higher and the unit is not dispatched); the margin keeps an imperfect
    imitation on the safe side. Not used for plants on the env's grid (`plant_bids`
    "undercut"), which are taught the middle of each grid price's range. Must be >= 0.
    Default: 0.3."""

    equilibrium_teacher: bool | str = "auto"
    """Teach the learning plants and renewables their bids in the equilibrium reference
    of the training hours (:func:`envs.analysis.equilibrium`, iterated exact best
    responses from hour 0 over the training episode's length), computed once before the
    first training episode: where it converges, each such unit's actor is first fitted to
    its equilibrium bids along the equilibrium's own path (`equilibrium_teacher_steps`),
    and those rows then stay in the teacher's data (weight: `best_response_teacher`,
    "auto" = 100), replacing the unit's best-response targets. Of several bids that tie
    for a unit, the one nearest its marginal cost is taught
    (`best_response(..., ties="cost")`), offers above cost lowered by
    `best_response_teacher_margin`. No equilibrium within 10 passes and 120 s: one note,
    and the run trains without it. Plain training loop only (the mango runtime does not
    use it). Storage units that bid two-sided are taught too: the equilibrium then has
    whole-volume storage moves, and a storage unit is taught the break-even prices of its
    best response to it at the states of charge the env reaches. "auto": on when the
    market has one to `analysis_max_agents` learning units, every one a plant without
    start-up costs, a renewable or a storage unit that bids two-sided, in a market without
    a network (with start-ups the best-response dynamics can cycle, e.g. `default`);
    measured on example_02a, example_02b, `many` and example_02e and on seeded variants of
    them (`benchmarks/bench_quality.py --variants`), see benchmarks/RESULTS.md. With one
    learning unit the "equilibrium" is its exact best response to the rule units. The
    learned bids are then largely the equilibrium solver's; false shows what MATD3 learns
    on its own. true: also plants with start-up costs.
    `best_response_teacher: 0` turns it off too. Default: "auto"."""

    equilibrium_teacher_steps: int = 9000
    """With `equilibrium_teacher`: imitation-only gradient steps (batches of 256 rows)
    that fit the actors to the equilibrium bids before training, half at the actors'
    learning rate and half at a tenth of it. 0: no such fit (the rows are still taught
    during training). Must be >= 0. Until the twenty-seventh round of
    benchmarks/RESULTS.md the default was 3000; the longer fit leaves the fitted actors
    closer to the equilibrium (a ten-learner market with one shared cost: 86 k -> 30 k EUR
    of gain from deviating; example_02b after training 0.043 -> 0.029 / 0.035
    exploitability, seeds 0 / 1) for about 1.5 to 2.5 minutes more with 5 to 20
    learners on two cores. Default: 9000."""

    equilibrium_teacher_rollouts: int = 3
    """With `equilibrium_teacher`, after the fit of `equilibrium_teacher_steps`: rounds of
    DAgger (dataset aggregation). Each round runs the fitted actors over the training
    hours in four copies of the market (one with the bare actors, three with Gaussian
    action noise of 2 % of `max_bid_price`), labels every state they visit with the
    equilibrium bids of its hour (a storage unit: its break-even prices at the state of
    charge it is in), adds these rows to the teacher's data (they stay there during
    training) and fits the actors again (a third of `equilibrium_teacher_steps`,
    imitation-only, at a tenth of their learning rate). A fitted actor that bids a little
    off the equilibrium sees a price history the equilibrium's path never had; these rows
    teach it what to bid there. 0: no rollouts. A resume keeps the rows (they are in the
    run state) and does not roll out again. Must be >= 0. Default: 3."""

    equilibrium_teacher_storage_refresh: bool | str = "auto"
    """With `equilibrium_teacher`, for the storage units it teaches: every refresh of
    the best-response teacher (after each training episode, see
    `best_response_teacher_interval`, and at every evaluation) also adds the targets of
    each such unit's best response to that deterministic episode, at the states of
    charge the episode visited (what `storage_teacher` says, as `best_response_teacher`
    gives a storage unit), besides the equilibrium's rows. "auto": on with
    `storage_teacher` "best_move", off with "break_even" (example_02e, best-move targets:
    exploitability 0.149 -> 0.106 / 0.104 / 0.100 over seeds 0-2, each unit 0.903-0.909
    of its best response; RESULTS.md, twenty-fourth round). Earlier, with break-even
    targets: Those
    rows hold along the equilibrium's path and its DAgger rollouts; these follow the
    policies as they train and answer the other unit's current bids. Measured on
    example_02e (benchmarks/RESULTS.md, ninth round): with a 12-hour foresight it took
    the scored exploitability from 0.351 to 0.245 (seed 0); with the 72 hours of
    `foresight` "auto" the scored policies were no better (0.175 against 0.166, seeds
    0-2) and training took 15 % longer, but every evaluation after the first third
    stayed within 0.18-0.25 (without: 0.16-0.63), so the last policy is about as good as
    the best. Default: "auto"."""

    per_unit_gamma: bool | str = "auto"
    """Critic horizon per learning unit: `gamma` 0 for units whose own payoff has no link
    between hours (plants without start-up costs, renewables), `gamma` for storage and
    `start_up_gamma` for plants with start-up costs. The exact analysis scores deviations
    with everyone else's bids fixed, hour by hour; for an uncoupled unit the only future its critic could learn
    is how the other learners react to the price history (the repeated-game effect that
    sustains collusive prices). "auto": on when the market has two or more learning units
    (with one, nothing reacts to its bids: measured on example_02a, the horizon made no
    difference beyond the seed noise, so a single learner keeps `gamma`). Both runtimes.
    Default: "auto"."""

    critic_search: float | str = "auto"
    """Weight of a cloning term that pulls each learner's actor towards the best of 32
    uniform random actions by its own twin critics (min of both, the others' actions as
    sampled), where that beats the actor's action by more than 5 % of the learner's mean
    |Q|: a global look at the critic next to the local gradient of the deterministic
    policy gradient, which is flat wherever a bid is far from being dispatched. Used on
    actor steps that the best-response teacher does not take. A number applies to every
    learning unit; 0 disables. "auto": weight 1 for the units that `per_unit_gamma` gives
    discount 0 (their critic is an hour's expected profit, which the search reads
    reliably), none for the others, and off when `per_unit_gamma` is off (measured on
    `many` and example_02b, see benchmarks/RESULTS.md). It costs time: 33 candidates
    scored by both critics for 64 of the sampled states on every actor step (`many`:
    about 1.8x the training time). Must be >= 0 or "auto". Default: "auto"."""

    plant_cost_floor: float | str = "auto"
    """Weight of a cloning term that lifts a learning plant's offer for its flexible part
    (the capacity above `min_power`) to its marginal cost wherever its actor offers that
    part below cost, on the sampled states of every actor step. Such an offer is weakly
    dominated within the hour: it can only sell that energy at a loss or lower the price
    the plant's other energy earns. The inflexible part is left alone (offering it below
    cost can pay: it keeps a plant with start-up costs running through a few cheap hours).
    The deterministic policy gradient does not see the loss in hours where another unit
    sets the price below the offer, so actors drift there. A number applies to every
    learning plant that bids two prices; 0 disables. "auto": weight 100 for the plants
    with start-up costs in a market with two or more learning units (the units no other
    imitation term covers: `per_unit_gamma` keeps their horizon and `critic_search`
    leaves them out), none otherwise. A unit that the best-response teacher teaches keeps
    the teacher's targets (so on `default`, whose plants bid on the env's grid and are
    taught by `best_response_teacher` "auto", the floor is superseded there); for a unit that `critic_search` also covers, the floor's
    targets and weight replace the search's. Measured on `default`
    (benchmarks/RESULTS.md, fifteenth round). Must be >= 0 or "auto". Default: "auto"."""

    best_policy_metric: str = "auto"
    """Which evaluation's policy `policies/best` holds (what `train.py`'s final
    evaluation, `evaluate` and `benchmarks/bench_quality.py` score): "reward", the
    highest evaluation reward (ASSUME's choice); "br_share", the highest share of the
    best-response profit of the exact analysis, all learners together (Σ profit / Σ
    best-response profit = 1 - Σ gains from deviating / Σ best-response profit);
    "gain", the lowest Σ gains from deviating in EUR (each learner's exact best-response
    profit less its profit, summed), which stays defined where the best responses earn
    nothing (a competitive market whose equilibrium profits are zero); "auto", the same
    as "gain" without the note. "br_share" and "gain" fall back to the reward, with one
    printed note, for evaluations without the analysis (see `analysis_max_agents`).
    With `equilibrium_teacher`, the actors right after its fit compete too (one
    evaluation before the first training episode). `best_profit`, `best_regret` and
    early stopping (reward) are unchanged. Default: "auto"."""

    stay_out_fallback: bool = True
    """After training, when a learning plant loses money (more than 1 EUR) over the
    evaluation episode of the kept policy (`policies/best`), try that policy with each
    such plant's actor set to offer at the top of its bid range whatever it observes (it
    stays out of the market unless the price rises that far), evaluate it once with the
    exact analysis and keep it as `policies/best` only when it is better by `best_policy_metric`
    (`best_profit` and `best_regret` do not compete: withholding plants can raise the
    others' profits). Against the same bids of the others, a plant that loses money gains
    by offering nothing; a kept policy where it still runs is one its own exact best
    response dominates. Taking it out also changes the market the others face, hence the
    whole evaluation again. The manifest of a policy kept this way names the plants
    (`trainer.stay_out`), and the run prints one line. Needs the per-evaluation analysis
    (see `analysis_max_agents`) and a run folder; both runtimes (the mango runtime after
    its containers stop). Measured on seeded variants of `default`, where the dearer CCGT
    with a small best response is the one that loses money (benchmarks/RESULTS.md,
    twenty-eighth round). Default: True."""

    start_up_markup_hours: float = 0.0
    """The training env's `start_up_markup_hours` (`envs.MarketCore`): a learning plant with
    a start-up cost that did not run in the previous hour offers both its parts at no
    less than its marginal cost plus its start-up cost spread over this many hours at
    minimum power, as heuristic bidders mark up a cold unit (ASSUME's flexABLE
    strategies). 0 (default) leaves the offers as the actors say. Trained with 24 on
    seeded variants of `default` it was no better on the mean (benchmarks/RESULTS.md,
    twenty-ninth round); `start_up_markup_fallback` tries it on the kept policy instead.
    Default: 0.0."""

    min_power_rule: str = "partial"
    """The env's `min_power_rule` (`envs.MarketCore`), for training and every evaluation:
    what a learning plant dispatched for less than its minimum power runs. "partial"
    (default): what was accepted, and it counts as running. "raise": its minimum power, as
    ASSUME raises a dispatched unit; it is paid for the accepted part only and pays the
    marginal cost of all of it. The exact analysis scores best responses under the same
    rule; the checkpoint's manifest records it (`trainer.min_power_rule`) and
    `train.py evaluate` uses it. Measured on `default` and its variants in
    benchmarks/RESULTS.md, thirty-first round. Default: "partial"."""

    cost_snap: float | str = "auto"
    """The env's `cost_snap` (`envs.MarketCore`), for training and every evaluation: a
    learning plant's or renewable's offer price within this many EUR/MWh of its marginal
    cost is read as exactly that cost. An actor's output is continuous, so where learners
    compete at cost (several learners with the same cost, e.g. ASSUME's example with ten
    learning CCGTs) it lands a few cents off it, and every such cent is gain for a rival or
    a loss on the MWh it sets the price for. "auto": 0.25 % of `max_bid_price` (0.25
    EUR/MWh at 100). 0 reads prices as the actions say. The checkpoint's manifest records
    it (`trainer.cost_snap`) and `train.py evaluate` uses it. Measured in
    benchmarks/RESULTS.md, thirty-second round. Default: "auto"."""

    start_up_markup_fallback: tuple[float, ...] = (12.0, 24.0, 48.0)
    """After training (and `stay_out_fallback`), evaluate the kept policy (`policies/best`)
    once more with the exact analysis for each of these `start_up_markup_hours` and keep
    the best as `policies/best` when it is better by `best_policy_metric` than the policy
    as trained; the actors stay as they are, the markup becomes part of the policy: its
    manifest records it (`trainer.start_up_markup_hours`) and `train.py evaluate` bids
    with it. It removes the starts a policy makes for a sliver of volume at a price just
    above its cost, the variants' costliest failure. Only where a learning plant has a
    start-up cost; needs the per-evaluation analysis and a run folder; both runtimes.
    An empty list turns it off. Measured on seeded variants of `default`
    (benchmarks/RESULTS.md, twenty-ninth round). Default: (12.0, 24.0, 48.0)."""

    grid_learner_costs: bool = False
    """The env's `grid_learner_costs` (`envs.MarketCore`), for training and every
    evaluation, where offers are read on the grid (`plant_bids` or `storage_prices`
    "undercut"): the grid also holds a point a tick under each learning plant's marginal
    cost, the price a rival learner cannot undercut without selling at a loss. On a grid of
    rule offers only, learners that compete for the same volume meet a tick under the
    same rule offer and tie; each could take all of it a tick lower, which is most of
    `default`'s remaining gain. Measured (benchmarks/RESULTS.md, thirty-third round): on
    `default` better (seeds 0-3 with `tie_below_cost_fallback`: 0.103 against 0.118 on the
    mean), on seeded variants of it worse (0.231 against 0.201 on four variants), so it is
    off by default. The checkpoint's manifest records it (`trainer.grid_learner_costs`)
    and `train.py evaluate` uses it. Default: False."""

    tie_below_cost: bool = False
    """The training env's `tie_below_cost` (`envs.MarketCore`; only where plant offers are
    read on the grid, `plant_bids` "undercut"): a learning plant's offer that the grid
    would put a tick under a rule offer priced below the plant's marginal cost ties with
    that rule offer instead, so a plant that sells at a loss to stay on sells the least
    volume that keeps it running. Trained with it, `default` was worse (seeds 0 and 1:
    0.158 / 0.129 against 0.118 / 0.128 with the fallback; benchmarks/RESULTS.md,
    thirty-third round); `tie_below_cost_fallback` tries it on the kept policy instead.
    Default: False."""

    tie_below_cost_fallback: bool = True
    """After training (and `start_up_markup_fallback`), where plant offers are read on the
    grid: evaluate the kept policy (`policies/best`) once more with the exact analysis
    with `tie_below_cost` switched the other way, and keep that as `policies/best` when it
    is better by `best_policy_metric`; the actors stay as they are, the reading becomes
    part of the policy: its manifest records it (`trainer.tie_below_cost`) and
    `train.py evaluate` bids with it. Needs the per-evaluation analysis and a run folder;
    both runtimes. Measured on `default` and its variants (benchmarks/RESULTS.md,
    thirty-third round). Default: True."""

    actor_mix_fallback: int | str = "auto"
    """After training (and the fallbacks above), each learner may take its actor from any
    of this many evaluations of the run with the lowest total gain from deviating
    (their actors are kept in memory as the run goes): starting from the kept policy
    (`policies/best`, with the readings the fallbacks chose), the learners are tried one
    at a time, the one with the largest gain first, each with every such evaluation's
    actor in place of its own while the others keep theirs, and a change is kept only
    where it is better by `best_policy_metric`; after a pass that changed an actor, the
    readings of the fallbacks that are on (the start-up markups, `tie_below_cost` either
    way) are tried again the same way; at most two passes and `actor_mix_evaluations`
    evaluations with the exact analysis. The result replaces `policies/best` (its
    manifest names the evaluation each changed actor comes from, `trainer.actor_mix`, and
    records the readings). Keeping the evaluation that scores best is the same choice made
    for the learners together; a learner's actor from one evaluation and its rival's from
    another can score better than either. Only the evaluations of this process compete
    (a resumed run starts collecting again). Needs the per-evaluation analysis and a run
    folder; both runtimes. "auto": 6 where the run has at most 5 learning units (where
    `best_policy_interval` "auto" evaluates after every episode and an evaluation with the
    analysis takes seconds), else 0. 0 turns it off. Measured on `default` and its
    variants (benchmarks/RESULTS.md, thirty-fourth round). Default: "auto"."""

    actor_mix_evaluations: int = 36
    """The most evaluations (each with the exact analysis) `actor_mix_fallback` may run.
    Must be >= 1. Default: 36."""

    profile_search: int = 0
    """After training and the fallbacks above: this many proposals of a local search over
    the kept policy's evaluation episode, read as a profile of open-loop env actions
    (:mod:`agents.profile_search`: one learner's prices changed in a window of hours
    around the hours where the worst-off learner gains, or a plant's run or shutdown
    bridged; each change kept only where a smooth maximum (the 10-norm) of these figures
    falls: each learner's gain from deviating alone as a share of its exact
    best-response profit, and the exploitability; a plain maximum, which only credits a
    change that lowers every figure tied at the top, stalled on some seeds). Then the
    actors are fitted to the best profile found
    (:mod:`agents.distil`: each bid at the middle of the range of actions the env reads as
    its price, so that the closed-loop evaluation bids it again exactly) and, where their
    evaluation scores better than `policies/best` by the larger of the largest gain share
    and the exploitability, they replace it (its
    manifest records `trainer.profile_search`). Each proposal costs a replay of the hours
    it changed and the exact best responses (in the hours it changed) of the learners
    whose opponents' bids it changed, unless a bound drops it first or it scores no
    better with the storage units' best responses taken as before (a heuristic that
    skips their slow exact best response for most proposals); proposals are decided in
    order, each with its own generator, and with two usable cores a helper process
    scores some of them ahead, with the same result (`default`: about 0.025-0.04 s a
    proposal), so it is off by default (the built-in `default` scenario's `base` study
    case turns it on: 4000 with `profile_search_tolerance` 0.1); see
    benchmarks/RESULTS.md, thirty-seventh to forty-first rounds, for what it does on
    `default`. The actors then
    bid the searched profile on the episode they were fitted to; elsewhere they are what
    the fit left of them. Needs the per-evaluation analysis, a run folder, and units whose bids can be
    rebuilt as actions (two-sided storage); both runtimes. 0: off. Must be >= 0.
    Default: 0."""

    profile_search_tolerance: float = 0.0
    """Where > 0, `profile_search` stops early, before its next proposals, once the larger
    of the largest gain from deviating alone as a share of that learner's exact
    best-response profit and the exploitability is at most this (e.g. 0.1: "no learner
    can gain more than 10 % of its best response, and exploitability <= 0.1"); the
    proposals made until then are those of the full search, and the manifest records how
    many were made. 0: all `profile_search` proposals. Must be >= 0. Default: 0.0."""

    best_policy_interval: int | str | None = "auto"
    """Extra evaluations that only serve to choose `policies/best`: a deterministic
    evaluation (with the analysis, when it runs) after every this many training episodes
    after initial exploration, besides the `validation_episodes_interval` ones; they are
    logged like those but do not count for early stopping. "auto": 1 when the run has at
    most 5 learning units (an evaluation with the exact analysis then takes ~0.3-3 s),
    else none. None: none. Must be >= 1. Default: "auto"."""

    critic_reward_scale: float | str = 1.0
    """Multiplier of the rewards the critics learn from (the replay buffer's rewards;
    reported rewards and profits are unchanged), so that the discounted return, about
    reward / (1 - gamma), stays near the reward's own size when gamma is close to 1.
    A number > 0, or "auto" = 1 - gamma (1 when gamma is 1). Default: 1.0."""

    regret_scale: float = 0.0
    """Weight of ASSUME's regret (opportunity-cost) term subtracted from the profit
    reward; 0 = pure profit reward. Must be >= 0. Default: 0.0."""

    storage_bids: str = "two_sided"
    """How a learning storage unit bids (the env option of the same name, see
    `envs.MarketCore`): "two_sided", a charge bid and a discharge offer in the same hour,
    each for the whole feasible volume (2 action entries; the storage waits when the
    price clears between them); "signed", ASSUME's one price whose sign is the direction
    (1 entry), which makes every switch of direction pass through "discharge at any
    price". Two-sided bids with the break-even teacher (`best_response_teacher` "auto")
    took example_02e from exploitability 1.75 to 0.33 and `default` from 1.18 to 0.73
    (benchmarks/RESULTS.md, fifth round).
    Policies trained with one cannot be loaded with the other. Default: "two_sided"."""

    plant_bids: str = "auto"
    """How a learning plant's offer prices are read (the env option of the same name, see
    `envs.MarketCore`): "free", as the actions say; "undercut", each price is raised to
    0.01 EUR/MWh below the cheapest rule-bidding offer at or above it in that hour (a
    price above all of them stays), so the plant picks which rule offer to stay under
    instead of a price to the cent. A best response usually sits just below another
    unit's offer, and neither the policy gradient nor a critic smoothed by noise finds
    that edge from the flat side. "auto": "undercut" for markets with a learning plant
    that has start-up costs, else "free". Measured on `default` together with
    `start_up_gamma` (benchmarks/RESULTS.md, twentieth round). Policies trained with one
    bid other prices with the other. Default: "auto"."""

    storage_prices: str = "auto"
    """How a two-sided learning storage unit's prices are read (the env option of the same
    name, see `envs.MarketCore`): "free", as the actions say; "undercut", its discharge
    offer is raised to 0.01 EUR/MWh below the cheapest rule-bidding offer at or above it
    (as `plant_bids` does) and its charge bid moved to 0.01 above the dearest rule offer at
    or below it. "behind": as "undercut", with the offer 0.005 EUR/MWh (half a tick) below
    the rule offer, behind a learning plant on its grid under the same rule offer, which
    is then dispatched first: at a shared price the two would split the volume, and each
    could gain by undercutting the other by a tick, which neither grid can bid. "auto":
    "undercut". Signed storage bids are never moved. Measured on `default` (with
    `plant_bids` and `start_up_gamma`) and example_02e (benchmarks/RESULTS.md, twentieth
    round). "behind" on `default`: 0.155 -> 0.119 (seeds 0-4), but worse on three seeded
    variants of it (the storage loses more than the plants gain), so not the default
    (twenty-fifth round); with `learning_rate_schedule` "linear" 0.132 -> 0.107 on
    `default`, the same on five variants on the mean (twenty-sixth round) and worse on
    five more, 0.207 -> 0.237 (twenty-eighth round).
    Default: "auto"."""

    start_up_gamma: float | str = "auto"
    """Discount of the critics of learning plants with start-up costs when
    `per_unit_gamma` gives units their own horizon. A start has to pay back within the
    horizon the critic sees, about 1 / (1 - discount) hours: at 0.9 a start of
    `default`'s CCGTs (20,000 EUR) never looks worth it, while their best responses run in
    blocks of days. "auto": max(`gamma`, 0.97); a number in [0, 1]. Default: "auto"."""

    seed: int | None = None
    """Seed of every random generator of the run (env, noise, networks, buffer).
    None: the scenario's seed if it has one, else drawn from the operating system; the
    seed used is written to the run's config.yaml, so the run can be repeated.
    Must be >= 0. Default: None."""

    num_envs: int = 1
    """Copies of the market collected in parallel by the vector env (each step adds
    `num_envs` transitions). Must be >= 1. Default: 1."""

    torch_threads: int | None = None
    """Threads torch may use on the CPU, for the whole run. None ("auto"): one thread
    for the simulation and for small networks; gradient steps of at least 2 GFLOP (e.g.
    example_03a's 143 critics) run on one thread or on all usable cores, whichever the
    learner's timing finds faster, re-timed every 20 steps (:mod:`agents.threads`; the
    results are the same either way). Must be >= 1. Default: None."""

    foresight: int | str = "auto"
    """Time steps of forecasts (residual load, price) and of realised price history in
    every agent's observation (the env option of the same name; ASSUME's layout,
    3 x foresight + 2 values). "auto": 12, which with the 12 past prices spans a day;
    when a learning storage unit takes longer than a day to fill and empty at full
    power, the slowest such cycle rounded up to whole days, at most a week (example_02e:
    5,000 MWh at 150 MW -> 72 h). A storage unit's value of stored energy depends on the
    prices over its whole cycle: on example_02e exploitability 0.348 -> 0.166 (seeds
    0-2); `default`'s pumped storage (a 16-hour cycle) gained nothing from 24 hours
    (benchmarks/RESULTS.md, ninth round). Policies trained with one foresight cannot be
    loaded with another. Must be >= 1 or "auto". Default: "auto"."""

    obs_normalization: bool = True
    """Standardise the observations inside the actors and critics: every network sees
    ``(obs - shift) / scale`` with the fixed statistics of the scenario's series
    (:meth:`envs.MarketCore.observation_scaling`: forecasts and prices by their mean and
    spread over the scenario's hours, dispatch and state-of-charge shares centred on
    0.5). The raw features have means near 0.6 and spreads near 0.1, which conditions the
    first layer badly: an actor fitted to one episode's exact best-response bids of
    `default` missed them by 6.4 EUR/MWh (median) after 2,000 steps on the raw
    observations, by 0.03 on standardised ones. Measured (exploitability): `default`
    0.676 -> 0.568 (seeds 0-6, better on each), `many` 0.023 -> 0.004 (seeds 0-1),
    example_02b 0.111 -> 0.044 (seeds 0-2), example_02a and example_02e unchanged
    (benchmarks/RESULTS.md, nineteenth round). Saved actors and critics take the raw observation (the
    standardisation is folded into their first layer), so checkpoints load anywhere.
    Both runtimes (the mango unit agents standardise their observations as the learner
    does, and bid bitwise the same). Default: True."""

    episode_hours: int | None = None
    """Length of a training episode in hours (env option ``episode_hours``, see
    :func:`envs.episode_options`). None: the whole horizon (or the part before the
    held-out window). Must be >= 1. Default: None."""

    random_start: bool = False
    """Start each training episode at a random hour drawn from the run's seed (with
    ``episode_hours``), so that the episodes cover different weeks. Default: False."""

    demand_noise: float = 0.0
    """Standard deviation of the seeded multiplicative noise on demand in training
    episodes (0.05 = 5 %); evaluation is noise-free. In [0, 1]. Default: 0.0."""

    availability_noise: float = 0.0
    """Standard deviation of the seeded multiplicative noise on plant and renewable
    availability in training episodes. In [0, 1]. Default: 0.0."""

    holdout_hours: int | None = None
    """Hold the last ``holdout_hours`` hours of the horizon out of training: training
    episodes never touch them and evaluation runs exactly them (``train.py
    --holdout-hours``). The best-response teacher, which otherwise learns from the
    evaluations' episodes, then gets an analysed episode of its own on the first training
    window (no noise) after each evaluation, so nothing is imitated on the held-out hours;
    ``obs_normalization``'s statistics come from the training hours only.
    The kept policy is still chosen by the held-out evaluations (a validation window, not
    an untouched test). None: train and evaluate on the whole horizon. Must be >= 1.
    Default: None."""

    analysis_max_agents: int = 40
    """Most learning agents for which each evaluation runs the exact best-response
    analysis (exploitability, best-response profits); with more agents it is skipped
    with one printed note (the analysis grows fast with the agent count: 143 agents
    did not finish in 10 minutes). ``train.py --force-analysis`` runs the final one
    anyway. Must be >= 0. Default: 40."""

    equilibrium_reference: bool = True
    """At the end of training or ``evaluate``, compute the market's equilibrium and show
    each agent's equilibrium profit and the distance of the learned prices to the
    equilibrium prices; only done for at most 40 learning agents and within 120 s (else
    skipped with a note). Default: True."""

    unknown_keys: tuple[str, ...] = field(default=(), compare=False)
    """Keys of the source mapping that are not known and were ignored (not part of
    the configuration; left out of :meth:`to_dict`)."""

    _gradient_steps_auto: bool = field(default=False, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ construction

    def __post_init__(self) -> None:
        given = {name: getattr(self, name) for name in _FIELD_NAMES}
        values = _check(given, "LearningConfig")
        auto = values["gradient_steps"] == -1
        if auto:
            values["gradient_steps"] = values["train_freq"]
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "unknown_keys", tuple(str(k) for k in self.unknown_keys))
        object.__setattr__(self, "_gradient_steps_auto", auto)

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, *, source: str = "learning_config"
    ) -> LearningConfig:
        """Build a config from a mapping such as a YAML ``learning_config`` block.

        Missing keys take their defaults; values are coerced (see the module docstring).
        Unknown keys are kept in ``unknown_keys`` and reported with one warning
        (:class:`UnknownConfigKeyWarning`) that suggests the closest known key.

        Args:
            d: the mapping (``None``, as YAML gives for an empty block, means ``{}``).
            source: where the values come from, used in messages (e.g. a file name).

        Raises:
            ConfigError: ``d`` is not a mapping, or values have wrong types/ranges.
        """
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise ConfigError(
                source, [ConfigProblem("learning_config", d, "a mapping of key: value")]
            )
        d = _flatten_sections(d, source)
        known: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in d.items():
            if isinstance(key, str) and key in _FIELD_NAMES:
                known[key] = value
            else:
                unknown.append(str(key))
        if unknown:
            hints = ", ".join(f"{k!r}{_hint(k)}" for k in unknown)
            warnings.warn(
                f"{source}: unknown key(s) ignored: {hints}",
                UnknownConfigKeyWarning,
                stacklevel=2,
            )
        return cls._build(known, source, tuple(unknown))

    @classmethod
    def load(cls, path: str | os.PathLike, *, study_case: str | None = None) -> LearningConfig:
        """Read a config from a YAML or JSON file.

        The file may hold the keys directly (as :meth:`save` writes them), a
        ``learning_config`` mapping, or an ASSUME scenario ``config.yaml`` with study
        cases (``study_case`` picks one; default: the only one, else ``"base"``).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                str(path), [ConfigProblem("file", _MISSING, f"cannot be read ({exc})")]
            ) from exc
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(
                str(path), [ConfigProblem("file", _MISSING, f"is not valid YAML/JSON ({exc})")]
            ) from exc
        source = str(path)
        if isinstance(data, Mapping) and "learning_config" not in data and not (
            set(data) & _FIELD_NAMES
        ):
            cases = [k for k, v in data.items() if isinstance(v, Mapping)]
            case = study_case or (cases[0] if len(cases) == 1 else "base")
            if case not in data or not isinstance(data[case], Mapping):
                raise ConfigError(
                    source,
                    [ConfigProblem("study_case", case, f"one of the study cases {cases}")],
                )
            data = data[case]
            source = f"{path} [{case}]"
        if isinstance(data, Mapping) and "learning_config" in data:
            data = data["learning_config"]
            source = f"{source} learning_config"
        return cls.from_dict(data, source=source)

    @classmethod
    def _build(
        cls, values: Mapping[str, Any], source: str, unknown: tuple[str, ...] = ()
    ) -> LearningConfig:
        # Check with the caller's source first, so errors name it; __post_init__ then
        # re-checks (idempotent) and resolves gradient_steps=-1.
        return cls(**_check(values, source), unknown_keys=unknown)

    def with_overrides(self, items: Iterable[str] | Mapping[str, Any]) -> LearningConfig:
        """Return a copy with ``KEY=VALUE`` overrides applied (``train.py --set``).

        Each VALUE is parsed with ``yaml.safe_load`` (so ``256`` is an int, ``1e-3`` a
        float, ``true`` a bool, ``[64, 64]`` a list, ``null`` or an empty value None)
        and then checked like :meth:`from_dict`. ``-`` in keys is read as ``_``.
        If this config's ``gradient_steps`` came from -1, it follows a new
        ``train_freq`` unless ``gradient_steps`` is overridden too. A mapping of
        already-parsed values is accepted as well.

        Raises:
            ConfigError: an item without ``=``, an unknown key (with the closest known
                key as hint), an unparsable value, or a value of wrong type/range.
        """
        source = "--set"
        if isinstance(items, (str, bytes)):
            items = [items]  # one item, not its characters
        problems: list[ConfigProblem] = []
        overrides: dict[str, Any] = {}
        pairs: Iterable[tuple[Any, Any]]
        if isinstance(items, Mapping):
            pairs = [(str(k).strip().replace("-", "_"), v) for k, v in items.items()]
        else:
            pairs = []
            for item in items:
                text = str(item)
                key, sep, raw = text.partition("=")
                key = key.strip().replace("-", "_")
                if not sep or not key:
                    problems.append(
                        ConfigProblem(text, _MISSING, "is malformed; expected KEY=VALUE")
                    )
                    continue
                try:
                    value = yaml.safe_load(raw)
                except yaml.YAMLError as exc:
                    problems.append(
                        ConfigProblem(key, raw, f"a YAML value (parse error: {exc})")
                    )
                    continue
                pairs.append((key, value))
        for key, value in pairs:
            if key not in _FIELD_NAMES:
                problems.append(
                    ConfigProblem(key, _MISSING, f"is not a learning_config key{_hint(key)}")
                )
            else:
                overrides[key] = value
        if problems:
            raise ConfigError(source, problems)
        merged: dict[str, Any] = self.to_dict()
        if self._gradient_steps_auto and "gradient_steps" not in overrides:
            merged["gradient_steps"] = -1
        merged.update(overrides)
        return type(self)._build(merged, source, self.unknown_keys)

    # ------------------------------------------------------------------ output

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain, JSON/YAML-able dict (tuples become lists;
        ``unknown_keys`` is left out). ``from_dict(cfg.to_dict()) == cfg``."""
        out: dict[str, Any] = {}
        for name in _FIELD_ORDER:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically (a temporary file in the same
        folder, then :func:`os.replace`): JSON if the suffix is ``.json``, else YAML.
        Creates missing parent folders. Returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            text = yaml.safe_dump(data, sort_keys=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return path

    # ------------------------------------------------------------------ helpers

    @property
    def gradient_steps_from_train_freq(self) -> bool:
        """True when ``gradient_steps`` was given as -1 (= ``train_freq`` hours)."""
        return self._gradient_steps_auto

    def resolved_plant_bids(self, scenario) -> str:
        """`plant_bids` for ``scenario`` ("auto": "undercut" when a learning plant has
        start-up costs, else "free")."""
        if self.plant_bids != "auto":
            return self.plant_bids
        pl = scenario.plants
        start_ups = any(bool(learn) and float(cost) > 0 for learn, cost in zip(pl.learning, pl.start_up_cost))
        return "undercut" if start_ups else "free"

    def resolved_cost_snap(self) -> float:
        """`cost_snap` in EUR/MWh ("auto": 0.25 % of `max_bid_price`)."""
        return 0.0025 * float(self.max_bid_price) if self.cost_snap == "auto" else float(self.cost_snap)

    def resolved_storage_teacher(self) -> str:
        """`storage_teacher` ("auto": "best_move")."""
        return "best_move" if self.storage_teacher == "auto" else self.storage_teacher

    def resolved_equilibrium_teacher_storage_refresh(self) -> bool:
        """`equilibrium_teacher_storage_refresh` ("auto": on with the best-move storage
        teacher)."""
        v = self.equilibrium_teacher_storage_refresh
        return self.resolved_storage_teacher() == "best_move" if v == "auto" else bool(v)

    def resolved_storage_prices(self) -> str:
        """`storage_prices` ("auto": "undercut")."""
        return "undercut" if self.storage_prices == "auto" else self.storage_prices

    def resolved_start_up_gamma(self) -> float:
        """`start_up_gamma` as a number ("auto": max(`gamma`, 0.97))."""
        return max(self.gamma, 0.97) if self.start_up_gamma == "auto" else float(self.start_up_gamma)

    def resolved_critic_reward_scale(self) -> float:
        """`critic_reward_scale` as a number ("auto": 1 - gamma, or 1 when gamma is 1)."""
        if self.critic_reward_scale == "auto":
            return 1.0 - self.gamma if self.gamma < 1.0 else 1.0
        return float(self.critic_reward_scale)

    def resolved_foresight(self, scenario) -> int:
        """`foresight` as a number of time steps for ``scenario`` ("auto": see the key)."""
        if self.foresight != "auto":
            return int(self.foresight)
        return auto_foresight(scenario)

    def resolved_device(self) -> str:
        """The concrete torch device string: "auto" becomes "cuda" when available,
        else "cpu". Imports torch lazily. Raises :class:`ConfigError` when a cuda
        device is asked for but not available."""
        import torch  # noqa: PLC0415 - lazy on purpose

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(
                    "learning_config",
                    [
                        ConfigProblem(
                            "device", self.device, "'cpu' or 'auto' (CUDA is not available)"
                        )
                    ],
                )
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            if index >= torch.cuda.device_count():
                raise ConfigError(
                    "learning_config",
                    [
                        ConfigProblem(
                            "device",
                            self.device,
                            f"a CUDA index below {torch.cuda.device_count()}",
                        )
                    ],
                )
        return self.device


# --------------------------------------------------------------------------- coercers


_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}
_NONE_STRINGS = {"none", "null", "~", ""}


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise _Bad("a boolean (true/false)")


def _number(v: Any) -> float | int:
    """A real number from an int, float or numeric string; bools are refused."""
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        s = v.strip().replace("_", "")
        try:
            return int(s)
        except ValueError:
            return float(s)
    raise TypeError


# Upper bounds of the counts (issue 10, class 5): a number past these is a typo or an
# attack (``--episodes 1e30``, ``torch_threads=100000`` crashed torch), refused with one
# line before any work is done. The memory estimate (agents.resources) bounds the sizes
# that multiply each other.
_MAX_EPISODES = 10_000_000
_MAX_COUNT = 10_000_000
_MAX_BUFFER = 2_000_000_000
_MAX_SEED = 2**63 - 1
_MAX_ENVS = 65_536
_MAX_THREADS = 1024
_MAX_FORESIGHT = 10_000  # the checkpoint manifest's bound
AUTO_FORESIGHT_STEPS = 12  # "auto" foresight without learning storage (the env's default)
_MAX_WIDTH = 1_000_000
_MAX_LAYERS = 64


def _int(minimum: int | None = None, extra: tuple[int, ...] = (), maximum: int | None = None) -> Callable[[Any], int]:
    if minimum is not None and maximum is not None:
        desc = f"an integer >= {minimum} and <= {maximum:_}"
    else:
        desc = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    if extra:
        desc += " or " + " or ".join(str(e) for e in extra)

    def coerce(v: Any) -> int:
        try:
            x = _number(v)
        except (TypeError, ValueError):
            raise _Bad(desc) from None
        if isinstance(x, float):
            if not (math.isfinite(x) and x.is_integer()):
                raise _Bad(desc)
            x = int(x)
        if x in extra:
            return x
        if minimum is not None and x < minimum:
            raise _Bad(desc)
        if maximum is not None and x > maximum:
            raise _Bad(desc)
        return x

    return coerce


def _float(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> Callable[[Any], float]:
    if low is not None and high is not None:
        desc = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        desc = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        desc = "a finite number"

    def coerce(v: Any) -> float:
        try:
            x = float(_number(v))
        except (TypeError, ValueError, OverflowError):
            raise _Bad(desc) from None
        if not math.isfinite(x):
            raise _Bad(desc)
        if low is not None and (x <= low if low_open else x < low):
            raise _Bad(desc)
        if high is not None and x > high:
            raise _Bad(desc)
        return x

    return coerce


def _optional(inner: Callable[[Any], Any], *, auto: bool = False) -> Callable[[Any], Any]:
    """``inner``, or None for null-like strings (and for "auto" when ``auto``)."""
    none_strings = _NONE_STRINGS | ({"auto"} if auto else set())
    suffix = ', null or "auto"' if auto else ", or null"

    def coerce(v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() in none_strings):
            return None
        try:
            return inner(v)
        except _Bad as bad:
            raise _Bad(f"{bad.allowed}{suffix}") from None

    return coerce


def _auto_or(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``"auto"`` as such, else ``inner``."""

    def coerce(v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            return inner(v)
        except _Bad as bad:
            raise _Bad(f'"auto" or {bad.allowed}') from None

    return coerce


def _path(v: Any) -> str:
    if isinstance(v, (str, os.PathLike)):
        return os.fspath(v)
    raise _Bad("a folder path (string) or null")


def _choice(*options: str, refused: Mapping[str, str] | None = None) -> Callable[[Any], str]:
    desc = "one of " + ", ".join(repr(o) for o in options)

    def coerce(v: Any) -> str:
        if isinstance(v, str):
            s = v.strip().lower()
            if s in options:
                return s
            if refused and s in refused:
                raise _Bad(refused[s])
        raise _Bad(desc)

    return coerce


def _schedule(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in _NONE_STRINGS):
        return None
    try:
        return _choice("linear", "constant")(v)
    except _Bad:
        raise _Bad("null, 'linear' or 'constant'") from None


_DEVICE_RE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def _device(v: Any) -> str:
    if isinstance(v, str):
        s = v.strip().lower()
        if _DEVICE_RE.match(s):
            return s
    raise _Bad("'cpu', 'cuda', 'cuda:N' or 'auto'")


def _sizes(v: Any) -> tuple[int, ...]:
    desc = "a non-empty list of integers >= 1, e.g. [256, 128]"
    if isinstance(v, str):
        parts = [p for p in v.strip().strip("[]()").replace(",", " ").split()]
        v = parts
    elif isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v:
        raise _Bad(desc)
    to_int = _int(1, maximum=_MAX_WIDTH)
    if len(v) > _MAX_LAYERS:
        raise _Bad(desc + f" (at most {_MAX_LAYERS} layers)")
    try:
        return tuple(to_int(x) for x in v)
    except _Bad:
        raise _Bad(desc) from None


def _hours_list(v: Any) -> tuple[float, ...]:
    desc = "a list of hours > 0, e.g. [12, 24, 48] ([] or null: none)"
    if v is None or v is False:
        return ()
    if isinstance(v, str):
        v = [p for p in v.strip().strip("[]()").replace(",", " ").split()]
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or len(v) > 16:
        raise _Bad(desc)
    to_hours = _float(0.0, 1e6, low_open=True)
    try:
        return tuple(to_hours(x) for x in v)
    except _Bad:
        raise _Bad(desc) from None


_DURATION_DESC = "whole hours >= 1: an integer or a duration like '100h', '24h', '1d', '1w'"
_UNIT_DW = re.compile(r"(\d\s*)([dw])(?![a-z])")


def _timedelta_hours(text: str) -> float:
    """Hours of a duration string, read by :class:`pandas.Timedelta` (``"100h"``,
    ``"1d"``, ``"2 days"``, ``"1w"``, ``"90min"``, ``"P1D"``); a bare number is hours."""
    import pandas as pd  # noqa: PLC0415 - lazy: this module stays light

    s = text.strip().lower()
    try:
        return float(s.replace("_", ""))
    except ValueError:
        pass
    # pandas spells day and week in capitals ('d'/'w' are deprecated there)
    s = _UNIT_DW.sub(lambda m: m.group(1) + m.group(2).upper(), s)
    if s.startswith("p"):
        s = s.upper()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            td = pd.Timedelta(s)
    except (ValueError, TypeError, OverflowError):
        raise _Bad(_DURATION_DESC) from None
    if td is pd.NaT:
        raise _Bad(_DURATION_DESC)
    return td.total_seconds() / 3600


def parse_duration_hours(v: Any) -> int:
    """Hours from an int, a :class:`datetime.timedelta`, or a string that
    :class:`pandas.Timedelta` reads, such as ``"100h"``, ``"24H"``, ``"1d"``, ``"2w"``,
    ``"120min"``, ``"1 day"``, ``"P1D"``, or ``"48"`` (a bare number is hours).
    The result must be a whole number of hours >= 1; anything else raises ConfigError."""
    try:
        return _train_freq(v)
    except _Bad as bad:
        raise ConfigError("duration", [ConfigProblem("train_freq", v, bad.allowed)]) from None


def _train_freq(v: Any) -> int:
    if isinstance(v, bool):
        raise _Bad(_DURATION_DESC)
    if isinstance(v, _dt.timedelta):
        hours = v.total_seconds() / 3600
    elif isinstance(v, (int, float)):
        hours = float(v)
    elif isinstance(v, str):
        hours = _timedelta_hours(v)
    else:
        raise _Bad(_DURATION_DESC)
    if not math.isfinite(hours) or hours < 1:
        raise _Bad(_DURATION_DESC)
    rounded = round(hours)
    if abs(hours - rounded) > 1e-9:
        raise _Bad(_DURATION_DESC)
    return int(rounded)


# One rule per field: the coercer that checks the value and returns it in stored form.
_RULES: dict[str, Callable[[Any], Any]] = {
    "learning_mode": _to_bool,
    "continue_learning": _to_bool,
    "trained_policies_save_path": _optional(_path),
    "trained_policies_load_path": _optional(_path),
    "max_bid_price": _float(0.0, low_open=True),
    "algorithm": _choice(
        "matd3",
        refused={
            name: f"'matd3' (the only algorithm marketzoo implements; {name!r} is not supported)"
            for name in ("ppo", "mappo", "maddpg", "td3", "ddpg", "sac", "masac")
        },
    ),
    "actor_architecture": _choice(
        "mlp",
        refused={
            "lstm": "'mlp' ('lstm' actors are not supported by marketzoo)"
        },
    ),
    "learning_rate": _float(0.0, low_open=True),
    "learning_rate_schedule": _schedule,
    "training_episodes": _int(1, maximum=_MAX_EPISODES),
    "episodes_collecting_initial_experience": _int(0, maximum=_MAX_EPISODES),
    "train_freq": _train_freq,
    "gradient_steps": _int(1, extra=(-1,), maximum=_MAX_COUNT),
    "batch_size": _int(1, maximum=_MAX_COUNT),
    "gamma": _float(0.0, 1.0),
    "device": _device,
    "noise_sigma": _float(0.0),
    "noise_scale": _float(0.0),
    "noise_dt": _float(0.0, low_open=True),
    "action_noise_schedule": _schedule,
    "validation_episodes_interval": _int(1, maximum=_MAX_EPISODES),
    "early_stopping_steps": _optional(_int(1, maximum=_MAX_EPISODES)),
    "early_stopping_threshold": _float(0.0),
    "stop_at_equilibrium": _to_bool,
    "tau": _float(0.0, 1.0, low_open=True),
    "policy_delay": _int(1, maximum=_MAX_COUNT),
    "target_policy_noise": _float(0.0),
    "target_noise_clip": _float(0.0),
    "replay_buffer_size": _int(1, maximum=_MAX_BUFFER),
    "actor_hidden_sizes": _sizes,
    "critic_hidden_sizes": _sizes,
    "max_grad_norm": _optional(_float(0.0)),
    "actor_preactivation_penalty": _float(0.0),
    "best_response_teacher": _auto_or(_float(0.0)),
    "best_response_teacher_interval": _int(1),
    "best_response_teacher_window": _int(1),
    "best_response_teacher_margin": _float(0.0),
    "equilibrium_teacher": _auto_or(_to_bool),
    "equilibrium_teacher_steps": _int(0, maximum=10_000_000),
    "equilibrium_teacher_rollouts": _int(0, maximum=1000),
    "equilibrium_teacher_storage_refresh": _auto_or(_to_bool),
    "per_unit_gamma": _auto_or(_to_bool),
    "critic_search": _auto_or(_float(0.0)),
    "plant_cost_floor": _auto_or(_float(0.0)),
    "best_policy_metric": _choice("auto", "reward", "br_share", "gain"),
    "stay_out_fallback": _to_bool,
    "start_up_markup_hours": _float(0.0, 1e6),
    "min_power_rule": _choice("partial", "raise"),
    "cost_snap": _auto_or(_float(0.0, 1e6)),
    "start_up_markup_fallback": _hours_list,
    "tie_below_cost": _to_bool,
    "grid_learner_costs": _to_bool,
    "tie_below_cost_fallback": _to_bool,
    "actor_mix_fallback": _auto_or(_int(0, maximum=1000)),
    "actor_mix_evaluations": _int(1, maximum=_MAX_COUNT),
    "profile_search": _int(0, maximum=_MAX_COUNT),
    "profile_search_tolerance": _float(0.0),
    "best_policy_interval": _auto_or(_optional(_int(1, maximum=_MAX_EPISODES))),
    "critic_reward_scale": _auto_or(_float(0.0, low_open=True)),
    "regret_scale": _float(0.0),
    "storage_bids": _choice("signed", "two_sided"),
    "plant_bids": _choice("auto", "free", "undercut"),
    "storage_prices": _choice("auto", "free", "undercut", "behind"),
    "storage_teacher": _choice("auto", "break_even", "best_move"),
    "start_up_gamma": _auto_or(_float(0.0, 1.0)),
    "seed": _optional(_int(0, maximum=_MAX_SEED)),
    "num_envs": _int(1, maximum=_MAX_ENVS),
    "torch_threads": _optional(_int(1, maximum=_MAX_THREADS), auto=True),
    "foresight": _auto_or(_int(1, maximum=_MAX_FORESIGHT)),
    "obs_normalization": _to_bool,
    "episode_hours": _optional(_int(1)),
    "random_start": _to_bool,
    "demand_noise": _float(0.0, 1.0),
    "availability_noise": _float(0.0, 1.0),
    "holdout_hours": _optional(_int(1)),
    "analysis_max_agents": _int(0),
    "equilibrium_reference": _to_bool,
}

_FIELD_ORDER: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(LearningConfig) if f.init and f.name != "unknown_keys"
)
_FIELD_NAMES = frozenset(_FIELD_ORDER)
assert _FIELD_NAMES == set(_RULES), "every LearningConfig field needs exactly one rule"

_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(LearningConfig) if f.name in _FIELD_NAMES
}


def _check(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Coerce every field (defaults for the missing ones) and check cross-field rules;
    raise one ConfigError listing all problems. Does not resolve gradient_steps=-1."""
    problems: list[ConfigProblem] = []
    out: dict[str, Any] = {}
    for name in _FIELD_ORDER:
        raw = values.get(name, _DEFAULTS[name])
        try:
            out[name] = _RULES[name](raw)
        except _Bad as bad:
            problems.append(ConfigProblem(name, raw, bad.allowed))
    if not problems and out["continue_learning"] and not (out["trained_policies_load_path"]
                                                         or out["trained_policies_save_path"]):
        problems.append(ConfigProblem(
            "continue_learning", True,
            "false, or a folder to continue from in trained_policies_load_path (or trained_policies_save_path)"))
    if not problems and not out["learning_mode"] and not (out["trained_policies_load_path"]
                                                          or out["trained_policies_save_path"]):
        problems.append(ConfigProblem(
            "learning_mode", False,
            "true, or the folder of the policies to run in trained_policies_load_path (or trained_policies_save_path)"))
    if not problems and out["replay_buffer_size"] < out["batch_size"]:
        problems.append(
            ConfigProblem(
                "replay_buffer_size",
                values.get("replay_buffer_size", _DEFAULTS["replay_buffer_size"]),
                f"an integer >= batch_size ({out['batch_size']})",
            )
        )
    if problems:
        raise ConfigError(source, problems)
    return out


SECTIONS = ("off_policy", "matd3")
"""Sub-blocks of ``learning_config`` that newer ASSUME configs group keys in (e.g.
``off_policy: {gradient_steps: 10, noise_sigma: 0.1}``, or a block named after the
algorithm). Their keys are read as if written at the top level; ``on_policy`` (keys of
on-policy algorithms marketzoo does not implement) stays an unknown key."""


def _flatten_sections(d: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``d`` with the keys of its :data:`SECTIONS` blocks lifted to the top level. A key
    given both at the top level and in a block with different values is a
    :class:`ConfigError` naming both places."""
    flat = {k: v for k, v in d.items() if not (k in SECTIONS and isinstance(v, Mapping))}
    origin = {k: "learning_config" for k in flat}
    problems: list[ConfigProblem] = []
    for section in SECTIONS:
        block = d.get(section)
        if not isinstance(block, Mapping):
            continue
        for key, value in block.items():
            key = str(key)
            if key in flat and flat[key] != value:
                problems.append(ConfigProblem(
                    f"{section}.{key}", value,
                    f"the same value as {origin[key]}.{key} ({flat[key]!r}), or the key in one place only",
                ))
                continue
            flat[key] = value
            origin[key] = section
    if problems:
        raise ConfigError(source, problems)
    return flat


def _hint(key: str) -> str:
    """' (did you mean 'x'?)' for the closest known key, or ''."""
    probe = str(key).strip().lower().replace("-", "_")
    match = difflib.get_close_matches(probe, sorted(_FIELD_NAMES), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def auto_foresight(scenario) -> int:
    """The "auto" `foresight` of ``scenario``, in time steps: 12, or, when a learning
    storage unit needs more than a day for a whole cycle (time to fill plus time to empty
    at full power between its state-of-charge bounds), the slowest cycle rounded up to
    whole days, at most a week."""
    st = scenario.storages
    hours = 0.0
    for i, learning in enumerate(st.learning):
        if not learning:
            continue
        usable = float((st.max_soc[i] - st.min_soc[i]) * st.capacity[i])
        fill = usable / max(float(st.max_power_charge[i] * st.efficiency_charge[i]), 1e-9)
        empty = usable * float(st.efficiency_discharge[i]) / max(float(st.max_power_discharge[i]), 1e-9)
        hours = max(hours, fill + empty)
    if hours <= 24.0:  # the default window: 12 past prices and 12 hours ahead
        return AUTO_FORESIGHT_STEPS
    days = min(math.ceil(hours / 24.0 - 1e-9), 7)
    return max(AUTO_FORESIGHT_STEPS, math.ceil(days * 24.0 / float(scenario.time_step_hours) - 1e-9))
