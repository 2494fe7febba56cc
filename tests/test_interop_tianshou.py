"""Tianshou: its PettingZoo adapter takes ``envs.env("default", uniform_spaces=True)`` as it
is, and one DDPG learner per agent trains through ``MultiAgentOffPolicyAlgorithm``."""

import importlib.util
import os

import numpy as np
import pytest
from _examples import load_example

if importlib.util.find_spec("tianshou") is not None:
    # Tianshou compiles its n-step-return kernels with numba when it is imported (about a
    # minute on a loaded 2-core machine); for the tiny buffers here plain Python is as good.
    # Only Tianshou's own functions are affected: the flag is restored right after import.
    import numba

    _jit = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        import tianshou  # noqa: F401
    finally:
        numba.config.DISABLE_JIT = _jit
pytest.importorskip("tianshou")
torch = pytest.importorskip("torch")

from gymnasium import spaces  # noqa: E402

import envs  # noqa: E402

AGENTS = ["plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_adapter_takes_default_with_uniform_spaces_only():
    from tianshou.env import PettingZooEnv

    with pytest.raises(AssertionError, match="Action spaces for all agents must be identical"):
        PettingZooEnv(envs.env("default"))
    ex = load_example("tianshou_example")
    env = ex.make_env("default", max_cycles=24)
    pz = envs.parallel_env("default", uniform_spaces=True)
    assert env.agents == AGENTS
    assert env.action_space == spaces.Box(-1, 1, (2,), np.float32)
    assert env.observation_space == pz.observation_space(AGENTS[0])
    obs, _ = env.reset(seed=0)
    assert obs["agent_id"] == AGENTS[0] and obs["obs"].shape == pz.observation_space(AGENTS[0]).shape
    # one hour: each agent acts in turn; the storage unit's second entry is ignored
    for a in AGENTS:
        obs, rew, term, trunc, info = env.step(np.array([0.3, 0.8], dtype=np.float32))
    assert len(rew) == 3 and np.isfinite(rew).all() and not term and not trunc
    inner = env.env.infos
    assert inner["plant_ccgt-1"]["bid_price_1"] == pytest.approx(80.0)
    assert inner["storage_pumped-storage-1"]["bid_price_1"] == pytest.approx(30.0)


def test_one_ddpg_per_agent_trains_on_default():
    """384 agent steps (= 128 market hours in 2 copies; ~10 s on one core): every agent's
    actor moves and the test returns are finite, one per agent. This checks the plumbing,
    not learning quality."""
    ex = load_example("tianshou_example")
    env = ex.make_env("default", max_cycles=48)
    algorithm = ex.make_algorithm(env)
    actors = {a: algorithm.get_algorithm(a).policy.actor for a in AGENTS}
    assert len({id(m) for m in actors.values()}) == 3  # independent learners
    torch.manual_seed(0)
    out = ex.main("default", epochs=1, epoch_steps=384, max_cycles=48, seed=0)
    trained = out["algorithm"]
    assert out["agents"] == AGENTS
    assert out["env_steps"] >= 384
    for a in AGENTS:
        sub = trained.get_algorithm(a)
        # the actor and its lagged copy differ only once the actor has been updated
        moved = [not torch.equal(p, q) for p, q in zip(sub.policy.actor.parameters(), sub.actor_old.parameters())]
        assert all(moved), a
    for key in ("returns_before", "returns_after"):
        r = np.asarray(out[key])
        assert r.shape == (3,) and np.isfinite(r).all()
