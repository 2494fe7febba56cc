"""``grid_learner_costs``: the offer grid (``plant_bids`` / ``storage_prices``
"undercut") also holds every learning plant's marginal cost, so an offer can go a tick
under a rival learner's cost.

What would be wrong if it broke: an offer in the range under a learner's cost moved
anywhere but a tick under it (or moved there without the option), the storage's offer
and charge bid on another ladder than the plants', ``tie_below_cost`` tying with a
learner's cost (it is not a rule offer), a best response within the grid that bids a
price the env moves elsewhere or does not earn its profit through the env, and the key
not reaching the env, not recorded in the manifest or not read back by ``evaluate``."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from _grid import replay, rule_ladder
from _runs import H, trained_with
from agents.checkpoint import CheckpointError, validate_manifest
from agents.config import ConfigError, LearningConfig
from agents.trainer import Trainer, evaluate_policy
from envs.analysis import best_response

PLANT = "plant_ccgt-1"
OTHER = "plant_ccgt-2"
STORAGE = "storage_pumped-storage-1"


def _core(costs: bool, **kw) -> envs.MarketCore:
    kw.setdefault("plant_bids", "undercut")
    kw.setdefault("storage_bids", "two_sided")
    kw.setdefault("storage_prices", "undercut")
    return envs.MarketCore(envs.load_scenario("default"), num_envs=1, grid_learner_costs=costs, **kw)


def _bids(core, plant_price: float, storage_prices=(1.0, 1.0)) -> np.ndarray:
    """The env's bid prices (n, 2) with both CCGTs offering at ``plant_price`` and the
    storage's two raw prices ``storage_prices`` (EUR/MWh, charge and offer)."""
    mbp = core.max_bid_price
    acts = np.zeros((1, core.n, core.max_act))
    for name in (PLANT, OTHER):
        acts[0, core.agents.index(name), :2] = plant_price / mbp
    acts[0, core.agents.index(STORAGE), :2] = 2.0 * np.asarray(storage_prices) / mbp - 1.0
    return core.build_bids(acts, None)[4][0]


def test_the_grid_holds_the_learning_plants_costs():
    with_costs, plain, tie = _core(True), _core(False), _core(True, tie_below_cost=True)
    for c in (with_costs, plain, tie):
        c.reset(np.random.default_rng(0))
    t = with_costs.hour
    mc = with_costs.scenario.plants.marginal_cost[t, with_costs.lp]  # 57.5 and 61.41 in `default`
    lad = rule_ladder(with_costs, t)
    nxt_rule = lad[lad > mc.max()].min()  # 66.46: the next rule offer above both costs
    prev_rule = lad[lad < mc.min()].max()  # 51.875
    assert prev_rule < mc[0] < mc[1] < nxt_rule
    ladder = np.unique(np.concatenate([lad, mc]))
    got = with_costs.grid_ladder[t]
    got = got[np.isfinite(got) & (got <= with_costs.max_bid_price)]  # rule_ladder's range
    np.testing.assert_allclose(np.unique(got), ladder, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(plain.grid_ladder, plain.static_sorted_price)  # without it: the rule offers
    i, j, s = (with_costs.agents.index(a) for a in (PLANT, OTHER, STORAGE))
    for p, want in ((0.5 * (prev_rule + mc[0]), mc[0] - 0.01), (0.5 * (mc[0] + mc[1]), mc[1] - 0.01),
                    (0.5 * (mc[1] + nxt_rule), nxt_rule - 0.01)):
        b = _bids(with_costs, p, (1.0, p))
        np.testing.assert_allclose(b[[i, j]], want, rtol=0, atol=1e-9)  # a tick under the next cost or offer
        np.testing.assert_allclose(b[s, 1], want, rtol=0, atol=1e-9)  # the storage's offer on the same ladder
        np.testing.assert_allclose(_bids(plain, p, (1.0, p))[[i, j]], nxt_rule - 0.01, rtol=0, atol=1e-9)
        # tie_below_cost ties only with rule offers: a rival's cost below the plant's own is undercut
        np.testing.assert_allclose(_bids(tie, p)[[i, j]], want, rtol=0, atol=1e-9)
    # the storage's charge bid: a tick above the dearest point at or below it, a learner's cost included
    c = 0.5 * (mc[1] + nxt_rule)
    np.testing.assert_allclose(_bids(with_costs, 50.0, (c, 99.0))[s, 0], mc[1] + 0.01, rtol=0, atol=1e-9)
    np.testing.assert_allclose(_bids(plain, 50.0, (c, 99.0))[s, 0], lad[lad <= c].max() + 0.01, rtol=0, atol=1e-9)


def test_grid_best_response_replays_through_the_env_and_uses_the_costs():
    core = _core(True, max_cycles=H)
    plain = _core(False, max_cycles=H)
    rng = np.random.default_rng(7)
    acts = rng.uniform(-1.0, 1.0, (H, 1, core.n, core.max_act))
    acts[:, :, core.agents.index(STORAGE)] = 1.0  # offering at the top: waiting
    rec = replay(core, acts)
    hours = np.asarray(rec.hours)
    k = rec.agents.index(OTHER)
    to_grid, centre = core.plant_grid(k)
    br = best_response(rec, k, plant_prices=to_grid)
    rival = core.scenario.plants.marginal_cost[hours, core.lp[0]]  # plant_ccgt-1's cost
    under_rival = 0
    mine = acts.copy()
    for h in range(H):
        p = br.best_price[h]
        np.testing.assert_allclose(to_grid(p, int(hours[h])), p, rtol=0, atol=1e-9)
        under_rival += int(np.any(np.abs(p - (rival[h] - 0.01)) < 1e-9))
        mine[h, 0, k, :2] = centre(p, int(hours[h])) / core.max_bid_price
    assert under_rival >= 1  # the best response uses a point only this grid has
    again = replay(core, mine)
    np.testing.assert_allclose(again.agent_profit[:, k], br.best_profit_per_hour, rtol=0, atol=1e-6)
    # more points than the rule offers alone: at least as good against the same bids
    assert br.best_profit >= best_response(rec, k, plant_prices=plain.plant_grid(k)[0]).best_profit - 1e-6
    assert br.best_profit <= best_response(rec, k).best_profit + 1e-6


def test_the_key_is_validated_and_carried_by_training_the_manifest_and_evaluate(tmp_path):
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="grid_learner_costs"):
            envs.MarketCore(envs.load_scenario("tiny"), grid_learner_costs=bad)
    with pytest.raises(TypeError, match="grid_learner_costs"):
        envs.parallel_env("tiny", grid_learner_costs="yes")
    with pytest.raises(ConfigError, match="grid_learner_costs"):
        LearningConfig().with_overrides(["grid_learner_costs=maybe"])
    assert LearningConfig().grid_learner_costs is False
    sc, cfg, best, manifest = trained_with(tmp_path, "grid_learner_costs")
    manifest["trainer"]["grid_learner_costs"] = 1
    with pytest.raises(CheckpointError, match="grid_learner_costs"):
        validate_manifest(manifest, best)
    del manifest["trainer"]["grid_learner_costs"]  # a checkpoint from before the option: rule offers only
    (best / "manifest.json").write_text(__import__("json").dumps(manifest))
    _, core = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert not core.grid_learner_costs
    tr = Trainer(sc, cfg.with_overrides(["grid_learner_costs=false"]), run_dir=None, seed=0, progress=False,
                 tensorboard=False, env_options={"max_cycles": H})
    assert not tr.core.grid_learner_costs and tr.core.grid_ladder is tr.core.static_sorted_price
    tr.close()


@pytest.mark.parametrize("costs", [False, True])
def test_undercut_ties_only_with_rule_offers_at_every_point_of_the_ladder(costs):
    """``undercut`` with ``tie_below`` reads whether a ladder point is a rule offer from a
    table built once per hour; it moves every price as the definition does (a tie where
    the point above it is a rule offer below the cost, else a tick under the point)."""
    core = _core(costs)
    rng = np.random.default_rng(11)
    T = core.grid_ladder.shape[0]
    for t in rng.integers(0, T, 40):
        t = int(t)
        ladder, rules = core.grid_ladder[t], core.static_sorted_price[t]
        price = np.concatenate([ladder[np.isfinite(ladder)], rng.uniform(-core.max_bid_price, core.max_bid_price, 30)])
        cost = float(rng.uniform(0.0, 90.0))
        k = np.searchsorted(ladder, price, side="left")
        point = ladder[np.minimum(k, ladder.size - 1)]
        moved = (k < ladder.size) & (point - 0.01 <= core.max_bid_price)
        tie = (point < cost) & np.array([p in set(rules.tolist()) for p in point])
        want = np.where(moved, np.where(tie, point, point - 0.01), price)
        np.testing.assert_array_equal(core.undercut(price, t, tie_below=cost), want)
    if costs:  # a learner's cost is a point of the ladder but no rule offer
        assert not core.grid_ladder_rule.all() and core.grid_ladder_rule.any()
