"""Distil a profile of open-loop env actions into the actors that bid it again.

A search over one episode's actions (``benchmarks/search_policy_actions.py``) finds a
profile of bids, not a policy. :func:`centred_path` replays such a profile on a one-copy
market and returns the observations along its path together with each action moved to
the middle of the range of actions that the env reads as the same bid price (the
plants' offer grid, the storage's two-sided prices, ``cost_snap``, ...: see
:meth:`envs.MarketCore.bid_prices_for`); :func:`distil` fits the actors to those targets
(imitation only, :meth:`agents.learner.Learner.fit_rows`). Since the evaluation episode
is deterministic, actors that bid every hour's price again see the same observations as
the profile and reproduce its prices and profits exactly: the closed loop then *is* the
profile. Fitting the raw actions instead fails: a price a tick under a rule offer is the
upper end of its range, and an imitation error of 1e-4 lands it on the next grid point
(measured on ``default``: exploitability 0.090 -> 2.1, benchmarks/RESULTS.md, thirty-seventh
round).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .matd3 import _IMITATION_CLIP

#: points of the probe over the action range [-1, 1] per hour (a step of 0.1 % of it)
PROBE_POINTS = 2001
#: imitation steps of :func:`distil` at the full learning rate (half as many follow at a
#: tenth of it); 1,000 reproduce a 336-hour profile of ``default`` exactly
DISTIL_STEPS = 1000


def _runs_centre(values: np.ndarray, same: np.ndarray, near: float) -> float | None:
    """The middle of the run of consecutive ``same`` entries of ``values`` (ascending)
    nearest to ``near``; None when there is no such entry or the run is one point."""
    idx = np.flatnonzero(same)
    if idx.size == 0:
        return None
    i0 = int(idx[np.argmin(np.abs(values[idx] - near))])
    lo = hi = i0
    while lo > 0 and same[lo - 1]:
        lo -= 1
    while hi < same.size - 1 and same[hi + 1]:
        hi += 1
    return None if hi == lo else 0.5 * (float(values[lo]) + float(values[hi]))


def centred_path(core, actions: np.ndarray, *, seed: int = 0,
                 points: int = PROBE_POINTS) -> tuple[np.ndarray, np.ndarray, Any]:
    """Replay ``actions`` ``(H, n, max_act)`` on the one-copy ``core`` (reset with
    ``seed``) and return ``(obs, centred, record)``: the observations ``(H, n, obs_dim)``
    (float32) the actors see along the path, the actions with each unit's lower and
    higher price moved to the middle of the range of actions the env reads as the same
    price in that hour (probed on ``points`` values in [-1, 1], of which those an
    imitation target can reach, :data:`agents.matd3._IMITATION_CLIP`; an action whose
    price no other such action gives, e.g. a price above every rule offer, stays as it
    is), and the episode's record (``core.recording`` must be on). The centred actions
    bid the same prices, so they follow the same path."""
    actions = np.asarray(actions, dtype=float)
    H, n, m = actions.shape
    if core.B != 1:
        raise ValueError(f"centred_path needs a one-copy core (num_envs=1), this one has {core.B} copies")
    if (n, m) != (core.n, core.max_act):
        raise ValueError(f"centred_path: actions must be (H, {core.n}, {core.max_act}), got {actions.shape}")
    dims = np.minimum(np.asarray(core.act_dims, dtype=int), 2)
    # a storage unit that bids two-sided: its charge price is probed under the highest
    # discharge price and the other way round (the env caps the charge bid at the offer)
    paired = np.array([kind == "storage" and getattr(core, "storage_bids", "") == "two_sided" and d > 1
                       for kind, d in zip(core.agent_kind, dims)])
    grid = np.linspace(-1.0, 1.0, int(points))
    P = grid.size
    obs = np.empty((H, n, core.obs_dim), dtype=np.float32)
    centred = actions.copy()
    o = core.reset(np.random.default_rng(seed))
    for t in range(H):
        if core.done:
            raise ValueError(f"centred_path: the episode ended after {t} hours, the actions hold {H}")
        obs[t] = o[0]
        a = actions[t]
        one = dims < 2
        lo = np.where(one, a[:, 0], np.minimum(a[:, 0], a[:, 1 % m]))
        hi = np.where(one, a[:, 0], np.maximum(a[:, 0], a[:, 1 % m]))
        for role, own in ((0, lo), (1, hi)):  # the lower price, then the higher
            # rows: the probe values, then the profile's own value; a plant's two prices
            # map alike (the env sorts them), so both dimensions take the probed value
            probe = np.zeros((P + 1, n, m))
            vals = np.concatenate([np.broadcast_to(grid[:, None], (P, n)), own[None]], axis=0)
            probe[:, :, 0] = vals
            if m > 1:
                probe[:, :, 1] = vals
                probe[:, paired, 1 - role] = 1.0 if role == 0 else -1.0
            price = core.bid_prices_for(probe)
            for k in range(n):
                if dims[k] == 0 or (role == 1 and one[k]):
                    continue
                # within the actions an actor can be taught (its targets are clipped there)
                same = (np.abs(price[:P, k, role] - price[P, k, role]) <= 1e-9) & (np.abs(grid) <= _IMITATION_CLIP)
                c = _runs_centre(grid, same, own[k])
                if c is not None:  # into the dimension that holds this price
                    j = 0 if one[k] else (role if a[k, 0] <= a[k, 1] else 1 - role)
                    centred[t, k, j] = c
        _, o = core.step_observe(a[None])
    return obs, centred, core.episode_record(0)


def distil(learner, obs: np.ndarray, targets: np.ndarray, *, steps: int = DISTIL_STEPS,
           learning_rate: float = 1e-3, seed: int = 0) -> float:
    """Fit every actor of ``learner`` to ``targets`` ``(H, n, max_act)`` at observations
    ``obs`` ``(H, n, obs_dim)``: imitation only (:meth:`agents.learner.Learner.fit_rows`,
    batches drawn by a generator seeded with ``seed``), ``steps`` steps at
    ``learning_rate``, then ``steps // 2`` at a tenth of it, from a fresh Adam state (the
    actors' optimizer keeps that state and ``learning_rate`` afterwards). Returns the last
    imitation loss."""
    data = [(np.asarray(obs, dtype=np.float32), np.asarray(targets, dtype=np.float32))]
    weight = np.ones(learner.n)
    rng = np.random.default_rng([int(seed), 0xD15])
    learner.algo.actor_optimizer.state.clear()  # a fresh Adam: training's moments keep the fit off the profile
    learner.algo.set_learning_rate(learning_rate)
    learner.fit_rows(data, weight, int(steps), 1.0, rng=rng)
    return learner.fit_rows(data, weight, max(1, int(steps) // 2), 0.1, rng=rng)


def distil_profile(learner, core, scenario, profile: dict, *, learning_rate: float = 1e-3, seed: int = 0):
    """Fit ``learner``'s actors to ``profile`` (a :meth:`agents.profile_search.Replay.run`
    result on the one-copy evaluation ``core``): :func:`centred_path`, :func:`distil`, then
    one evaluation with the exact analysis. Returns ``(evaluation, imitation loss, whether
    the actors bid the profile's clearing prices in every hour)``."""
    obs, targets, _ = centred_path(core, profile["actions"], seed=learner.generators.evaluation)
    loss = distil(learner, obs, targets, learning_rate=learning_rate, seed=seed)
    ev = learner.evaluate(core, scenario, analysis=True, refresh=False)
    same = bool(np.allclose(ev.record.clearing_price, profile["record"].clearing_price, atol=1e-9))
    return ev, loss, same
