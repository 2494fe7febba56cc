"""Networks, exploration noise and helpers for MATD3 (ASSUME's ``learning_utils`` API).

* :class:`Actor` -- deterministic policy, one agent's observation to an action in
  ``(-1, 1)``.
* :class:`CriticTD3` -- centralised twin Q-network: the agent's own observation, the
  other agents' unique observations and all agents' actions to two Q-values.
* :class:`NormalActionNoise`, :class:`OUNoise` -- exploration noise drawn from a
  seeded ``np.random.Generator`` (no global random state).
* :class:`ObsActRew` -- per-agent lists of observations, actions and rewards.
* :func:`polyak_update` -- in-place soft update of target networks.

Differences from ASSUME: the hidden layer widths are an explicit ``hidden_sizes``
keyword (ASSUME picks the critic's width from the number of agents); the layers sit in
``nn.Sequential`` blocks, so state-dict keys are ``net.<i>.weight`` for the actor and
``q1.<i>.weight`` / ``q2.<i>.weight`` for the critic, with Linear layers at even
indices ``0, 2, ..., 2 * len(hidden_sizes)``. Weights use PyTorch's default
initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypedDict

import numpy as np
import torch
from torch import nn

__all__ = [
    "Actor",
    "CriticTD3",
    "NormalActionNoise",
    "OUNoise",
    "ObsActRew",
    "polyak_update",
]


def _positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, float_type, owner: str) -> list[nn.Module]:
    """Layers ``Linear, ReLU, ..., Linear`` (no output activation)."""
    sizes = tuple(hidden_sizes)
    if not sizes:
        raise ValueError(f"{owner}: hidden_sizes must name at least one hidden layer")
    for h in sizes:
        _positive_int(h, "every entry of hidden_sizes", owner)
    layers: list[nn.Module] = []
    width = in_dim
    for h in sizes:
        layers += [nn.Linear(width, int(h), dtype=float_type), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, out_dim, dtype=float_type))
    return layers


def _check_float_type(float_type, owner: str) -> None:
    if not isinstance(float_type, torch.dtype) or not float_type.is_floating_point:
        raise TypeError(f"{owner}: float_type must be a torch floating dtype, got {float_type!r}")


class Actor(nn.Module):
    """Deterministic policy network of one agent.

    ``net = Sequential(Linear(obs_dim, h1), ReLU(), ..., Linear(h_last, act_dim), Tanh())``.

    Args:
        obs_dim: length of the agent's observation.
        act_dim: length of its action.
        float_type: torch dtype of the parameters.
        hidden_sizes: widths of the hidden layers.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        float_type: torch.dtype,
        *,
        hidden_sizes: Sequence[int] = (256, 128),
    ) -> None:
        super().__init__()
        _check_float_type(float_type, "Actor")
        self.obs_dim = _positive_int(obs_dim, "obs_dim", "Actor")
        self.act_dim = _positive_int(act_dim, "act_dim", "Actor")
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.float_type = float_type
        layers = _mlp(self.obs_dim, self.hidden_sizes, self.act_dim, float_type, "Actor")
        self.net = nn.Sequential(*layers, nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(..., obs_dim)`` observations to ``(..., act_dim)`` actions in ``(-1, 1)``."""
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"Actor: expected observations with last dimension {self.obs_dim}, got shape {tuple(obs.shape)}")
        return self.net(obs)


class CriticTD3(nn.Module):
    """Centralised twin Q-network of one agent (TD3's clipped double-Q).

    Input of width ``input_dim = obs_dim + unique_obs_len * (n_agents - 1) + act_dim *
    n_agents``: the agent's own observation, the unique (last ``unique_obs_len``)
    observation values of each other agent, and the actions of all agents. Each head is
    ``Sequential(Linear(input_dim, h1), ReLU(), ..., Linear(h_last, 1))``.

    Args:
        n_agents: number of learning agents.
        obs_dim: length of one agent's observation.
        act_dim: length of one agent's action.
        float_type: torch dtype of the parameters.
        unique_obs_len: number of agent-specific values at the end of an observation
            (at most ``obs_dim``).
        hidden_sizes: widths of the hidden layers of each head.
    """

    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        act_dim: int,
        float_type: torch.dtype,
        unique_obs_len: int = 16,
        *,
        hidden_sizes: Sequence[int] = (256, 128),
    ) -> None:
        super().__init__()
        _check_float_type(float_type, "CriticTD3")
        self.n_agents = _positive_int(n_agents, "n_agents", "CriticTD3")
        self.obs_dim = _positive_int(obs_dim, "obs_dim", "CriticTD3")
        self.act_dim = _positive_int(act_dim, "act_dim", "CriticTD3")
        if isinstance(unique_obs_len, bool) or not isinstance(unique_obs_len, (int, np.integer)):
            raise ValueError(f"CriticTD3: unique_obs_len must be an integer, got {unique_obs_len!r}")
        if not 0 <= unique_obs_len <= obs_dim:
            raise ValueError(
                f"CriticTD3: unique_obs_len must lie in [0, obs_dim={obs_dim}], got {unique_obs_len}"
            )
        self.unique_obs_len = int(unique_obs_len)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.float_type = float_type
        self.obs_input_dim = self.obs_dim + self.unique_obs_len * (self.n_agents - 1)
        self.act_input_dim = self.act_dim * self.n_agents
        self.input_dim = self.obs_input_dim + self.act_input_dim
        self.q1 = nn.Sequential(*_mlp(self.input_dim, self.hidden_sizes, 1, float_type, "CriticTD3"))
        self.q2 = nn.Sequential(*_mlp(self.input_dim, self.hidden_sizes, 1, float_type, "CriticTD3"))

    def _input(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if obs.dim() != 2 or obs.shape[1] != self.obs_input_dim:
            raise ValueError(
                f"CriticTD3: obs must be (batch, {self.obs_input_dim}) = (batch, obs_dim + "
                f"unique_obs_len * (n_agents - 1)), got {tuple(obs.shape)}"
            )
        if actions.dim() != 2 or actions.shape[1] != self.act_input_dim:
            raise ValueError(
                f"CriticTD3: actions must be (batch, {self.act_input_dim}) = (batch, act_dim * "
                f"n_agents), got {tuple(actions.shape)}"
            )
        if obs.shape[0] != actions.shape[0]:
            raise ValueError(
                f"CriticTD3: obs and actions have different batch sizes ({obs.shape[0]} vs {actions.shape[0]})"
            )
        return torch.cat([obs, actions], dim=1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both Q-estimates, each ``(batch, 1)``.

        Args:
            obs: ``(batch, obs_dim + unique_obs_len * (n_agents - 1))``.
            actions: ``(batch, act_dim * n_agents)``.
        """
        x = self._input(obs, actions)
        return self.q1(x), self.q2(x)

    def q1_forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Only the first Q-estimate, ``(batch, 1)`` (used for the actor loss)."""
        return self.q1(self._input(obs, actions))


def _generator(seed, rng, owner: str) -> np.random.Generator:
    if rng is not None:
        if seed is not None:
            raise ValueError(f"{owner}: pass either seed or rng, not both")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{owner}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


class NormalActionNoise:
    """Gaussian exploration noise whose scale decays geometrically.

    Each :meth:`noise` call returns ``scale * N(mu, sigma)`` of shape
    ``(action_dimension,)`` (float64) and then multiplies ``scale`` by ``dt``, so after
    ``k`` calls ``scale == scale_0 * dt ** k``.

    Args:
        action_dimension: length of the noise vector.
        mu: mean of the normal distribution.
        sigma: its standard deviation (>= 0).
        scale: initial multiplier.
        dt: decay factor applied to ``scale`` after every draw (> 0).
        seed: seed of the generator (ignored when ``rng`` is given).
        rng: a ``np.random.Generator`` to draw from.
    """

    def __init__(
        self,
        action_dimension: int,
        mu: float = 0.0,
        sigma: float = 0.1,
        scale: float = 1.0,
        dt: float = 0.9998,
        *,
        seed: int | np.random.SeedSequence | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.act_dimension = _positive_int(action_dimension, "action_dimension", "NormalActionNoise")
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"NormalActionNoise: sigma must be finite and >= 0, got {sigma!r}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"NormalActionNoise: dt must be finite and > 0, got {dt!r}")
        if not (math.isfinite(mu) and math.isfinite(scale)):
            raise ValueError("NormalActionNoise: mu and scale must be finite")
        self.mu = float(mu)
        self.sigma = float(sigma)
        self.scale = float(scale)
        self.dt = float(dt)
        self.rng = _generator(seed, rng, "NormalActionNoise")

    def noise(self) -> np.ndarray:
        """One draw, ``(action_dimension,)``; decays ``scale`` afterwards."""
        out = self.scale * self.rng.normal(self.mu, self.sigma, self.act_dimension)
        self.scale *= self.dt
        return out


class OUNoise:
    """Ornstein-Uhlenbeck exploration noise (temporally correlated).

    Each :meth:`noise` call advances the state ``x`` (initially ``mu``) by
    ``x += theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)`` and returns a copy of it.

    Args:
        action_dimension: length of the noise vector.
        mu: long-run mean.
        sigma: volatility (>= 0).
        theta: mean-reversion rate (>= 0).
        dt: time step (> 0).
        seed: seed of the generator (ignored when ``rng`` is given).
        rng: a ``np.random.Generator`` to draw from.
    """

    def __init__(
        self,
        action_dimension: int,
        mu: float = 0,
        sigma: float = 0.5,
        theta: float = 0.15,
        dt: float = 0.01,
        *,
        seed: int | np.random.SeedSequence | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.action_dimension = _positive_int(action_dimension, "action_dimension", "OUNoise")
        for name, value in (("sigma", sigma), ("theta", theta)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"OUNoise: {name} must be finite and >= 0, got {value!r}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"OUNoise: dt must be finite and > 0, got {dt!r}")
        if not math.isfinite(mu):
            raise ValueError(f"OUNoise: mu must be finite, got {mu!r}")
        self.mu = float(mu)
        self.sigma = float(sigma)
        self.theta = float(theta)
        self.dt = float(dt)
        self.rng = _generator(seed, rng, "OUNoise")
        self.x = np.full(self.action_dimension, self.mu)

    def reset(self) -> None:
        """Set the state back to ``mu``."""
        self.x = np.full(self.action_dimension, self.mu)

    def noise(self) -> np.ndarray:
        """Advance one step and return the new state, ``(action_dimension,)`` float64."""
        self.x += self.theta * (self.mu - self.x) * self.dt + self.sigma * math.sqrt(self.dt) * self.rng.standard_normal(
            self.action_dimension
        )
        return self.x.copy()


class ObsActRew(TypedDict):
    """Per-agent lists of tensors collected over an episode."""

    observation: list[torch.Tensor]
    action: list[torch.Tensor]
    reward: list[torch.Tensor]


def polyak_update(params: Iterable[torch.Tensor], target_params: Iterable[torch.Tensor], tau: float) -> None:
    """Move ``target_params`` towards ``params`` in place: ``target = (1 - tau) * target + tau * param``.

    ``tau = 1`` copies the parameters, ``tau = 0`` leaves the targets unchanged. Runs
    under ``torch.no_grad()``, so no autograd graph is built and the targets'
    ``requires_grad`` is untouched.

    Args:
        params: source tensors (e.g. ``critic.parameters()``); any iterable.
        target_params: tensors to update (e.g. ``critic_target.parameters()``).
        tau: soft-update coefficient in ``[0, 1]``.

    Raises:
        ValueError: if ``tau`` is outside ``[0, 1]``, the two lists differ in length, or
            a pair of tensors differs in shape.
    """
    params = list(params)
    target_params = list(target_params)
    tau = float(tau)
    if not 0.0 <= tau <= 1.0:  # also rejects NaN
        raise ValueError(f"polyak_update: tau must lie in [0, 1], got {tau!r}")
    if len(params) != len(target_params):
        raise ValueError(
            f"polyak_update: {len(params)} parameters but {len(target_params)} target parameters"
        )
    for i, (p, t) in enumerate(zip(params, target_params)):
        if not isinstance(p, torch.Tensor) or not isinstance(t, torch.Tensor):
            raise TypeError(f"polyak_update: entry {i} is not a tensor")
        if p.shape != t.shape:
            raise ValueError(
                f"polyak_update: shape mismatch at entry {i}: parameter {tuple(p.shape)} vs target {tuple(t.shape)}"
            )
    if not params or tau == 0.0:
        return
    with torch.no_grad():
        if tau == 1.0:
            for p, t in zip(params, target_params):
                t.copy_(p)
            return
        kinds = {(x.device, x.dtype) for x in params + target_params}
        if len(kinds) == 1:
            torch._foreach_mul_(target_params, 1.0 - tau)
            torch._foreach_add_(target_params, params, alpha=tau)
        else:  # mixed devices or dtypes: one pair at a time
            for p, t in zip(params, target_params):
                t.mul_(1.0 - tau).add_(p.to(device=t.device, dtype=t.dtype), alpha=tau)
