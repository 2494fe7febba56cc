"""The plants' best response on the env's grid widened by the prices a tick under another
learner's offer (``envs.analysis.undercut_learners_map``), and the summary line that
splits the plants' gain by the prices it needs.

What would be wrong if this broke: a map that moves a price just under another learner's
offer onto the grid (or keeps any other off-grid price), a widened best response below
the grid's or above the unrestricted one, one no env can bid (its replay through a
free-price env earns anything but the reported profit), no gain from undercutting where
two learners share a price, or a split that does not add up to the gain."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import replay
from agents.evaluation import off_grid_line
from envs.analysis import best_response, recorded_profit, undercut_learners_map

PLANT = "plant_ccgt-1"
OTHER = "plant_ccgt-2"
STORAGE = "storage_pumped-storage-1"


@pytest.fixture(scope="module")
def shared():
    """A day of `default` in which both CCGTs make the same offers (so they share every
    price they are marginal at), the storage waiting."""
    sc = envs.load_scenario("default")
    core = envs.MarketCore(sc, num_envs=1, plant_bids="undercut", max_cycles=24)
    a = np.random.default_rng(0).uniform(0.5, 0.8, (24, 1, core.n, core.max_act))
    a[:, :, core.agents.index(STORAGE)] = 1.0
    a[:, :, core.agents.index(OTHER)] = a[:, :, core.agents.index(PLANT)]
    return sc, core, a, replay(core, a)


def test_the_map_keeps_prices_just_under_another_learners_offer_and_maps_the_rest_onto_the_grid(shared):
    sc, core, _, rec = shared
    k, o = rec.agents.index(PLANT), rec.agents.index(OTHER)
    m = undercut_learners_map(rec, k, core.undercut)
    hours = np.asarray(rec.hours)
    for h in (6, 9, 12):
        t = int(hours[h])
        offers = rec.supply_price[h, rec.agent_supply_columns(o)]
        under = np.concatenate([offers - 0.01, offers - 0.004])
        np.testing.assert_allclose(m(under, t), under, rtol=0, atol=0)
        # at the offer itself, above it, or more than a tick under it: the grid's price
        other = np.concatenate([offers, offers + 0.3, offers - 0.5, [-20.0, 5.0]])
        np.testing.assert_allclose(m(other, t), core.undercut(other, t), rtol=0, atol=0)
    with pytest.raises(ValueError, match="tick"):
        undercut_learners_map(rec, k, core.undercut, tick=0.0)


def test_the_widened_best_response_lies_between_the_grids_and_the_unrestricted_one_and_replays(shared):
    sc, core, a, rec = shared
    k, o = rec.agents.index(PLANT), rec.agents.index(OTHER)
    grid = best_response(rec, k, plant_prices=core.undercut)
    wide = best_response(rec, k, plant_prices=undercut_learners_map(rec, k, core.undercut))
    free = best_response(rec, k)
    assert grid.best_profit + 1000.0 < wide.best_profit < free.best_profit  # sharing a price costs it
    # every price it bids is the grid's or a tick under the other CCGT's offer of the hour
    offers = rec.supply_price[:, rec.agent_supply_columns(o)]
    hours = np.asarray(rec.hours)
    undercuts = 0
    for h in range(rec.n_hours):
        p = wide.best_price[h]
        on_grid = np.isclose(core.undercut(p, int(hours[h])), p, rtol=0, atol=1e-9)
        under = np.isclose(p[:, None], offers[h][None, :] - 0.01, rtol=0, atol=1e-9).any(axis=1)
        assert np.all(on_grid | under), (h, p, offers[h])
        undercuts += int(under.sum())
    assert undercuts >= 2
    # a free-price env bidding exactly these prices, the others as recorded, pays that profit
    free_core = envs.MarketCore(sc, num_envs=1, plant_bids="free", max_cycles=24)
    b = a.copy()
    b[:, 0, o, :2] = offers / core.max_bid_price
    b[:, 0, k, :2] = wide.best_price / core.max_bid_price
    again = replay(free_core, b)
    assert recorded_profit(again, k).sum() == pytest.approx(wide.best_profit, rel=1e-9, abs=1e-6)


def test_the_summary_line_splits_the_plants_gain_three_ways():
    rows = {
        "a": {"profit": 100.0, "grid_best_response_profit": 110.0, "undercut_learners_best_response_profit": 150.0,
              "best_response_profit": 175.0},
        "b": {"profit": 40.0, "grid_best_response_profit": 41.0, "undercut_learners_best_response_profit": 60.0,
              "best_response_profit": 66.0},
        "storage": {"profit": 10.0, "best_response_profit": 30.0},  # not a plant on the grid: not counted
    }
    line = off_grid_line(rows)
    assert "could gain 101 EUR: 11 within the env's offer grid" in line
    assert "59 a tick under another learner's offer" in line and "31 at other prices" in line
    assert off_grid_line({"storage": rows["storage"]}) is None
