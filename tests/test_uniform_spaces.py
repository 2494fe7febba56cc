"""``parallel_env(..., uniform_spaces=True)``: one action and observation space for all agents."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.test import parallel_api_test, parallel_seed_test

import envs
from envs.core import KINDS


def make(**kw):
    return envs.parallel_env("default", uniform_spaces=True, **kw)


def test_every_agent_has_the_same_spaces_with_a_kind_one_hot():
    env = make()
    plain = envs.parallel_env("default")
    agents = env.possible_agents
    assert {env.agent_kind[a] for a in agents} == {"plant", "storage"}  # the default mixes kinds
    a0 = agents[0]
    for a in agents:
        assert env.action_space(a) == env.action_space(a0) == spaces.Box(-1, 1, (2,), np.float32)
        assert env.observation_space(a) == env.observation_space(a0)
    base = plain.observation_space(a0)
    obs_space = env.observation_space(a0)
    assert obs_space.shape == (base.shape[0] + len(KINDS),)
    np.testing.assert_array_equal(obs_space.low[: base.shape[0]], base.low)
    np.testing.assert_array_equal(obs_space.high[: base.shape[0]], base.high)
    np.testing.assert_array_equal(obs_space.low[base.shape[0]:], 0.0)
    np.testing.assert_array_equal(obs_space.high[base.shape[0]:], 1.0)
    assert env.action_dims == {a: 2 if env.agent_kind[a] == "plant" else 1 for a in agents}
    # the plain env keeps per-kind action spaces
    assert {plain.action_space(a).shape for a in agents} == {(1,), (2,)}


def test_observation_carries_the_kind_and_otherwise_equals_the_plain_env():
    env, plain = make(), envs.parallel_env("default")
    obs, _ = env.reset(seed=3)
    pobs, _ = plain.reset(seed=3)
    d = plain.observation_space(env.possible_agents[0]).shape[0]
    for a in env.possible_agents:
        onehot = obs[a][d:]
        assert onehot.dtype == np.float32
        np.testing.assert_array_equal(onehot, np.eye(len(KINDS), dtype=np.float32)[KINDS.index(env.agent_kind[a])])
        np.testing.assert_array_equal(obs[a][:d], pobs[a])
        assert env.observation_space(a).contains(obs[a])
    # storage and plant agents see different kind entries, so a shared policy can tell them apart
    kinds = {tuple(obs[a][d:]) for a in env.possible_agents}
    assert len(kinds) == 2


def test_padding_entry_is_ignored_and_episodes_match_the_plain_env():
    """Storage's entry 1 is random junk; every reward, info and observation equals the
    plain env's given the same used entries, over a whole episode."""
    env, plain = make(max_cycles=72), envs.parallel_env("default", max_cycles=72)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1)
    pobs, _ = plain.reset(seed=1)
    d = plain.observation_space(env.possible_agents[0]).shape[0]
    steps = 0
    while env.agents:
        acts = {a: rng.uniform(-1, 1, 2).astype(np.float32) for a in env.agents}
        pacts = {a: acts[a][: env.action_dims[a]] for a in env.agents}
        obs, rew, term, trunc, info = env.step(acts)
        pobs, prew, pterm, ptrunc, pinfo = plain.step(pacts)
        assert rew == prew and trunc == ptrunc and term == pterm and info == pinfo
        for a in obs:
            np.testing.assert_array_equal(obs[a][:d], pobs[a])
        steps += 1
    assert steps == 72 and not plain.agents


def test_padding_changes_nothing_but_plant_entries_matter():
    env = make(max_cycles=24)
    storage = next(a for a in env.possible_agents if env.agent_kind[a] == "storage")
    plant = next(a for a in env.possible_agents if env.agent_kind[a] == "plant")

    def first_step(storage_pad, plant_hi):
        env.reset(seed=0)
        acts = {a: np.array([0.2, 0.9], np.float32) for a in env.agents}
        acts[storage] = np.array([0.5, storage_pad], np.float32)
        acts[plant] = np.array([0.1, plant_hi], np.float32)
        return env.step(acts)[4]

    base = first_step(-1.0, 0.3)
    assert first_step(1.0, 0.3) == base  # storage padding ignored
    changed = first_step(-1.0, -0.9)  # a plant's second price is used
    assert changed[plant]["bid_price_1"] != base[plant]["bid_price_1"]


def test_uniform_env_refuses_unpadded_actions_clearly():
    env = make()
    env.reset(seed=0)
    storage = next(a for a in env.possible_agents if env.agent_kind[a] == "storage")
    acts = {a: np.zeros(2, np.float32) for a in env.agents}
    acts[storage] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        env.step(acts)
    acts[storage] = np.array([0.0, np.nan], np.float32)
    with pytest.raises(ValueError, match="not finite"):
        env.step(acts)


def test_pettingzoo_tests_pass_with_uniform_spaces():
    parallel_api_test(make(max_cycles=48), num_cycles=60)
    parallel_seed_test(lambda: make(max_cycles=48, start="random"), num_cycles=60)


def test_one_shared_array_policy_drives_all_agents():
    """What parameter sharing does: stack all observations, one batched 'policy', split."""
    env = make(max_cycles=24)
    obs, _ = env.reset(seed=0)
    w = np.random.default_rng(0).normal(size=(env.observation_space(env.agents[0]).shape[0], 2)) * 0.1
    total = 0.0
    while env.agents:
        X = np.stack([obs[a] for a in env.agents])
        A = np.tanh(X @ w).astype(np.float32)
        obs, rew, *_ = env.step(dict(zip(env.agents, A)))
        total += sum(rew.values())
    assert np.isfinite(total)
