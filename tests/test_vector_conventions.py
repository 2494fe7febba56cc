"""VectorMarketEnv and Gymnasium 1.x vector conventions (autoreset modes, spaces, seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import envs
from envs.vector import AutoresetMode  # gymnasium.vector.AutoresetMode where Gymnasium has it


def make(**kw):
    return envs.VectorMarketEnv("default", num_envs=2, max_cycles=3, **kw)


def test_declared_autoreset_modes():
    assert make().metadata["autoreset_mode"] is AutoresetMode.DISABLED
    assert make(autoreset=True).metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert make(autoreset_mode="SameStep").metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert make(autoreset_mode=AutoresetMode.NEXT_STEP).autoreset
    assert envs.VectorMarketEnv.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    with pytest.raises(ValueError, match="autoreset_mode must be"):
        make(autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="contradicts"):
        make(autoreset=True, autoreset_mode=AutoresetMode.DISABLED)


def test_disabled_mode_refuses_to_step_past_the_end():
    v = make()
    v.reset(seed=0)
    acts = np.zeros(v.action_space.shape, np.float32)
    for _ in range(3):
        v.step(acts)
    with pytest.raises(RuntimeError, match="reset"):
        v.step(acts)


def test_next_step_mode():
    v = make(autoreset_mode=AutoresetMode.NEXT_STEP)
    first, _ = v.reset(seed=0)
    acts = np.full(v.action_space.shape, 0.3, np.float32)
    truncs = [v.step(acts)[3].all() for _ in range(3)]
    assert truncs == [False, False, True]
    obs, rew, term, trunc, _ = v.step(acts)  # the reset step: actions ignored
    assert v.core.step_count == 0 and not trunc.any() and not term.any() and (rew == 0).all()
    np.testing.assert_array_equal(obs, first)


def test_same_step_mode_returns_the_next_first_observation_and_the_final_one_in_infos():
    ref = make()
    v = make(autoreset_mode=AutoresetMode.SAME_STEP)
    first, _ = v.reset(seed=0)
    ref.reset(seed=0)
    acts = np.full(v.action_space.shape, 0.3, np.float32)
    for h in range(3):
        obs, rew, term, trunc, infos = v.step(acts)
        robs, rrew, _, rtrunc, rinfos = ref.step(acts)
        np.testing.assert_array_equal(rew, rrew)
        np.testing.assert_array_equal(trunc, rtrunc)
    assert trunc.all() and not term.any()
    np.testing.assert_array_equal(infos["final_obs"], robs)
    np.testing.assert_array_equal(infos["final_info"]["profit"], rinfos["profit"])
    assert infos["_final_obs"].tolist() == [True, True] and infos["_final_info"].all()
    np.testing.assert_array_equal(obs, first)  # already the next episode's first observation
    assert v.core.step_count == 0
    obs, *_ = v.step(acts)  # and it goes on without reset()
    assert v.core.step_count == 1


def test_spaces_follow_gymnasium_batching():
    v = make()
    n, d, m = v.n_agents, v.obs_dim, v.max_act
    assert v.single_observation_space.shape == (n, d)
    assert v.single_action_space.shape == (n, m)
    assert v.observation_space.shape == (2, n, d) and v.action_space.shape == (2, n, m)
    assert v.agent_observation_space.shape == (d,)
    obs, infos = v.reset(seed=0)
    assert v.observation_space.contains(obs)
    assert all(v.single_observation_space.contains(o) for o in obs)
    assert isinstance(infos, dict) and infos["profit"].shape == (2, n)
    assert v.unwrapped is v and isinstance(v.np_random, np.random.Generator)
    v.close()
    assert v.closed


def test_reset_seed_list():
    v = envs.VectorMarketEnv("default", num_envs=2, episode_hours=24, random_start=True)
    v.reset(seed=[5, 5])
    t_list = v.core.t0
    v.reset(seed=5)
    assert v.core.t0 == t_list
    with pytest.raises(ValueError, match="one seed decides them all"):
        v.reset(seed=[1, 2])


def test_autoreset_mode_is_gymnasiums_own_when_available():
    gv = pytest.importorskip("gymnasium.vector")
    if not hasattr(gv, "AutoresetMode"):
        pytest.skip("Gymnasium < 1.1 has no AutoresetMode")
    assert AutoresetMode is gv.AutoresetMode
