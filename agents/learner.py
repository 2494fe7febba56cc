"""The learner core shared by the plain training loop and the mango ``Learning`` role.

A :class:`Learner` owns what learns: the stacked MATD3 networks of all learning units
(:class:`agents.matd3.MATD3`), the replay buffer, the update schedule, the exploration
noise and every generator of the run (from :func:`agents.seeding.run_generators`). It
does not own a market: the plain loop hands it a :class:`envs.MarketCore` per episode
(:meth:`Learner.run_episode`), the mango runtime feeds it transitions through the
``Learning`` role (:meth:`Learner.add`, :meth:`Learner.update_round`).

Schedule of ASSUME's learning_config (the same in both runtimes):

* episodes ``0 .. episodes_collecting_initial_experience - 1`` bid uniformly at random in
  ``[-1, 1]`` (mode ``explore``), without updates;
* afterwards (mode ``train``) actions are ``actor(obs) + scale * N(0, noise_sigma)``
  clipped to ``[-1, 1]``; ``scale`` is :meth:`Learner.noise_scales`: the schedule value of
  the episode (``action_noise_schedule``: ``linear`` from ``noise_scale`` to 0 at the last
  episode, else constant ``noise_scale``) times ``noise_dt ** k``, where ``k`` counts the
  noisy draws before this one (one draw per agent and hour, all market copies at once);
* every ``train_freq`` simulated hours ``gradient_steps`` MATD3 updates on batches of
  ``batch_size`` (:meth:`Learner.update_round`), with the learning rate of
  ``learning_rate_schedule`` (:meth:`Learner.learning_rate`).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from envs.core import UNIQUE_OBS_LEN

from .buffer import ReplayBuffer
from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .config import LearningConfig
from .evaluation import EvalResult, evaluation_episode, run_episode
from .learning_utils import NormalActionNoise
from .matd3 import MATD3, metrics_to_float
from .seeding import run_generators
from .threads import ThreadTuner, step_flop

if TYPE_CHECKING:
    from envs import MarketCore, Scenario

__all__ = ["EpisodeStats", "Learner", "configure_torch_threads", "default_torch_threads", "policy_load_path",
           "warm_start_path"]

_STATE_FORMAT = "marketzoo.learner/1"

# critic_search: random candidate actions scored per actor step, and the gain (x mean |Q|) that makes a target
CRITIC_SEARCH_CANDIDATES = 32
CRITIC_SEARCH_MARGIN = 0.05
CRITIC_SEARCH_STATES = 64  # sampled states searched per actor step (many: as good as 128, 1.7x faster training)
CRITIC_SEARCH_AUTO_WEIGHT = 1.0  # critic_search "auto", on the units with discount 0 (see Learner.apply_unit_roles)
# plant_cost_floor "auto": the weight for the plants with start-up costs among several learners (RESULTS.md, 15th round)
COST_FLOOR_AUTO_WEIGHT = 100.0
COST_FLOOR_EPS = 0.001  # target: the marginal cost + this, in action units (0.1 EUR/MWh at max_bid_price 100)
# best_response_teacher "auto": the weight for a market with one learning unit (RESULTS.md, 02a)
TEACHER_AUTO_WEIGHT = 100.0
# equilibrium_teacher: limits of the equilibrium computation before training
EQ_TEACHER_MAX_PASSES = 10
EQ_TEACHER_TIME_LIMIT_S = 120.0
EQ_TEACHER_BATCH = 256
# stay_out_fallback: the pre-activation of a plant actor set to stay out (tanh(8) = 1 - 2e-7:
# the top of its bid range)
STAY_OUT_PREACTIVATION = 8.0
# equilibrium_teacher_rollouts: copies of the training window each rollout round runs
# (copy 0 with the bare actors, the others with Gaussian action noise of this scale,
# a fraction of max_bid_price); each round is followed by equilibrium_teacher_steps / 3
# imitation-only steps at a tenth of the actors' learning rate
EQ_TEACHER_COPIES = 4
EQ_TEACHER_ROLLOUT_NOISE = 0.02
# storage targets of the equilibrium teacher are clipped to the equilibrium's range of
# clearing prices widened by this fraction of max_bid_price
EQ_TEACHER_STORAGE_PAD = 0.02
# the storage moves of the teacher's equilibrium (see envs.analysis.equilibrium)
EQ_TEACHER_STORAGE_MOVES = "full"


def default_torch_threads() -> int:
    """Threads for torch on CPU outside large gradient steps: one. Small networks gain
    little from more and, on a machine whose cores are busy with anything else, their
    synchronisation slows each gradient step down by 10x or more (measured: 48 ms vs
    540 ms per update with 1 vs 2 threads on the 2-core development machine under load).
    Large gradient steps get a count chosen by timing when ``torch_threads`` is unset
    (:class:`agents.threads.ThreadTuner`)."""
    return 1


def configure_torch_threads(config: LearningConfig) -> int:
    """Set torch's CPU threads from ``torch_threads`` (process-wide; unset: one, and
    the learner's :class:`~agents.threads.ThreadTuner` picks the count of each large
    gradient step); returns the number set."""
    threads = int(config.torch_threads or default_torch_threads())
    torch.set_num_threads(threads)
    return threads


def policy_load_path(config: LearningConfig) -> Path | None:
    """Where the run loads policies from: ``trained_policies_load_path``, else
    ``trained_policies_save_path/best``, when ``continue_learning`` is on or
    ``learning_mode`` is off (the config refuses either without a path); else ``None``."""
    if config.learning_mode and not config.continue_learning:
        return None
    if config.trained_policies_load_path:
        return Path(config.trained_policies_load_path)
    if config.trained_policies_save_path:
        return Path(config.trained_policies_save_path) / "best"
    return None


def warm_start_path(config: LearningConfig) -> Path | None:
    """Where ``continue_learning`` loads policies from (:func:`policy_load_path`);
    ``None`` when ``continue_learning`` is off or ``learning_mode`` is off."""
    return policy_load_path(config) if config.learning_mode else None


def replay_capacity(config: LearningConfig, max_transitions: int) -> int:
    """Replay buffer size to allocate: ``replay_buffer_size``, but no more than the run can
    fill (``max_transitions`` = training_episodes x steps per episode x num_envs) and no
    less than ``batch_size``. (example_03a: 8.6 GiB for 500,000 transitions it never
    collects.)"""
    return max(min(int(config.replay_buffer_size), int(max_transitions)), int(config.batch_size))


def train_freq_steps(config: LearningConfig, time_step_hours: float = 1.0) -> int:
    """Market steps between two policy updates: ``train_freq`` is simulated time in hours
    (ASSUME's convention, e.g. "24h"); with a sub-hourly time step (``dt`` hours per
    step) that is ``train_freq / dt`` steps (24 h at 15 min: 96 steps)."""
    return max(1, int(round(config.train_freq / float(time_step_hours or 1.0))))


def _sample_rows(data: Sequence[tuple[np.ndarray, np.ndarray]], size: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``size`` rows drawn uniformly (with replacement) from the concatenation of the
    ``(obs, targets)`` pairs in ``data``, without building the concatenation."""
    sizes = np.array([len(o) for o, _ in data])
    rows = rng.integers(int(sizes.sum()), size=size)
    if len(data) == 1:
        return data[0][0][rows], data[0][1][rows]
    ends = np.cumsum(sizes)
    piece = np.searchsorted(ends, rows, side="right")
    start = ends - sizes
    obs = np.empty((size,) + data[0][0].shape[1:], dtype=data[0][0].dtype)
    tgt = np.empty((size,) + data[0][1].shape[1:], dtype=data[0][1].dtype)
    for j in np.unique(piece):
        sel = piece == j
        obs[sel] = data[j][0][rows[sel] - start[j]]
        tgt[sel] = data[j][1][rows[sel] - start[j]]
    return obs, tgt


def _schedule(kind: str | None, start: float, progress: float) -> float:
    if kind == "linear":
        return start * max(0.0, 1.0 - progress)
    return start


class EpisodeStats:
    """Sums over one training episode on ``B`` market copies: ``add(out)`` per hour with
    the core's step output; :meth:`result` gives ``reward`` (mean per agent and hour,
    averaged over copies), ``profit`` (EUR, all agents, mean over copies) and
    ``mean_price``. Used by the plain loop and by the mango market agent."""

    def __init__(self, n_agents: int) -> None:
        self.reward = np.zeros(n_agents)
        self.profit = np.zeros(n_agents)
        self.price_sum = 0.0
        self.hours = 0

    def add(self, out) -> None:
        self.reward += out.reward.mean(axis=0)
        self.profit += out.profit.mean(axis=0)
        self.price_sum += float(out.price.mean())
        self.hours += 1

    def result(self, noise_scale: float, learning_rate: float) -> dict[str, float]:
        h = max(self.hours, 1)
        return {
            "reward": float(self.reward.mean() / h),
            "profit": float(self.profit.sum()),
            "mean_price": self.price_sum / h,
            "noise_scale": float(noise_scale),
            "learning_rate": float(learning_rate),
        }


class Learner:
    """Networks, replay buffer, update schedule, exploration noise and generators of a run.

    Args:
        config: the validated learning config.
        agents: names of the learning units, in the order of the agent axis.
        obs_dim: observation length (the same for all units).
        act_dims: action length of each unit (actions are padded to ``max(act_dims)``).
        num_envs: market copies per transition (the buffer's and the actions' batch).
        seed: the run seed; every generator is derived from it
            (:func:`agents.seeding.run_generators`).
        unique_obs_len: trailing "unique" observation values the critics see of the others.
        device: torch device (default ``config.resolved_device()``).

    Public state: :attr:`algo` (MATD3), :attr:`buffer`, :attr:`episode` (training episodes
    completed = index of the next one), :attr:`n_updates` (gradient steps of this run),
    :attr:`hours_since_update`, :attr:`last_metrics`, :attr:`update_seconds`,
    :attr:`generators`. :meth:`state_dict` / :meth:`load_state_dict` cover all of it
    except the buffer's contents.
    """

    def __init__(self, config: LearningConfig, agents: Sequence[str], obs_dim: int, act_dims: Sequence[int], *,
                 num_envs: int = 1, seed: int = 0, unique_obs_len: int = UNIQUE_OBS_LEN,
                 device: str | torch.device | None = None, float_type: torch.dtype = torch.float32,
                 max_transitions: int | None = None) -> None:
        cfg = self.config = config
        self.agents = [str(a) for a in agents]
        self.n = len(self.agents)
        if self.n == 0:
            raise ValueError("Learner: no learning units")
        self.obs_dim = int(obs_dim)
        self.act_dims = [int(a) for a in act_dims]
        if len(self.act_dims) != self.n:
            raise ValueError(f"Learner: {len(self.act_dims)} action sizes for {self.n} agents")
        self.max_act = max(self.act_dims)
        self.num_envs = int(num_envs)
        self.unique_obs_len = int(unique_obs_len)
        self.seed = int(seed)
        self.device = str(device) if device is not None else cfg.resolved_device()
        self.float_type = float_type
        self.generators = g = run_generators(self.seed, self.n)
        self.algo = MATD3(
            self.n, self.obs_dim, self.act_dims, self.unique_obs_len,
            actor_hidden_sizes=cfg.actor_hidden_sizes, critic_hidden_sizes=cfg.critic_hidden_sizes,
            learning_rate=cfg.learning_rate, gamma=cfg.gamma, tau=cfg.tau, policy_delay=cfg.policy_delay,
            target_policy_noise=cfg.target_policy_noise, target_noise_clip=cfg.target_noise_clip,
            max_grad_norm=cfg.max_grad_norm, actor_preactivation_penalty=cfg.actor_preactivation_penalty,
            device=self.device, float_type=float_type, seed=g.torch,
        )
        # max_transitions: what the run can collect (replay_capacity); no bigger buffer is allocated
        size = cfg.replay_buffer_size if max_transitions is None else replay_capacity(cfg, max_transitions)
        self.buffer = ReplayBuffer(size, self.obs_dim, self.max_act, self.n, self.device, float_type,
                                   num_envs=self.num_envs, seed=g.buffer)
        # one generator per agent for its exploration (initial random bids and noise), as
        # each unit agent draws its own in the mango runtime: both runtimes draw the same
        self.noises = [
            NormalActionNoise(self.num_envs * self.max_act, mu=0.0, sigma=cfg.noise_sigma, scale=cfg.noise_scale,
                              dt=1.0, rng=r)
            for r in g.agents
        ]
        self.mask = (np.arange(self.max_act)[None, :] < np.asarray(self.act_dims)[:, None]).astype(np.float64)
        self.episode = 0
        self.n_updates = 0
        self.threads = ThreadTuner(
            cfg.torch_threads if torch.device(self.device).type == "cpu" else 1,
            step_flop(self.n, self.obs_dim, self.max_act, self.unique_obs_len, cfg.batch_size,
                      tuple(cfg.actor_hidden_sizes), tuple(cfg.critic_hidden_sizes), cfg.policy_delay),
        )
        """Torch's thread count per gradient step (``torch_threads``; see :mod:`agents.threads`)."""
        self.hours_since_update = 0
        # computes the evaluations' best-response analysis when set (the trainer's two-core
        # split, agents.analysis_pool); None: envs.analysis.exploitability, same result
        self.analysis_pool = None
        self.last_metrics: dict[str, Any] = {}
        self.update_seconds = 0.0
        # best-response teacher (best_response_teacher > 0): data of the latest refreshes
        self.teacher_data: list[tuple[np.ndarray, np.ndarray]] = []
        self.teacher_rng = np.random.default_rng([self.seed, 0x7EAC])
        self.search_rng = np.random.default_rng([self.seed, 0x5EA4])
        # critic_search: its weight and the units it applies to (None = all); "auto" is
        # resolved per unit by apply_unit_roles
        cs = cfg.critic_search
        self.search_weight: float = 0.0 if cs == "auto" else float(cs)
        self.search_mask: torch.Tensor | None = None
        # plant_cost_floor: the weight per unit (0: none), resolved by apply_unit_roles
        self.floor_weight = np.zeros(self.n, dtype=np.float32)
        self.unit_kinds: list[str] | None = None  # "plant" | "renewable" | "storage", set by apply_unit_roles
        # the units the teacher teaches (a number: all; "auto": all of one learning unit, else
        # the storage units that bid two-sided, resolved by apply_unit_roles)
        self.teach_mask = np.full(self.n, cfg.best_response_teacher != "auto" or self.n == 1)
        # equilibrium_teacher: (obs (H, n, obs_dim), targets (H, n, max_act)) along the
        # equilibrium's path and the units it teaches (set_equilibrium_teacher)
        self.equilibrium_rows: tuple[np.ndarray, np.ndarray] | None = None
        # equilibrium_teacher_rollouts: (obs, targets) of the states the fitted actors
        # visit themselves, labelled with the equilibrium targets of their hour
        self.equilibrium_rollout_rows: list[tuple[np.ndarray, np.ndarray]] = []
        self.equilibrium_fitted = False  # the equilibrium teacher fitted the actors (set_equilibrium_teacher)
        self.equilibrium_mask = np.zeros(self.n, dtype=bool)
        # plant_bids "undercut": the env's map of offer prices onto its grid and the middle of
        # each grid price's range (MarketCore.undercut / undercut_centre), set by
        # apply_unit_roles; the teacher then teaches plants their best response on the grid
        self.plant_prices: Callable[[np.ndarray, int], np.ndarray] | None = None
        self.plant_price_centre: Callable[[np.ndarray, int], np.ndarray] | None = None
        # the teacher's grid best responses computed during an evaluation's analysis:
        # (record, {agent: BestResponse}), used by refresh_teacher for that record
        self._grid_responses: tuple[Any, dict] | None = None

    # ------------------------------------------------------------------ generators
    @property
    def env_rng(self) -> np.random.Generator:
        """Reset generator of the training market (:func:`agents.seeding.run_generators`)."""
        return self.generators.env

    @property
    def agent_rngs(self) -> list[np.random.Generator]:
        return self.generators.agents

    # ------------------------------------------------------------------ schedule
    def mode(self, episode: int) -> str:
        """``"explore"`` during initial exploration, else ``"train"``."""
        return "explore" if episode < self.config.episodes_collecting_initial_experience else "train"

    def noise_scale(self, episode: int, hours: int) -> float:
        """Scale of the first noise draw of training episode ``episode`` (episodes of
        ``hours`` hours)."""
        return float(self.noise_scales(episode, hours)[0])

    def noise_scales(self, episode: int, hours: int) -> np.ndarray:
        """Noise scale of every hour of training episode ``episode`` (``hours`` long): the
        schedule value of the episode times ``noise_dt ** k``, ``k`` = noisy draws before
        (every hour of every ``train`` episode is one draw). A pure function of its
        arguments, so both runtimes compute the same values."""
        cfg = self.config
        first = cfg.episodes_collecting_initial_experience
        span = max(1, cfg.training_episodes - first)
        base = _schedule(cfg.action_noise_schedule, cfg.noise_scale, (episode - first) / span)
        if cfg.noise_dt == 1.0:
            return np.full(int(hours), base)
        k0 = max(0, episode - first) * int(hours)
        return base * cfg.noise_dt ** (k0 + np.arange(int(hours), dtype=np.float64))

    def learning_rate(self, episode: int) -> float:
        cfg = self.config
        return _schedule(cfg.learning_rate_schedule, cfg.learning_rate, episode / max(1, cfg.training_episodes))

    # ------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray, *, explore: bool, random: bool = False,
            noise_scale: float | None = None) -> np.ndarray:
        """Actions ``(B, n, max_act)`` for observations ``(B, n, obs_dim)``: uniform random
        (``random``), actor + noise clipped to [-1, 1] (``explore``; ``noise_scale`` sets
        the scale of this draw), or the bare actor. Padded dimensions are 0."""
        B, m = obs.shape[0], self.max_act
        if random:
            a = np.stack([r.uniform(-1.0, 1.0, size=(B, m)) for r in self.agent_rngs], axis=1)
            return a * self.mask
        a = self.algo.act(torch.from_numpy(obs)).cpu().numpy().astype(np.float64)
        if explore:
            if noise_scale is not None:
                for nz in self.noises:
                    nz.scale = float(noise_scale)
            a = a + np.stack([nz.noise().reshape(B, m) for nz in self.noises], axis=1)
            np.clip(a, -1.0, 1.0, out=a)
        return a * self.mask

    # ------------------------------------------------------------------ learning
    def begin_episode(self, episode: int) -> float:
        """Start training episode ``episode``: clears the per-episode metrics, sets and
        returns its learning rate."""
        self.episode = int(episode)
        self.last_metrics = {}
        self.update_seconds = 0.0
        lr = self.learning_rate(episode)
        self.algo.set_learning_rate(lr)
        return lr

    def add(self, obs, actions, reward) -> None:
        """One hour's transition of all units (``(B, n, ...)``) into the replay buffer
        (the reward times ``critic_reward_scale``)."""
        scale = self.config.resolved_critic_reward_scale()
        self.buffer.add(obs, actions, reward if scale == 1.0 else np.asarray(reward) * scale)

    def end_episode(self, final_obs) -> None:
        """Close the episode in the buffer (its last observation)."""
        self.buffer.end_episode(final_obs)

    def update_round(self) -> dict[str, Any]:
        """One scheduled policy update: ``gradient_steps`` MATD3 steps on batches of
        ``batch_size``, skipped while the buffer holds fewer transitions. Returns the last
        step's metrics as floats (also kept in :attr:`last_metrics`; ``{}`` if skipped)."""
        cfg = self.config
        if self.buffer.size() < cfg.batch_size:
            return {}
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        for _ in range(cfg.gradient_steps):
            with self.threads.step():
                batch = self.buffer.sample(cfg.batch_size)
                imitation = self._imitation_batch(batch)
                metrics = self.algo.update(batch, imitation=imitation)
            self.n_updates += 1
        self.last_metrics = metrics_to_float(metrics)
        self.update_seconds += time.perf_counter() - t0
        return self.last_metrics

    def episode_stats(self, base: dict[str, float], *, wall_seconds: float, transitions: int) -> dict[str, float]:
        """A training episode's statistics: ``base`` (:meth:`EpisodeStats.result`), then
        ``sim_seconds``, ``update_seconds``, ``sps`` and the last update's float metrics
        (``losses/...``)."""
        stats = dict(base)
        stats["sim_seconds"] = max(0.0, wall_seconds - self.update_seconds)
        stats["update_seconds"] = self.update_seconds
        stats["sps"] = transitions / max(wall_seconds, 1e-9)
        stats.update({k: v for k, v in self.last_metrics.items() if isinstance(v, float)})
        return stats

    def run_episode(self, core: MarketCore) -> dict[str, float]:
        """Run training episode :attr:`episode` on ``core`` (the plain loop): collect into
        the buffer, update every ``train_freq`` hours (counted across episodes, also
        during initial exploration), close the episode; advances :attr:`episode`.
        Returns the episode's statistics (:meth:`episode_stats`)."""
        cfg = self.config
        ep = self.episode
        initial = self.mode(ep) == "explore"
        t_start = time.perf_counter()
        lr = self.begin_episode(ep)
        scales = self.noise_scales(ep, core.max_cycles)
        freq = train_freq_steps(cfg, core.scenario.time_step_hours)
        obs = core.reset(self.env_rng)
        acc = EpisodeStats(core.n)
        h = 0
        while not core.done:
            actions = self.act(obs, explore=True, random=initial, noise_scale=scales[h])
            out, nxt = core.step_observe(actions)  # step + observe (fused for one copy)
            self.add(obs, actions, out.reward)
            obs = nxt
            acc.add(out)
            h += 1
            self.hours_since_update += 1
            if not initial and self.hours_since_update >= freq:  # counts steps
                self.hours_since_update = 0
                self.update_round()
        self.end_episode(obs)
        self.episode = ep + 1
        return self.episode_stats(acc.result(scales[0], lr), wall_seconds=time.perf_counter() - t_start,
                                  transitions=acc.hours * core.B)

    def evaluate(self, core: MarketCore, scenario: Scenario, *, analysis: bool = True,
                 refresh: bool = True) -> EvalResult:
        """One deterministic episode (no noise) on copy 0 of ``core`` (reset with the
        run's evaluation seed); with the best-response analysis when ``analysis``. With
        ``best_response_teacher`` and ``refresh`` the analysed episode also refreshes the
        teacher (:meth:`refresh_teacher`)."""
        seen: list[np.ndarray] = []

        def act(obs):
            seen.append(obs[:1].copy())
            return self.act(obs, explore=False)

        pool = self.analysis_pool
        fn = None
        if pool is not None:
            fn = pool.exploitability
            if refresh and self.best_response_teaching and self.plant_prices is not None:
                # the teacher's grid best responses of the plants, while the worker computes
                fn = functools.partial(pool.exploitability,
                                       while_waiting=lambda rec: self._prefetch_grid_responses(rec, core))
        episode = evaluation_episode(core, scenario, seed=self.generators.evaluation, analysis=analysis,
                                     exploitability_fn=fn)
        ev = run_episode(episode, act)
        if refresh and self.best_response_teaching and getattr(ev, "analysis_result", None) is not None:
            self.refresh_teacher(np.concatenate(seen, axis=0), ev.analysis_result, record=ev.record,
                                 scenario=scenario, core=core)
        return ev

    def stay_out(self, units: Sequence[int]) -> None:
        """Set the actors of ``units`` (agent indices) to the action +1 in each of their
        action dimensions whatever they observe (the last layer's weights 0, its bias
        :data:`STAY_OUT_PREACTIVATION`): a plant then offers at the top of its bid range.
        The other actors, the targets and the critics are left as they are."""
        W, b = self.algo.actor_params[-2], self.algo.actor_params[-1]
        with torch.no_grad():
            for i in units:
                d = int(self.act_dims[i])
                W[i].zero_()
                b[i, :d] = STAY_OUT_PREACTIVATION

    # ------------------------------------------------------------------ best-response teacher
    @property
    def teacher_weight(self) -> float:
        """``best_response_teacher`` as a number (``"auto"``: :data:`TEACHER_AUTO_WEIGHT` when
        :attr:`teach_mask` holds a unit, else 0)."""
        v = self.config.best_response_teacher
        if v == "auto":
            return TEACHER_AUTO_WEIGHT if self.teach_mask.any() else 0.0
        return float(v)

    @property
    def _br_taught(self) -> np.ndarray:
        """The units taught best-response targets: those the equilibrium does not teach,
        and with `equilibrium_teacher_storage_refresh` the storage units it teaches."""
        taught = self.teach_mask & ~self.equilibrium_mask
        if self.config.resolved_equilibrium_teacher_storage_refresh() and self.unit_kinds is not None:
            taught |= self.teach_mask & self.equilibrium_mask & (np.asarray(self.unit_kinds) == "storage")
        return taught

    @property
    def best_response_teaching(self) -> bool:
        """Whether an analysed evaluation refreshes the best-response teacher (a positive
        :attr:`teacher_weight` and a unit it teaches)."""
        return self.teacher_weight > 0 and bool(self._br_taught.any())

    def teacher_due(self, episode: int) -> bool:
        """Whether training episode ``episode`` is followed by a teacher refresh of its own
        (``best_response_teacher_interval``; regular evaluations refresh it anyway)."""
        cfg = self.config
        if not self.best_response_teaching or self.mode(episode) == "explore":
            return False
        return (episode + 1 - cfg.episodes_collecting_initial_experience) % cfg.best_response_teacher_interval == 0

    def refresh_teacher(self, obs: np.ndarray, analysis: Any, *, record: Any = None, scenario: Any = None,
                        core: MarketCore | None = None) -> None:
        """Add one deterministic episode to the teacher: its observations ``(H, n, obs_dim)``
        and every agent's best-response actions from ``analysis`` (an
        :class:`envs.analysis.Exploitability` of that episode), lowered by
        ``best_response_teacher_margin`` (for storage: offers lower, charge bids higher, an
        offer stays an offer); a storage unit that bids two-sided gets, at the visited
        states of charge, the bids of its best response read as a policy
        (:class:`envs.analysis.StorageResponsePolicy`; on the env's storage grid at the
        middle of each price's range) or, with ``storage_teacher`` "break_even", the
        break-even prices of its whole-volume best response on the state-of-charge grid
        (:func:`envs.analysis.storage_break_even_prices`); both need ``record`` and
        ``scenario``, the episode's :class:`~envs.record.EpisodeRecord` and scenario.
        Agents whose best response is not exact (storage analysed without its unit data)
        or that :attr:`teach_mask` leaves out get no target (NaN). Plants that bid on the
        env's grid (:attr:`plant_prices`) get their best response within the grid, at the
        middle of each price's range (needs ``record``; the grid of ``core``, the market the
        episode ran on, when given). Keeps the latest ``best_response_teacher_window``
        episodes."""
        cfg = self.config
        H = obs.shape[0]
        tgt = np.full((H, self.n, self.max_act), np.nan, dtype=np.float32)
        margin = cfg.best_response_teacher_margin / cfg.max_bid_price
        # one storage unit's response bids go to the analysis worker (when it runs), computed
        # there while this process works out the other agents' targets (the same values)
        pool = self.analysis_pool
        pending: dict[str, Any] = {}
        if pool is not None and pool.running and record is not None and scenario is not None \
                and cfg.resolved_storage_teacher() != "break_even":
            for k, a in enumerate(self.agents):
                if self._two_sided_storage_taught(k, analysis.responses.get(a)):
                    pending[a] = pool.call("storage_response_bids", record, a, H, scenario=scenario)
                    break
        # the worker's agent last: the others' targets are worked out here meanwhile
        order = sorted(range(self.n), key=lambda k: self.agents[k] in pending)
        for k in order:
            a = self.agents[k]
            r = analysis.responses.get(a)
            if r is None or not r.exact or not self.teach_mask[k]:  # e.g. storage without its unit data
                continue
            if self._two_sided_storage_taught(k, r):  # two-sided bids: see `storage_teacher`
                if record is None or scenario is None:
                    continue
                tgt[:, k, :2] = self._storage_targets(record, a, scenario, core, H, pending.get(a))
                continue
            d = self.act_dims[k]
            if r.kind == "plant" and self.plant_prices is not None and record is not None:
                # the env bids plant offers on its grid: the best response within the grid (one the
                # actor can reproduce; the unrestricted one often needs a price between two rule
                # offers), each price taught at the middle of the range the grid moves to it
                # instead of lowered by the margin (RESULTS.md, twenty-third round)
                cached = self._grid_responses
                if cached is not None and cached[0] is record and a in cached[1]:
                    grid = cached[1][a]  # computed while the analysis worker ran (the same)
                else:
                    grid = self._grid_response(record, k, core)
                _, centre_of = self._plant_grid_of(k, core)
                hours = np.asarray(record.hours)[:H]
                price = np.asarray(grid.best_price[:H, :d], dtype=np.float64)
                centre = np.stack([centre_of(price[h], int(hours[h])) for h in range(H)])
                tgt[:, k, :d] = np.sort(np.clip(centre / cfg.max_bid_price, -1.0, 1.0), axis=1)
                continue
            best = np.asarray(r.best_action[:H, :d], dtype=np.float64)
            # lower offers, higher charge bids (storage: a < 0 charges at |a|); both are a - margin,
            # but a discharge offer must not turn into a charge bid
            low = np.where(best >= 0, 0.0, -1.0) if r.kind == "storage" else -1.0
            tgt[:, k, :d] = np.clip(np.maximum(best - margin, low), -1.0, 1.0)
        tgt[:, ~self._br_taught] = np.nan  # not taught here (e.g. by the equilibrium's rows only)
        self._grid_responses = None
        self.teacher_data = (self.teacher_data + [(obs.astype(np.float32), tgt)])[-cfg.best_response_teacher_window:]

    def _two_sided_storage_taught(self, k: int, r: Any) -> bool:
        """Whether agent ``k`` with best response ``r`` is a storage unit bidding two-sided
        that the teacher teaches (`storage_teacher`'s targets)."""
        return (r is not None and r.exact and bool(self.teach_mask[k]) and r.kind == "storage"
                and self.act_dims[k] != 1)

    @staticmethod
    def _grid_core(core: MarketCore | None) -> MarketCore | None:
        """``core`` (the market the episode ran on) where it reads plant offers on its grid."""
        return core if core is not None and getattr(core, "plant_bids", None) == "undercut" else None

    def _plant_grid_of(self, k: int, core: MarketCore | None):
        """``(to_grid, centre_of)`` of plant agent ``k``: the offer grid of ``core`` (the
        market the episode ran on) when it reads plant offers on its grid, else the
        learner's own (:attr:`plant_prices`)."""
        grid_of = self._grid_core(core)
        return grid_of.plant_grid(k) if grid_of is not None else (self.plant_prices, self.plant_price_centre)

    def _grid_response(self, record: Any, k: int, core: MarketCore | None):
        """Plant agent ``k``'s best response within the env's offer grid to ``record``
        (ties resolved towards its cost; under a start-up markup a cold plant's offers
        raised first, as the env does): the best-response teacher's plant targets."""
        from envs.analysis import best_response, cold_offer_map

        to_grid, _ = self._plant_grid_of(k, core)
        grid_of = self._grid_core(core)
        cold = cold_offer_map(grid_of, k, to_grid) if grid_of is not None else None
        return best_response(record, self.agents[k], ties="cost", plant_prices=to_grid, cold_prices=cold)

    def _prefetch_grid_responses(self, record: Any, core: MarketCore | None) -> None:
        """:meth:`_grid_response` of every plant the teacher teaches on the grid, kept for
        :meth:`refresh_teacher` of the same record (run while the analysis worker computes
        its share of the evaluation's best responses)."""
        kinds = np.asarray(core.agent_kind) if core is not None else None
        out = {}
        for k, a in enumerate(self.agents):
            if self.teach_mask[k] and self._br_taught[k] and kinds is not None and kinds[k] == "plant":
                out[a] = self._grid_response(record, k, core)
        self._grid_responses = (record, out)

    def _storage_targets(self, record: Any, agent: str, scenario: Any, core: MarketCore | None,
                         H: int, pending: Any = None) -> np.ndarray:
        """The best-response teacher's targets ``(H, 2)`` (actions) for a storage unit
        that bids two-sided, as `storage_teacher` says (see :meth:`refresh_teacher`);
        ``pending``: the response bids (:func:`envs.analysis.storage_response_bids`) as a
        :class:`agents.analysis_pool.PendingCall` started earlier."""
        from envs.analysis import best_response, storage_break_even_prices, storage_response_bids

        mbp = float(self.config.max_bid_price)
        if self.config.resolved_storage_teacher() == "break_even":
            # on the grid: the off-grid break-even prices made `default` worse
            # (exploitability 0.644 -> 0.803, `python train.py`; RESULTS.md, eighth round)
            full = best_response(record, agent, scenario=scenario, storage_moves="full", storage_off_grid=False)
            return 2.0 * storage_break_even_prices(full, record)[:H] / mbp - 1.0
        # the best response read as a policy, at the states of charge the episode visited:
        # on its trading side the price of its best move (it may set the price with part
        # of its volume, which break-even prices, a price taker's, never do)
        prices = (pending.result() if pending is not None
                  else storage_response_bids(record, agent, H, scenario=scenario))
        if core is not None and getattr(core, "storage_prices", "free") != "free":  # "undercut" / "behind"
            hours = np.asarray(record.hours)[:H]
            tick = core.storage_offer_tick
            for h in range(H):  # each price at the middle of the actions the grid moves to it
                t = int(hours[h])
                prices[h, 0] = core.outbid_centre(core.outbid(prices[h, :1], t), t)[0]
                prices[h, 1] = core.undercut_centre(core.undercut(prices[h, 1:], t, tick), t, low=0.0, tick=tick)[0]
        # beyond the episode's clearing prices a target acts like one just beyond them
        # (e.g. an empty unit's offer at the top); clipped, it does not dominate the loss
        pad = EQ_TEACHER_STORAGE_PAD * mbp
        clearing = np.asarray(record.clearing_price, dtype=float)
        prices = np.clip(prices, float(clearing.min()) - pad, float(clearing.max()) + pad)
        return np.clip(2.0 * prices / mbp - 1.0, -1.0, 1.0)

    def equilibrium_teacher_wanted(self, core: MarketCore) -> bool:
        """Whether ``equilibrium_teacher`` applies to this run's market ``core`` (see the
        config key): "auto" needs one to ``analysis_max_agents`` learning units, all of
        them plants without start-up costs, renewables or storage units that bid
        two-sided, and no network; ``true`` needs
        one plant, renewable or two-sided storage unit; off without a teacher weight."""
        v = self.config.equilibrium_teacher
        if v is False or self.config.best_response_teacher == 0:
            return False
        if v == "auto":
            # no start-up costs; storage only when it bids two-sided
            ok = self._equilibrium_units(core) & (core.agent_start_up_cost <= 0)
            return (1 <= core.n <= self.config.analysis_max_agents and bool(ok.all())
                    and getattr(core, "net", None) is None)
        return bool(self._equilibrium_units(core).any())

    def _equilibrium_units(self, core: MarketCore) -> np.ndarray:
        """The units an equilibrium teacher can teach: plants, renewables and storage
        units that bid two-sided (a signed storage action cannot be taught break-even
        prices)."""
        kinds = np.asarray(core.agent_kind)
        return (kinds != "storage") | (np.asarray(self.act_dims) > 1)

    def set_equilibrium_teacher(self, core: MarketCore, scenario: Scenario, *, fit: bool = True) -> str:
        """Compute the equilibrium reference over ``core``'s episode (a one-copy market
        whose episodes start at hour 0, e.g. the training window; storage with whole-volume
        moves, ``storage_moves="full"``) and make it the teacher of the learning plants,
        renewables and two-sided storage units (``equilibrium_teacher``): a plant's or
        renewable's targets are its best response to the equilibrium with ties resolved
        towards its marginal cost (the same market outcome), offers above cost lowered by
        ``best_response_teacher_margin`` (not below cost); a storage unit's are the
        break-even prices of its whole feasible volume (the env's bid) by its whole-volume
        best response to the equilibrium, searched off the state-of-charge grid, at the
        state of charge ``core`` reaches. Observations are those of ``core`` run with these
        bids. With ``fit``, ``equilibrium_teacher_steps`` imitation-only steps fit the
        actors first. Returns a one-line report (also when no equilibrium is found; then
        nothing changes)."""
        from envs.analysis import best_response, equilibrium, storage_break_even_prices

        from .reference import _TimeUp, _with_time_limit

        cfg = self.config
        t0 = time.perf_counter()
        H = core.max_cycles
        taught = self._equilibrium_units(core)
        storage = taught & (np.asarray(core.agent_kind) == "storage")
        try:  # whole-volume storage moves: what a two-sided storage bid does when accepted
            eq = _with_time_limit(lambda: equilibrium(scenario, hours=H, max_bid_price=core.max_bid_price,
                                                      max_passes=EQ_TEACHER_MAX_PASSES,
                                                      storage_moves=EQ_TEACHER_STORAGE_MOVES,
                                                      min_power_rule=core.min_power_rule),
                                  EQ_TEACHER_TIME_LIMIT_S)
        except _TimeUp:
            return (f"equilibrium teacher: no equilibrium within {EQ_TEACHER_TIME_LIMIT_S:.0f} s; training without it "
                    "(equilibrium_teacher: false skips the attempt)")
        if not eq.converged:
            return f"equilibrium teacher: {eq.verdict()}; training without it (equilibrium_teacher: false skips the attempt)"
        mbp = float(core.max_bid_price)
        sc = scenario
        cost = np.zeros((H, self.n))
        if len(core.lp):
            cost[:, core.sl_plant] = sc.plants.marginal_cost[np.arange(H)][:, core.lp]
        if len(core.lr):
            cost[:, core.sl_ren] = sc.renewables.marginal_cost[core.lr][None, :]
        actions = np.zeros((H, self.n, self.max_act))  # the env's actions (the profile's core bids storage signed)
        m = min(self.max_act, eq.actions.shape[2])
        actions[:, :, :m] = eq.actions[:, :, :m]
        tgt = np.full((H, self.n, self.max_act), np.nan, dtype=np.float32)
        margin = cfg.best_response_teacher_margin
        for k in np.flatnonzero(taught & ~storage):
            d = int(self.act_dims[k])
            price = best_response(eq.record, int(k), ties="cost").best_price[:, :d]
            c = cost[:, k, None]
            price = np.where(price > c, np.maximum(price - margin, c), price)
            a = np.clip(price / mbp, -1.0, 1.0)
            actions[:, k, :d] = a
            tgt[:, k, :d] = a
        # storage: the break-even prices of its whole-volume best response to the
        # equilibrium at the state of charge the env reaches (closed loop)
        # off the grid: the break-even prices of the whole feasible volume (the env's bid)
        full = {int(k): best_response(eq.record, int(k), scenario=scenario, storage_moves="full")
                for k in np.flatnonzero(storage)}
        col = {k: int(core.ls[k - core.sl_storage.start]) for k in full}
        # a storage target beyond the equilibrium's clearing prices (e.g. an empty unit's
        # offer at the cap) acts like one just beyond them; clipped there, such targets no
        # longer dominate the imitation loss (it is measured before the actor's tanh)
        pad = EQ_TEACHER_STORAGE_PAD * mbp
        lo, hi = float(np.min(eq.record.clearing_price)) - pad, float(np.max(eq.record.clearing_price)) + pad

        def storage_action(p):
            return np.clip(2.0 * np.clip(p, lo, hi) / mbp - 1.0, -1.0, 1.0)
        obs = np.empty((H, self.n, self.obs_dim), dtype=np.float32)
        o = core.reset(np.random.default_rng(0))
        B = core.B
        for h in range(H):  # every copy follows the equilibrium's path (no noise: they stay equal)
            obs[h] = o[0]
            for k, br in full.items():
                p = storage_break_even_prices(br, eq.record, states=core.soc[0, [col[k]]], hours=[h])[0]
                actions[h, k, :2] = tgt[h, k, :2] = storage_action(p)
            _, o = core.step_observe(np.broadcast_to(actions[h][None], (B,) + actions[h].shape))
        self.equilibrium_rows = (obs, tgt)
        if fit:  # a resume (fit False) keeps the rollout rows of its run state
            self.equilibrium_rollout_rows = []
        self.equilibrium_mask = taught
        self.teach_mask = self.teach_mask | taught
        n_taught = int(taught.sum())
        msg = f"equilibrium teacher: {eq.verdict()}; teaching {n_taught} unit{'' if n_taught == 1 else 's'}"
        steps = cfg.equilibrium_teacher_steps if fit else 0
        if steps:
            w = np.where(taught, self.teacher_weight, 0.0).astype(np.float32)
            loss = self.fit_rows([(obs, tgt)], w, steps // 2, 1.0)
            loss = self.fit_rows([(obs, tgt)], w, steps - steps // 2, 0.1)
            msg += f"; actors fitted in {steps} steps (imitation loss {loss:.3g})"
            self.equilibrium_fitted = True
            rounds = cfg.equilibrium_teacher_rollouts
            if rounds:
                # DAgger: the fitted actors drift off the equilibrium's path (a bid a little
                # off changes the price history they observe next); label the states they
                # visit themselves with the targets of the hour (storage: the break-even
                # prices at the state of charge of the copy) and fit again.
                cols = [col[k] for k in full]
                for _ in range(rounds):
                    vis, socs = self._rollout(core, H, cols)  # (B, H, n, obs_dim), (B, H, len(cols))
                    lab = np.repeat(tgt[None], B, axis=0)
                    for j, (k, br) in enumerate(full.items()):  # every copy's hours in one lookup
                        p = storage_break_even_prices(br, eq.record, states=socs[:, :, j].reshape(-1),
                                                      hours=np.tile(np.arange(H), B))
                        lab[:, :, k, :2] = storage_action(p).reshape(B, H, 2)
                    self.equilibrium_rollout_rows.append(
                        (vis.reshape(-1, self.n, self.obs_dim), lab.reshape(-1, self.n, self.max_act)))
                    loss = self.fit_rows([(obs, tgt)] + self.equilibrium_rollout_rows, w,
                                          max(1, steps // 3), 0.1)
                msg += (f", then {rounds} rounds of rollouts ({B} copies) and fits "
                        f"(imitation loss {loss:.3g})")
        return msg + f" ({time.perf_counter() - t0:.1f} s)"

    def fit_rows(self, data: list, weight: np.ndarray, steps: int, lr_factor: float,
                 rng: np.random.Generator | None = None) -> float:
        """``steps`` imitation-only actor steps on batches of ``EQ_TEACHER_BATCH`` rows drawn
        uniformly from ``data`` (a list of ``(obs, targets)``) with ``rng`` (default the
        teacher's generator), the actors' learning rate scaled by ``lr_factor`` meanwhile;
        returns the last imitation loss."""
        rng = self.teacher_rng if rng is None else rng
        opt = self.algo.actor_optimizer
        lrs = [g["lr"] for g in opt.param_groups]
        loss = float("nan")
        try:
            for g in opt.param_groups:
                g["lr"] *= lr_factor
            for _ in range(steps):
                o, t = _sample_rows(data, EQ_TEACHER_BATCH, rng)
                loss = self.algo.imitation_step(o, t, weight, as_float=True)["losses/imitation_loss"]
        finally:
            for g, v in zip(opt.param_groups, lrs):
                g["lr"] = v
        return loss

    def _rollout(self, core: MarketCore, hours: int, soc_cols: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The observations ``(B, hours, n, obs_dim)`` of one episode of ``core`` (from
        hour 0) bid by the actors (copy 0 without noise, the others with Gaussian action
        noise, ``EQ_TEACHER_ROLLOUT_NOISE``, from the teacher's generator) and the states of
        charge ``(B, hours, len(soc_cols))`` of the storage columns ``soc_cols`` at the
        start of each hour."""
        o = core.reset(np.random.default_rng(0))
        B = core.B
        vis = np.empty((B, hours, self.n, self.obs_dim), dtype=np.float32)
        socs = np.empty((B, hours, len(soc_cols)))
        for h in range(hours):
            vis[:, h] = o
            socs[:, h] = core.soc[:, list(soc_cols)]
            a = self.act(o, explore=False)
            if B > 1:
                a[1:] += self.teacher_rng.normal(0.0, EQ_TEACHER_ROLLOUT_NOISE, a[1:].shape)
                np.clip(a, -1.0, 1.0, out=a)
                a *= self.mask
            _, o = core.step_observe(a)
        return vis, socs

    def apply_unit_roles(self, core: MarketCore) -> None:
        """Settings that depend on the kind of each learning unit of ``core``:

        * ``obs_normalization``: the networks' observation standardisation from
          :meth:`~envs.MarketCore.observation_scaling`;
        * ``per_unit_gamma``: discount 0 for the units without a link between their hours
          (plants without start-up costs, renewables), ``gamma`` for storage and
          ``start_up_gamma`` for plants with start-up costs; off (or "auto" with one
          learning unit): ``gamma`` for all;
        * ``critic_search``: a number applies to every unit; "auto" is weight
          :data:`CRITIC_SEARCH_AUTO_WEIGHT` for the units that ``per_unit_gamma`` gave
          discount 0, and off when it gave none;
        * ``best_response_teacher`` "auto" with several learning units: :attr:`teach_mask`
          = the storage units that bid two-sided and, where the env reads plant offers on
          its grid (``plant_bids`` "undercut"), the plants;
        * ``plant_bids`` "undercut": the teacher's plant targets are the best response
          within the grid (:attr:`plant_prices`)."""
        self.unit_kinds = [str(k) for k in core.agent_kind]
        if self.config.obs_normalization and self.algo.obs_shift is None:  # once, before any weight is trained
            self.algo.set_obs_normalization(*core.observation_scaling())
        grid = getattr(core, "plant_bids", "free") == "undercut"
        self.plant_prices = core.undercut if grid else None
        self.plant_price_centre = core.undercut_centre if grid else None
        if self.config.best_response_teacher == "auto" and self.n > 1:
            kinds = np.asarray(core.agent_kind)
            self.teach_mask = ((kinds == "storage") & (np.asarray(self.act_dims) > 1)) | ((kinds == "plant") & grid)
        v = self.config.per_unit_gamma
        coupled = (np.asarray(core.agent_kind) == "storage") | (core.agent_start_up_cost > 0)
        myopic = np.zeros(core.n, dtype=bool)
        if v is True or (v == "auto" and core.n >= 2):
            start_ups = (np.asarray(core.agent_kind) == "plant") & (core.agent_start_up_cost > 0)
            self.algo.set_agent_gamma(np.where(start_ups, self.config.resolved_start_up_gamma(),
                                               np.where(coupled, self.config.gamma, 0.0)))
            myopic = ~coupled
        else:
            self.algo.set_agent_gamma(None)
        if self.config.critic_search == "auto":
            self.search_weight = CRITIC_SEARCH_AUTO_WEIGHT if myopic.any() else 0.0
            self.search_mask = torch.from_numpy(myopic)
        else:
            self.search_weight, self.search_mask = float(self.config.critic_search), None
        # plant_cost_floor: plants that bid two prices (inflexible, flexible part)
        two_part = (np.asarray(core.agent_kind) == "plant") & (np.asarray(self.act_dims) == 2)
        f = self.config.plant_cost_floor
        if f == "auto":
            floored = two_part & (core.agent_start_up_cost > 0) if core.n >= 2 else np.zeros(core.n, dtype=bool)
            f = COST_FLOOR_AUTO_WEIGHT
        else:
            floored = two_part
        self.floor_weight = np.where(floored, float(f), 0.0).astype(np.float32)

    def _search_batch(self, batch):
        """``(obs, target, weight)`` of ``critic_search`` for the next MATD3 step when it
        is an actor step: for each of the first ``CRITIC_SEARCH_STATES`` sampled states
        and every learner, the best of its current
        action and ``CRITIC_SEARCH_CANDIDATES`` uniform random actions by its twin critics
        (min of both, the others' actions as sampled); a target only where that beats the
        current action by more than ``CRITIC_SEARCH_MARGIN`` x the learner's mean |Q|."""
        w = self.search_weight
        if w <= 0 or (self.algo.n_updates + 1) % self.algo.policy_delay:
            return None
        # the first CRITIC_SEARCH_STATES states of the (uniformly sampled) batch
        obs, act = batch.observations[:CRITIC_SEARCH_STATES], batch.actions[:CRITIC_SEARCH_STATES]
        B, n, m = act.shape
        pi = self.algo.act(obs).to(act.dtype) * self.algo.action_mask
        rand = torch.from_numpy(self.search_rng.uniform(-1.0, 1.0, size=(CRITIC_SEARCH_CANDIDATES, B, n, m)))
        cand = torch.cat([pi.unsqueeze(0), rand.to(device=act.device, dtype=act.dtype)], dim=0)
        q = self.algo.own_action_values(obs, act, cand)  # (K+1, B, n)
        best = q.argmax(dim=0)  # (B, n)
        gain = q.gather(0, best.unsqueeze(0)).squeeze(0) - q[0]
        scale = q[0].abs().mean(dim=0).clamp(min=1e-6)  # (n,)
        tgt = cand.gather(0, best.view(1, B, n, 1).expand(1, B, n, m)).squeeze(0).clone()
        tgt[gain <= CRITIC_SEARCH_MARGIN * scale] = float("nan")
        if self.search_mask is not None:  # "auto": only the units with discount 0 (the others: weight 0)
            tgt[:, ~self.search_mask.to(tgt.device)] = float("nan")
            return obs, tgt, np.where(self.search_mask.numpy(), w, 0.0).astype(np.float32)
        return obs, tgt, w

    def _floor_targets(self, obs) -> torch.Tensor:
        """``plant_cost_floor``'s targets for ``obs`` ``(B, n, obs_dim)``: for each unit with a
        floor weight, the marginal cost (the second entry of its observation's unique part,
        :meth:`~envs.MarketCore.unique_obs`, in action units) plus
        :data:`COST_FLOOR_EPS` for the flexible part wherever its actor offers that part below
        the cost; NaN everywhere else."""
        pi = self.algo.act(obs)
        obs_t = torch.as_tensor(obs).to(pi)
        # MarketCore.unique_obs: [dispatch share, marginal cost / max_bid_price (plants), ...]
        mc = obs_t[:, :, self.obs_dim - self.unique_obs_len + 1]
        tgt = torch.full_like(pi, float("nan"))
        below = (pi[:, :, 1] < mc) & torch.from_numpy(self.floor_weight > 0).to(pi.device)
        tgt[:, :, 1] = torch.where(below, mc + COST_FLOOR_EPS, tgt[:, :, 1])
        return tgt

    def _teacher_batch(self):
        """``(obs, target, weight)`` of ``batch_size`` teacher rows for the next MATD3 step
        when it is an actor step and the teacher holds data, else ``None``."""
        data = self.teacher_data + ([self.equilibrium_rows] if self.equilibrium_rows is not None else [])
        data += self.equilibrium_rollout_rows
        if not data or (self.algo.n_updates + 1) % self.algo.policy_delay:
            return None
        obs, tgt = _sample_rows(data, self.config.batch_size, self.teacher_rng)
        mask = self.teach_mask
        w = self.teacher_weight
        return obs, tgt, (w if mask.all() else np.where(mask, w, 0.0).astype(np.float32))

    def _with_cost_floor(self, batch, search):
        """``search`` (``critic_search``'s rows, or ``None``) with ``plant_cost_floor``'s
        targets for its units on the same sampled states: a unit with a floor weight that
        the teacher does not teach (:attr:`teach_mask`, with or without data yet) takes the
        floor's targets and weight instead of the search's. ``None`` on critic-only steps."""
        floored = (self.floor_weight > 0) & ~(self.teach_mask & (self.teacher_weight > 0))
        if not floored.any() or (self.algo.n_updates + 1) % self.algo.policy_delay:
            return search
        if search is None:
            obs = batch.observations[:CRITIC_SEARCH_STATES]
            tgt = torch.full(batch.actions[:CRITIC_SEARCH_STATES].shape, float("nan"), dtype=batch.actions.dtype,
                             device=batch.actions.device)
            w = np.zeros(self.n, dtype=np.float32)
        else:
            obs, tgt, w = search
            tgt = tgt.clone()
            w = np.broadcast_to(np.asarray(w, dtype=np.float32), (self.n,)).copy()
        cols = torch.from_numpy(floored).to(tgt.device)
        tgt[:, cols] = self._floor_targets(obs).to(tgt)[:, cols]
        w[floored] = self.floor_weight[floored]
        return obs, tgt, w

    def _imitation_batch(self, batch):
        """The imitation term of the next MATD3 step: the teacher's rows for the units it
        teaches and ``critic_search``'s rows (on the sampled ``batch``) for the others, in
        one ``(obs, target, weight per unit)``; ``None`` on critic-only steps and when
        neither has targets."""
        teach = self._teacher_batch()
        if teach is not None and np.ndim(teach[2]) == 0:  # every unit taught: no search
            return teach
        search = self._search_batch(batch)
        search = self._with_cost_floor(batch, search)
        if teach is None or search is None:
            return teach if search is None else search
        t_obs, t_tgt, t_w = teach
        s_obs, s_tgt, s_w = search
        taught = np.asarray(t_w) > 0
        s_tgt = s_tgt.clone()
        s_tgt[:, torch.from_numpy(taught).to(s_tgt.device)] = float("nan")
        t_tgt = np.array(t_tgt, copy=True)
        t_tgt[:, ~taught] = np.nan
        obs = torch.cat([torch.as_tensor(t_obs).to(s_obs), s_obs])
        tgt = torch.cat([torch.as_tensor(t_tgt).to(s_tgt), s_tgt])
        w = np.where(taught, t_w, np.broadcast_to(np.asarray(s_w, dtype=np.float32), taught.shape)).astype(np.float32)
        return obs, tgt, w

    # ------------------------------------------------------------------ policies
    def save(self, directory: str | os.PathLike, *, episode: int | None = None, metrics: dict[str, Any] | None = None,
             agent_kind: list[str] | None = None, scenario: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> Path:
        """Write the policies (all networks and optimizer states) as a checkpoint folder."""
        return save_checkpoint(directory, self.algo, self.agents, agent_kind=agent_kind, scenario=scenario,
                               episode=self.episode if episode is None else episode, metrics=metrics, extra=extra)

    def load(self, directory: str | os.PathLike, *, load_optimizers: bool = True, load_critics: bool = True) -> dict:
        """Load policies from a checkpoint; units are matched by name (critic inputs are
        remapped when the unit set changed). Returns the manifest."""
        remap = list(read_manifest(directory)["agents"]) != self.agents
        return load_checkpoint(directory, self.algo, self.agents, remap=remap, load_optimizers=load_optimizers,
                               load_critics=load_critics)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Counters, generators, networks and optimizer states and the best-response
        teacher's data (not the buffer's contents): what a later resume needs besides the
        replay buffer."""
        g = self.generators
        return {
            "format": _STATE_FORMAT,
            "agents": list(self.agents),
            "seed": self.seed,
            "episode": self.episode,
            "n_updates": self.n_updates,
            "hours_since_update": self.hours_since_update,
            "algo": self.algo.state_dict(),
            "generators": {
                "env": g.env.bit_generator.state,
                "buffer": self.buffer._rng.bit_generator.state,
                "agents": [r.bit_generator.state for r in g.agents],
                "teacher": self.teacher_rng.bit_generator.state,
                "search": self.search_rng.bit_generator.state,
            },
            # best_response_teacher: the refreshes it holds (tensors: state.pt loads with weights_only)
            "teacher_data": [(torch.from_numpy(o.copy()), torch.from_numpy(t.copy())) for o, t in self.teacher_data],
            # equilibrium_teacher_rollouts: the visited states it labelled (not recomputable on a resume)
            "equilibrium_rollout_rows": [(torch.from_numpy(o.copy()), torch.from_numpy(t.copy()))
                                         for o, t in self.equilibrium_rollout_rows],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; refuses another unit set or format."""
        if not isinstance(sd, dict) or sd.get("format") != _STATE_FORMAT:
            raise ValueError(f"Learner.load_state_dict: not a {_STATE_FORMAT} state dict")
        if list(sd["agents"]) != self.agents:
            raise ValueError(f"Learner.load_state_dict: units {sd['agents']} differ from {self.agents}")
        gens = sd["generators"]
        if len(gens["agents"]) != self.n:
            raise ValueError("Learner.load_state_dict: wrong number of agent generators")
        self.algo.load_state_dict(sd["algo"])
        self.generators.env.bit_generator.state = gens["env"]
        self.buffer._rng.bit_generator.state = gens["buffer"]
        for r, st in zip(self.generators.agents, gens["agents"]):
            r.bit_generator.state = st
        if "teacher" in gens:  # states written before the teacher was saved lack it
            self.teacher_rng.bit_generator.state = gens["teacher"]
        if "search" in gens:  # states written before critic_search existed lack it
            self.search_rng.bit_generator.state = gens["search"]
        self.teacher_data = [(o.numpy().copy(), t.numpy().copy()) for o, t in sd.get("teacher_data", [])]
        self.equilibrium_rollout_rows = [(o.numpy().copy(), t.numpy().copy())
                                         for o, t in sd.get("equilibrium_rollout_rows", [])]
        self.seed = int(sd["seed"])
        self.episode = int(sd["episode"])
        self.n_updates = int(sd["n_updates"])
        self.hours_since_update = int(sd["hours_since_update"])

    # ------------------------------------------------------------------ replay buffer
    def buffer_state_dict(self) -> dict[str, Any]:
        """The replay buffer's contents and write position as tensors (for a resume that
        continues bit-identically; its sampling generator is in :meth:`state_dict`)."""
        b = self.buffer
        return {
            "shape": [b.rows, b.num_envs, b.n_rl_units, b.obs_dim, b.act_dim],
            "observations": torch.from_numpy(b.observations.copy()),
            "actions": torch.from_numpy(b.actions.copy()),
            "rewards": torch.from_numpy(b.rewards.copy()),
            "has_next": torch.from_numpy(b._has_next.copy()),
            "n_valid_rows": int(b._n_valid_rows), "open": bool(b._open), "pos": int(b.pos), "full": bool(b.full),
        }

    def load_buffer_state_dict(self, sd: dict[str, Any]) -> None:
        """Inverse of :meth:`buffer_state_dict`; refuses another buffer shape or dtype."""
        b = self.buffer
        want = [b.rows, b.num_envs, b.n_rl_units, b.obs_dim, b.act_dim]
        if list(sd.get("shape", [])) != want:
            raise ValueError(f"replay buffer of shape {sd.get('shape')} does not fit this run's {want} "
                             "(replay_buffer_size, num_envs or the units changed)")
        arrays = {}
        for name, mine in (("observations", b.observations), ("actions", b.actions), ("rewards", b.rewards),
                           ("has_next", b._has_next)):
            a = sd[name].numpy()
            if a.shape != mine.shape or a.dtype != mine.dtype:
                raise ValueError(f"replay buffer {name}: {a.dtype}{a.shape}, expected {mine.dtype}{mine.shape}")
            arrays[name] = a
        b.observations[...] = arrays["observations"]
        b.actions[...] = arrays["actions"]
        b.rewards[...] = arrays["rewards"]
        b._has_next[...] = arrays["has_next"]
        b._n_valid_rows = int(sd["n_valid_rows"])
        b._open = bool(sd["open"])
        b.pos = int(sd["pos"])
        b.full = bool(sd["full"])
