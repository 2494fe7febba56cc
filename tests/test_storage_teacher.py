"""The best-response teacher's targets for a storage unit that bids two-sided
(``storage_teacher``), and the middles of the env's storage grid they are taught at.

"best_move" teaches the bids of the storage best response read as a policy
(:class:`envs.analysis.StorageResponsePolicy`) at the states of charge the episode
visited: on the side it trades the price of its best move, which may set the price with
part of the volume. "break_even" teaches a price taker's thresholds. With
``storage_prices="undercut"`` each price is taught at the middle of the range of actions
the grid moves to it (``MarketCore.outbid_centre`` for charge bids,
``MarketCore.undercut_centre(..., low=0)`` for offers).

What would be wrong if this broke: a centre outside its range or not its middle, targets
that bid (through the env's grid) anything but the response policy's bids at the visited
states, "break_even" no longer giving the break-even prices, or a response policy that
earns no more than the break-even prices in closed loop."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import rule_ladder
from agents.config import LearningConfig
from agents.trainer import Trainer
from envs.analysis import StorageResponsePolicy, best_response, storage_break_even_prices

STORAGE = "storage_pumped-storage-1"


def _core(hours: int):
    return envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids="undercut",
                           storage_bids="two_sided", storage_prices="undercut", max_cycles=hours)


def test_outbid_centre_is_the_middle_of_the_range_that_maps_to_the_same_charge_bid():
    core = _core(24)
    mbp = core.max_bid_price
    for t in (0, 7, 100, 250):
        lad = rule_ladder(core, t)
        assert len(lad) >= 4
        grid = lad + 0.01  # the charge bids the grid produces
        centre = core.outbid_centre(grid, t)
        upper = np.concatenate([lad[1:], [mbp]])
        np.testing.assert_allclose(centre, 0.5 * (lad + upper), rtol=0, atol=1e-9)
        np.testing.assert_allclose(core.outbid(centre, t), grid, rtol=0, atol=1e-9)
        # the range's ends: just inside, the same bid; just below it, another one
        np.testing.assert_allclose(core.outbid(upper[:-1] - 1e-3, t), grid[:-1], rtol=0, atol=1e-9)
        assert np.all(core.outbid(lad[1:] - 1e-3, t) < grid[1:] - 1e-6)
        # a bid the grid leaves alone (below every rule offer) is kept
        free = np.array([0.5 * lad[0]])
        np.testing.assert_allclose(core.outbid_centre(free, t), free)
        # offers: the lowest range starts at `low` (0 for a storage unit's offer)
        lowest = core.undercut_centre(lad[:1] - 0.01, t, low=0.0)
        np.testing.assert_allclose(lowest, 0.5 * (lad[0] - 0.01), rtol=0, atol=1e-9)
        np.testing.assert_allclose(core.undercut_centre(lad[:1] - 0.01, t), 0.5 * (lad[0] - 0.01 - mbp), atol=1e-9)


def _recorded(seed: int, hours: int):
    """An episode of `default` with random bids of every learner (storage included)."""
    core = _core(hours)
    acts = np.random.default_rng(seed).uniform(-0.2, 0.6, (hours, 1, core.n, core.max_act))
    core.recording = True
    core.reset(np.random.default_rng(0))
    for h in range(hours):
        core.step(acts[h])
    return core, acts, core.episode_record()


@pytest.mark.parametrize("seed", [0, 1])
def test_response_policy_beats_break_even_prices_in_closed_loop_on_the_grid(seed):
    """Bid in closed loop (at the state of charge reached, the others as recorded), the
    response policy's bids, moved to the middles of the grid's ranges as the teacher
    teaches them, earn clearly more than the break-even prices: the price-setting part
    that "best_move" adds and a price taker's thresholds lack."""
    H = 96
    core, acts, rec = _recorded(seed, H)
    k = rec.agents.index(STORAGE)
    col = int(core.ls[k - core.sl_storage.start])
    mbp = core.max_bid_price
    hours = np.asarray(rec.hours)
    policy = StorageResponsePolicy(rec, k, scenario=core.scenario)
    full = best_response(rec, k, scenario=core.scenario, storage_moves="full", storage_off_grid=False)

    def replay(prices_of):
        core.reset(np.random.default_rng(0))
        for h in range(H):
            a = acts[h].copy()
            a[0, k, :2] = np.clip(2.0 * prices_of(h, core.soc[0, [col]]) / mbp - 1.0, -1.0, 1.0)
            core.step(a)
        return float(core.episode_record().agent_profit[:, k].sum())

    def centred(h, soc):
        bid, offer = policy.bids([h], soc)[0]
        t = int(hours[h])
        return np.array([core.outbid_centre(core.outbid(np.array([bid]), t), t)[0],
                         core.undercut_centre(core.undercut(np.array([offer]), t), t, low=0.0)[0]])

    respond = replay(centred)
    break_even = replay(lambda h, soc: storage_break_even_prices(full, rec, states=soc, hours=[h])[0])
    assert respond > break_even + 0.03 * abs(full.best_profit)
    assert respond >= 0.97 * replay(lambda h, soc: policy.bids([h], soc)[0])  # the middles keep its bids


def _refreshed(storage_teacher: str, storage_prices: str = "auto"):
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["training_episodes=2", "episodes_collecting_initial_experience=1", "train_freq=48h", "gradient_steps=1",
         "batch_size=16", "validation_episodes_interval=10", "actor_hidden_sizes=[8]", "critic_hidden_sizes=[8]",
         "torch_threads=1", "best_policy_interval=null", f"storage_teacher={storage_teacher}",
         f"storage_prices={storage_prices}"])
    tr = Trainer(sc, cfg, run_dir=None, seed=2, progress=False, tensorboard=False, env_options={"max_cycles": 48})
    seen = []
    orig = tr.learner.refresh_teacher
    tr.learner.refresh_teacher = lambda obs, an, **kw: (seen.append(kw), orig(obs, an, **kw))[1]
    tr.train()
    assert seen, "the teacher was never refreshed"
    return tr, seen[-1]["record"], tr.learner.teacher_data[-1][1]


@pytest.mark.parametrize("storage_prices", ["auto", "behind"])
def test_best_move_targets_bid_the_response_policy_through_the_grid(storage_prices):
    tr, rec, tgt = _refreshed("auto", storage_prices)
    core, mbp = tr.eval_core, tr.config.max_bid_price
    assert core.storage_prices == ("undercut" if storage_prices == "auto" else "behind")
    tick = core.storage_offer_tick
    assert tick == (0.01 if storage_prices == "auto" else 0.005)
    k = tr.agents.index(STORAGE)
    hours = np.asarray(rec.hours)
    policy = StorageResponsePolicy(rec, STORAGE, scenario=tr.scenario)
    want = policy.bids(np.arange(rec.n_hours), policy.recorded_soc[:-1])
    got = (tgt[:, k, :2].astype(float) + 1.0) * 0.5 * mbp
    lo, hi = rec.clearing_price.min() - 0.02 * mbp, rec.clearing_price.max() + 0.02 * mbp
    inside = (want > lo) & (want < hi)
    assert inside.sum() > rec.n_hours  # most targets are not clipped
    for h in range(rec.n_hours):
        t = int(hours[h])
        env_got = np.array([core.outbid(got[h, :1], t)[0], core.undercut(got[h, 1:], t, tick)[0]])
        env_want = np.array([core.outbid(want[h, :1], t)[0], core.undercut(want[h, 1:], t, tick)[0]])
        np.testing.assert_allclose(env_got[inside[h]], env_want[inside[h]], atol=1e-3)
        # clipped targets stay at the clip bound on their side
        assert np.all(got[h, ~inside[h]] >= lo - 1e-3) and np.all(got[h, ~inside[h]] <= hi + 1e-3)
    # taught at the middles: a target moved by a tenth of its range still bids the same
    some = np.flatnonzero(inside[:, 1])[:10]
    for h in some:
        t = int(hours[h])
        lad = rule_ladder(core, t)
        bid = core.undercut(got[h, 1:], t, tick)[0]
        j = np.searchsorted(lad, bid + tick - 1e-6)
        if j < len(lad) and abs(lad[j] - tick - bid) < 1e-6:
            width = lad[j] - (lad[j - 1] if j else 0.0)
            for d in (-0.1 * width, 0.1 * width):
                assert abs(core.undercut(got[h, 1:] + d, t, tick)[0] - bid) < 1e-6


def test_break_even_targets_are_the_break_even_prices():
    tr, rec, tgt = _refreshed("break_even")
    k = tr.agents.index(STORAGE)
    full = best_response(rec, STORAGE, scenario=tr.scenario, storage_moves="full", storage_off_grid=False)
    want = 2.0 * storage_break_even_prices(full, rec) / tr.config.max_bid_price - 1.0
    np.testing.assert_allclose(tgt[:, k, :2], want, atol=1e-6)
    assert np.ptp(want) > 0
