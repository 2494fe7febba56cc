"""The MATD3 training loop: collect, update, validate, keep the best policies.

:class:`Trainer` owns one :class:`envs.MarketCore` (``num_envs`` synchronised copies of the
market), one :class:`agents.buffer.ReplayBuffer`, one :class:`agents.matd3.MATD3` for all
learning units and the run folder. One call of :meth:`Trainer.train` runs the schedule of
ASSUME's learning_config:

* episodes ``0 .. episodes_collecting_initial_experience - 1`` bid uniformly at random in
  ``[-1, 1]`` (initial exploration), without updates;
* afterwards actions are ``actor(obs) + N(0, noise_sigma * scale)`` clipped to ``[-1, 1]``,
  with ``scale`` following ``action_noise_schedule`` (``linear``: from ``noise_scale`` down
  to 0 at the last episode; otherwise constant ``noise_scale``, multiplied by ``noise_dt``
  after every episode as in ASSUME);
* every ``train_freq`` hours of simulated time, ``gradient_steps`` MATD3 updates on batches
  of ``batch_size`` (learning rate following ``learning_rate_schedule``);
* every ``validation_episodes_interval`` episodes (after the initial exploration) one
  deterministic evaluation episode. Its average reward, total profit and regret are
  compared with the best so far, each separately (``compare_and_save_policies``):
  ``policies/best`` (reward), ``policies/best_profit``, ``policies/best_regret`` (lowest);
  the evaluation also runs the exact best-response analysis (share of best-response
  profit, exploitability);
* early stopping when ``early_stopping_steps`` evaluations in a row improved the average
  reward by less than ``early_stopping_threshold`` (relative);
* ``policies/last`` (with the replay-buffer-free trainer state) after every episode, so an
  interrupted run loses at most the episode in progress.

Logs go to TensorBoard (``train/…``, ``eval/…``, ``losses/…``, ``charts/…``) in the run
folder and to ``history.csv``; :mod:`agents.plots` draws the PNG figures.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs import MarketCore, Scenario
from envs.core import UNIQUE_OBS_LEN

from .buffer import ReplayBuffer
from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .config import LearningConfig
from .learning_utils import NormalActionNoise
from .matd3 import MATD3, metrics_to_float


def agent_generators(seed: int, n: int) -> list[np.random.Generator]:
    """Independent exploration generators for ``n`` agents, derived from the run seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 1]).spawn(n)]


def default_torch_threads() -> int:
    """Threads for torch on CPU: one. The networks are small; extra threads gain little
    and, on a machine whose cores are busy with anything else, their synchronisation
    slows each gradient step down by 10x or more (measured: 48 ms vs 540 ms per update
    with 1 vs 2 threads on the 2-core development machine under load). Set
    ``torch_threads`` for large networks on an idle many-core machine."""
    return 1


@dataclass
class EvalResult:
    """One deterministic evaluation episode (copy 0 of the market)."""

    reward: float  # mean reward per agent and hour
    profit: float  # EUR, all agents together
    regret: float  # EUR, all agents together
    mean_price: float  # EUR/MWh
    agent_profit: np.ndarray  # (n,) EUR
    agent_reward: np.ndarray  # (n,)
    markup: float  # mean (bid price - marginal cost) of the plants' accepted-or-not bids, EUR/MWh
    dispatch: np.ndarray  # (n,) MWh over the episode
    br_profit: np.ndarray | None = None  # (n,) EUR best-response profit
    br_share: np.ndarray | None = None  # (n,) profit / best-response profit
    exploitability: float | None = None
    prices: np.ndarray | None = None  # (H,) clearing prices
    bids: np.ndarray | None = None  # (H, n, 2) EUR/MWh
    marginal_cost: np.ndarray | None = None  # (H, n)
    record: Any = None

    def metrics(self) -> dict[str, float]:
        out = {
            "reward": self.reward, "profit": self.profit, "regret": self.regret, "mean_price": self.mean_price,
            "markup": self.markup,
        }
        if self.br_share is not None:
            # all agents together: total profit / total best-response profit (a mean of
            # per-agent ratios explodes when one agent's best response is near zero)
            total_br = float(np.sum(self.br_profit))
            out["br_share"] = float(np.sum(self.agent_profit)) / total_br if total_br > 0 else float("nan")
            out["exploitability"] = float(self.exploitability)
        return out


@dataclass
class TrainResult:
    run_dir: Path
    episodes: int
    wall_time: float
    best: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    final_eval: EvalResult | None = None
    stopped_early: bool = False


def _schedule(kind: str | None, start: float, progress: float) -> float:
    if kind == "linear":
        return start * max(0.0, 1.0 - progress)
    return start


def evaluation_episode(core: MarketCore, scenario: Scenario, *, seed: int, analysis: bool):
    """One deterministic evaluation episode on copy 0 of ``core``, as a generator.

    It yields the observations ``(B, n, obs_dim)`` of every hour and takes the actions
    ``(B, n, max_act)`` for them through ``send()``; its return value (``StopIteration.value``,
    see :func:`run_episode`) is the :class:`EvalResult`. :meth:`Trainer.evaluate` feeds it
    the learner's deterministic actions, the mango runtime the unit agents' bids.
    """
    obs = core.reset(np.random.default_rng(seed))
    n, H = core.n, core.max_cycles
    rewards = np.zeros((H, n))
    profit = np.zeros((H, n))
    regret = np.zeros((H, n))
    prices = np.zeros(H)
    bids = np.zeros((H, n, 2))
    mc = np.zeros((H, n))
    dispatch = np.zeros(n)
    h = 0
    sc = scenario
    while not core.done:
        t = core.hour
        a = yield obs
        out = core.step(a)
        obs = core.observe()
        rewards[h], profit[h], regret[h] = out.reward[0], out.profit[0], out.regret[0]
        prices[h] = out.price[0]
        bids[h] = out.bid_price[0]
        if len(core.lp):
            mc[h, core.sl_plant] = sc.plants.marginal_cost[t, core.lp]
        if len(core.lr):
            mc[h, core.sl_ren] = sc.renewables.marginal_cost[core.lr]
        dispatch += np.abs(out.accepted[0])
        h += 1
    plants = [i for i, k in enumerate(core.agent_kind) if k == "plant"]
    markup = float(np.mean(bids[:, plants, 1] - mc[:, plants])) if plants else float("nan")
    res = EvalResult(
        reward=float(rewards.mean()), profit=float(profit.sum()), regret=float(regret.sum()),
        mean_price=float(prices.mean()), agent_profit=profit.sum(axis=0), agent_reward=rewards.mean(axis=0),
        markup=markup, dispatch=dispatch, prices=prices, bids=bids, marginal_cost=mc,
    )
    rec = core.episode_record(0)
    res.record = rec
    if analysis:
        try:
            from envs.analysis import exploitability
        except ImportError:  # analysis module not available
            return res
        if getattr(scenario, "network", None) is not None:  # zonal/nodal market: re-clear on the network
            from envs.network import network_exploitability

            ex = network_exploitability(rec, scenario)
        else:
            ex = exploitability(rec)
        res.br_profit = np.asarray(ex.best_response_profit, dtype=float)
        res.br_share = np.asarray(ex.share, dtype=float)
        res.exploitability = float(ex.joint)
    return res


def run_episode(episode, act) -> Any:
    """Drive an episode generator such as :func:`evaluation_episode` with ``act(obs) ->
    actions``; returns the generator's return value."""
    try:
        obs = next(episode)
        while True:
            obs = episode.send(act(obs))
    except StopIteration as stop:
        return stop.value


class Trainer:
    """MATD3 on one scenario (see the module docstring).

    Args:
        scenario: the loaded scenario.
        config: the validated learning config.
        run_dir: output folder (created); ``None`` writes nothing (tests, benchmarks).
        seed: seeds every generator of the run (env, buffer, noise, networks).
        env_options: passed to :class:`envs.MarketCore` (foresight, max_cycles, ...).
        progress: show a tqdm progress bar.
        tensorboard: write TensorBoard scalars to ``run_dir/tb``.
        analysis: run the best-response analysis at every evaluation.
    """

    def __init__(
        self,
        scenario: Scenario,
        config: LearningConfig,
        *,
        run_dir: str | os.PathLike | None = None,
        seed: int = 0,
        env_options: dict[str, Any] | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        analysis: bool = True,
    ):
        self.scenario = scenario
        self.config = cfg = config
        self.seed = int(seed)
        threads = cfg.torch_threads or default_torch_threads()
        torch.set_num_threads(int(threads))
        self.device = cfg.resolved_device()
        opts = dict(env_options or {})
        opts.setdefault("max_bid_price", cfg.max_bid_price)
        opts.setdefault("regret_scale", cfg.regret_scale)
        self.core = MarketCore(scenario, num_envs=cfg.num_envs, **opts)
        self.eval_core = MarketCore(scenario, num_envs=1, **opts)
        self.eval_core.recording = True
        core = self.core
        if core.n == 0:
            raise ValueError(f"{scenario.summary()}: no learning units to train")
        self.agents = list(core.agents)
        self.n = core.n
        self.rng = np.random.default_rng(self.seed)
        self.algo = MATD3(
            core.n, core.obs_dim, core.act_dims.tolist(), UNIQUE_OBS_LEN,
            actor_hidden_sizes=cfg.actor_hidden_sizes, critic_hidden_sizes=cfg.critic_hidden_sizes,
            learning_rate=cfg.learning_rate, gamma=cfg.gamma, tau=cfg.tau, policy_delay=cfg.policy_delay,
            target_policy_noise=cfg.target_policy_noise, target_noise_clip=cfg.target_noise_clip,
            max_grad_norm=cfg.max_grad_norm, actor_preactivation_penalty=cfg.actor_preactivation_penalty,
            device=self.device, seed=self.seed,
        )
        self.buffer = ReplayBuffer(
            cfg.replay_buffer_size, core.obs_dim, core.max_act, core.n, self.device, torch.float32,
            num_envs=core.B, seed=int(self.rng.integers(2**31)),
        )
        # one generator per agent for its exploration (initial random bids and noise), as
        # each unit agent draws its own in the mango runtime: both runtimes draw the same
        self.agent_rngs = agent_generators(self.seed, core.n)
        self.noises = [
            NormalActionNoise(core.B * core.max_act, mu=0.0, sigma=cfg.noise_sigma, scale=cfg.noise_scale, dt=1.0, rng=r)
            for r in self.agent_rngs
        ]
        self.mask = (np.arange(core.max_act)[None, :] < core.act_dims[:, None]).astype(np.float64)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.analysis = analysis
        self.writer = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.yaml")
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"))
        self.episode = 0
        self.hours_since_update = 0
        self.best = {"reward": -math.inf, "profit": -math.inf, "regret": math.inf}
        self.no_improve = 0
        self.history: list[dict[str, Any]] = []
        self.n_updates = 0
        self.start_episode = 0
        if cfg.continue_learning and cfg.trained_policies_load_path:
            self.load(cfg.trained_policies_load_path)

    # ------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray, *, explore: bool, random: bool = False) -> np.ndarray:
        """Actions ``(B, n, max_act)`` for observations ``(B, n, obs_dim)``."""
        B, m = obs.shape[0], self.core.max_act
        if random:
            a = np.stack([r.uniform(-1.0, 1.0, size=(B, m)) for r in self.agent_rngs], axis=1)
            return a * self.mask
        a = self.algo.act(torch.from_numpy(obs)).cpu().numpy().astype(np.float64)
        if explore:
            a = a + np.stack([nz.noise().reshape(B, m) for nz in self.noises], axis=1)
            np.clip(a, -1.0, 1.0, out=a)
        return a * self.mask

    def noise_scale(self, episode: int) -> float:
        cfg = self.config
        span = max(1, cfg.training_episodes - cfg.episodes_collecting_initial_experience)
        progress = (episode - cfg.episodes_collecting_initial_experience) / span
        return _schedule(cfg.action_noise_schedule, cfg.noise_scale, progress) * (cfg.noise_dt ** episode)

    def learning_rate(self, episode: int) -> float:
        cfg = self.config
        return _schedule(cfg.learning_rate_schedule, cfg.learning_rate, episode / max(1, cfg.training_episodes))

    # ------------------------------------------------------------------ episodes
    def run_training_episode(self) -> dict[str, float]:
        cfg = self.config
        core = self.core
        ep = self.episode
        initial = ep < cfg.episodes_collecting_initial_experience
        scale = self.noise_scale(ep)
        for nz in self.noises:
            nz.scale = scale
        lr = self.learning_rate(ep)
        self.algo.set_learning_rate(lr)
        obs = core.reset(self.rng)
        tot_reward = np.zeros(core.n)
        tot_profit = np.zeros(core.n)
        price_sum = 0.0
        hours = 0
        t_sim = t_upd = 0.0
        last_metrics: dict[str, Any] = {}
        while not core.done:
            t0 = time.perf_counter()
            actions = self.act(obs, explore=True, random=initial)
            out = core.step(actions)
            nxt = core.observe()
            self.buffer.add(obs, actions, out.reward)
            obs = nxt
            tot_reward += out.reward.mean(axis=0)
            tot_profit += out.profit.mean(axis=0)
            price_sum += float(out.price.mean())
            hours += 1
            self.hours_since_update += 1
            t1 = time.perf_counter()
            t_sim += t1 - t0
            if not initial and self.hours_since_update >= cfg.train_freq:
                self.hours_since_update = 0
                if self.buffer.size() >= cfg.batch_size:
                    for _ in range(cfg.gradient_steps):
                        last_metrics = self.algo.update(self.buffer.sample(cfg.batch_size))
                        self.n_updates += 1
                t_upd += time.perf_counter() - t1
        self.buffer.end_episode(obs)
        stats = {
            "reward": float(tot_reward.mean() / hours),
            "profit": float(tot_profit.sum()),
            "mean_price": price_sum / hours,
            "noise_scale": float(scale),
            "learning_rate": lr,
            "sim_seconds": t_sim,
            "update_seconds": t_upd,
            "sps": hours * core.B / max(t_sim + t_upd, 1e-9),
        }
        if last_metrics:
            m = metrics_to_float(last_metrics)
            stats.update({k: v for k, v in m.items() if isinstance(v, float)})
        return stats

    def evaluate(self, *, analysis: bool | None = None) -> EvalResult:
        """One deterministic episode on copy 0 (no noise); with the best-response analysis."""
        episode = evaluation_episode(self.eval_core, self.scenario, seed=self.seed,
                                     analysis=self.analysis if analysis is None else analysis)
        return run_episode(episode, lambda obs: self.act(obs, explore=False))

    # ------------------------------------------------------------------ policies
    def policy_dir(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "policies" / name

    def save(self, name: str, metrics: dict[str, Any] | None = None) -> Path | None:
        if self.run_dir is None:
            return None
        sc = self.scenario
        return save_checkpoint(
            self.policy_dir(name), self.algo, self.agents, agent_kind=list(self.core.agent_kind),
            scenario={"name": sc.name, "study_case": sc.study_case, "source": sc.source},
            episode=self.episode, metrics=metrics,
            extra={"trainer": {"episode": self.episode, "n_updates": self.n_updates, "best": self.best,
                               "seed": self.seed, "foresight": self.core.foresight,
                               "max_bid_price": self.core.max_bid_price}},
        )

    def load(self, directory: str | os.PathLike) -> None:
        """Continue learning from a checkpoint; agents are matched by name (remapped when
        the agent set changed)."""
        manifest = read_manifest(directory)
        remap = list(manifest["agents"]) != self.agents
        load_checkpoint(directory, self.algo, self.agents, remap=remap)

    def compare_and_save_policies(self, metrics: dict[str, float]) -> list[str]:
        """Save ``best`` / ``best_profit`` / ``best_regret`` for every metric that improved
        (all three are compared). Returns the names of the saved policies."""
        saved = []
        for key, name, better in (
            ("reward", "best", lambda new, old: new > old),
            ("profit", "best_profit", lambda new, old: new > old),
            ("regret", "best_regret", lambda new, old: new < old),
        ):
            if better(metrics[key], self.best[key]):
                self.best[key] = float(metrics[key])
                self.save(name, metrics)
                saved.append(name)
        return saved

    # ------------------------------------------------------------------ main loop
    def _log(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float, np.floating)) and np.isfinite(v):
                tag = k if "/" in k else f"{prefix}/{k}"
                self.writer.add_scalar(tag, float(v), step)

    def evaluation_due(self, episode: int, total: int) -> bool:
        """Whether training episode ``episode`` (of ``total``) is followed by an evaluation."""
        cfg = self.config
        first = cfg.episodes_collecting_initial_experience
        return episode >= first and ((episode + 1 - first) % cfg.validation_episodes_interval == 0 or episode == total - 1)

    def record_episode(self, episode: int, stats: dict[str, Any], ev: EvalResult | None,
                       wall_time: float) -> tuple[dict[str, Any], bool]:
        """Bookkeeping after training episode ``episode`` and its evaluation ``ev`` (or
        None): TensorBoard, the history row, ``compare_and_save_policies``, early
        stopping, ``policies/last`` and ``history.csv``. Returns ``(row, stop)``."""
        cfg = self.config
        ep = episode
        stopped = False
        row: dict[str, Any] = {"episode": ep, "wall_time": wall_time, **{f"train/{k}": v for k, v in stats.items() if "/" not in k}}
        self._log("train", {k: v for k, v in stats.items() if "/" not in k}, ep)
        self._log("losses", {k: v for k, v in stats.items() if k.startswith("losses/")}, ep)
        if ev is not None:
            m = ev.metrics()
            self._log("eval", m, ep)
            for i, a in enumerate(self.agents):
                self._log("eval", {f"profit_{a}": ev.agent_profit[i], f"dispatch_{a}": ev.dispatch[i]}, ep)
                if ev.br_share is not None:
                    self._log("eval", {f"br_share_{a}": ev.br_share[i]}, ep)
            row.update({f"eval/{k}": v for k, v in m.items()})
            prev_best = self.best["reward"]
            saved = self.compare_and_save_policies(m)
            row["saved"] = "+".join(saved)
            if cfg.early_stopping_steps:
                gain = (m["reward"] - prev_best) / max(abs(prev_best), 1e-9) if np.isfinite(prev_best) else math.inf
                self.no_improve = 0 if gain > cfg.early_stopping_threshold else self.no_improve + 1
                if self.no_improve >= cfg.early_stopping_steps:
                    stopped = True
        self.history.append(row)
        self.episode = ep + 1
        self.save("last", {k: v for k, v in row.items() if isinstance(v, (int, float))})
        if self.run_dir is not None:
            self._write_history(self.run_dir / "history.csv")
        return row, stopped

    def train(self, episodes: int | None = None) -> TrainResult:
        cfg = self.config
        total = int(episodes or cfg.training_episodes)
        from tqdm.auto import tqdm

        start = time.perf_counter()
        stopped = False
        bar = tqdm(range(self.episode, total), desc="training", unit="ep", disable=not self.progress, dynamic_ncols=True)
        for ep in bar:
            self.episode = ep
            stats = self.run_training_episode()
            wall_time = time.perf_counter() - start
            ev = self.evaluate() if self.evaluation_due(ep, total) else None
            row, stopped = self.record_episode(ep, stats, ev, wall_time)
            postfix = {"reward": f"{stats['reward']:.3f}", "price": f"{stats['mean_price']:.1f}",
                       "profit": f"{stats['profit'] / 1e6:.2f}M"}
            if "eval/br_share" in row:
                postfix["br"] = f"{row['eval/br_share']:.2f}"
            bar.set_postfix(postfix)
            if stopped:
                bar.write(f"early stopping after episode {ep}: no evaluation improved the reward by more than "
                          f"{cfg.early_stopping_threshold:.0%} for {cfg.early_stopping_steps} evaluations")
                break
        bar.close()
        if self.writer is not None:
            self.writer.flush()
        return TrainResult(self.run_dir, self.episode, time.perf_counter() - start, dict(self.best),
                           self.history, None, stopped)

    def _write_history(self, path: Path) -> None:
        keys: list[str] = []
        for r in self.history:
            for k in r:
                if k not in keys:
                    keys.append(k)
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    os.replace(tmp, path)


def run_summary(trainer, ev, result) -> dict[str, Any]:
    """The JSON summary of a run: the final evaluation, per agent with its best response."""
    agents = {}
    for i, a in enumerate(trainer.agents):
        row = {"unit": trainer.core.agent_unit[i], "kind": trainer.core.agent_kind[i],
               "profit": float(ev.agent_profit[i]), "dispatch_mwh": float(ev.dispatch[i])}
        if ev.br_profit is not None:
            row["best_response_profit"] = float(ev.br_profit[i])
            row["share_of_best_response"] = float(ev.br_share[i])
        agents[a] = row
    return {
        "scenario": trainer.scenario.name, "study_case": trainer.scenario.study_case,
        "episodes": result.episodes, "wall_time_s": round(result.wall_time, 2), "stopped_early": result.stopped_early,
        "best": result.best, "evaluation": ev.metrics(), "agents": agents,
    }


def print_run_summary(s: dict[str, Any]) -> None:
    """Print :func:`run_summary` as a short table."""
    e = s["evaluation"]
    print(f"\n== {s['scenario']} [{s['study_case']}]: {s['episodes']} episodes in {s['wall_time_s']:.1f} s ==")
    print(f"evaluation (best policy): mean price {e['mean_price']:.2f} EUR/MWh, total profit {e['profit']:,.0f} EUR, "
          f"mean reward {e['reward']:.4f}" + (f", exploitability {e['exploitability']:.3f}" if "exploitability" in e else ""))
    for a, r in s["agents"].items():
        br = f"  best response {r['best_response_profit']:>14,.0f} EUR  share {r['share_of_best_response']:.3f}" if "best_response_profit" in r else ""
        print(f"  {a:<30s} profit {r['profit']:>14,.0f} EUR{br}")
