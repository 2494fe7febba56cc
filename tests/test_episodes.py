"""Episodes that depend on the reset seed: random start, noise, held-out window."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_seed_test

import envs

VARIED = dict(episode_hours=48, random_start=True, demand_noise=0.05, availability_noise=0.05)


def run(env, seed: int, action_seed: int = 0):
    """(t0, rewards per step, clearing prices per step) of one episode with fixed actions."""
    rng = np.random.default_rng(action_seed)
    env.reset(seed=seed)
    t0 = env.core.t0
    rewards, prices = [], []
    while env.agents:
        acts = {a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.agents}
        _, rew, _, _, info = env.step(acts)
        rewards.append(list(rew.values()))
        prices.append(next(iter(info.values()))["clearing_price"])
    return t0, np.array(rewards), np.array(prices)


def test_defaults_reproduce_the_old_episode_whatever_the_seed():
    env = envs.parallel_env("default", max_cycles=48)
    a, b = run(env, 123), run(env, 124)
    assert a[0] == b[0] == 0
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    # and no noise: the hourly data are the scenario's own
    assert env.core.scenario is env.core.base_scenario


def test_seed_decides_the_episode_when_options_are_on():
    env = envs.parallel_env("default", **VARIED)
    a, b, a2 = run(env, 123), run(env, 124), run(env, 123)
    assert a[0] != b[0]  # different start hours
    assert not np.array_equal(a[2], b[2])
    assert a[0] == a2[0]
    np.testing.assert_array_equal(a[1], a2[1])
    np.testing.assert_array_equal(a[2], a2[2])
    # a second env gives the same episode for the same seed
    c = run(envs.parallel_env("default", **VARIED), 123)
    np.testing.assert_array_equal(a[2], c[2])


def test_noise_alone_changes_prices_with_the_seed():
    env = envs.parallel_env("default", max_cycles=48, demand_noise=0.1)
    a, b = run(env, 1), run(env, 2)
    assert a[0] == b[0] == 0
    assert not np.array_equal(a[2], b[2])


def test_pettingzoo_seed_test_with_options_on():
    parallel_seed_test(lambda: envs.parallel_env("default", **VARIED), num_cycles=60)


def test_random_start_window_length_and_hours():
    env = envs.parallel_env("default", episode_hours=24, random_start=True)
    T = env.core.T
    starts = set()
    for seed in range(20):
        _, infos = env.reset(seed=seed)
        t0 = env.core.t0
        starts.add(t0)
        assert 0 <= t0 <= T - 24
        assert next(iter(infos.values()))["hour"] == t0
        steps = 0
        while env.agents:
            _, _, _, trunc, info = env.step({a: env.action_space(a).sample() for a in env.agents})
            assert next(iter(info.values()))["hour"] == t0 + steps
            steps += 1
        assert steps == 24 and all(trunc.values())
    assert len(starts) > 10
    # the old names still work and mean the same
    old = envs.parallel_env("default", max_cycles=24, start="random")
    old.reset(seed=5)
    env.reset(seed=5)
    assert old.core.t0 == env.core.t0 and old.core.max_cycles == 24


def test_noise_is_multiplicative_lognormal_within_the_episode_only():
    env = envs.parallel_env("default", episode_hours=168, random_start=True, demand_noise=0.05,
                            availability_noise=0.2)
    env.reset(seed=7)
    core = env.core
    base = core.base_scenario
    t0, t1 = core.t0, core.t0 + 168
    ratio = core.scenario.demands.volume[t0:t1] / base.demands.volume[t0:t1]
    assert 0.97 < ratio.mean() < 1.03 and 0.03 < ratio.std() < 0.07
    np.testing.assert_array_equal(core.scenario.demands.volume[:t0], base.demands.volume[:t0])
    np.testing.assert_array_equal(core.scenario.demands.volume[t1:], base.demands.volume[t1:])
    np.testing.assert_allclose(core.fixed_demand, core.scenario.demands.volume.sum(axis=1))
    av = core.scenario.renewables.availability
    assert av.min() >= 0 and av.max() <= 1
    assert not np.array_equal(av[t0:t1], base.renewables.availability[t0:t1])
    np.testing.assert_array_equal(av[:t0], base.renewables.availability[:t0])
    # forecasts in the observation stay those of the noise-free data
    plain = envs.parallel_env("default", episode_hours=168, random_start=True)
    plain.reset(seed=7)
    assert plain.core.t0 == t0
    np.testing.assert_array_equal(core.price_forecast, plain.core.price_forecast)
    # the rule plants' supply is unchanged; the rule renewables' supply is noisy
    assert not np.array_equal(core.static_volume[t0:t1], plain.core.static_volume[t0:t1])


def test_held_out_window():
    T = envs.parallel_env("default").core.T
    H = 84
    train = envs.parallel_env("default", holdout_hours=H, episode_hours=48, random_start=True)
    ends = []
    for seed in range(40):
        train.reset(seed=seed)
        ends.append(train.core.t0 + train.core.max_cycles)
    assert max(ends) <= T - H and len(set(ends)) > 10
    whole = envs.parallel_env("default", holdout_hours=H)
    whole.reset(seed=0)
    assert (whole.core.t0, whole.core.max_cycles) == (0, T - H)
    ev = envs.parallel_env("default", holdout_hours=H, eval_window=True)
    for seed in (0, 1):
        ev.reset(seed=seed)
        assert (ev.core.t0, ev.core.max_cycles) == (T - H, H)
    _, _, prices = run(ev, 0)
    assert len(prices) == H
    ev2 = envs.parallel_env("default", holdout_hours=H, eval_window=True, episode_hours=24, random_start=True)
    starts = set()
    for seed in range(20):
        ev2.reset(seed=seed)
        assert T - H <= ev2.core.t0 <= T - 24
        starts.add(ev2.core.t0)
    assert len(starts) > 5


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(episode_hours=48, max_cycles=24), "disagree"),
        (dict(eval_window=True), "needs holdout_hours"),
        (dict(holdout_hours=0), "holdout_hours must be in"),
        (dict(holdout_hours=400), "holdout_hours must be in"),
        (dict(holdout_hours=100, episode_hours=300), "does not fit the episode window"),
        (dict(holdout_hours=100, eval_window=True, episode_hours=101), "does not fit"),
        (dict(demand_noise=-0.1), "demand_noise must be"),
        (dict(availability_noise=float("nan")), "availability_noise must be"),
    ],
)
def test_bad_episode_options_raise_clearly(kw, match):
    with pytest.raises(ValueError, match=match):
        envs.parallel_env("default", **kw)


def test_vector_env_draws_the_same_episode_as_the_parallel_env():
    par = envs.parallel_env("default", **VARIED)
    vec = envs.VectorMarketEnv("default", num_envs=3, **VARIED)
    par.reset(seed=11)
    vec.reset(seed=11)
    assert par.core.t0 == vec.core.t0
    np.testing.assert_array_equal(par.core.fixed_demand, vec.core.fixed_demand)
    acts = np.random.default_rng(0).uniform(-1, 1, (3, vec.n_agents, vec.max_act)).astype(np.float32)
    pa = {a: acts[1, i, : par.action_dims[a]] for i, a in enumerate(par.agents)}
    _, pr, *_ = par.step(pa)
    _, vr, *_ = vec.step(acts)
    np.testing.assert_allclose(vr[1], [pr[a] for a in par.possible_agents], rtol=1e-5, atol=1e-6)


def test_fast_path_equals_generic_with_noise():
    fast = envs.parallel_env("default", **VARIED)
    slow = envs.parallel_env("default", **VARIED)
    slow.use_fast_path = False
    for seed in (0, 1):
        a, b = run(fast, seed, 3), run(slow, seed, 3)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])


def test_episode_options_from_learning_config():
    assert envs.episode_options({}) == {} and envs.episode_options({}, evaluation=True) == {}
    cfg = {"episode_hours": 48, "random_start": True, "demand_noise": 0.05, "availability_noise": 0.1,
           "holdout_hours": 84, "learning_rate": 1e-3}
    train = envs.episode_options(cfg)
    assert train == {"episode_hours": 48, "random_start": True, "demand_noise": 0.05, "availability_noise": 0.1,
                     "holdout_hours": 84}
    ev = envs.episode_options(cfg, evaluation=True)
    assert ev == {"holdout_hours": 84, "eval_window": True}
    T = envs.parallel_env("default").core.T
    core = envs.MarketCore(envs.load_scenario("default"), **ev)
    assert core.window == (T - 84, T) and core.max_cycles == 84
    core = envs.MarketCore(envs.load_scenario("default"), **train)
    assert core.window == (0, T - 84) and core.max_cycles == 48
    for bad in ({"episode_hours": 0}, {"episode_hours": 2.5}, {"random_start": "yes"}, {"demand_noise": 2},
                {"availability_noise": None}, {"holdout_hours": True}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=key):
            envs.episode_options(bad)
