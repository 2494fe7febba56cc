"""BenchMARL: the marketzoo task (task class + YAML) and MADDPG / MAPPO on ``default``."""

import csv
from pathlib import Path

import numpy as np
import pytest
from _examples import load_example

pytest.importorskip("benchmarl")
torch = pytest.importorskip("torch")

import envs  # noqa: E402
from marketzoo_benchmarl import MarketzooTask, make_env  # noqa: E402

AGENTS = ["plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scalars(folder: Path, name: str) -> list[float]:
    (path,) = folder.rglob(f"scalars/{name}.csv")
    with open(path) as f:
        return [float(row[1]) for row in csv.reader(f)]


def _params(module) -> dict:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_task_from_yaml_builds_one_group_with_the_env_spaces():
    task = MarketzooTask.DEFAULT.get_from_yaml()
    assert task.config["scenario"] == "default" and task.config["uniform_spaces"] is True
    env = task.get_env_fun(num_envs=1, continuous_actions=True, seed=0, device="cpu")()
    pz = envs.parallel_env("default", uniform_spaces=True)
    assert task.group_map(env) == {"agents": AGENTS}
    assert task.max_steps(env) == task.config["max_cycles"] == 168
    obs = task.observation_spec(env)["agents", "observation"]
    act = task.action_spec(env)["agents", "action"]
    assert obs.shape == (3, *pz.observation_space(AGENTS[0]).shape)
    assert act.shape == (3, 2)
    assert task.state_spec(env)["state"].shape == pz.state_space.shape
    assert not task.supports_discrete_actions() and task.action_mask_spec(env) is None
    td = env.rollout(5)
    assert td["next", "agents", "reward"].shape == (5, 3, 1)
    assert torch.isfinite(td["next", "agents", "reward"]).all()


def test_task_groups_by_kind_without_uniform_spaces_and_rejects_bad_keys(tmp_path):
    task = MarketzooTask.DEFAULT.get_task({"scenario": "default", "uniform_spaces": False, "max_cycles": 24})
    env = task.get_env_fun(num_envs=1, continuous_actions=True, seed=0, device="cpu")()
    assert task.group_map(env) == {"plant": AGENTS[:2], "storage": AGENTS[2:]}
    assert task.action_spec(env)["storage", "action"].shape == (1, 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: default\nmax_cycle: 24\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*'max_cycle'"):
        MarketzooTask.DEFAULT.get_from_yaml(str(bad))
    with pytest.raises(ValueError, match="continuous actions only"):
        task.get_env_fun(num_envs=1, continuous_actions=False, seed=0, device="cpu")
    # the TorchRL env equals the plain ParallelEnv on the same actions
    tr = make_env({"scenario": "tiny"}, seed=0)
    td = tr.reset()
    pz = envs.parallel_env("tiny", uniform_spaces=True)
    obs, _ = pz.reset(seed=0)
    np.testing.assert_allclose(td["agents", "observation"][0].numpy(), obs["plant_learner-1"], rtol=1e-6)


def test_maddpg_trains_on_default(tmp_path):
    """3 MADDPG iterations of 384 frames on ``default`` (48-hour episodes, 2 envs; ~25 s on
    one core): the shared actor's parameters move and the collection return rises (seed 0:
    -34.6 -> -12.3 -> -0.7; the untrained actor bids ~0 and the CCGTs lose money)."""
    ex = load_example("benchmarl_example")
    experiment = ex.make_experiment("maddpg", iters=3, save_folder=str(tmp_path), seed=0)
    assert experiment.group_map == {"agents": AGENTS}
    before = _params(experiment.policy)
    experiment.run()
    assert experiment.n_iters_performed == 3 and experiment.total_frames == 3 * 384
    after = _params(experiment.policy)
    assert before and all(not torch.equal(before[k], after[k]) for k in before)  # every tensor moved
    ret = _scalars(tmp_path, "collection_reward_episode_reward_mean")
    ev = _scalars(tmp_path, "eval_reward_episode_reward_mean")
    assert len(ret) == 3 and np.isfinite(ret).all() and np.isfinite(ev).all()
    assert ret[0] < -10 and ret[-1] > ret[0] + 10
    price = _scalars(tmp_path, "collection_agents_info_clearing_price")
    assert all(0 < p < 1000 for p in price)  # the env's infos reach BenchMARL's logs


def test_mappo_runs_on_default(tmp_path):
    """2 MAPPO iterations (one shared policy, centralised critic on the env state)."""
    ex = load_example("benchmarl_example")
    experiment = ex.make_experiment("mappo", iters=2, save_folder=str(tmp_path), seed=0)
    before = _params(experiment.policy)
    experiment.run()
    assert experiment.n_iters_performed == 2
    after = _params(experiment.policy)
    assert before and any(not torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(_scalars(tmp_path, "collection_reward_episode_reward_mean")).all()


def test_hydra_command_line_knows_the_marketzoo_tasks(tmp_path, monkeypatch):
    """``python -m marketzoo_benchmarl.run algorithm=mappo task=marketzoo/default ...``:
    BenchMARL's own Hydra entry point with this package's task folder on the search path."""
    pytest.importorskip("hydra")
    from marketzoo_benchmarl.run import main

    monkeypatch.chdir(tmp_path)
    main([
        "algorithm=mappo", "task=marketzoo/default", "task.max_cycles=24", "experiment.max_n_iters=1",
        "experiment.max_n_frames=null", "experiment.on_policy_collected_frames_per_batch=96",
        "experiment.on_policy_n_envs_per_worker=2", "experiment.on_policy_minibatch_size=48",
        "experiment.on_policy_n_minibatch_iters=1", "experiment.loggers=[csv]", "experiment.evaluation=false",
        "experiment.render=false", "experiment.create_json=false", f"hydra.run.dir={tmp_path / 'run'}",
    ])
    ret = _scalars(tmp_path, "collection_reward_episode_reward_mean")
    assert len(ret) == 1 and np.isfinite(ret).all()
    assert _scalars(tmp_path, "counters_total_frames") == [96.0]
