"""The single-agent Gymnasium view (``envs.single_agent``): API checks and rule opponents.

Needs only gymnasium (a core dependency), so it always runs."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.single_agent import ENV_ID, SingleAgentMarketEnv, rule_actions, single_agent_env

from _examples import ASSUME_DIR  # the one helper for the shared ASSUME examples


@pytest.mark.parametrize(
    "scenario,agent",
    [("tiny", None), ("default", None), ("default", "plant_ccgt-2"), ("default", "storage_pumped-storage-1")],
)
def test_check_env(scenario, agent):
    env = single_agent_env(scenario, agent)
    check_env(env, skip_render_check=True)
    assert env.agent == (agent or envs.parallel_env(scenario).possible_agents[0])
    assert env.action_space.shape == (2 if env.agent.startswith("plant_") else 1,)
    assert env.observation_space == envs.parallel_env(scenario).observation_space(env.agent)


def test_gymnasium_make_and_render():
    env = gym.make(ENV_ID, scenario="default", agent="storage_pumped-storage-1", render_mode="rgb_array")
    assert isinstance(env.unwrapped, SingleAgentMarketEnv)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    img = env.render()
    assert img.ndim == 3 and img.shape[2] == 3
    env.close()


def test_bad_input():
    with pytest.raises(ValueError, match="unknown agent"):
        single_agent_env("default", "plant_nope")
    env = single_agent_env("tiny")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))


def test_same_outcome_as_parallel_env_with_rule_actions():
    """The single env equals the ParallelEnv where the other agents submit the rule
    actions (here all within [-1, 1], so the ParallelEnv's clipping does not matter)."""
    single = single_agent_env("default", "plant_ccgt-2", max_cycles=72)
    par = envs.parallel_env("default", max_cycles=72)
    obs_s, _ = single.reset(seed=3)
    obs_p, _ = par.reset(seed=3)
    rng = np.random.default_rng(0)
    while par.agents:
        np.testing.assert_array_equal(obs_s, obs_p["plant_ccgt-2"])
        rule = rule_actions(par.core)[0]
        assert np.all(np.abs(rule) <= 1.0)
        a = rng.uniform(-1, 1, 2).astype(np.float32)
        acts = {ag: rule[i, : par.action_space(ag).shape[0]] for i, ag in enumerate(par.possible_agents)}
        acts["plant_ccgt-2"] = a
        obs_p, rew_p, _, trunc_p, info_p = par.step(acts)
        obs_s, rew_s, term_s, trunc_s, info_s = single.step(a)
        assert rew_s == pytest.approx(rew_p["plant_ccgt-2"])
        assert info_s["clearing_price"] == pytest.approx(info_p["plant_ccgt-2"]["clearing_price"])
        assert not term_s and trunc_s == trunc_p["plant_ccgt-2"]


def test_opponents_bid_marginal_cost():
    """Every opponent plant's recorded bid is its marginal cost, every hour."""
    env = single_agent_env("default", "storage_pumped-storage-1", record=True, max_cycles=48)
    env.reset(seed=0)
    done = False
    while not done:
        *_, trunc, _ = env.step(np.array([0.5], dtype=np.float32))
        done = trunc
    rec = env.episode_record()
    for i, agent in enumerate(rec.agents):
        if rec.agent_kind[i] != "plant":
            continue
        cols = rec.agent_supply_columns(i)
        np.testing.assert_allclose(rec.supply_price[:, cols], rec.supply_cost[:, cols], atol=1e-9)


@pytest.mark.skipif(not (ASSUME_DIR / "example_02b").is_dir(), reason="shared ASSUME scenarios not present")
def test_all_at_marginal_cost_clears_at_the_merit_order_price():
    """ASSUME's example_02b (five learning CCGTs, no storage): with the learner also bidding
    its marginal cost, every hour clears at the merit-order price of all units at cost
    (the naive price forecast)."""
    env = single_agent_env(str(ASSUME_DIR / "example_02b"), "plant_pp-8")
    core = env.core
    env.reset(seed=0)
    prices = []
    done = False
    while not done:
        mc = core.scenario.plants.marginal_cost[core.hour, core.lp[env.index]] / core.max_bid_price
        *_, trunc, info = env.step(np.array([mc, mc], dtype=np.float32))
        prices.append(info["clearing_price"])
        done = trunc
    np.testing.assert_allclose(prices, core.price_forecast[: len(prices)], atol=1e-6)
