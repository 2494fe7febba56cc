"""ASSUME's ``Learning`` role for mango-agents 2.4: MATD3 learning driven by messages.

:class:`Learning` keeps the documented API of ASSUME's
``assume.reinforcement_learning.learning_role.Learning`` and composes the learner core
that the plain training loop uses, :class:`agents.learner.Learner` (all agents' networks
stacked in one :class:`agents.matd3.MATD3`, the replay buffer, the update rounds and the
run's generators); checkpoints go through :mod:`agents.checkpoint`. Unlike ASSUME, where bidding strategies write into the
role's caches through a shared reference, everything reaches the role as **messages**
(``content["context"] == "rl_training"``, see :mod:`agents.mango.protocol`), so the units
and the market may live in other processes or on other machines:

* ``episode_start`` (episode, mode, learning rate) -- the role follows the episode, sets
  the learning rate and knows whether it is in initial exploration or evaluation;
* ``transition`` (obs, actions, reward of all units for one hour) -> replay buffer;
* ``episode_end`` (the final observation) closes the episode in the buffer when the next
  episode starts, so an update in an episode's last hour sees the buffer exactly as the
  plain training loop does;
* ``actor_ack`` (unit, version): a unit loaded the weights it was sent.

A recurrent task runs :meth:`update_policy` every ``train_freq`` simulated hours on
mango's clock (an ``rrule`` with timezone-aware UTC times, so the machine's ``TZ`` does
not matter). After the initial-exploration episodes and outside evaluation episodes it
does ``gradient_steps`` MATD3 updates on batches of ``batch_size`` and then sends every
unit agent its new actor weights (``rl_policy`` / ``actor_weights``), waiting for the
acknowledgements, so no unit bids with stale weights in the next hour.

A message that is not a dict, has another context, an unknown type, or wrong fields or
shapes is logged and dropped; it never stops the agent (an exception in a mango message
handler would end the agent's inbox loop for good). An exception inside the scheduled
update is caught, logged and kept in :attr:`Learning.failure` (a mango task that raises
would silently end the recurrence); the runtime checks it after every clock step.

Differences from ASSUME
-----------------------
* Transitions arrive as messages, not through shared caches; ``learning_config`` may be
  a :class:`~agents.config.LearningConfig` or a dict.
* ``create_learning_algorithm`` raises :class:`ValueError` for any algorithm but
  ``"matd3"`` (ASSUME only logs an error and carries on without one).
* ``start``/``end`` must be timezone-aware (UTC); ASSUME uses naive datetimes, which
  mango 2.4 reads as local time.
* The recurrent update is scheduled in :meth:`on_ready`, not in :meth:`setup` (in mango
  2.4 ``setup`` runs before the agent has a scheduler).
* Actors and critics of all agents live in one :class:`~agents.matd3.MATD3`, so
  ``create_actors`` / ``create_critics`` create the algorithm (both at once);
  ``save_actor_params`` / ``save_critic_params`` write the complete checkpoint, since a
  checkpoint folder is written atomically as one unit (see :mod:`agents.checkpoint`).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from dateutil import rrule
from mango import AgentAddress, Role

from envs.core import UNIQUE_OBS_LEN

from .buffer import ReplayBuffer
from .checkpoint import CheckpointError, load_critic_files, save_checkpoint
from .config import LearningConfig
from .learner import Learner
from .learning_utils import Actor, CriticTD3
from .matd3 import MATD3
from .recorder import POLICY_CRITERIA, compare_policies, initial_best  # noqa: F401 - POLICY_CRITERIA re-exported
from .seeding import run_generators
from .mango.protocol import (
    POLICY,
    TRAINING,
    MessageError,
    Recurrence,
    array_of,
    describe,
    field_of,
    is_message,
    to_utc,
)

__all__ = ["Learning", "ALGORITHMS"]

logger = logging.getLogger("agents.mango.learning")

ALGORITHMS = ("matd3",)


def buffer_seed(seed: int) -> int:
    """Seed of the replay buffer's sampling generator for a run seed
    (:func:`agents.seeding.run_generators`)."""
    return run_generators(seed, 0).buffer


class Learning(Role):
    """MATD3 learning role (see the module docstring).

    Args:
        learning_config: a :class:`LearningConfig` or a dict of ``learning_config`` keys.
        start: start of the simulation, timezone-aware.
        end: end of the simulation, timezone-aware (the last possible update time).
        first_update: time of the first recurrent update (default ``start + train_freq``);
            later ones follow every ``train_freq`` hours up to ``end``.
        seed: run seed (default: ``learning_config.seed``, else 0): initial weights,
            target-policy noise and buffer sampling.
        save_path: folder for :meth:`compare_and_save_policies` (default
            ``trained_policies_save_path``).
        ack_timeout: seconds (wall clock) to wait for the units to acknowledge new
            weights before the update fails.

    Units are made known with :meth:`register_units` (names, observation and action
    sizes) and, to receive weights, :meth:`set_unit_addresses`.
    """

    def __init__(
        self,
        learning_config: LearningConfig | Mapping[str, Any],
        start: _dt.datetime,
        end: _dt.datetime,
        *,
        first_update: _dt.datetime | None = None,
        seed: int | None = None,
        save_path: str | os.PathLike | None = None,
        ack_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        if isinstance(learning_config, LearningConfig):
            cfg = learning_config
        elif isinstance(learning_config, Mapping):
            cfg = LearningConfig.from_dict(learning_config, source="Learning(learning_config)")
        else:
            raise TypeError(f"Learning: learning_config must be a LearningConfig or a dict, got {type(learning_config).__name__}")
        self.learning_config = cfg
        self.start = to_utc(start, "Learning: start")
        self.end = to_utc(end, "Learning: end")
        if self.end <= self.start:
            raise ValueError(f"Learning: end {self.end.isoformat()} must lie after start {self.start.isoformat()}")
        self.train_freq = _dt.timedelta(hours=cfg.train_freq)
        self.first_update = (to_utc(first_update, "Learning: first_update") if first_update is not None
                             else self.start + self.train_freq)
        self.seed = int(seed if seed is not None else (cfg.seed if cfg.seed is not None else 0))
        self.device = cfg.resolved_device()
        self.float_type = torch.float32
        self.save_path = Path(save_path) if save_path else (
            Path(cfg.trained_policies_save_path) if cfg.trained_policies_save_path else None)
        self.ack_timeout = float(ack_timeout)

        self.episodes_collecting_initial_experience = cfg.episodes_collecting_initial_experience
        self.gradient_steps = cfg.gradient_steps
        self.batch_size = cfg.batch_size

        # units and networks
        self.agents: list[str] = []
        self.obs_dim: int | None = None
        self.act_dims: list[int] = []
        self.unique_obs_len = UNIQUE_OBS_LEN
        self.num_envs = 1
        self.unit_addresses: dict[str, AgentAddress] = {}
        self.learner: Learner | None = None
        """The learner core (networks, buffer, update rounds), made by
        :meth:`create_learning_algorithm`."""

        # state followed from the messages
        self.episode = 0
        self.evaluation_mode = False
        self.initial_exploration = cfg.episodes_collecting_initial_experience > 0
        self._pending_final_obs: np.ndarray | None = None
        self.transitions = 0
        """Transitions added to the buffer (hours x copies)."""
        self.policy_version = 0
        """Incremented whenever new actor weights are published."""
        self.best = initial_best()
        self.dropped_messages = 0
        self.failure: BaseException | None = None
        """The exception that stopped an update, if any (checked by the runtime)."""
        self._acks: dict[str, int] = {}
        self._ack_event: asyncio.Event | None = None
        self._update_task = None

    # ------------------------------------------------------------------ units

    def register_units(self, agents: list[str], obs_dim: int, act_dims: list[int], *,
                       unique_obs_len: int = UNIQUE_OBS_LEN, num_envs: int = 1) -> None:
        """Name the learning units (in the order of the transitions' agent axis) and their
        sizes. Must come before the algorithm is created."""
        if self.rl_algorithm is not None:
            raise RuntimeError("Learning.register_units: the algorithm exists already")
        if not agents or len(set(agents)) != len(agents):
            raise ValueError(f"Learning.register_units: need distinct agent names, got {agents!r}")
        if len(act_dims) != len(agents):
            raise ValueError(f"Learning.register_units: {len(act_dims)} action sizes for {len(agents)} agents")
        self.agents = [str(a) for a in agents]
        self.obs_dim = int(obs_dim)
        self.act_dims = [int(a) for a in act_dims]
        self.unique_obs_len = int(unique_obs_len)
        self.num_envs = int(num_envs)

    def set_unit_addresses(self, addresses: Mapping[str, AgentAddress]) -> None:
        """Where each unit agent lives (``{agent name: AgentAddress}``); weights go there."""
        unknown = set(addresses) - set(self.agents)
        if unknown:
            raise ValueError(f"Learning.set_unit_addresses: unknown units {sorted(unknown)}")
        self.unit_addresses = dict(addresses)

    @property
    def max_act(self) -> int:
        return max(self.act_dims) if self.act_dims else 0

    @property
    def rl_algorithm(self) -> MATD3 | None:
        """The stacked MATD3 of all units (the learner's)."""
        return self.learner.algo if self.learner is not None else None

    @property
    def buffer(self) -> ReplayBuffer | None:
        return self.learner.buffer if self.learner is not None else None

    @property
    def n_updates(self) -> int:
        """Gradient steps done by this role's learner."""
        return self.learner.n_updates if self.learner is not None else 0

    @property
    def last_metrics(self) -> dict[str, Any]:
        """Metrics of the last gradient step of the current episode (floats)."""
        return self.learner.last_metrics if self.learner is not None else {}

    @property
    def update_seconds(self) -> float:
        return self.learner.update_seconds if self.learner is not None else 0.0

    # ------------------------------------------------------------------ lifecycle

    def setup(self) -> None:
        """Subscribe to ``rl_training`` messages (everything else is logged and dropped).

        The recurrent policy update is scheduled from :meth:`on_ready`: in mango 2.4 a
        role's ``setup`` runs before its agent has a scheduler, and ``on_ready`` is
        called for roles added later, too."""
        self.context.subscribe_message(self, self.handle_message, lambda c, m: is_message(c, TRAINING))
        self.context.subscribe_message(self, self._drop_unexpected, lambda c, m: not is_message(c, TRAINING))

    def on_ready(self) -> None:
        """Schedule :meth:`update_policy` every ``train_freq`` hours from ``first_update``
        to ``end`` and send the units their initial actor weights."""
        self._schedule_updates()
        if self.unit_addresses and self.rl_algorithm is not None:
            self.context.schedule_instant_task(self._guarded(self.publish_actors()), src=self)

    def _schedule_updates(self) -> None:
        if self._update_task is not None:
            return
        rule = Recurrence(rrule.HOURLY, interval=self.learning_config.train_freq, dtstart=self.first_update,
                          until=self.end)
        self._update_task = self.context.schedule_recurrent_task(self.update_policy, rule, src=self)

    # ------------------------------------------------------------------ messages

    def handle_message(self, content: dict, meta: dict) -> None:
        """Handle one ``rl_training`` message (see the module docstring); a malformed or
        unexpected one is logged and dropped."""
        try:
            kind = field_of(content, "type", str)
            if kind == "transition":
                self._on_transition(content)
            elif kind == "episode_start":
                self._on_episode_start(content)
            elif kind == "episode_end":
                self._on_episode_end(content)
            elif kind == "actor_ack":
                self._on_ack(content)
            else:
                raise MessageError(f"unknown message type {kind!r}")
        except Exception as exc:  # noqa: BLE001 - a handler must never raise into mango
            self._drop(content, meta, exc)

    def _drop_unexpected(self, content: Any, meta: dict) -> None:
        self._drop(content, meta, MessageError("not an 'rl_training' message"))

    def _drop(self, content: Any, meta: dict, why: BaseException) -> None:
        self.dropped_messages += 1
        sender = meta.get("sender_id") if isinstance(meta, dict) else None
        logger.warning("learning role: dropped message %s from %s: %s", describe(content), sender, why)

    def _on_episode_start(self, content: dict) -> None:
        episode = field_of(content, "episode", int)
        mode = field_of(content, "mode", str)
        if mode not in ("explore", "train", "eval"):
            raise MessageError(f"episode_start: unknown mode {mode!r}")
        lr = content.get("learning_rate")
        self._close_pending_episode()
        self.episode = episode
        self.evaluation_mode = mode == "eval"
        if mode == "explore":
            self.initial_exploration = True
        elif mode == "train" and self.initial_exploration:
            self.turn_off_initial_exploration()
        if mode != "eval" and self.learner is not None:
            self.learner.episode = episode
            self.learner.last_metrics = {}
            self.learner.update_seconds = 0.0
            if lr is not None:
                self.learner.algo.set_learning_rate(field_of(content, "learning_rate", float))

    def _on_transition(self, content: dict) -> None:
        self._require_algorithm()
        B, n, od, m = self.num_envs, len(self.agents), self.obs_dim, self.max_act
        obs = array_of(content, "obs", (B, n, od))
        actions = array_of(content, "actions", (B, n, m))
        reward = array_of(content, "reward", (B, n))
        self._close_pending_episode()
        self.learner.add(obs, actions, reward)
        self.transitions += B

    def _on_episode_end(self, content: dict) -> None:
        self._require_algorithm()
        final = array_of(content, "final_obs", (self.num_envs, len(self.agents), self.obs_dim))
        self._pending_final_obs = final
        self.learner.episode = field_of(content, "episode", int) + 1

    def _close_pending_episode(self) -> None:
        if self._pending_final_obs is not None:
            final, self._pending_final_obs = self._pending_final_obs, None
            self.learner.end_episode(final)

    def _on_ack(self, content: dict) -> None:
        unit = field_of(content, "unit", str)
        version = field_of(content, "version", int)
        if unit not in self.unit_addresses:
            raise MessageError(f"actor_ack from unknown unit {unit!r}")
        self._acks[unit] = max(version, self._acks.get(unit, -1))
        if self._ack_event is not None and all(self._acks.get(u, -1) >= self.policy_version for u in self.unit_addresses):
            self._ack_event.set()

    def _require_algorithm(self) -> None:
        if self.learner is None:
            raise MessageError("no learning algorithm yet (register_units + create_learning_algorithm first)")

    # ------------------------------------------------------------------ learning

    async def update_policy(self) -> None:
        """One scheduled policy update: in ``learning_mode``, after the initial-exploration
        episodes and outside evaluation, ``gradient_steps`` MATD3 updates on batches of
        ``batch_size`` (skipped while the buffer holds fewer transitions), then the new
        actor weights go to the unit agents. Exceptions are caught and kept in
        :attr:`failure`."""
        if (self.evaluation_mode or self.initial_exploration or self.failure is not None
                or not self.learning_config.learning_mode):  # learning_mode false: fixed policies
            return
        if self.learner is None or self.buffer.size() < self.batch_size:
            return
        try:
            self.learner.update_round()
            if self.unit_addresses:
                await self.publish_actors()
        except Exception as exc:  # noqa: BLE001 - a failing task must not end silently
            self._fail(exc, "policy update")

    async def publish_actors(self) -> None:
        """Send every unit its current actor weights and wait (at most ``ack_timeout``
        seconds) until all of them acknowledged."""
        self.policy_version += 1
        version = self.policy_version
        self._ack_event = asyncio.Event()
        for i, unit in enumerate(self.agents):
            addr = self.unit_addresses.get(unit)
            if addr is None:
                continue
            msg = {"context": POLICY, "type": "actor_weights", "unit": unit, "version": version,
                   # standardised weights: the unit agent standardises its observations itself
                   "state_dict": self.rl_algorithm.actor_state_dict(i, folded=False)}
            if not await self.context.send_message(msg, addr):
                raise ConnectionError(f"learning role: cannot reach unit agent {unit!r} at {addr}")
        if all(self._acks.get(u, -1) >= version for u in self.unit_addresses):
            return
        try:
            await asyncio.wait_for(self._ack_event.wait(), self.ack_timeout)
        except asyncio.TimeoutError:
            missing = [u for u in self.unit_addresses if self._acks.get(u, -1) < version]
            raise TimeoutError(f"learning role: units {missing} did not acknowledge actor weights version {version} "
                               f"within {self.ack_timeout:g} s (process died or network down?)") from None

    async def _guarded(self, coro) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "publishing actor weights")

    def _fail(self, exc: BaseException, what: str) -> None:
        logger.error("learning role: %s failed: %s: %s", what, type(exc).__name__, exc)
        if self.failure is None:
            self.failure = exc

    def turn_off_initial_exploration(self) -> None:
        """End initial exploration: from now on scheduled updates train the policy.
        (The units follow the mode of each observation the market sends them.)"""
        self.initial_exploration = False

    # ------------------------------------------------------------------ creation

    def create_learning_algorithm(self, algorithm: str) -> None:
        """Create the learning algorithm (only ``"matd3"``) with its replay buffer.

        Raises:
            ValueError: for any other algorithm name (ASSUME only logs this).
            RuntimeError: when no units are registered yet.
        """
        name = str(algorithm).strip().lower()
        if name not in ALGORITHMS:
            raise ValueError(f"Learning.create_learning_algorithm: unknown algorithm {algorithm!r}; "
                             f"available: {', '.join(ALGORITHMS)}")
        if not self.agents:
            raise RuntimeError("Learning.create_learning_algorithm: no units registered (call register_units first)")
        self.learner = Learner(self.learning_config, self.agents, self.obs_dim, self.act_dims,
                               num_envs=self.num_envs, seed=self.seed, unique_obs_len=self.unique_obs_len,
                               device=self.device, float_type=self.float_type,
                               max_transitions=getattr(self, "max_transitions", None))

    def create_actors(self) -> None:
        """Create the actors (and target actors) of all units. They live in one stacked
        :class:`MATD3` together with the critics, so this creates the algorithm if it
        does not exist yet."""
        if self.rl_algorithm is None:
            self.create_learning_algorithm(self.learning_config.algorithm)

    def create_critics(self) -> None:
        """Create the centralised critics (and targets) of all units; see :meth:`create_actors`."""
        if self.rl_algorithm is None:
            self.create_learning_algorithm(self.learning_config.algorithm)

    def create_actors_and_critics(self, actors_and_critics: dict | None = None) -> None:
        """Create fresh networks (``None``), or take the given ones: a dict as
        :meth:`extract_actors_and_critics` returns (``actors``, ``actor_targets``,
        ``critics``, ``target_critics``, each ``{unit: module or state dict}``). Every
        given network is checked before anything is written."""
        self.create_actors()
        if actors_and_critics is None:
            return
        if not isinstance(actors_and_critics, Mapping):
            raise TypeError("Learning.create_actors_and_critics: expected a dict as extract_actors_and_critics returns")
        groups = {"actors": "actor", "actor_targets": "actor_target", "critics": "critic", "target_critics": "critic_target"}
        unknown = set(actors_and_critics) - set(groups) - {"obs_dim", "act_dims", "unique_obs_len", "agents"}
        if unknown:
            raise KeyError(f"Learning.create_actors_and_critics: unknown keys {sorted(unknown)}")
        per_agent: dict[int, dict[str, Any]] = {}
        for group, kw in groups.items():
            nets = actors_and_critics.get(group)
            if nets is None:
                continue
            extra = set(nets) - set(self.agents)
            if extra:
                raise KeyError(f"Learning.create_actors_and_critics: {group} for unknown units {sorted(extra)}")
            for unit, net in nets.items():
                sd = net.state_dict() if isinstance(net, torch.nn.Module) else net
                per_agent.setdefault(self.agents.index(unit), {})[kw] = sd
        # check all, then write: load_agent checks one agent completely before writing it
        backup = self.rl_algorithm.state_dict()
        try:
            for i, kw in per_agent.items():
                self.rl_algorithm.load_agent(i, **kw)
        except Exception:
            self.rl_algorithm.load_state_dict(backup)
            raise

    def extract_actors_and_critics(self) -> dict:
        """The units' networks as documented modules: ``{"actors", "actor_targets",
        "critics", "target_critics"}``, each ``{unit: Actor or CriticTD3}`` (copies of
        the learner's weights), plus ``obs_dim``, ``act_dims``, ``unique_obs_len``."""
        self._need_algorithm("extract_actors_and_critics")
        with torch.random.fork_rng(devices=[]):  # modules are built with torch's global generator: restore it
            return self._extract()

    def _extract(self) -> dict:
        algo = self.rl_algorithm
        out: dict[str, Any] = {"actors": {}, "actor_targets": {}, "critics": {}, "target_critics": {},
                               "obs_dim": self.obs_dim, "act_dims": list(self.act_dims),
                               "unique_obs_len": self.unique_obs_len}
        for i, unit in enumerate(self.agents):
            for key, sd in (("actors", algo.actor_state_dict(i)), ("actor_targets", algo.actor_target_state_dict(i))):
                actor = Actor(self.obs_dim, self.act_dims[i], self.float_type, hidden_sizes=algo.actor_hidden_sizes)
                actor.load_state_dict(sd)
                out[key][unit] = actor
            for key, sd in (("critics", algo.critic_state_dict(i)), ("target_critics", algo.critic_target_state_dict(i))):
                critic = CriticTD3(len(self.agents), self.obs_dim, self.max_act, self.float_type, self.unique_obs_len,
                                   hidden_sizes=algo.critic_hidden_sizes)
                critic.load_state_dict(sd)
                out[key][unit] = critic
        return out

    def _need_algorithm(self, what: str) -> None:
        if self.rl_algorithm is None:
            raise RuntimeError(f"Learning.{what}: no algorithm yet (register_units + create_learning_algorithm first)")

    # ------------------------------------------------------------------ saving / loading

    def save_params(self, directory: str | os.PathLike) -> Path:
        """Write all actors, critics, targets and optimizer states as a checkpoint folder
        (``actors/actor_<unit>.pt``, ``critics/critic_<unit>.pt``, ``manifest.json``),
        atomically, with :func:`agents.checkpoint.save_checkpoint`."""
        self._need_algorithm("save_params")
        return save_checkpoint(directory, self.rl_algorithm, self.agents, episode=self.episode,
                               extra={"learning_role": {"n_updates": self.n_updates, "seed": self.seed,
                                                        "policy_version": self.policy_version}})

    def save_actor_params(self, directory: str | os.PathLike) -> Path:
        """Save the actors; writes the complete checkpoint (see :meth:`save_params`)."""
        return self.save_params(directory)

    def save_critic_params(self, directory: str | os.PathLike) -> Path:
        """Save the critics; writes the complete checkpoint (see :meth:`save_params`)."""
        return self.save_params(directory)

    def load_params(self, directory: str | os.PathLike) -> None:
        """Load actors and critics (with targets and optimizer states). Units are matched
        by name; when the unit set changed, critics are remapped
        (:func:`agents.checkpoint.load_checkpoint`)."""
        self._need_algorithm("load_params")
        self.learner.load(directory)

    def load_actor_params(self, directory: str | os.PathLike) -> None:
        """Load the actors, their targets and optimizer states only."""
        self._need_algorithm("load_actor_params")
        self.learner.load(directory, load_critics=False)

    def load_critic_params(self, directory: str | os.PathLike) -> None:
        """Load the critics, their targets and optimizer states only (the checkpoint must
        hold the same units in the same order; use :meth:`load_params` otherwise)."""
        self._need_algorithm("load_critic_params")
        manifest, critics = load_critic_files(directory)
        if list(manifest["agents"]) != self.agents:
            raise CheckpointError(f"{directory}: units {manifest['agents']} differ from {self.agents}; "
                                  "load_critic_params needs the same units (load_params remaps)")
        if list(manifest["critic_hidden_sizes"]) != list(self.rl_algorithm.critic_hidden_sizes):
            raise CheckpointError(f"{directory}: critic sizes {manifest['critic_hidden_sizes']} differ from "
                                  f"{list(self.rl_algorithm.critic_hidden_sizes)}")
        backup = self.rl_algorithm.state_dict()
        try:
            for i, unit in enumerate(self.agents):
                c = critics[unit]
                kw = {"critic": c["critic"], "critic_target": c.get("critic_target", c["critic"])}
                if c.get("critic_optimizer"):
                    kw["critic_opt"] = c["critic_optimizer"]
                self.rl_algorithm.load_agent(i, **kw)
        except (KeyError, ValueError, RuntimeError) as exc:
            self.rl_algorithm.load_state_dict(backup)
            raise CheckpointError(f"{directory}: the critics do not fit the learner: {exc}") from exc

    def load_obj(self, directory: str | os.PathLike) -> Any:
        """Load one saved object (e.g. ``actors/actor_<unit>.pt``) with
        ``torch.load(..., weights_only=True)`` onto the learner's device."""
        return torch.load(directory, map_location=self.device, weights_only=True)

    def compare_and_save_policies(self, metrics: Mapping[str, float]) -> list[str]:
        """Compare evaluation ``metrics`` (``reward``, ``profit``, ``regret``) with the best
        so far, each separately, and save the policies under ``save_path`` as ``best``
        (reward), ``best_profit`` and ``best_regret`` (lowest) when they improved. All
        three are compared (ASSUME's loop returns after the first). Returns the names of
        the improved policies (saved only when a save path is set)."""
        try:
            improved = compare_policies(self.best, metrics)
        except KeyError as exc:
            raise KeyError(f"Learning.{exc.args[0]}") from None
        if self.save_path is not None:
            for name in improved:
                self.save_params(self.save_path / name)
        return improved
