"""Tests of the PettingZoo environment (envs/parallel.py), the vector env (envs/vector.py)
and the recorded episodes (envs/record.py).

PettingZoo's own API and seed tests first, then the rules RL libraries rely on (spaces,
dtypes, reproducibility, episode ends, action validation), then the market semantics
(rewards, storage energy accounting, start-up costs) and the agreement of the
ParallelEnv, the vector env and the episode records.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

import envs
from envs.data import Demands, MarketConfig, Plants, Renewables, Scenario, Storages
from envs.market import clear_market
from envs.parallel import INFO_KEYS

from _examples import ASSUME_DIR  # noqa: E402 - the one helper for the shared ASSUME examples
EXAMPLE_02A = ASSUME_DIR / "example_02a"


def assume_example(path: Path) -> Path:
    if not (path / "config.yaml").is_file():
        pytest.skip(f"ASSUME reference scenario not available at {path}")
    return path


def example_02a() -> Path:
    return assume_example(EXAMPLE_02A)


def make(**kw) -> envs.MarketParallelEnv:
    return envs.parallel_env("default", **kw)


def random_actions(env, rng: np.random.Generator, agents=None) -> dict:
    agents = env.agents if agents is None else agents
    return {a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in agents}


def run_episode(env, seed: int, action_seed: int) -> list:
    """(obs, rewards, terms, truncs, infos) of every step of one episode."""
    rng = np.random.default_rng(action_seed)
    out = [env.reset(seed=seed)]
    while env.agents:
        out.append(env.step(random_actions(env, rng)))
    return out


def assert_same_steps(a: list, b: list) -> None:
    assert len(a) == len(b)
    for sa, sb in zip(a, b):
        assert len(sa) == len(sb)
        for da, db in zip(sa, sb):
            assert da.keys() == db.keys()
            for k in da:
                if isinstance(da[k], np.ndarray):
                    np.testing.assert_array_equal(da[k], db[k])
                else:
                    assert da[k] == db[k]


def tiny_scenario(n_hours: int = 4) -> Scenario:
    """Two learning plants (100 MW each, mc 20 and 25) and one rule plant (200 MW, mc 50);
    inelastic demand 150 MW; no storage or renewables."""
    T = n_hours
    mc = np.tile([20.0, 25.0, 50.0], (T, 1))
    plants = Plants(
        names=("a", "b", "c"), technology=("ccgt",) * 3, fuel_type=("natural gas",) * 3, operator=("x",) * 3,
        bidding=("powerplant_energy_learning", "powerplant_energy_learning", "powerplant_energy_naive"),
        max_power=np.array([100.0, 100.0, 200.0]), min_power=np.array([0.0, 0.0, 0.0]),
        efficiency=np.ones(3), emission_factor=np.zeros(3), additional_cost=np.zeros(3),
        start_up_cost=np.array([1000.0, 500.0, 0.0]), marginal_cost=mc, availability=np.ones((T, 3)),
        learning=np.array([True, True, False]),
    )
    empty = np.zeros(0)
    ren = Renewables(names=(), technology=(), operator=(), bidding=(), capacity=empty, availability=np.zeros((T, 0)),
                     marginal_cost=empty, learning=np.zeros(0, bool))
    sto = Storages(names=(), technology=(), operator=(), bidding=(), max_power_charge=empty, max_power_discharge=empty,
                   efficiency_charge=empty, efficiency_discharge=empty, min_soc=empty, max_soc=empty, capacity=empty,
                   initial_soc=empty, additional_cost_charge=empty, additional_cost_discharge=empty,
                   learning=np.zeros(0, bool))
    dem = Demands(names=("demand",), technology=("inflex",), volume=np.full((T, 1), 150.0), price=np.array([3000.0]))
    times = np.datetime64("2023-01-02T00:00", "ns") + np.arange(T) * np.timedelta64(1, "h")
    return Scenario(name="test_tiny", study_case="base", source="tests", times=times, time_step_hours=1.0,
                    plants=plants, renewables=ren, storages=sto, demands=dem, market=MarketConfig(),
                    learning_config={"max_bid_price": 100.0})


# --------------------------------------------------------------------------- PettingZoo's own tests


def test_pettingzoo_parallel_api_test():
    parallel_api_test(make(max_cycles=48), num_cycles=100)


def test_pettingzoo_parallel_seed_test():
    parallel_seed_test(lambda: make(max_cycles=48, start="random"), num_cycles=100)


def test_pettingzoo_aec_api_test():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo recommends <descriptor>_<number> names
        api_test(envs.env("default", max_cycles=48), num_cycles=100)


@pytest.mark.parametrize("name", ["example_02a", "example_02b", "example_02e"])
def test_pettingzoo_api_test_on_assume_examples(name):
    path = example_02a() if name == "example_02a" else assume_example(ASSUME_DIR / name)
    parallel_api_test(envs.parallel_env(path, max_cycles=48), num_cycles=100)


# --------------------------------------------------------------------------- construction


def test_factory_returns_independent_envs():
    a, b, c = make(max_cycles=24), make(max_cycles=24), make(max_cycles=24)
    assert a is not b and a.core is not b.core
    # stepping a does not touch b: b follows the same trajectory as an untouched twin c
    run_episode(a, seed=1, action_seed=11)
    assert_same_steps(run_episode(b, seed=2, action_seed=22), run_episode(c, seed=2, action_seed=22))
    # interleaved stepping gives the same as stepping alone
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(1)
    a.reset(seed=3), b.reset(seed=4)
    pa, pb = [], []
    while a.agents:
        pa.append(a.step(random_actions(a, rng_a))[1])
        pb.append(b.step(random_actions(b, rng_b))[1])
    alone = run_episode(c, seed=3, action_seed=0)
    assert pa == [s[1] for s in alone[1:]]


def test_render_mode_and_max_cycles_accepted():
    env = make(render_mode="rgb_array", max_cycles=5)
    assert env.render_mode == "rgb_array"
    env.reset(seed=0)
    steps = 0
    while env.agents:
        env.step(random_actions(env, np.random.default_rng(0)))
        steps += 1
    assert steps == 5
    with pytest.raises(ValueError, match="render_mode"):
        make(render_mode="video")
    with pytest.raises(ValueError, match="max_cycles"):
        make(max_cycles=10**6)


def test_metadata():
    env = make()
    assert env.metadata["name"] == "marketzoo_v0"
    assert set(env.metadata["render_modes"]) == {"human", "rgb_array"}
    assert env.metadata["is_parallelizable"] is True


def test_close_twice_is_safe():
    env = make(max_cycles=4)
    env.reset(seed=0)
    env.close()
    env.close()
    aec = envs.env("default", max_cycles=4)
    aec.reset(seed=0)
    aec.close()
    aec.close()


def test_cloudpickle_round_trip_steps_identically():
    env = make(max_cycles=24, start="random")
    env.reset(seed=7)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(random_actions(env, rng))
    twin = cloudpickle.loads(cloudpickle.dumps(env))
    assert twin.core is not env.core
    for _ in range(10):
        acts = random_actions(env, rng)
        a, b = env.step(acts), twin.step(copy.deepcopy(acts))
        assert_same_steps([a], [b])
    # a fresh (never reset) env pickles too, and so does the AEC form
    cloudpickle.loads(cloudpickle.dumps(make(max_cycles=4))).reset(seed=0)
    cloudpickle.loads(cloudpickle.dumps(envs.env("default", max_cycles=4))).reset(seed=0)


# --------------------------------------------------------------------------- agents and spaces


def test_agent_names_and_prefix_groups():
    env = make()
    names = env.possible_agents
    assert all(isinstance(a, str) for a in names)
    assert len(set(names)) == len(names)
    assert env.agents == []
    env.reset(seed=0)
    assert env.agents == env.possible_agents and env.agents is not env.possible_agents
    groups: dict[str, list[str]] = {}
    for a in names:
        groups.setdefault(a.rsplit("_", 1)[0], []).append(a)
    assert set(groups) <= {"plant", "storage", "renewable"}
    assert len(groups["plant"]) == 2 and len(groups["storage"]) == 1
    for members in groups.values():
        for a in members[1:]:
            assert env.observation_space(a) == env.observation_space(members[0])
            assert env.action_space(a) == env.action_space(members[0])
    assert env.action_space("plant_ccgt-1").shape == (2,)
    assert env.action_space("storage_pumped-storage-1").shape == (1,)


def test_spaces_are_stable_float32_boxes_with_finite_bounds():
    env = make()
    boxes = [env.state_space]
    for a in env.possible_agents:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a)
        boxes += [env.observation_space(a), env.action_space(a)]
    for box in boxes:
        assert isinstance(box, spaces.Box)
        assert box.dtype == np.float32
        assert np.isfinite(box.low).all() and np.isfinite(box.high).all()
        assert (box.low < box.high).all()
    for a in env.possible_agents:
        np.testing.assert_array_equal(env.action_space(a).low, -1.0)
        np.testing.assert_array_equal(env.action_space(a).high, 1.0)


def test_observations_float32_fresh_within_bounds_and_not_mutated():
    env = make(max_cycles=48)
    obs, infos = env.reset(seed=0)
    assert isinstance(obs, dict) and isinstance(infos, dict)
    assert set(obs) == set(env.agents) == set(infos)
    rng = np.random.default_rng(0)
    kept = []
    while True:
        for a, o in obs.items():
            assert isinstance(o, np.ndarray) and o.dtype == np.float32
            assert o.shape == env.observation_space(a).shape
            assert env.observation_space(a).contains(o), a
        kept.append({a: (o, o.copy()) for a, o in obs.items()})
        s = env.state()
        assert s.dtype == np.float32 and env.state_space.contains(s)
        if not env.agents:
            break
        obs = env.step(random_actions(env, rng))[0]
    # nothing returned earlier changed while the env kept stepping
    for step in kept:
        for o, c in step.values():
            np.testing.assert_array_equal(o, c)
    # observation arrays of different steps do not share memory
    first, last = kept[0], kept[-1]
    for a in first:
        assert not np.shares_memory(first[a][0], last[a][0])


def test_state_is_fresh_array():
    env = make(max_cycles=4)
    env.reset(seed=0)
    s0 = env.state()
    c = s0.copy()
    env.step(random_actions(env, np.random.default_rng(0)))
    np.testing.assert_array_equal(s0, c)
    assert env.state().shape == env.state_space.shape


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_same_actions_reproduce_the_episode():
    env = make(max_cycles=24, start="random")
    first = run_episode(env, seed=123, action_seed=9)
    again = run_episode(env, seed=123, action_seed=9)  # the same instance, reset with the seed
    assert_same_steps(first, again)
    other = run_episode(make(max_cycles=24, start="random"), seed=123, action_seed=9)
    assert_same_steps(first, other)
    # the seed matters: the start hour is drawn from it
    starts = {run_episode(env, seed=s, action_seed=9)[0][1]["plant_ccgt-1"]["hour"] for s in range(8)}
    assert len(starts) > 1


def test_two_instances_side_by_side():
    a, b = make(max_cycles=24, start="random"), make(max_cycles=24, start="random")
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    rng = np.random.default_rng(1)
    for o in oa:
        np.testing.assert_array_equal(oa[o], ob[o])
    while a.agents:
        acts = random_actions(a, rng)
        assert_same_steps([a.step(acts)], [b.step(acts)])
    assert b.agents == []


# --------------------------------------------------------------------------- step results and episode end


def test_step_results_types_and_episode_end():
    env = make(max_cycles=30)
    obs, infos = env.reset(seed=0)
    keys = set(INFO_KEYS)
    for a in env.agents:
        assert set(infos[a]) == keys
        assert all(type(v) is float for v in infos[a].values())
    rng = np.random.default_rng(0)
    n_steps = 0
    while env.agents:
        acting = list(env.agents)
        result = env.step(random_actions(env, rng))
        n_steps += 1
        assert len(result) == 5
        obs, rew, term, trunc, infos = result
        for d in result:
            assert isinstance(d, dict) and list(d) == acting
        for a in acting:
            assert type(rew[a]) is float and np.isfinite(rew[a])
            assert type(term[a]) is bool and type(trunc[a]) is bool
            assert term[a] is False
            assert set(infos[a]) == keys
            assert all(type(v) is float and np.isfinite(v) for v in infos[a].values())
        last = n_steps == 30
        assert all(trunc[a] is last for a in acting), n_steps  # all at once, only on the last step
    assert n_steps == 30
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_info_hour_counts_scenario_hours():
    env = make(max_cycles=5)
    _, infos = env.reset(seed=0)
    hours = [infos["plant_ccgt-1"]["hour"]]
    while env.agents:
        hours.append(env.step(random_actions(env, np.random.default_rng(0)))[4]["plant_ccgt-1"]["hour"])
    assert hours == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0]


# --------------------------------------------------------------------------- actions


def test_action_formats_give_the_same_result():
    # values exactly representable in float32, so every format means the same numbers
    base = {"plant_ccgt-1": [0.25, 0.5], "plant_ccgt-2": [-0.5, 0.75], "storage_pumped-storage-1": [-0.25]}
    formats = [
        {a: np.array(v, dtype=np.float64) for a, v in base.items()},
        {a: np.array(v, dtype=np.float32) for a, v in base.items()},
        {a: list(v) for a, v in base.items()},
        {a: tuple(v) for a, v in base.items()},
        {**{a: np.array(v) for a, v in base.items()}, "storage_pumped-storage-1": np.array(-0.25)},  # 0-d
        {**{a: np.array(v) for a, v in base.items()}, "storage_pumped-storage-1": np.float32(-0.25)},
    ]
    results = []
    for acts in formats:
        env = make(max_cycles=4)
        env.reset(seed=0)
        results.append([env.step(acts) for _ in range(3)])
    for r in results[1:]:
        assert_same_steps(results[0], r)


def test_caller_arrays_not_mutated():
    env = make(max_cycles=4)
    env.reset(seed=0)
    acts = {"plant_ccgt-1": np.array([3.0, -2.0]), "plant_ccgt-2": np.array([0.1, 0.2], np.float32),
            "storage_pumped-storage-1": np.array([-5.0])}
    kept = {a: v.copy() for a, v in acts.items()}
    env.step(acts)
    for a in acts:
        np.testing.assert_array_equal(acts[a], kept[a])
        assert acts[a].dtype == kept[a].dtype


def test_out_of_range_actions_are_clipped():
    wild = {"plant_ccgt-1": [3.0, -7.0], "plant_ccgt-2": [1.5, 0.2], "storage_pumped-storage-1": [-40.0]}
    tame = {a: np.clip(v, -1, 1).tolist() for a, v in wild.items()}
    a, b = make(max_cycles=6), make(max_cycles=6)
    a.reset(seed=0), b.reset(seed=0)
    for _ in range(6):
        ra, rb = a.step(wild), b.step(tame)
        assert_same_steps([ra], [rb])
    assert ra[4]["plant_ccgt-1"]["bid_price_0"] == -100.0 and ra[4]["plant_ccgt-1"]["bid_price_1"] == 100.0


def test_bad_actions_raise_clear_errors():
    env = make(max_cycles=4)
    env.reset(seed=0)
    ok = {a: np.zeros(env.action_space(a).shape) for a in env.agents}
    with pytest.raises(KeyError, match="plant_nope"):
        env.step({**ok, "plant_nope": np.zeros(2)})
    with pytest.raises(ValueError, match="plant_ccgt-1.*shape"):
        env.step({**ok, "plant_ccgt-1": np.zeros(3)})
    with pytest.raises(ValueError, match="plant_ccgt-1"):
        env.step({**ok, "plant_ccgt-1": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="plant_ccgt-1"):
        env.step({**ok, "plant_ccgt-1": 0.5})  # a scalar for a two-element action
    with pytest.raises(ValueError, match="storage_pumped-storage-1.*finite"):
        env.step({**ok, "storage_pumped-storage-1": np.array([np.nan])})
    with pytest.raises(ValueError, match="plant_ccgt-2.*finite"):
        env.step({**ok, "plant_ccgt-2": np.array([0.0, np.inf])})
    with pytest.raises(ValueError, match="plant_ccgt-2"):
        env.step({**ok, "plant_ccgt-2": np.array([-np.inf, 0.0])})
    # refused steps did not advance the market
    assert env.core.step_count == 0
    env.step(ok)
    assert env.core.step_count == 1


def test_agent_left_out_submits_no_bid():
    sc = tiny_scenario()
    full, part = envs.parallel_env(sc), envs.parallel_env(sc)
    full.reset(seed=0), part.reset(seed=0)
    low = np.array([-0.1, -0.1])  # both learners bid -10 EUR/MWh
    _, _, _, _, inf_full = full.step({"plant_a": low, "plant_b": low})
    _, rew, _, trunc, inf_part = part.step({"plant_b": low})
    # with both: 150 MW from the two learners (pro rata), price = their bid
    assert inf_full["plant_a"]["clearing_price"] == pytest.approx(-10.0)
    assert inf_full["plant_a"]["accepted_volume"] == pytest.approx(75.0)
    # without plant_a: plant_b's 100 MW + 50 MW of the rule plant at 50 EUR/MWh
    assert set(rew) == set(trunc) == set(inf_part) == {"plant_a", "plant_b"}  # keyed by the live agents
    assert inf_part["plant_a"]["clearing_price"] == pytest.approx(50.0)
    assert inf_part["plant_a"]["accepted_volume"] == 0.0
    assert inf_part["plant_a"]["profit"] == 0.0 and rew["plant_a"] == 0.0
    assert inf_part["plant_a"]["bid_price_0"] == 0.0
    assert inf_part["plant_b"]["accepted_volume"] == pytest.approx(100.0)
    # and on the default scenario: leaving the storage out changes its outcome to nothing
    a, b = make(max_cycles=4), make(max_cycles=4)
    a.reset(seed=0), b.reset(seed=0)
    acts = {ag: -np.ones(a.action_space(ag).shape) for ag in a.agents}
    ia = a.step(acts)[4]
    ib = b.step({k: v for k, v in acts.items() if not k.startswith("storage")})[4]
    assert ia["storage_pumped-storage-1"]["accepted_volume"] != 0.0
    assert ib["storage_pumped-storage-1"]["accepted_volume"] == 0.0
    assert ib["storage_pumped-storage-1"]["profit"] == 0.0
    np.testing.assert_allclose(b.core.soc[0], b.core.scenario.storages.initial_soc * b.core.scenario.storages.capacity)


def test_empty_action_dict_means_nobody_bids():
    env = envs.parallel_env(tiny_scenario())
    env.reset(seed=0)
    infos = env.step({})[4]
    assert infos["plant_a"]["clearing_price"] == pytest.approx(50.0)  # only the rule plant
    assert all(i["accepted_volume"] == 0.0 for i in infos.values())


# --------------------------------------------------------------------------- rendering


def test_render_human_prints_text(capsys):
    env = make(render_mode="human", max_cycles=3)
    env.reset(seed=0)
    env.render()
    assert "marketzoo" in capsys.readouterr().out
    env.step(random_actions(env, np.random.default_rng(0)))  # human mode renders on every step
    out = capsys.readouterr().out
    assert "price" in out and "plant_ccgt-1" in out


def test_render_rgb_array():
    env = make(render_mode="rgb_array", max_cycles=3)
    env.reset(seed=0)
    img0 = env.render()  # before the first clearing: still a picture
    assert img0.ndim == 3 and img0.shape[2] == 3 and img0.dtype == np.uint8
    env.step(random_actions(env, np.random.default_rng(0)))
    img = env.render()
    assert isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert img.std() > 0  # not blank


def test_render_without_mode_warns():
    env = make(max_cycles=3)
    env.reset(seed=0)
    with pytest.warns(UserWarning):
        assert env.render() is None


# --------------------------------------------------------------------------- market semantics


def test_rewards_are_scaled_profit():
    env = make(max_cycles=48)
    sc = env.core.scenario
    cap = {**{f"plant_{n.replace('_', '-')}": p for n, p in zip(sc.plants.names, sc.plants.max_power)},
           **{f"storage_{n.replace('_', '-')}": max(c, d) for n, c, d in
              zip(sc.storages.names, sc.storages.max_power_charge, sc.storages.max_power_discharge)}}
    env.reset(seed=0)
    rng = np.random.default_rng(4)
    while env.agents:
        _, rew, _, _, infos = env.step(random_actions(env, rng))
        for a in rew:
            assert rew[a] == pytest.approx(infos[a]["profit"] / (cap[a] * 100.0) * 10.0, rel=1e-12, abs=1e-12)


def test_regret_option_changes_reward():
    env = make(max_cycles=24, regret_scale=1.0)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    seen_regret = False
    while env.agents:
        _, rew, _, _, infos = env.step(random_actions(env, rng))
        a = "plant_ccgt-1"
        expect = (infos[a]["profit"] - infos[a]["regret"]) / (500.0 * 100.0) * 10.0
        assert rew[a] == pytest.approx(expect, rel=1e-12, abs=1e-12)
        seen_regret |= infos[a]["regret"] > 0
    assert seen_regret


def test_plant_profit_includes_start_up_cost():
    env = make()
    sc = env.core.scenario
    suc = dict(zip(sc.plants.names, sc.plants.start_up_cost))
    env.reset(seed=0)
    rng = np.random.default_rng(2)
    prev = {a: 0.0 for a in env.agents if a.startswith("plant_")}
    starts = 0
    while env.agents:
        infos = env.step(random_actions(env, rng))[4]
        for a in prev:
            i = infos[a]
            q = i["accepted_volume"]
            started = q > 0 and prev[a] <= 0
            starts += started
            cost = suc[a.split("_", 1)[1].replace("-", "_")] if started else 0.0
            expect = (i["clearing_price"] - i["marginal_cost"]) * q - cost
            assert i["profit"] == pytest.approx(expect, rel=1e-9, abs=1e-6), (a, i)
            assert 0.0 <= q <= 500.0 + 1e-9
            prev[a] = q
    assert starts >= 2  # start-ups actually happened and were charged


def test_storage_soc_bounds_and_exact_energy_accounting():
    env = make()
    st = env.core.scenario.storages
    name = "storage_pumped-storage-1"
    lo, hi = st.min_soc[0] * st.capacity[0], st.max_soc[0] * st.capacity[0]
    eff_c, eff_d = st.efficiency_charge[0], st.efficiency_discharge[0]
    F = env.core.foresight

    def check_episode(policy):
        obs, _ = env.reset(seed=0)
        soc = float(env.core.soc[0, 0])
        assert soc == pytest.approx(st.initial_soc[0] * st.capacity[0])
        visited = [soc]
        while env.agents:
            obs, _, _, _, infos = env.step(policy())
            q = infos[name]["accepted_volume"]
            charged, discharged = max(-q, 0.0), max(q, 0.0)
            new = float(env.core.soc[0, 0])
            assert new == pytest.approx(soc + charged * eff_c - discharged / eff_d, abs=1e-6)
            assert lo - 1e-9 <= new <= hi + 1e-9
            assert abs(q) <= 400.0 + 1e-9
            if env.agents:
                assert obs[name][3 * F] == pytest.approx(new / st.capacity[0], abs=1e-6)  # observed SoC
            soc = new
            visited.append(soc)
        return np.array(visited)

    rng = np.random.default_rng(0)
    check_episode(lambda: random_actions(env, rng))
    # charge at any price: the storage fills up and stays at max_soc
    full = check_episode(lambda: {a: -np.ones(env.action_space(a).shape) for a in env.possible_agents})
    assert full.max() == pytest.approx(hi, abs=1e-6)
    # offer to discharge at the floor: it empties and stays at min_soc
    empty = check_episode(
        lambda: {**{a: np.ones(2) for a in env.possible_agents[:2]}, name: np.array([0.0])}
    )
    assert empty.min() == pytest.approx(lo, abs=1e-6)


# --------------------------------------------------------------------------- vector env


def test_vector_env_matches_parallel_env():
    T = 48
    p = make(max_cycles=T, start="random")
    v = envs.VectorMarketEnv("default", num_envs=3, max_cycles=T, start="random")
    assert v.agents == p.possible_agents
    po, _ = p.reset(seed=11)
    vo, _ = v.reset(seed=11)
    assert v.core.t0 == p.core.t0  # the same seed draws the same start hour
    rng = np.random.default_rng(5)
    n, m = v.n_agents, v.max_act
    differ = False
    for step in range(T):
        for i, a in enumerate(p.possible_agents):
            np.testing.assert_array_equal(vo[1, i], po[a])
        np.testing.assert_array_equal(v.state()[1], p.state())
        acts = rng.uniform(-1.2, 1.2, (3, n, m))
        pa = {a: acts[1, i, : v.act_dims[i]] for i, a in enumerate(p.possible_agents)}
        po, pr, pterm, ptrunc, pinf = p.step(pa)
        vo, vr, vterm, vtrunc, vinf = v.step(acts)
        assert vo.shape == (3, n, v.obs_dim) and vo.dtype == np.float32
        assert vr.shape == vterm.shape == vtrunc.shape == (3, n)
        for i, a in enumerate(p.possible_agents):
            assert vr[1, i] == np.float32(pr[a])
            assert vinf["profit"][1, i] == pinf[a]["profit"]
            assert vinf["accepted_volume"][1, i] == pinf[a]["accepted_volume"]
            assert vinf["regret"][1, i] == pinf[a]["regret"]
            assert vinf["clearing_price"][1] == pinf[a]["clearing_price"]
            assert bool(vinf["scarcity"][1]) == bool(pinf[a]["scarcity"])
            assert bool(vtrunc[1, i]) is ptrunc[a] and not vterm[1, i]
        differ |= not np.array_equal(vr[0], vr[1]) or not np.array_equal(vr[2], vr[1])
    assert p.agents == [] and vtrunc.all()
    assert differ  # the other copies really got other actions
    np.testing.assert_array_equal(vo[1], np.stack([po[a] for a in p.possible_agents]))
    with pytest.raises(RuntimeError, match="reset"):
        v.step(acts)


def test_vector_env_errors_and_input_handling():
    v = envs.VectorMarketEnv("default", num_envs=2, max_cycles=4)
    with pytest.raises(RuntimeError, match="reset"):
        v.step(np.zeros((2, v.n_agents, v.max_act)))
    v.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        v.step(np.zeros((3, v.n_agents, v.max_act)))
    with pytest.raises(ValueError, match="shape"):
        v.step(np.zeros((2, v.n_agents)))  # max_act is 2 here
    bad = np.zeros((2, v.n_agents, v.max_act))
    bad[1, 0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        v.step(bad)
    bad[1, 0, 1] = -np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        v.step(bad)
    assert v.core.step_count == 0
    acts = np.full((2, v.n_agents, v.max_act), 5.0, dtype=np.float32)
    kept = acts.copy()
    v.step(acts)
    np.testing.assert_array_equal(acts, kept)  # the caller's array is not modified
    assert v.observation_space.contains(v.reset(seed=1)[0])
    assert v.state().shape == v.state_space.shape and v.state().dtype == np.float32


def test_vector_env_autoreset():
    v = envs.VectorMarketEnv("default", num_envs=2, max_cycles=3, autoreset=True)
    v.reset(seed=0)
    acts = np.zeros((2, v.n_agents, v.max_act))
    truncs = [v.step(acts)[3].all() for _ in range(3)]
    assert truncs == [False, False, True]
    obs, rew, term, trunc, _ = v.step(acts)  # resets
    assert v.core.step_count == 0 and not trunc.any() and (rew == 0).all()
    assert obs.shape == (2, v.n_agents, v.obs_dim)


def test_vector_env_on_example_02a():
    v = envs.VectorMarketEnv(example_02a(), num_envs=4, max_cycles=24)
    p = envs.parallel_env(example_02a(), max_cycles=24)
    v.reset(seed=0), p.reset(seed=0)
    rng = np.random.default_rng(0)
    while p.agents:
        acts = rng.uniform(-1, 1, (4, v.n_agents, v.max_act))
        _, vr, _, _, vinf = v.step(acts)
        _, pr, _, _, pinf = p.step({a: acts[2, i, : v.act_dims[i]] for i, a in enumerate(v.agents)})
        for i, a in enumerate(v.agents):
            assert vr[2, i] == np.float32(pr[a])
            assert vinf["clearing_price"][2] == pinf[a]["clearing_price"]


# --------------------------------------------------------------------------- episode records


def _check_record(rec, prices: list[float]) -> None:
    H = rec.n_hours
    np.testing.assert_array_equal(rec.clearing_price, prices)
    assert rec.supply_price.shape == rec.supply_volume.shape == rec.supply_accepted.shape == (H, len(rec.supply_unit))
    assert rec.demand_price.shape == rec.demand_accepted.shape == (H, len(rec.demand_unit))
    # re-clearing the recorded bids gives the recorded result
    res = clear_market(rec.supply_price, rec.supply_volume, rec.demand_price, rec.demand_volume,
                       fixed_demand=rec.fixed_demand, price_cap=rec.price_cap, price_floor=rec.price_floor)
    np.testing.assert_allclose(res.price, rec.clearing_price, rtol=1e-12)
    np.testing.assert_allclose(res.supply_accepted, rec.supply_accepted, atol=1e-6)
    np.testing.assert_allclose(res.demand_accepted, rec.demand_accepted, atol=1e-6)
    # energy balance: supply + unserved = fixed demand + accepted demand bids
    np.testing.assert_allclose(rec.supply_accepted.sum(1) + res.unserved,
                               rec.fixed_demand + rec.demand_accepted.sum(1), atol=1e-6)
    assert (rec.supply_accepted >= -1e-9).all() and (rec.supply_accepted <= rec.supply_volume + 1e-6).all()


def test_episode_records_consistent_with_infos_and_between_envs():
    T = 36
    p = make(max_cycles=T, record=True)
    v = envs.VectorMarketEnv("default", num_envs=3, max_cycles=T, record=True)
    with pytest.raises(RuntimeError, match="record"):
        p.episode_record()
    p.reset(seed=0), v.reset(seed=0)
    rng = np.random.default_rng(8)
    prices, vprices, profits = [], [], []
    while p.agents:
        acts = rng.uniform(-1, 1, (3, v.n_agents, v.max_act))
        infos = p.step({a: acts[0, i, : v.act_dims[i]] for i, a in enumerate(v.agents)})[4]
        vinf = v.step(acts)[4]
        prices.append(infos["plant_ccgt-1"]["clearing_price"])
        profits.append([infos[a]["profit"] for a in v.agents])
        vprices.append(vinf["clearing_price"].copy())
    rec = p.episode_record()
    assert rec.n_hours == T and rec.agents == tuple(v.agents)
    _check_record(rec, prices)
    np.testing.assert_array_equal(rec.agent_profit, profits)
    vprices = np.array(vprices)
    for c in range(3):
        _check_record(v.episode_record(c), vprices[:, c].tolist())
    vrec = v.episode_record(0)  # the copy that got the parallel env's actions
    for field in ("hours", "supply_price", "supply_volume", "supply_accepted", "demand_price", "demand_volume",
                  "demand_accepted", "clearing_price", "agent_profit", "agent_prev_dispatch", "fixed_demand"):
        np.testing.assert_array_equal(getattr(vrec, field), getattr(rec, field), err_msg=field)
    assert vrec.units == rec.units and np.array_equal(vrec.supply_unit, rec.supply_unit)
    # each agent owns bids, and its accepted volume there is its reported dispatch
    for i in range(len(rec.agents)):
        assert len(rec.agent_supply_columns(i)) >= 1
    with pytest.raises(ValueError, match="copy"):
        v.episode_record(3)


def test_envs_imports_neither_torch_nor_agents_nor_mango():
    import subprocess
    import sys

    code = ("import sys, envs, envs.analysis, envs.single_agent; "
            "print(sorted(m for m in ('torch', 'agents', 'mango') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
