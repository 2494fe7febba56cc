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


def test_default_scenario_vectorises_with_uniform_spaces():
    """``default`` mixes plants (2 prices) and storage (1 price): SuperSuit refuses the plain
    env and takes ``uniform_spaces=True`` as it is; the storage slots' entry 1 is ignored."""
    ex = load_example("supersuit_example")
    with pytest.raises(Exception):  # heterogeneous action spaces are refused
        ss.pettingzoo_env_to_vec_env_v1(envs.parallel_env("default"))
    vec = ex.make_vec_env("default", copies=8)  # picks uniform_spaces=True for mixed kinds
    pz = envs.parallel_env("default", uniform_spaces=True)
    agents = pz.possible_agents
    n = len(agents)
    obs_dim = envs.parallel_env("default").observation_space(agents[0]).shape[0] + 3  # + kind one-hot
    assert vec.num_envs == 8 * n and vec.action_space.shape == (2,)
    assert vec.observation_space.shape == (obs_dim,) == pz.observation_space(agents[0]).shape
    obs, _ = vec.reset(seed=0)
    s = agents.index("storage_pumped-storage-1")
    p = agents.index("plant_ccgt-1")
    for k in range(8):  # the kind one-hot tells the slots apart: plant (1,0,0), storage (0,1,0)
        np.testing.assert_array_equal(obs[k * n + p, -3:], [1, 0, 0])
        np.testing.assert_array_equal(obs[k * n + s, -3:], [0, 1, 0])
    actions = np.zeros((vec.num_envs, 2), dtype=np.float32)
    actions[:, 0] = 0.25
    actions[:, 1] = 0.9  # ignored for the storage slots
    _, _, _, _, infos = vec.step(actions)
    for k in range(8):
        st = infos[k * n + s]
        assert st["bid_price_0"] == pytest.approx(25.0) and st["bid_price_1"] == pytest.approx(25.0)
        pl = infos[k * n + p]
        assert pl["bid_price_0"] == pytest.approx(25.0) and pl["bid_price_1"] == pytest.approx(90.0)
    vec.close()


def test_one_shared_sb3_policy_trains_on_default():
    """``uniform_spaces=True`` -> ``pettingzoo_env_to_vec_env_v1`` -> ``concat_vec_envs_v1``
    (SB3 base class) -> one PPO policy for the two CCGTs and the storage unit, 4 copies
    (12 slots). 8192 steps (~10 s on one loaded core): the shared net's weights move and
    the total profit of the deterministic evaluation week rises by more than 0.2 MEUR
    (seed 0: -2.17 -> -0.91 MEUR; 24576 steps reach -0.40)."""
    pytest.importorskip("stable_baselines3")
    import torch

    ex = load_example("supersuit_shared_policy")
    torch.set_num_threads(1)
    vec = ex.make_vec_env("default", copies=2, max_cycles=24)
    assert vec.num_envs == 2 * 3
    vec.close()
    out = ex.main("default", copies=4, steps=0, max_cycles=168, seed=0)
    init = {k: v.clone() for k, v in out["model"].policy.state_dict().items()}
    trained = ex.main("default", copies=4, steps=8192, max_cycles=168, seed=0)
    assert trained["num_envs"] == 12 and trained["action_shape"] == (2,)
    assert trained["obs_shape"] == envs.parallel_env("default", uniform_spaces=True).observation_space("plant_ccgt-1").shape
    after = trained["model"].policy.state_dict()
    moved = [k for k in init if not torch.equal(init[k], after[k])]
    assert len(moved) >= len([k for k in init if "weight" in k])  # the shared net was trained
    b, a = out["after"], trained["after"]  # out["after"] is the untrained policy (steps=0)
    assert set(a["profit"]) == {"plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"}
    assert all(np.isfinite(v) for v in a["reward"].values())
    total_b, total_a = sum(b["profit"].values()), sum(a["profit"].values())
    assert total_b < 0  # the untrained shared policy bids ~0 and loses money
    assert total_a > total_b + 2e5


def test_example_runs():
    ex = load_example("supersuit_example")
    out = ex.main("tiny", copies=8, steps=60)
    assert out["num_envs"] == 8 and out["obs_shape"][0] == 8
    assert out["finished_agent_episodes"] == 8  # tiny has 48 hours: every copy finished once
    assert np.isfinite(out["total_reward"])
