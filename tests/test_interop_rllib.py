"""RLlib: ParallelPettingZooEnv rollout and one PPO training iteration."""

import math
from pathlib import Path

import pytest
from _examples import load_example

pytest.importorskip("ray.rllib")

ROOT = Path(__file__).resolve().parents[1]




def test_rollout_through_the_rllib_wrapper():
    ex = load_example("rllib_example")
    out = ex.rollout("default", max_cycles=48)
    assert out["steps"] == 48
    assert set(out["returns"]) == {"plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"}
    assert out["truncateds"]["__all__"] and not out["terminateds"]["__all__"]
    assert all(math.isfinite(v) for v in out["returns"].values())


def test_one_ppo_training_iteration():
    """One PPO iteration (192 env steps, one module per agent kind; ~25 s with Ray's
    start-up): both modules are trained and report finite losses."""
    ex = load_example("rllib_example")
    (result,) = ex.train("default", iterations=1, max_cycles=48)
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 192
    learners = result["learners"]
    for module in ("plant", "storage"):
        assert math.isfinite(float(learners[module]["total_loss"]))
    returns = result["env_runners"]["agent_episode_returns_mean"]
    assert set(returns) == {"plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"}
