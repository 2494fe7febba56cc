"""`obs_normalization`: the scenario's observation standardisation, applied inside MATD3,
folded into every exported actor and critic and unfolded on load."""
import numpy as np
import pytest
import torch

from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.config import LearningConfig
from agents.learning_utils import Actor, CriticTD3
from agents.matd3 import MATD3
from agents.mango.agents import UnitAgent
from agents.mango.protocol import UnitSpec
from agents.trainer import Trainer, evaluate_policy
from envs import MarketCore, load_scenario
from envs.core import OBS_SCALE_FLOOR

N, OD, ACT, U = 3, 8, [2, 1, 2], 2


def _algo(seed=0, shift=None, scale=None):
    a = MATD3(N, OD, ACT, U, actor_hidden_sizes=(16, 8), critic_hidden_sizes=(16, 8), seed=seed)
    if shift is not None:
        a.set_obs_normalization(shift, scale)
    return a


def _stats(seed=1):
    g = np.random.default_rng(seed)
    return g.normal(0.6, 0.2, (N, OD)).astype(np.float32), g.uniform(0.05, 0.3, (N, OD)).astype(np.float32)


def _obs(seed=2, batch=5):
    return torch.from_numpy(np.random.default_rng(seed).normal(0.6, 0.15, (batch, N, OD)).astype(np.float32))


def test_scaling_takes_nothing_from_held_out_hours():
    """With `holdout_hours` the training env's scaling is the statistics of its window:
    the same as for a market that ends where the held-out hours begin, and not those of
    the whole horizon (so the held-out hours do not shape the training's inputs)."""
    month = load_scenario("default", study_case="month")
    train = MarketCore(month, holdout_hours=336)
    assert train.window == (0, 336)
    shift, scale = train.observation_scaling()
    whole_shift, _ = MarketCore(month).observation_scaling()
    assert np.abs(shift - whole_shift).max() > 0.01
    F = train.foresight
    block = train._fc_block[0:336]
    np.testing.assert_allclose(shift[:, : 2 * F], np.broadcast_to(block.mean(axis=0), (train.n, 2 * F)), atol=1e-6)
    np.testing.assert_allclose(scale[:, : 2 * F],
                               np.maximum(np.broadcast_to(block.std(axis=0), (train.n, 2 * F)), OBS_SCALE_FLOOR),
                               atol=1e-6)
    # the whole horizon keeps its statistics (its end row included, as before)
    full_shift, _ = MarketCore(load_scenario("default")).observation_scaling()
    base = MarketCore(load_scenario("default"))
    np.testing.assert_allclose(full_shift[:, : 2 * F],
                               np.broadcast_to(base._fc_block.mean(axis=0), (base.n, 2 * F)), atol=1e-6)


def test_scaling_standardises_the_forecasts_of_an_episode():
    core = MarketCore(load_scenario("default"))
    shift, scale = core.observation_scaling()
    assert shift.shape == scale.shape == (core.n, core.obs_dim) and shift.dtype == np.float32
    assert (scale >= OBS_SCALE_FLOOR).all()
    obs = [core.reset(np.random.default_rng(0))[0]]
    rng = np.random.default_rng(1)
    while not core.done:
        a = rng.uniform(-1, 1, (1, core.n, core.max_act)) * (np.arange(core.max_act) < core.act_dims[:, None])
        obs.append(core.step_observe(a)[1][0])
    z = (np.stack(obs)[:-1] - shift) / scale  # (H, n, od): the hours of the episode
    F = core.foresight
    assert np.abs(z[:, :, : 2 * F].mean(axis=0)).max() < 0.05  # forecast columns: mean 0
    assert np.abs(z[:, :, : 2 * F].std(axis=0) - 1).max() < 0.05  # and spread 1
    # the plants' marginal cost is constant in `default`: the floor, and about 0 after it
    mc_col = core.obs_dim - 1
    assert np.allclose(scale[core.sl_plant, mc_col], OBS_SCALE_FLOOR)
    assert np.abs(z[:, core.sl_plant, mc_col]).max() < 1e-3
    # dispatch share centred on 0.5: off is -1, full power +1
    assert np.allclose(shift[:, 3 * F], 0.5) and np.allclose(scale[:, 3 * F], 0.5)


def test_exported_actor_and_critic_take_raw_observations():
    shift, scale = _stats()
    algo = _algo(shift=shift, scale=scale)
    obs = _obs()
    acts = algo.act(obs)
    q1, q2 = algo.critic_values(obs, acts)
    plain = _algo()  # the same weights without standardisation give other outputs
    plain.load_state_dict({**algo.state_dict(), "obs_shift": None, "obs_scale": None})
    assert not torch.allclose(plain.act(obs), acts, atol=1e-3)
    for i in range(N):
        actor = Actor(OD, ACT[i], torch.float32, hidden_sizes=(16, 8))
        actor.load_state_dict(algo.actor_state_dict(i))
        with torch.no_grad():
            torch.testing.assert_close(actor(obs[:, i]), acts[:, i, : ACT[i]], rtol=0, atol=2e-6)
        critic = CriticTD3(N, OD, max(ACT), torch.float32, U, hidden_sizes=(16, 8))
        critic.load_state_dict(algo.critic_state_dict(i))
        others = [j for j in range(N) if j != i]
        c_obs = torch.cat([obs[:, i]] + [obs[:, j, OD - U:] for j in others], dim=1)
        with torch.no_grad():
            c1, c2 = critic(c_obs, acts.reshape(len(obs), -1))
        torch.testing.assert_close(c1[:, 0], q1[:, i], rtol=0, atol=1e-5)
        torch.testing.assert_close(c2[:, 0], q2[:, i], rtol=0, atol=1e-5)


def test_load_agent_unfolds_into_any_standardisation():
    shift, scale = _stats()
    src = _algo(seed=0, shift=shift, scale=scale)
    obs = _obs()
    s2, k2 = _stats(seed=7)
    for dst in (_algo(seed=5, shift=shift, scale=scale), _algo(seed=5), _algo(seed=5, shift=s2, scale=k2)):
        for i in range(N):
            dst.load_agent(i, actor=src.actor_state_dict(i), critic=src.critic_state_dict(i))
        torch.testing.assert_close(dst.act(obs), src.act(obs), rtol=0, atol=2e-6)
        a = src.act(obs)
        for x, y in zip(dst.critic_values(obs, a), src.critic_values(obs, a)):
            torch.testing.assert_close(x, y, rtol=0, atol=2e-5)
    # the stacked weights come back exactly where the standardisation is the same
    same = _algo(seed=5, shift=shift, scale=scale)
    same.load_agent(0, actor=src.actor_state_dict(0))
    torch.testing.assert_close(same.actor_params[0][0], src.actor_params[0][0], rtol=1e-6, atol=1e-6)


def test_state_dict_keeps_the_standardisation_and_checks_it():
    shift, scale = _stats()
    algo = _algo(shift=shift, scale=scale)
    other = _algo(seed=3)
    other.load_state_dict(algo.state_dict())
    assert torch.equal(other.obs_shift, algo.obs_shift) and torch.equal(other.obs_scale, algo.obs_scale)
    assert torch.equal(other.act(_obs()), algo.act(_obs()))
    with pytest.raises(ValueError, match="must both be"):
        algo.set_obs_normalization(shift[:, :3], scale[:, :3])
    with pytest.raises(ValueError, match="scale finite and > 0"):
        algo.set_obs_normalization(shift, np.zeros_like(scale))
    algo.set_obs_normalization(None)
    assert algo.obs_shift is None and algo.obs_scale is None


def test_unit_agent_bids_bitwise_like_the_learner():
    shift, scale = _stats()
    algo = _algo(shift=shift, scale=scale)
    obs = _obs(batch=3)
    for i in range(N):
        spec = UnitSpec(name=f"u{i}", index=i, n_agents=N, obs_dim=OD, act_dim=ACT[i], max_act=max(ACT), num_envs=3,
                        actor_hidden_sizes=[16, 8], critic_hidden_sizes=[16, 8], noise_sigma=0.1, seed=0,
                        obs_shift=shift[i].tolist(), obs_scale=scale[i].tolist())
        unit = UnitAgent(spec)
        unit.load_actor(algo.actor_state_dict(i, folded=False), version=1)
        got = unit.deterministic_action(obs[:, i].numpy())
        want = algo.act(obs)[:, i].numpy().astype(np.float64)
        assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="together"):
        UnitAgent(UnitSpec(name="u", index=0, n_agents=N, obs_dim=OD, act_dim=2, max_act=2, num_envs=1,
                           actor_hidden_sizes=[16, 8], critic_hidden_sizes=[16, 8], noise_sigma=0.1, seed=0,
                           obs_shift=shift[0].tolist()))


def test_trained_checkpoint_evaluates_the_same_without_the_trainer(tmp_path):
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["obs_normalization=true", "training_episodes=4", "episodes_collecting_initial_experience=1",
         "torch_threads=1"])
    tr = Trainer(sc, cfg, run_dir=tmp_path / "run", seed=0, progress=False, tensorboard=False)
    assert tr.algo.obs_shift is not None
    tr.train()
    ev = tr.evaluate()
    tr.close()
    # evaluate_policy builds a learner without the standardisation and loads the folded weights
    ev2, _ = evaluate_policy(sc, cfg, tmp_path / "run" / "policies" / "last", seed=0)
    np.testing.assert_allclose(ev2.bids, ev.bids, rtol=0, atol=1e-3)
    np.testing.assert_allclose(ev2.agent_profit, ev.agent_profit, rtol=1e-6, atol=1.0)


def _tiny_trainer(*extra, seed=0, run_dir=None):
    sc = load_scenario("tiny")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        ["training_episodes=2", "episodes_collecting_initial_experience=1", "torch_threads=1", *extra])
    return Trainer(sc, cfg, run_dir=run_dir, seed=seed, progress=False, tensorboard=False)


def test_the_key_switches_the_standardisation_on_and_off():
    on = _tiny_trainer()  # the default
    shift, scale = on.core.observation_scaling()
    assert on.config.obs_normalization is True
    assert np.array_equal(on.algo.obs_shift.numpy(), shift) and np.array_equal(on.algo.obs_scale.numpy(), scale)
    off = _tiny_trainer("obs_normalization=false")
    assert off.algo.obs_shift is None and off.algo.obs_scale is None
    # same seed, same initial weights: only the standardisation differs, and so do the bids
    obs = on.core.reset(np.random.default_rng(0))
    assert not torch.allclose(on.algo.act(obs), off.algo.act(obs), atol=1e-3)


def test_checkpoints_reload_bit_for_bit_with_the_same_standardisation(tmp_path):
    a = _tiny_trainer()
    a.train()
    save_checkpoint(tmp_path / "ck", a.algo, a.agents)
    b = _tiny_trainer(seed=9)
    load_checkpoint(tmp_path / "ck", b.algo, b.agents)
    for name in ("actor_params", "actor_target_params", "critic_params", "critic_target_params"):
        assert all(torch.equal(x, y) for x, y in zip(getattr(a.algo, name), getattr(b.algo, name))), name
    # another standardisation (or none) loads the folded weights: the same function
    c = _tiny_trainer("obs_normalization=false", seed=9)
    load_checkpoint(tmp_path / "ck", c.algo, c.agents)
    obs = a.core.reset(np.random.default_rng(1))
    torch.testing.assert_close(c.algo.act(obs), a.algo.act(obs), rtol=0, atol=2e-6)
    assert not all(torch.equal(x, y) for x, y in zip(a.algo.actor_params, c.algo.actor_params))
