"""Per-agent MATD3, written the reference's way: a Python loop over agents.

Each agent owns an :class:`~agents.learning_utils.Actor`, a
:class:`~agents.learning_utils.CriticTD3`, their targets and two Adams, and each gradient
step loops over the agents, building each critic input with ``torch.cat`` the way ASSUME
does. It implements the same update as :class:`agents.matd3.MATD3` and exists to check the
batched implementation (tests) and to measure what batching buys (benchmarks); it is not
meant for training.

:meth:`ReferenceMATD3.from_matd3` builds one from a :class:`~agents.matd3.MATD3` through
the per-agent exports, copying weights, targets, Adam states, the update counter and the
random generator, so both then take identical steps.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from agents.learning_utils import Actor, CriticTD3, polyak_update

__all__ = ["ReferenceMATD3"]


class ReferenceMATD3:
    """Loop-over-agents MATD3 with the same arguments and update as :class:`agents.matd3.MATD3`.

    Networks use PyTorch's default initialisation from the global generator; use
    :meth:`from_matd3` for a copy of a batched instance. Target noise is drawn from
    :attr:`generator` as ``randn((B, n, max_act))`` like the batched class.
    """

    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        act_dims: Sequence[int],
        unique_obs_len: int,
        *,
        actor_hidden_sizes: Sequence[int] = (256, 128),
        critic_hidden_sizes: Sequence[int] = (256, 128),
        learning_rate: float = 1e-3,
        gamma: float = 0.99,
        tau: float = 0.005,
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        max_grad_norm: float | None = 1.0,
        actor_preactivation_penalty: float = 0.0,
        device: str | torch.device = "cpu",
        float_type: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        self.n_agents = n_agents
        self.obs_dim = obs_dim
        self.act_dims = tuple(int(a) for a in act_dims)
        self.max_act = max(self.act_dims)
        self.unique_obs_len = unique_obs_len
        self.gamma, self.tau = gamma, tau
        self.agent_gamma: list[float] | None = None  # per agent, as MATD3.set_agent_gamma
        self.policy_delay = policy_delay
        self.target_policy_noise, self.target_noise_clip = target_policy_noise, target_noise_clip
        self.max_grad_norm = max_grad_norm or None
        self.actor_preactivation_penalty = actor_preactivation_penalty
        self.device = torch.device(device)
        self.float_type = float_type
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.n_updates = 0
        self.actors = [
            Actor(obs_dim, a, float_type, hidden_sizes=actor_hidden_sizes).to(self.device) for a in self.act_dims
        ]
        self.critics = [
            CriticTD3(n_agents, obs_dim, self.max_act, float_type, unique_obs_len, hidden_sizes=critic_hidden_sizes).to(
                self.device
            )
            for _ in range(n_agents)
        ]
        self.actor_targets = [copy.deepcopy(a) for a in self.actors]
        self.critic_targets = [copy.deepcopy(c) for c in self.critics]
        self.actor_optimizers = [torch.optim.Adam(a.parameters(), lr=learning_rate) for a in self.actors]
        self.critic_optimizers = [torch.optim.Adam(c.parameters(), lr=learning_rate) for c in self.critics]

    @classmethod
    def from_matd3(cls, m: Any) -> ReferenceMATD3:
        """A loop implementation holding exactly the state of the batched ``m``."""
        ref = cls(
            m.n_agents,
            m.obs_dim,
            m.act_dims,
            m.unique_obs_len,
            actor_hidden_sizes=m.actor_hidden_sizes,
            critic_hidden_sizes=m.critic_hidden_sizes,
            learning_rate=m.learning_rate,
            gamma=m.gamma,
            tau=m.tau,
            policy_delay=m.policy_delay,
            target_policy_noise=m.target_policy_noise,
            target_noise_clip=m.target_noise_clip,
            max_grad_norm=m.max_grad_norm,
            actor_preactivation_penalty=m.actor_preactivation_penalty,
            device=m.device,
            float_type=m.float_type,
            seed=m.seed,
        )
        for i in range(m.n_agents):
            ref.actors[i].load_state_dict(m.actor_state_dict(i))
            ref.actor_targets[i].load_state_dict(m.actor_target_state_dict(i))
            ref.critics[i].load_state_dict(m.critic_state_dict(i))
            ref.critic_targets[i].load_state_dict(m.critic_target_state_dict(i))
            ref.actor_optimizers[i].load_state_dict(m.actor_optimizer_state(i))
            ref.critic_optimizers[i].load_state_dict(m.critic_optimizer_state(i))
        ref.generator.set_state(m.generator.get_state())
        ref.n_updates = m.n_updates
        if getattr(m, "agent_gamma", None) is not None:
            ref.agent_gamma = m.agent_gamma.view(-1).tolist()
        return ref

    def _critic_obs(self, obs: torch.Tensor, i: int) -> torch.Tensor:
        """Agent i's own observation and the others' unique values, ``(B, critic_obs_dim)``."""
        u = self.unique_obs_len
        others = torch.cat([obs[:, :i, self.obs_dim - u :], obs[:, i + 1 :, self.obs_dim - u :]], dim=1)
        return torch.cat([obs[:, i, :], others.reshape(obs.shape[0], -1)], dim=1)

    def _clip(self, module: torch.nn.Module) -> None:
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm=self.max_grad_norm)

    def update(self, batch: Any, *, target_noise: torch.Tensor | None = None) -> dict[str, float]:
        """One gradient step, one agent after the other. Returns float metrics."""
        obs, actions = batch.observations, batch.actions.clone()
        next_obs, rewards = batch.next_observations, batch.rewards
        n, bsz = self.n_agents, obs.shape[0]
        for i, a in enumerate(self.act_dims):
            actions[:, i, a:] = 0.0
        self.n_updates += 1
        if target_noise is None:
            target_noise = torch.randn(
                (bsz, n, self.max_act), generator=self.generator, device=self.device, dtype=self.float_type
            )
        noise = (target_noise * self.target_policy_noise).clamp(-self.target_noise_clip, self.target_noise_clip)

        with torch.no_grad():
            next_actions = torch.zeros_like(actions)
            for i, a in enumerate(self.act_dims):
                next_actions[:, i, :a] = (self.actor_targets[i](next_obs[:, i, :]) + noise[:, i, :a]).clamp(-1, 1)
            all_next_actions = next_actions.reshape(bsz, -1)
        all_actions = actions.reshape(bsz, -1)

        critic_losses, actor_losses = [], []
        for i in range(n):
            with torch.no_grad():
                q1_next, q2_next = self.critic_targets[i](self._critic_obs(next_obs, i), all_next_actions)
                g = self.gamma if self.agent_gamma is None else self.agent_gamma[i]
                target_q = rewards[:, i].unsqueeze(1) + g * torch.min(q1_next, q2_next)
            q1, q2 = self.critics[i](self._critic_obs(obs, i), all_actions)
            loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
            self.critic_optimizers[i].zero_grad(set_to_none=True)
            loss.backward()
            self._clip(self.critics[i])
            self.critic_optimizers[i].step()
            critic_losses.append(loss.detach())

        if self.n_updates % self.policy_delay == 0:
            for i, a in enumerate(self.act_dims):
                pre_tanh = self.actors[i].net[:-1](obs[:, i, :])
                replaced = actions.clone()
                replaced[:, i, :a] = torch.tanh(pre_tanh)
                loss = -self.critics[i].q1_forward(self._critic_obs(obs, i), replaced.reshape(bsz, -1)).mean()
                if self.actor_preactivation_penalty:  # mean over (max_act, batch), padding counted as 0
                    loss = loss + self.actor_preactivation_penalty * pre_tanh.square().sum() / (self.max_act * bsz)
                self.actor_optimizers[i].zero_grad(set_to_none=True)
                loss.backward()
                self._clip(self.actors[i])
                self.actor_optimizers[i].step()
                actor_losses.append(loss.detach())
            for i in range(n):
                polyak_update(self.actors[i].parameters(), self.actor_targets[i].parameters(), self.tau)
                polyak_update(self.critics[i].parameters(), self.critic_targets[i].parameters(), self.tau)
        metrics = {"losses/critic_loss": torch.stack(critic_losses).sum().item()}  # one sync per step
        if actor_losses:
            metrics["losses/actor_loss"] = torch.stack(actor_losses).sum().item()
        return metrics
