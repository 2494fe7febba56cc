"""TorchRL: PettingZooWrapper around the ParallelEnv passes check_env_specs and rolls out."""

from pathlib import Path

import numpy as np
import pytest
from _examples import load_example

pytest.importorskip("torchrl")

import envs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]




def test_check_env_specs_and_rollout_replays_exactly():
    """check_env_specs passes; a random rollout over more than one episode of ``default``
    has the documented shapes, resets at the horizon, and replaying its actions in a
    plain ParallelEnv gives the same rewards and prices."""
    ex = load_example("torchrl_example")
    pz = envs.parallel_env("default")
    horizon = pz.core.max_cycles  # 336 hours
    groups, td = ex.main("default", steps=horizon + 20, seed=0)
    assert groups == {"plant": ["plant_ccgt-1", "plant_ccgt-2"], "storage": ["storage_pumped-storage-1"]}
    T = horizon + 20
    assert td["plant", "action"].shape == (T, 2, 2)
    assert td["storage", "action"].shape == (T, 1, 1)
    assert td["next", "plant", "reward"].shape == (T, 2, 1)
    assert td["state"].shape == (T, pz.state_space.shape[0])
    done = td["next", "done"].squeeze(-1).numpy()
    assert done.sum() == 1 and done[horizon - 1]  # truncation ends the episode exactly at the horizon
    pz.reset(seed=0)
    np.testing.assert_allclose(td["plant", "observation"][0, 0].numpy(), pz.core.observe()[0, 0])
    for t in range(horizon):
        acts = {a: td["plant", "action"][t, i].numpy() for i, a in enumerate(groups["plant"])}
        acts["storage_pumped-storage-1"] = td["storage", "action"][t, 0].numpy()
        _, rew, _, _, info = pz.step(acts)
        for i, a in enumerate(groups["plant"]):
            assert td["next", "plant", "reward"][t, i, 0].item() == pytest.approx(rew[a], rel=1e-5, abs=1e-5)
        assert td["next", "storage", "info", "clearing_price"][t, 0].item() == pytest.approx(
            info["storage_pumped-storage-1"]["clearing_price"], rel=1e-5)
    assert not pz.agents  # the replayed episode ended too
