"""Helpers shared by the tests of the env's offer grids (``plant_bids``/``storage_prices``
"undercut")."""

from __future__ import annotations

import numpy as np


def rule_ladder(core, t: int) -> np.ndarray:
    """The distinct rule offers of hour ``t`` within the bid range, rebuilt from the
    scenario (rule plants at marginal cost with capacity, rule renewables at theirs), to
    check the env's grid against."""
    sc = core.scenario
    pl, rn = sc.plants, sc.renewables
    p = [pl.marginal_cost[t, i] for i in range(len(pl.names))
         if not pl.learning[i] and pl.max_power[i] * pl.availability[t, i] > 0]
    p += [rn.marginal_cost[i] for i in range(len(rn.names))
          if not rn.learning[i] and rn.capacity[i] * rn.availability[t, i] > 0]
    p = np.unique(np.asarray(p, dtype=float))
    return p[p <= core.max_bid_price]


def replay(core, actions: np.ndarray):
    """Run ``core`` (one copy, recording) from a seed-0 reset through ``actions``
    ``(hours, 1, n, max_act)`` and return its :class:`~envs.record.EpisodeRecord`."""
    core.recording = True
    core.reset(np.random.default_rng(0))
    for h in range(actions.shape[0]):
        core.step(actions[h])
    return core.episode_record()
