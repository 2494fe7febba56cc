"""``storage_bids="two_sided"``: a learning storage unit submits a charge bid and a
discharge offer in the same hour, each for the whole volume the hour allows.

What would be wrong if the option broke: the action sizes, the bids placed in the
market (prices, volumes, which side is accepted), the state-of-charge accounting, the
equivalence with the one-price action where both express the same bid, the option's
validation, and the trainer's use of it (config key -> env -> actors)."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from agents.config import LearningConfig
from agents.trainer import Trainer

STORAGE = "storage_pumped-storage-1"


def _core(mode: str, **kw) -> envs.MarketCore:
    core = envs.MarketCore(envs.load_scenario("default"), num_envs=1, storage_bids=mode, **kw)
    core.reset(np.random.default_rng(0))
    return core


def test_action_sizes_and_spaces():
    signed, two = _core("signed"), _core("two_sided")
    k = signed.agents.index(STORAGE)
    assert signed.act_dims[k] == 1 and two.act_dims[k] == 2 and two.max_act == 2
    assert [d for i, d in enumerate(two.act_dims) if i != k] == [d for i, d in enumerate(signed.act_dims) if i != k]
    env = envs.parallel_env("default", storage_bids="two_sided")
    assert env.action_space(STORAGE).shape == (2,)
    assert env.action_space("plant_ccgt-1").shape == (2,)
    uni = envs.parallel_env("default", storage_bids="two_sided", uniform_spaces=True)
    assert {uni.action_space(a).shape for a in uni.possible_agents} == {(2,)}
    vec = envs.VectorMarketEnv("default", num_envs=2, storage_bids="two_sided")
    assert vec.max_act == 2 and vec.action_mask[k].all()  # the storage uses both padded entries


def test_bids_placed_in_the_market():
    """Charge bid at the lower price, discharge offer at the higher one, both for what
    the hour allows; the order of the two price entries does not matter."""
    core = _core("two_sided")
    k = core.agents.index(STORAGE)
    s = int(core.ls[0])
    acts = np.zeros((1, core.n, core.max_act))
    acts[0, k] = [0.6, -0.2]  # prices 40 and 80 EUR/MWh
    sp, sv, dpr, dvo, bid_price = core.build_bids(acts, None)
    st = core.scenario.storages
    soc = core.soc[0, s]
    can_dis = min(st.max_power_discharge[s], (soc - st.min_soc[s] * st.capacity[s]) * st.efficiency_discharge[s])
    can_ch = min(st.max_power_charge[s], (st.max_soc[s] * st.capacity[s] - soc) / st.efficiency_charge[s])
    col = core.col_dis.start + s
    assert sp[0, col] == pytest.approx(80.0) and dpr[0, s] == pytest.approx(40.0)
    assert sv[0, col] == pytest.approx(max(can_dis, 0.0))
    assert dvo[0, s] == pytest.approx(max(can_ch, 0.0))
    assert can_ch > 0  # the default storage starts with room to charge
    np.testing.assert_allclose(bid_price[0, k], [40.0, 80.0])
    acts[0, k] = [-0.2, 0.6]
    sp2, sv2, dpr2, dvo2, _ = core.build_bids(acts, None)
    np.testing.assert_array_equal(sp2, sp), np.testing.assert_array_equal(dpr2, dpr)


def test_wait_between_the_prices_and_soc_accounting_holds():
    """A charge bid at 0 and an offer at max_bid_price place the same market as a storage
    left out of the step while prices stay strictly between (checked on the run); random
    two-sided actions keep the state of charge within its limits and move it by exactly
    the accepted energy (charge x efficiency, discharge / efficiency)."""
    T = 72
    a, b = _core("two_sided", max_cycles=T), _core("two_sided", max_cycles=T)
    k = a.agents.index(STORAGE)
    st = a.scenario.storages
    rng = np.random.default_rng(1)
    active = np.ones(a.n, dtype=bool)
    active[k] = False
    lo, hi = st.min_soc[0] * st.capacity[0], st.max_soc[0] * st.capacity[0]
    for _ in range(T):
        acts = rng.uniform(-1, 1, (1, a.n, a.max_act))
        acts[0, k] = [1.0, -1.0]  # charge at <= 0, discharge at >= max_bid_price
        oa, ob = a.step(acts, None), b.step(acts, active)
        assert 0.0 < ob.price[0] < a.max_bid_price
        np.testing.assert_array_equal(oa.price, ob.price)
        np.testing.assert_array_equal(oa.profit, ob.profit)
    assert float(a.soc[0, 0]) == pytest.approx(st.initial_soc[0] * st.capacity[0])
    c = _core("two_sided", max_cycles=T)
    soc = float(c.soc[0, 0])
    moved, both = 0.0, 0
    for _ in range(T):
        out = c.step(rng.uniform(-1, 1, (1, c.n, c.max_act)), None)
        q = float(out.accepted[0, k])
        acc = out.clearing
        both += bool(acc.supply_accepted[0, c.col_dis.start] > 0 and acc.demand_accepted[0, 0] > 0)
        new = float(c.soc[0, 0])
        assert new == pytest.approx(soc + max(-q, 0) * st.efficiency_charge[0] - max(q, 0) / st.efficiency_discharge[0],
                                    abs=1e-6)
        assert lo - 1e-9 <= new <= hi + 1e-9
        moved += abs(new - soc)
        soc = new
    assert moved > 100.0 and both == 0  # it moves, and never charges and discharges in one hour


def test_one_sided_two_sided_bids_equal_the_signed_action():
    """A two-sided action whose other side sits at the end of the range (charge: offer at
    max_bid_price; discharge: charge bid at 0) is the signed action's bid,
    as long as no price reaches 0 or max_bid_price (checked on the run)."""
    T = 96
    s, d = _core("signed", max_cycles=T), _core("two_sided", max_cycles=T)
    k = s.agents.index(STORAGE)
    rng = np.random.default_rng(2)
    for _ in range(T):
        a1 = rng.uniform(-1, 1, (1, s.n, s.max_act))
        x = float(rng.uniform(0.05, 0.95)) * (1 if rng.random() < 0.5 else -1)
        a1[0, k, 0] = x
        a2 = np.zeros((1, d.n, d.max_act))
        a2[:, :, : s.max_act] = a1
        p = 2 * abs(x) - 1  # the same price in the two-sided scale
        a2[0, k] = [p, 1.0] if x < 0 else [-1.0, p]
        o1, o2 = s.step(a1, None), d.step(a2, None)
        assert 0.0 < o1.price[0] < s.max_bid_price
        np.testing.assert_allclose(o2.price, o1.price)
        np.testing.assert_allclose(o2.profit, o1.profit, atol=1e-9)
        np.testing.assert_allclose(d.soc, s.soc, atol=1e-9)


def test_option_is_validated():
    with pytest.raises(ValueError, match="storage_bids"):
        envs.MarketCore(envs.load_scenario("default"), storage_bids="both")
    with pytest.raises(ValueError, match="storage_bids"):
        envs.parallel_env("default", storage_bids="sideways")
    with pytest.raises(ValueError, match="storage_bids"):
        LearningConfig.from_dict({"storage_bids": "sideways"})


def test_trainer_uses_the_config_key():
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["storage_bids=two_sided", "training_episodes=2", "episodes_collecting_initial_experience=1",
         "train_freq=24h", "gradient_steps=1", "batch_size=8", "actor_hidden_sizes=[8]", "critic_hidden_sizes=[8]",
         "torch_threads=1", "best_policy_interval=null", "validation_episodes_interval=10"])
    tr = Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 48})
    k = tr.core.agents.index(STORAGE)
    assert tr.core.storage_bids == tr.eval_core.storage_bids == "two_sided"
    assert tr.learner.act_dims[k] == 2
    tr.core.reset(np.random.default_rng(0))
    obs = tr.core.observe().copy()
    before = tr.learner.act(obs, explore=False)
    assert before.shape == (1, tr.core.n, 2) and np.all(before[0, k] != 0)  # both entries used
    tr.train()
    assert len(tr.history) >= 2 and np.isfinite(tr.history[-1]["train/profit"])
    # the storage's actor was trained on its two entries: its actions changed in both
    after = tr.learner.act(obs, explore=False)
    assert np.all(after[0, k] != before[0, k])


def test_break_even_prices_replay_the_full_move_best_response():
    """``storage_break_even_prices``: bidding, in each hour, the full-move best response's
    break-even prices at the env's current state of charge (a closed-loop "water value"
    policy) against the others' recorded bids reproduces that best response's profit
    (within a few percent: the env's states lie between the grid's levels), in 72 hours
    of ``default`` with random bids of the others. Bidding the prices of the record's own
    states open-loop does not (the states drift apart), which is why the argument
    exists. ``recorded_soc`` is the env's state of charge along the record's bids."""
    from envs.analysis import best_response, storage_break_even_prices

    T = 72
    core = _core("two_sided", max_cycles=T)
    core.recording = True
    core.reset(np.random.default_rng(0))
    rng = np.random.default_rng(3)
    actions = [rng.uniform(-1, 1, (1, core.n, core.max_act)) for _ in range(T)]
    soc_rec = []
    for x in actions:
        soc_rec.append(float(core.soc[0, 0]))
        core.step(x)
    rec = core.episode_record()
    k = rec.agents.index(STORAGE)
    # the grid's whole-volume moves: break-even prices are that programme's best response
    full = best_response(rec, k, scenario=core.scenario, storage_moves="full", storage_off_grid=False)
    np.testing.assert_allclose(full.recorded_soc[:-1], soc_rec, rtol=1e-9, atol=1e-6)
    assert np.ptp(soc_rec) > 0 and full.best_profit > 0
    for states in ("best", "recorded"):
        prices = storage_break_even_prices(full, rec, states=states)
        assert prices.shape == (T, 2) and np.all((prices >= 0) & (prices <= core.max_bid_price))
    # selected hours: the same rows
    some = [0, 5, T - 1]
    np.testing.assert_array_equal(storage_break_even_prices(full, rec, states=np.asarray(soc_rec)[some], hours=some),
                                  storage_break_even_prices(full, rec, states=np.asarray(soc_rec))[some])

    def replay(bids):
        core.reset(np.random.default_rng(0))
        soc, profit = np.zeros(T), 0.0
        for h, x in enumerate(actions):
            soc[h] = core.soc[0, 0]
            x = x.copy()
            x[0, k] = 2 * bids(h, soc)[h] / core.max_bid_price - 1
            profit += float(core.step(x).profit[0, k])
        return profit / full.best_profit

    closed = replay(lambda h, soc: storage_break_even_prices(full, rec, states=soc))
    assert 0.97 <= closed <= 1.1
    # StorageResponsePolicy (off the grid, the env's own action, price-setting included)
    # earns in the env what it promises, and more than the break-even prices
    from envs.analysis import StorageResponsePolicy

    policy = StorageResponsePolicy(rec, k, scenario=core.scenario)
    promised = policy.best_profit
    assert promised >= full.best_profit - 1e-6
    got = replay(lambda h, soc: np.vstack([np.zeros((h, 2)), policy.bids([h], soc[h:h + 1])])) * full.best_profit
    assert 0.97 * promised <= got <= 1.03 * promised
    assert got > closed * full.best_profit
    assert replay(lambda h, soc: storage_break_even_prices(full, rec, states="recorded")) < 0.5
    with pytest.raises(ValueError, match="exact storage"):
        storage_break_even_prices(best_response(rec, 0), rec)
    with pytest.raises(ValueError, match="states"):
        storage_break_even_prices(full, rec, states=np.zeros(3))


def test_policies_of_the_other_storage_encoding_are_refused_with_the_setting_to_use(tmp_path):
    """A checkpoint trained with signed storage bids (1 action entry) cannot be loaded
    into two-sided actors (2 entries): one error that names the setting to use."""
    from agents.checkpoint import CheckpointError

    sc = envs.load_scenario("default")
    small = ["training_episodes=1", "episodes_collecting_initial_experience=1", "actor_hidden_sizes=[8]",
             "critic_hidden_sizes=[8]", "torch_threads=1", "best_policy_interval=null"]

    def trainer(mode):
        cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(small + [f"storage_bids={mode}"])
        return Trainer(sc, cfg, run_dir=None, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": 24})

    trainer("signed").learner.save(tmp_path / "signed")
    with pytest.raises(CheckpointError, match="storage_bids: signed"):
        trainer("two_sided").learner.load(tmp_path / "signed")
    trainer("signed").learner.load(tmp_path / "signed")  # the same encoding loads
