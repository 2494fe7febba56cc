"""``plant_bids="undercut"``: a learning plant's offer prices are raised to 0.01 EUR/MWh
below the cheapest rule-bidding offer at or above them, hour by hour;
``storage_prices="undercut"``: a two-sided storage unit's offer likewise, its charge bid
to 0.01 above the dearest rule offer at or below it.

What would be wrong if the option broke: the prices placed in the market (checked
against a grid rebuilt here from the scenario's rule plants), prices above the grid or
where its next step lies above ``max_bid_price`` (kept), the market's outcome (the
undercut offer sells where the rule offer sets the price), the option's validation,
the config key's "auto" resolution, and the trainer's use of it (config -> env), with
``start_up_gamma`` for the critics of plants with start-up costs."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from agents.config import ConfigError, LearningConfig
from agents.trainer import Trainer

PLANT = "plant_ccgt-1"


def _core(mode: str, **kw) -> envs.MarketCore:
    core = envs.MarketCore(envs.load_scenario("default"), num_envs=1, plant_bids=mode, **kw)
    core.reset(np.random.default_rng(0))
    return core


def _rule_offers(sc, t: int) -> np.ndarray:
    """The rule-bidding supply offers of hour ``t``, rebuilt from the scenario: rule
    plants at marginal cost with capacity available, rule renewables at theirs."""
    pl, rn = sc.plants, sc.renewables
    p = [pl.marginal_cost[t, i] for i in range(len(pl.names))
         if not pl.learning[i] and pl.max_power[i] * pl.availability[t, i] > 0]
    p += [rn.marginal_cost[i] for i in range(len(rn.names))
          if not rn.learning[i] and rn.capacity[i] * rn.availability[t, i] > 0]
    return np.sort(np.asarray(p, dtype=float))


def _bids(core, prices: dict[str, tuple[float, float]]):
    acts = np.zeros((1, core.n, core.max_act))
    for name, (lo, hi) in prices.items():
        acts[0, core.agents.index(name), :2] = np.array([lo, hi]) / core.max_bid_price
    return acts


def test_prices_move_to_just_below_the_next_rule_offer():
    free, cut = _core("free"), _core("undercut")
    sc = cut.scenario
    mbp = cut.max_bid_price
    ladder = _rule_offers(sc, 0)
    assert len(ladder) >= 5 and ladder[-1] > mbp  # default has rule offers above the bid range (oil)
    k = cut.agents.index(PLANT)
    rng = np.random.default_rng(3)
    for p in np.concatenate([rng.uniform(-mbp, mbp, 200), ladder[ladder <= mbp], ladder[ladder <= mbp] - 0.01]):
        acts = _bids(cut, {PLANT: (p, p)})
        p = float(acts[0, k, 0] * mbp)  # the price the env reads from the action
        got = cut.build_bids(acts, None)[4][0, k]
        above = ladder[ladder >= p]
        want = above[0] - 0.01 if len(above) and above[0] - 0.01 <= mbp else p
        np.testing.assert_allclose(got, [want, want], rtol=0, atol=1e-9)
        np.testing.assert_allclose(free.build_bids(acts, None)[4][0, k], [p, p], rtol=0, atol=1e-9)  # kept


def test_each_part_moves_on_its_own_and_the_market_clears_the_undercut_offer():
    """The two prices move separately; a flexible offer a little above a rule plant's
    cost is placed just under it, sells, and earns that plant's price in an hour the
    plant sets the price."""
    core = _core("undercut")
    sc = core.scenario
    ladder = _rule_offers(sc, 0)
    k = core.agents.index(PLANT)
    mid = [(a + b) / 2 for a, b in zip(ladder[:-1], ladder[1:]) if b <= core.max_bid_price]
    lo, hi = mid[0], mid[-1]
    got = core.build_bids(_bids(core, {PLANT: (lo, hi)}), None)[4][0, k]
    assert got[0] == pytest.approx(ladder[ladder >= lo][0] - 0.01)
    assert got[1] == pytest.approx(ladder[ladder >= hi][0] - 0.01)
    # the whole episode: every learning plant's recorded price is a grid step or unchanged
    core = envs.MarketCore(sc, num_envs=1, plant_bids="undercut", max_cycles=48)
    core.recording = True
    core.reset(np.random.default_rng(0))
    rng = np.random.default_rng(5)
    while not core.done:
        t = core.hour
        acts = rng.uniform(-1, 1, (1, core.n, core.max_act))
        out = core.step(acts)
        steps = _rule_offers(sc, t) - 0.01
        for i in np.flatnonzero(np.asarray(core.agent_kind) == "plant"):
            raw = np.sort(acts[0, i, :2] * core.max_bid_price)
            for r, b in zip(raw, out.bid_price[0, i]):
                assert np.isclose(b, steps, atol=1e-9).any() or b == r
    rec = core.episode_record(0)
    assert rec.n_hours == 48


def test_an_offer_between_two_rule_offers_sells_just_under_the_upper_one():
    """Hour 0 of `default` with both learning CCGTs must-run: a rule plant sets the price.
    A flexible offer between the rule offer below that price and the price is placed
    0.01 under the price setter and sells in full at its price; with "free" the same
    offer sells too but is where the actor put it. An offer between the price setter and
    the next rule offer is placed 0.01 under that next one and does not sell."""
    sc = envs.load_scenario("default")
    out = {}
    for m in ("free", "undercut"):
        c = envs.MarketCore(sc, num_envs=1, plant_bids=m, max_cycles=1)
        k = c.agents.index(PLANT)
        mbp = c.max_bid_price
        must_run = {a: (-mbp, -mbp) for a in c.agents if a.startswith("plant_")}
        c.reset(np.random.default_rng(0))
        price = float(c.step(_bids(c, must_run)).price[0])
        ladder = _rule_offers(sc, 0)
        below, above = ladder[ladder < price - 1e-9][-1], ladder[ladder > price + 1e-9][0]
        assert np.isclose(ladder, price).any(), "a rule plant sets the price in hour 0 of default"
        for tag, offer in (("under", (below + price) / 2), ("over", (price + above) / 2)):
            c.reset(np.random.default_rng(0))
            o = c.step(_bids(c, {**must_run, PLANT: (-mbp, offer)}))
            out[m, tag] = {f: np.array(getattr(o, f)) for f in ("accepted", "price", "bid_price", "profit")}
    u = list(sc.plants.names).index("ccgt_1")  # plant_ccgt-1's unit
    inflex, avail = sc.plants.min_power[u], sc.plants.max_power[u] * sc.plants.availability[0, u]
    for m in ("free", "undercut"):
        assert out[m, "under"]["accepted"][0, k] == pytest.approx(avail)
        assert out[m, "under"]["price"][0] == pytest.approx(price)
        assert out[m, "over"]["accepted"][0, k] == pytest.approx(inflex)
    assert out["undercut", "under"]["bid_price"][0, k, 1] == pytest.approx(price - 0.01)
    assert out["free", "under"]["bid_price"][0, k, 1] == pytest.approx((below + price) / 2)
    assert out["undercut", "over"]["bid_price"][0, k, 1] == pytest.approx(above - 0.01)
    # the profit of the undercut offer is the hour's price on every MWh it sells
    np.testing.assert_allclose(out["undercut", "under"]["profit"][0, k], out["free", "under"]["profit"][0, k])


def test_option_and_key_are_validated():
    with pytest.raises(ValueError, match="plant_bids"):
        envs.MarketCore(envs.load_scenario("tiny"), plant_bids="grid")
    with pytest.raises(ValueError, match="plant_bids='grid'"):
        envs.parallel_env("tiny", plant_bids="grid")
    with pytest.raises(ConfigError, match="plant_bids"):
        LearningConfig().with_overrides(["plant_bids=grid"])
    with pytest.raises(ConfigError, match="start_up_gamma"):
        LearningConfig().with_overrides(["start_up_gamma=1.5"])


def test_auto_resolves_by_start_up_costs_and_the_trainer_uses_both_keys():
    cfg = LearningConfig()
    assert cfg.resolved_plant_bids(envs.load_scenario("default")) == "undercut"  # CCGTs with start-up costs
    assert cfg.resolved_plant_bids(envs.load_scenario("many")) == "free"  # none
    assert cfg.resolved_plant_bids(envs.load_scenario("tiny")) == "free"
    assert cfg.with_overrides(["plant_bids=free"]).resolved_plant_bids(envs.load_scenario("default")) == "free"
    assert cfg.resolved_start_up_gamma() == pytest.approx(0.99)  # max(gamma, 0.97)
    assert cfg.with_overrides(["gamma=0.9"]).resolved_start_up_gamma() == pytest.approx(0.97)
    sc = envs.load_scenario("default")
    base = LearningConfig.from_dict(sc.learning_config).with_overrides(["torch_threads=1"])
    tr = Trainer(sc, base, run_dir=None, seed=0, progress=False, tensorboard=False)
    assert tr.core.plant_bids == tr.eval_core.plant_bids == "undercut"
    kinds = np.asarray(tr.core.agent_kind)
    g = tr.learner.algo.agent_gamma.view(-1).numpy()
    np.testing.assert_allclose(g[kinds == "plant"], 0.97, rtol=1e-6)  # default's gamma is 0.9
    np.testing.assert_allclose(g[kinds == "storage"], 0.9, rtol=1e-6)
    tr = Trainer(sc, base.with_overrides(["plant_bids=free", "start_up_gamma=0.5"]), run_dir=None, seed=0,
                 progress=False, tensorboard=False)
    assert tr.core.plant_bids == tr.eval_core.plant_bids == "free"
    np.testing.assert_allclose(tr.learner.algo.agent_gamma.view(-1).numpy()[kinds == "plant"], 0.5)


def test_checkpoints_record_how_the_plants_bid_and_evaluate_so(tmp_path):
    """The manifest records the run's plant_bids; evaluate_policy rebuilds the env with it
    (the trained profits again), and reads a checkpoint without the record (written
    before the option existed) with prices as given."""
    import json

    from agents.trainer import evaluate_policy

    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["training_episodes=2", "episodes_collecting_initial_experience=1", "gradient_steps=2", "batch_size=16",
         "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=null",
         "validation_episodes_interval=10", "equilibrium_reference=false", "profile_search=0"])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False,
                 env_options={"max_cycles": 48})
    tr.train()
    ev = tr.evaluate(analysis=False)
    tr.close()
    policy = tmp_path / "run" / "policies" / "last"
    manifest = json.loads((policy / "manifest.json").read_text())
    assert manifest["trainer"]["plant_bids"] == "undercut"
    other = LearningConfig.from_dict(sc.learning_config).with_overrides(["plant_bids=free"])  # the record wins
    ev2, core = evaluate_policy(sc, other, policy, seed=0, env_options={"max_cycles": 48}, analysis=False)
    assert core.plant_bids == "undercut"
    np.testing.assert_allclose(ev2.agent_profit, ev.agent_profit, rtol=1e-6)  # folded weights: float rounding
    del manifest["trainer"]["plant_bids"]
    (policy / "manifest.json").write_text(json.dumps(manifest))
    ev3, core = evaluate_policy(sc, cfg, policy, seed=0, env_options={"max_cycles": 48}, analysis=False)
    assert core.plant_bids == "free"
    assert not np.allclose(ev3.agent_profit, ev.agent_profit)  # the same actors bid other prices
    manifest["trainer"]["plant_bids"] = "grid"
    (policy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="plant_bids"):
        evaluate_policy(sc, cfg, policy, seed=0, env_options={"max_cycles": 48}, analysis=False)


STORAGE = "storage_pumped-storage-1"


def test_storage_prices_move_to_the_rule_offers_around_them():
    sc = envs.load_scenario("default")
    cut = envs.MarketCore(sc, num_envs=1, storage_bids="two_sided", storage_prices="undercut")
    free = envs.MarketCore(sc, num_envs=1, storage_bids="two_sided")
    signed = envs.MarketCore(sc, num_envs=1, storage_bids="signed", storage_prices="undercut")
    for c in (cut, free, signed):
        c.reset(np.random.default_rng(0))
    ladder = _rule_offers(sc, 0)
    mbp = cut.max_bid_price
    k = cut.agents.index(STORAGE)
    rng = np.random.default_rng(7)
    moved = 0
    for _ in range(300):
        acts = rng.uniform(-1, 1, (1, cut.n, cut.max_act))
        got = cut.build_bids(acts, None)[4][0, k]
        ch, dis = free.build_bids(acts, None)[4][0, k]  # as the actions say
        above, below = ladder[ladder >= dis], ladder[ladder <= ch]
        want_dis = above[0] - 0.01 if len(above) and above[0] - 0.01 <= mbp else dis
        want_ch = below[-1] + 0.01 if len(below) and below[-1] + 0.01 >= 0 else ch
        np.testing.assert_allclose(got, [min(want_ch, want_dis), want_dis], rtol=0, atol=1e-9)
        moved += not np.allclose(got, [ch, dis])
        a = signed.build_bids(acts, None)[4][0, k]
        np.testing.assert_array_equal(a, [acts[0, k, 0] * mbp] * 2)  # signed bids are not moved
    assert moved > 250


def test_storage_prices_key_reaches_the_env_and_the_checkpoint(tmp_path):
    import json

    from agents.trainer import evaluate_policy

    assert LearningConfig().resolved_storage_prices() == "undercut"
    assert LearningConfig(storage_prices="behind").resolved_storage_prices() == "behind"
    with pytest.raises(ConfigError, match="storage_prices"):
        LearningConfig().with_overrides(["storage_prices=grid"])
    with pytest.raises(ValueError, match="storage_prices"):
        envs.parallel_env("default", storage_prices="grid")
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["training_episodes=2", "episodes_collecting_initial_experience=1", "gradient_steps=2", "batch_size=16",
         "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=null",
         "validation_episodes_interval=10", "equilibrium_reference=false", "plant_bids=free",
         "profile_search=0"])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False,
                 env_options={"max_cycles": 48})
    assert tr.core.storage_prices == tr.eval_core.storage_prices == "undercut"
    tr.train()
    ev = tr.evaluate(analysis=False)
    tr.close()
    policy = tmp_path / "run" / "policies" / "last"
    manifest = json.loads((policy / "manifest.json").read_text())
    assert manifest["trainer"]["storage_prices"] == "undercut" and manifest["trainer"]["plant_bids"] == "free"
    ev2, core = evaluate_policy(sc, cfg.with_overrides(["storage_prices=free"]), policy, seed=0,
                                env_options={"max_cycles": 48}, analysis=False)
    assert core.storage_prices == "undercut"
    np.testing.assert_allclose(ev2.agent_profit, ev.agent_profit, rtol=1e-6)
    del manifest["trainer"]["storage_prices"]  # a checkpoint from before the option
    (policy / "manifest.json").write_text(json.dumps(manifest))
    assert evaluate_policy(sc, cfg, policy, seed=0, env_options={"max_cycles": 48}, analysis=False)[1].storage_prices == "free"
    tr = Trainer(sc, cfg.with_overrides(["storage_prices=free"]), run_dir=None, seed=0, progress=False,
                 tensorboard=False)
    assert tr.core.storage_prices == "free"


def test_storage_behind_offers_sit_half_a_tick_under_the_rule_offer():
    sc = envs.load_scenario("default")
    opts = dict(num_envs=1, storage_bids="two_sided", plant_bids="undercut")
    cut = envs.MarketCore(sc, storage_prices="undercut", **opts)
    behind = envs.MarketCore(sc, storage_prices="behind", **opts)
    assert behind.storage_offer_tick == 0.005 and cut.storage_offer_tick == 0.01
    for c in (cut, behind):
        c.reset(np.random.default_rng(0))
    k = cut.agents.index(STORAGE)
    rng = np.random.default_rng(3)
    moved = 0
    for _ in range(300):
        acts = rng.uniform(-1, 1, (1, cut.n, cut.max_act))
        a, b = cut.build_bids(acts, None)[4][0], behind.build_bids(acts, None)[4][0]
        np.testing.assert_array_equal(b[:k], a[:k])  # the plants' grid is unchanged
        # the offer: 0.005 instead of 0.01 under the same rule offer where the grid moved it
        on_grid = np.isclose(a[k, 1] + 0.01, _rule_offers(sc, 0)).any()
        assert b[k, 1] == pytest.approx(a[k, 1] + (0.005 if on_grid else 0.0), abs=1e-9)
        assert b[k, 0] == pytest.approx(min(a[k, 0], b[k, 1]), abs=1e-9)  # the charge bid as before
        moved += on_grid
    assert moved > 200


def _same_rule_offer_episode(storage_prices):
    """ccgt-1 and the storage offer under the same rule offer (the one at or above the
    hour's price forecast) wherever the forecast is 50 EUR/MWh or more; the storage
    charges in the other hours, ccgt-2 stays out of the money."""
    sc = envs.load_scenario("default")
    core = envs.MarketCore(sc, num_envs=1, storage_bids="two_sided", plant_bids="undercut",
                           storage_prices=storage_prices)
    core.reset(np.random.default_rng(0))
    core.recording = True
    mbp = core.max_bid_price
    k = core.agents.index(STORAGE)
    offers = []
    while not core.done:
        f = core.price_forecast[core.hour]
        p = f - 0.5
        acts = np.ones((1, core.n, core.max_act))
        acts[0, 0, :2] = p / mbp
        acts[0, k, :2] = [1.0, 1.0] if f < 50 else [-1.0, 2.0 * p / mbp - 1.0]
        offers.append(f >= 50)
        core.step_observe(acts)
    rec = core.episode_record(0)
    plant, store = rec.agent_supply_columns(0), rec.agent_supply_columns(k)
    acc, vol = rec.supply_accepted, rec.supply_volume
    part_plant = ((acc[:, plant] < vol[:, plant] - 1e-6) & (acc[:, plant] > 1e-6)).any(axis=1)
    part_store = ((acc[:, store] < vol[:, store] - 1e-6) & (acc[:, store] > 1e-6)).any(axis=1)
    offers = np.asarray(offers)
    gap = rec.supply_price[offers][:, store[0]] - rec.supply_price[offers][:, plant[1]]
    np.testing.assert_allclose(gap, 0.005 if storage_prices == "behind" else 0.0, atol=1e-9)
    return part_plant, part_store


def test_a_plant_on_its_grid_is_dispatched_before_a_storage_unit_behind_it():
    part_plant, part_store = _same_rule_offer_episode("behind")
    assert part_store.sum() >= 10  # hours where the storage is the marginal unit
    assert not (part_plant & part_store).any()  # the plant is then dispatched in full
    # on the same grid ("undercut") the two tie and split the marginal volume
    part_plant, part_store = _same_rule_offer_episode("undercut")
    assert (part_plant & part_store).sum() >= 10
