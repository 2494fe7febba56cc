"""Replay buffer for multi-agent off-policy training (ASSUME's ``buffer`` API).

The buffer keeps the documented ASSUME interface -- ``ReplayBuffer(buffer_size,
obs_dim, act_dim, n_rl_units, device, float_type)`` with ``add``, ``sample``,
``size`` and ``to_torch`` -- and, like ASSUME, stores each observation once: the next
observation of row ``i`` is the observation written in row ``i + 1``. Unlike ASSUME it
knows which rows actually have a successor, so a sample never

* pairs the last observation of one episode with the first of the next,
* uses the newest row (its successor has not been written yet), or
* after wrap-around pairs the newest row with the oldest one, or any row with a slot
  that was overwritten after it.

Episode protocol
----------------
For every step of an episode call ``add(obs, actions, reward)`` with the observation
the agents acted on, their actions and the rewards they got. When the episode ends,
call ``end_episode(final_obs)`` with the observation that followed the last step
(for example the one returned together with ``truncations``). It is written as a row
that only serves as a successor: it completes the episode's last transition and is
never sampled itself. No transition of the episode is lost. The next ``add`` starts a
new episode.

If the final observation is not available, ``add(..., last=True)`` on the last step
closes the episode instead; that step then has no successor and its transition is
dropped. Use one of the two, not both (``end_episode`` after ``last=True`` raises).

No ``done`` flag is stored: every stored transition is treated as non-terminal, which
is right for the market environment, whose episodes end only by time-limit truncation
(the critic should bootstrap through the final observation).

Shapes (``B`` = batch, ``N`` = ``n_rl_units``, ``E`` = ``num_envs``)
---------------------------------------------------------------------
=======================  ==========================================================
``add`` obs              ``(N, obs_dim)``, or ``(E, N, obs_dim)``
``add`` actions          ``(N, act_dim)``, or ``(E, N, act_dim)``
``add`` reward           ``(N,)``, or ``(E, N)``
sample observations      ``(B, N, obs_dim)``
sample actions           ``(B, N, act_dim)``
sample next_observations ``(B, N, obs_dim)``
sample rewards           ``(B, N)`` -- one scalar per agent, no trailing axis
=======================  ==========================================================

With ``num_envs = E > 1`` (the vector environment) each ``add`` writes one row holding
the ``E`` copies side by side; the copies step in lockstep and share episode ends, and
a sampled transition always comes from a single copy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["ReplayBuffer", "ReplayBufferSamples"]

_NUMPY_DTYPES = {
    torch.float16: np.float16,
    torch.bfloat16: np.float32,  # numpy has no bfloat16; store float32, cast on sample
    torch.float32: np.float32,
    torch.float64: np.float64,
}


class ReplayBufferSamples(NamedTuple):
    """A batch of transitions, all tensors on the buffer's device and dtype."""

    observations: torch.Tensor
    """``(batch, n_rl_units, obs_dim)``"""
    actions: torch.Tensor
    """``(batch, n_rl_units, act_dim)``"""
    next_observations: torch.Tensor
    """``(batch, n_rl_units, obs_dim)``"""
    rewards: torch.Tensor
    """``(batch, n_rl_units)``"""


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"ReplayBuffer: {name} must be a positive integer, got {value!r}")
    return int(value)


class ReplayBuffer:
    """Fixed-size circular buffer of multi-agent transitions.

    Args:
        buffer_size: capacity in transitions (summed over the ``num_envs`` copies);
            the buffer holds ``buffer_size // num_envs`` rows. The final observation
            written by :meth:`end_episode` takes a row too.
        obs_dim: length of one agent's observation.
        act_dim: length of one agent's action.
        n_rl_units: number of learning agents.
        device: torch device that :meth:`sample` and :meth:`to_torch` return tensors on.
        float_type: torch floating dtype of the returned tensors; the arrays are stored
            in the matching numpy dtype (``torch.bfloat16`` is stored as float32).
        num_envs: number of environment copies written per :meth:`add` (vector env).
        seed: seed for the ``np.random.Generator`` used by :meth:`sample` (an int, a
            ``SeedSequence`` or ``None`` for fresh entropy).

    Attributes:
        observations: ``(rows, num_envs, n_rl_units, obs_dim)`` storage.
        actions: ``(rows, num_envs, n_rl_units, act_dim)`` storage.
        rewards: ``(rows, num_envs, n_rl_units)`` storage.
        pos: the row the next write goes to.
        full: whether the buffer has wrapped around at least once.
    """

    def __init__(
        self,
        buffer_size: int,
        obs_dim: int,
        act_dim: int,
        n_rl_units: int,
        device: str | torch.device,
        float_type: torch.dtype,
        *,
        num_envs: int = 1,
        seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        self.buffer_size = _positive_int(buffer_size, "buffer_size")
        self.obs_dim = _positive_int(obs_dim, "obs_dim")
        self.act_dim = _positive_int(act_dim, "act_dim")
        self.n_rl_units = _positive_int(n_rl_units, "n_rl_units")
        self.num_envs = _positive_int(num_envs, "num_envs")
        self.rows = self.buffer_size // self.num_envs
        if self.rows < 2:
            raise ValueError(
                f"ReplayBuffer: buffer_size={buffer_size} with num_envs={num_envs} gives "
                f"{self.rows} row(s); at least 2 are needed (raise buffer_size)"
            )
        if float_type not in _NUMPY_DTYPES:
            raise TypeError(
                f"ReplayBuffer: float_type must be a torch floating dtype "
                f"(torch.float32, torch.float64, ...), got {float_type!r}"
            )
        self.device = torch.device(device)
        self.th_float_type = float_type
        self.np_float_type = np.dtype(_NUMPY_DTYPES[float_type])

        shape = (self.rows, self.num_envs, self.n_rl_units)
        self.observations = np.zeros(shape + (self.obs_dim,), dtype=self.np_float_type)
        self.actions = np.zeros(shape + (self.act_dim,), dtype=self.np_float_type)
        self.rewards = np.zeros(shape, dtype=self.np_float_type)
        # _has_next[i]: row i + 1 (mod rows) holds the next observation of row i's
        # episode. Invariant: True exactly for the sampleable rows.
        self._has_next = np.zeros(self.rows, dtype=bool)
        self._n_valid_rows = 0
        self._open = False  # row pos - 1 awaits its successor in the same episode
        self.pos = 0
        self.full = False
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ writing

    def add(self, obs, actions, reward, *, last: bool = False) -> None:
        """Store one step of every agent (and every environment copy).

        Args:
            obs: observations the agents acted on, ``(n_rl_units, obs_dim)`` or
                ``(num_envs, n_rl_units, obs_dim)``; numpy arrays or tensors.
            actions: their actions, ``(n_rl_units, act_dim)`` or
                ``(num_envs, n_rl_units, act_dim)``.
            reward: their rewards, ``(n_rl_units,)`` or ``(num_envs, n_rl_units)``.
            last: this is the episode's last step and no final observation will
                follow; its transition is dropped. Prefer :meth:`end_episode`.

        Raises:
            ValueError: on a wrong shape or a NaN/infinite value.
        """
        obs = self._check(obs, (self.n_rl_units, self.obs_dim), "obs")
        actions = self._check(actions, (self.n_rl_units, self.act_dim), "actions")
        reward = self._check(reward, (self.n_rl_units,), "reward")
        self._write(obs, actions, reward)
        self._open = not last

    def end_episode(self, final_obs) -> None:
        """Close the current episode with the observation after its last step.

        The observation is written as a row of its own that completes the last
        transition and is never sampled itself.

        Args:
            final_obs: ``(n_rl_units, obs_dim)`` or ``(num_envs, n_rl_units, obs_dim)``.

        Raises:
            ValueError: if no episode is open (nothing added since the last episode
                end, or the last step was added with ``last=True``), or on a wrong
                shape or a NaN/infinite value.
        """
        if not self._open:
            raise ValueError(
                "ReplayBuffer.end_episode: no open episode (call add() for each step "
                "first, and do not combine end_episode with add(..., last=True))"
            )
        final_obs = self._check(final_obs, (self.n_rl_units, self.obs_dim), "final_obs")
        self._write(final_obs, 0.0, 0.0)
        self._open = False

    def _check(self, value, trailing: tuple[int, ...], name: str) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value, dtype=self.np_float_type)
        if array.shape == trailing and self.num_envs == 1:
            array = array[None]
        elif array.shape != (self.num_envs,) + trailing:
            accepted = f"{(self.num_envs,) + trailing}"
            if self.num_envs == 1:
                accepted = f"{trailing} or {accepted}"
            raise ValueError(f"ReplayBuffer: {name} must have shape {accepted}, got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"ReplayBuffer: {name} contains NaN or infinite values")
        return array

    def _write(self, obs, actions, reward) -> None:
        p = self.pos
        if self._has_next[p]:  # the old transition stored in row p is gone
            self._has_next[p] = False
            self._n_valid_rows -= 1
        self.observations[p] = obs
        self.actions[p] = actions
        self.rewards[p] = reward
        if self._open:  # the previous write (row p - 1) now has its successor
            self._has_next[p - 1] = True  # p - 1 == -1 is the last row: fine
            self._n_valid_rows += 1
        self.pos = (p + 1) % self.rows
        if self.pos == 0:
            self.full = True

    # ------------------------------------------------------------------ reading

    def size(self) -> int:
        """Number of transitions that :meth:`sample` can draw from.

        Each counts one (row, environment copy) pair whose successor belongs to the same
        episode; rows holding only a final observation, the newest row and rows closed
        by ``last=True`` do not count.
        """
        return self._n_valid_rows * self.num_envs

    @property
    def nbytes(self) -> int:
        """Bytes held by the storage arrays (including the bookkeeping flags)."""
        return self.observations.nbytes + self.actions.nbytes + self.rewards.nbytes + self._has_next.nbytes

    def sample(self, batch_size: int) -> ReplayBufferSamples:
        """Draw ``batch_size`` transitions uniformly, with replacement, from the valid ones.

        Returns:
            :class:`ReplayBufferSamples` on ``device`` with dtype ``float_type``.

        Raises:
            ValueError: if ``batch_size`` is not positive or no transition is stored yet.
        """
        batch_size = _positive_int(batch_size, "batch_size")
        if self._n_valid_rows == 0:
            raise ValueError(
                "ReplayBuffer.sample: no complete transition stored yet (a transition needs "
                "two consecutive steps of one episode, or a step and end_episode())"
            )
        filled = self.rows if self.full else self.pos
        if 2 * self._n_valid_rows >= filled:
            # Almost every row is valid: draw rows and redraw the few invalid ones.
            rows = self._rng.integers(0, filled, size=batch_size)
            bad = np.flatnonzero(~self._has_next[rows])
            while bad.size:
                rows[bad] = self._rng.integers(0, filled, size=bad.size)
                bad = bad[~self._has_next[rows[bad]]]
        else:
            valid = np.flatnonzero(self._has_next[:filled])
            rows = valid[self._rng.integers(0, valid.size, size=batch_size)]
        if self.num_envs > 1:
            envs = self._rng.integers(0, self.num_envs, size=batch_size)
        else:
            envs = np.zeros(batch_size, dtype=np.intp)
        next_rows = rows + 1
        next_rows[next_rows == self.rows] = 0
        return ReplayBufferSamples(
            observations=self.to_torch(self.observations[rows, envs], copy=False),
            actions=self.to_torch(self.actions[rows, envs], copy=False),
            next_observations=self.to_torch(self.observations[next_rows, envs], copy=False),
            rewards=self.to_torch(self.rewards[rows, envs], copy=False),
        )

    def to_torch(self, array, copy: bool = True) -> torch.Tensor:
        """Convert an array to a tensor on the buffer's device with its float type.

        Args:
            array: numpy array (or anything ``torch.as_tensor`` accepts).
            copy: always copy the data; with ``False`` the tensor may share memory with
                ``array`` when device and dtype already match.
        """
        if copy:
            return torch.tensor(array, dtype=self.th_float_type, device=self.device)
        return torch.as_tensor(array, dtype=self.th_float_type, device=self.device)
