"""SuperSuit: pettingzoo_env_to_vec_env_v1 + concat_vec_envs_v1 over 8 copies."""

from pathlib import Path

import numpy as np
import pytest
from _examples import load_example

ss = pytest.importorskip("supersuit")

import envs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]




def test_concat_vec_env_matches_parallel_env_on_tiny():
    """8 copies of ``tiny``: each slot's reward and price equal those of a ParallelEnv
    given the same action, and all copies truncate together at the horizon."""
    ex = load_example("supersuit_example")
    vec = ex.make_vec_env("tiny", copies=8)
    assert vec.num_envs == 8
    obs, infos = vec.reset(seed=0)
    ref = envs.parallel_env("tiny")
    ref_obs, _ = ref.reset(seed=0)
    assert obs.shape == (8, ref.observation_space("plant_learner-1").shape[0])
    np.testing.assert_allclose(obs[3], ref_obs["plant_learner-1"])
    refs = [envs.parallel_env("tiny") for _ in range(8)]
    for r in refs:
        r.reset(seed=0)
    levels = np.linspace(0.3, 0.8, 8, dtype=np.float32)  # copy k bids levels[k]*100 EUR/MWh
    horizon = refs[0].core.max_cycles
    for h in range(horizon):
        actions = np.repeat(levels[:, None], 2, axis=1)
        obs, rew, term, trunc, infos = vec.step(actions)
        for k, r in enumerate(refs):
            _, rr, _, rt, ri = r.step({"plant_learner-1": actions[k]})
            assert rew[k] == pytest.approx(rr["plant_learner-1"], rel=1e-6, abs=1e-6)
            if h < horizon - 1:  # at the last hour the copies reset and infos are the new episode's
                assert infos[k]["clearing_price"] == pytest.approx(ri["plant_learner-1"]["clearing_price"])
        assert not term.any()
        assert trunc.all() == (h == horizon - 1)
    # bidding just under the next offer (70 EUR/MWh) earns more than bidding 30 EUR/MWh
    assert rew[7] == 0.0 and rew[6] > rew[0]
    vec.close()


def test_default_scenario_needs_and_gets_padded_actions():
    """``default`` mixes plants (2 prices) and storage (1 price): the example pads the
    storage action to (2,); SuperSuit drops the padding before the env sees it."""
    ex = load_example("supersuit_example")
    vec = ex.make_vec_env("default", copies=8)
    agents = envs.parallel_env("default").possible_agents
    n = len(agents)
    assert vec.num_envs == 8 * n and vec.action_space.shape == (2,)
    with pytest.raises(Exception):  # unpadded: heterogeneous action spaces are refused
        ss.pettingzoo_env_to_vec_env_v1(envs.parallel_env("default"))
    vec.reset(seed=0)
    actions = np.zeros((vec.num_envs, 2), dtype=np.float32)
    s = agents.index("storage_pumped-storage-1")
    actions[:, 0] = 0.25
    actions[:, 1] = 0.9  # ignored for the storage slots
    _, _, _, _, infos = vec.step(actions)
    for k in range(8):
        st = infos[k * n + s]
        assert st["bid_price_0"] == pytest.approx(25.0) and st["bid_price_1"] == pytest.approx(25.0)
        pl = infos[k * n + agents.index("plant_ccgt-1")]
        assert pl["bid_price_0"] == pytest.approx(25.0) and pl["bid_price_1"] == pytest.approx(90.0)
    vec.close()


def test_example_runs():
    ex = load_example("supersuit_example")
    out = ex.main("tiny", copies=8, steps=60)
    assert out["num_envs"] == 8 and out["obs_shape"][0] == 8
    assert out["finished_agent_episodes"] == 8  # tiny has 48 hours: every copy finished once
    assert np.isfinite(out["total_reward"])
