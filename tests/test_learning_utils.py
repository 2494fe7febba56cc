"""Networks, noise and Polyak update from ``agents.learning_utils``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agents import Actor, CriticTD3, NormalActionNoise, ObsActRew, OUNoise, polyak_update

# ---------------------------------------------------------------------- networks


def test_actor_shapes_bounds_and_layout():
    torch.manual_seed(0)
    actor = Actor(7, 2, torch.float32)
    assert list(actor.state_dict()) == [
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"
    ]
    assert actor.net[0].weight.shape == (256, 7)
    assert actor.net[2].weight.shape == (128, 256)
    assert actor.net[4].weight.shape == (2, 128)
    assert isinstance(actor.net[5], nn.Tanh)
    out = actor(100 * torch.randn(64, 7))
    assert out.shape == (64, 2)
    assert torch.all(out.abs() <= 1)
    assert actor(torch.randn(5, 3, 7)).shape == (5, 3, 2)
    with pytest.raises(ValueError, match="last dimension 7"):
        actor(torch.randn(4, 6))


def test_actor_hidden_sizes_and_dtype():
    actor = Actor(3, 1, torch.float64, hidden_sizes=(8, 8, 4))
    keys = [k for k in actor.state_dict() if k.endswith("weight")]
    assert keys == ["net.0.weight", "net.2.weight", "net.4.weight", "net.6.weight"]
    assert all(p.dtype == torch.float64 for p in actor.parameters())
    assert actor(torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match="hidden_sizes"):
        Actor(3, 1, torch.float32, hidden_sizes=())
    with pytest.raises(TypeError, match="float_type"):
        Actor(3, 1, torch.int64)


def test_critic_dimensions_and_outputs():
    n_agents, obs_dim, act_dim, unique = 4, 20, 2, 3
    critic = CriticTD3(n_agents, obs_dim, act_dim, torch.float32, unique_obs_len=unique)
    assert critic.input_dim == obs_dim + unique * (n_agents - 1) + act_dim * n_agents == 37
    assert critic.q1[0].weight.shape == (256, 37)
    assert critic.q1[4].weight.shape == (1, 128)
    assert list(critic.state_dict()) == [
        f"{head}.{i}.{p}" for head in ("q1", "q2") for i in (0, 2, 4) for p in ("weight", "bias")
    ]
    obs = torch.randn(10, 29)
    actions = torch.rand(10, 8) * 2 - 1
    q1, q2 = critic(obs, actions)
    assert q1.shape == q2.shape == (10, 1)
    assert not torch.equal(q1, q2)  # two independently initialised heads
    assert torch.equal(critic.q1_forward(obs, actions), q1)


def test_critic_default_unique_obs_len_and_single_agent():
    critic = CriticTD3(1, 5, 2, torch.float32, unique_obs_len=5, hidden_sizes=(16,))
    assert critic.input_dim == 5 + 2
    assert list(critic.state_dict())[:4] == ["q1.0.weight", "q1.0.bias", "q1.2.weight", "q1.2.bias"]
    big = CriticTD3(3, 30, 1, torch.float32)
    assert big.input_dim == 30 + 16 * 2 + 3


def test_critic_validates_widths():
    critic = CriticTD3(3, 10, 2, torch.float32, unique_obs_len=4)
    with pytest.raises(ValueError, match=r"obs must be \(batch, 18\)"):
        critic(torch.zeros(2, 17), torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"actions must be \(batch, 6\)"):
        critic.q1_forward(torch.zeros(2, 18), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="batch sizes"):
        critic(torch.zeros(2, 18), torch.zeros(3, 6))
    with pytest.raises(ValueError, match="unique_obs_len"):
        CriticTD3(3, 10, 2, torch.float32, unique_obs_len=11)


def test_networks_load_state_dicts_into_fresh_instances():
    a, b = Actor(6, 2, torch.float32), Actor(6, 2, torch.float32)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 6)
    assert torch.equal(a(x), b(x))


# ---------------------------------------------------------------------- noise


def test_normal_noise_statistics_and_decay():
    noise = NormalActionNoise(3, mu=0.5, sigma=0.2, scale=1.0, dt=1.0, seed=0)
    draws = np.stack([noise.noise() for _ in range(20_000)])
    assert draws.shape == (20_000, 3)
    np.testing.assert_allclose(draws.mean(axis=0), 0.5, atol=0.01)
    np.testing.assert_allclose(draws.std(axis=0), 0.2, atol=0.01)

    decaying = NormalActionNoise(2, sigma=0.1, scale=2.0, dt=0.9, seed=1)
    for _ in range(5):
        decaying.noise()
    assert decaying.scale == pytest.approx(2.0 * 0.9**5)
    # the draw is scaled by the scale before the decay
    ref_rng = np.random.default_rng(7)
    n = NormalActionNoise(2, sigma=0.1, scale=3.0, dt=0.5, seed=7)
    np.testing.assert_allclose(n.noise(), 3.0 * ref_rng.normal(0.0, 0.1, 2))
    np.testing.assert_allclose(n.noise(), 1.5 * ref_rng.normal(0.0, 0.1, 2))


def test_noise_is_reproducible_and_takes_a_generator():
    a = NormalActionNoise(4, seed=3)
    b = NormalActionNoise(4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.noise(), b.noise())
    o1, o2 = OUNoise(2, seed=9), OUNoise(2, seed=9)
    for _ in range(5):
        np.testing.assert_array_equal(o1.noise(), o2.noise())
    with pytest.raises(ValueError, match="not both"):
        OUNoise(2, seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="sigma"):
        NormalActionNoise(2, sigma=-1)


def lag1_autocorrelation(x: np.ndarray) -> float:
    x = x - x.mean()
    return float((x[:-1] * x[1:]).sum() / (x * x).sum())


def test_ou_noise_is_temporally_correlated():
    ou = OUNoise(1, mu=0.0, sigma=0.5, theta=0.15, dt=0.01, seed=0)
    ou_series = np.array([ou.noise()[0] for _ in range(20_000)])
    normal = NormalActionNoise(1, sigma=0.5, dt=1.0, seed=0)
    normal_series = np.array([normal.noise()[0] for _ in range(20_000)])
    assert lag1_autocorrelation(ou_series) > 0.9
    assert abs(lag1_autocorrelation(normal_series)) < 0.05


def test_ou_noise_step_reset_and_copy():
    ou = OUNoise(2, mu=1.0, sigma=0.5, theta=0.15, dt=0.01, seed=4)
    ref = np.random.default_rng(4)
    x = np.full(2, 1.0)
    for _ in range(3):
        x = x + 0.15 * (1.0 - x) * 0.01 + 0.5 * np.sqrt(0.01) * ref.standard_normal(2)
        out = ou.noise()
        np.testing.assert_allclose(out, x)
    out[:] = 123.0  # returned array is a copy
    assert not np.any(ou.x == 123.0)
    ou.reset()
    np.testing.assert_array_equal(ou.x, [1.0, 1.0])


def test_obs_act_rew_typed_dict():
    d: ObsActRew = {"observation": [torch.zeros(2)], "action": [torch.zeros(1)], "reward": [torch.zeros(1)]}
    assert set(ObsActRew.__annotations__) == {"observation", "action", "reward"}
    assert len(d["observation"]) == 1


# ---------------------------------------------------------------------- polyak


def pair():
    params = [torch.tensor([1.0, 2.0], requires_grad=True), torch.full((2, 2), 4.0, requires_grad=True)]
    targets = [torch.tensor([3.0, 6.0], requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    return params, targets


@pytest.mark.parametrize(
    "tau, expected",
    [
        (0.0, ([3.0, 6.0], 0.0)),
        (1.0, ([1.0, 2.0], 4.0)),
        (0.5, ([2.0, 4.0], 2.0)),
    ],
)
def test_polyak_exact_values(tau, expected):
    params, targets = pair()
    polyak_update(params, targets, tau)
    assert torch.equal(targets[0].detach(), torch.tensor(expected[0]))
    assert torch.equal(targets[1].detach(), torch.full((2, 2), expected[1]))
    # sources untouched, no autograd graph, requires_grad unchanged
    assert torch.equal(params[0].detach(), torch.tensor([1.0, 2.0]))
    for t in targets:
        assert t.requires_grad and t.grad_fn is None and t.is_leaf


def test_polyak_on_modules_and_generators():
    torch.manual_seed(0)
    net, target = Actor(4, 2, torch.float32), Actor(4, 2, torch.float32)
    before = [p.detach().clone() for p in target.parameters()]
    polyak_update(net.parameters(), target.parameters(), 0.25)  # generators
    for p, t, b in zip(net.parameters(), target.parameters(), before):
        torch.testing.assert_close(t.detach(), 0.75 * b + 0.25 * p.detach())
        assert t.requires_grad and t.grad_fn is None


def test_polyak_mixed_dtypes():
    params = [torch.tensor([1.0, 3.0], dtype=torch.float64)]
    targets = [torch.tensor([3.0, 5.0], dtype=torch.float32)]
    polyak_update(params, targets, 0.5)
    assert targets[0].dtype == torch.float32
    assert torch.equal(targets[0], torch.tensor([2.0, 4.0]))


def test_polyak_refuses_mismatches():
    params, targets = pair()
    with pytest.raises(ValueError, match="2 parameters but 1 target"):
        polyak_update(params, targets[:1], 0.5)
    with pytest.raises(ValueError, match="shape mismatch at entry 1"):
        polyak_update(params, [targets[0], torch.zeros(3)], 0.5)
    for tau in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            polyak_update(params, targets, tau)
    # nothing changed by the refused calls
    assert torch.equal(targets[0].detach(), torch.tensor([3.0, 6.0]))
