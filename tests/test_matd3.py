"""Tests of the stacked MATD3 (agents.matd3) against the per-agent loop and the documented networks."""

from __future__ import annotations

import io

import pytest
import torch

from agents.buffer import ReplayBufferSamples
from agents.learning_utils import Actor, CriticTD3
from agents.matd3 import MATD3, metrics_to_float
from agents.matd3_reference import ReferenceMATD3

N, OBS, UNIQ = 3, 12, 4
ACT_DIMS = [2, 1, 2]
HID_A, HID_C = (32, 16), (24, 16)


def make(seed: int = 1, dtype=torch.float32, device="cpu", **kw) -> MATD3:
    kw.setdefault("actor_hidden_sizes", HID_A)
    kw.setdefault("critic_hidden_sizes", HID_C)
    return MATD3(N, OBS, ACT_DIMS, UNIQ, float_type=dtype, seed=seed, device=device, **kw)


def make_batch(seed: int, batch: int = 64, n: int = N, obs_dim: int = OBS, act: int = 2, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    b = ReplayBufferSamples(
        torch.randn(batch, n, obs_dim, generator=g, dtype=dtype),
        torch.rand(batch, n, act, generator=g, dtype=dtype) * 2 - 1,
        torch.randn(batch, n, obs_dim, generator=g, dtype=dtype),
        torch.randn(batch, n, generator=g, dtype=dtype),
    )
    return ReplayBufferSamples(*(t.to(device) for t in b))


def all_tensors(m: MATD3) -> list[torch.Tensor]:
    return m.actor_params + m.critic_params + m.actor_target_params + m.critic_target_params


def max_diff_to_reference(m: MATD3, ref: ReferenceMATD3) -> float:
    worst = 0.0
    for i in range(m.n_agents):
        pairs = [
            (m.actor_state_dict(i), ref.actors[i].state_dict()),
            (m.actor_target_state_dict(i), ref.actor_targets[i].state_dict()),
            (m.critic_state_dict(i), ref.critics[i].state_dict()),
            (m.critic_target_state_dict(i), ref.critic_targets[i].state_dict()),
        ]
        for ours, theirs in pairs:
            assert ours.keys() == theirs.keys()
            for k in ours:
                assert ours[k].shape == theirs[k].shape, k
                worst = max(worst, (ours[k] - theirs[k]).abs().max().item())
        for ours, opt in (
            (m.actor_optimizer_state(i), ref.actor_optimizers[i]),
            (m.critic_optimizer_state(i), ref.critic_optimizers[i]),
        ):
            theirs = opt.state_dict()["state"]
            assert ours["state"].keys() == theirs.keys()
            for k, st in ours["state"].items():
                assert float(st["step"]) == float(theirs[k]["step"])
                for name in ("exp_avg", "exp_avg_sq"):
                    worst = max(worst, (st[name] - theirs[k][name]).abs().max().item())
    return worst


# --------------------------------------------------------------------------- shapes


def test_shapes_and_metrics():
    m = make()
    assert m.max_act == 2 and m.action_mask.tolist() == [[1, 1], [1, 0], [1, 1]]
    b = make_batch(0, batch=16)
    assert m.act(b.observations).shape == (16, N, 2)
    assert m.act(b.observations[0]).shape == (N, 2)
    assert m.act_target(b.observations).shape == (16, N, 2)
    q1, q2 = m.critic_values(b.observations, b.actions)
    assert q1.shape == q2.shape == (16, N)
    assert m.critic_input_dim == OBS + (N - 1) * UNIQ + N * 2

    out = m.update(b)
    assert all(isinstance(v, torch.Tensor) for v in out.values())  # no sync by default
    assert out["losses/critic_loss"].shape == ()
    assert out["losses/critic_loss_per_agent"].shape == (N,)
    assert "losses/actor_loss" not in out
    out = m.update(b, as_float=True)
    assert isinstance(out["losses/critic_loss"], float) and isinstance(out["losses/actor_loss"], float)
    assert len(out["losses/actor_loss_per_agent"]) == N
    assert out["losses/critic_loss"] == pytest.approx(sum(out["losses/critic_loss_per_agent"]))
    assert metrics_to_float({"a": torch.tensor(2.0), "b": 3})["a"] == 2.0


def test_bad_inputs_raise():
    m = make()
    b = make_batch(0, batch=8)
    with pytest.raises(ValueError, match="actions"):
        m.update(ReplayBufferSamples(b.observations, b.actions[..., :1], b.next_observations, b.rewards))
    with pytest.raises(ValueError, match="rewards"):
        m.update(ReplayBufferSamples(b.observations, b.actions, b.next_observations, b.rewards[:, :2]))
    with pytest.raises(ValueError, match="target_noise"):
        m.update(b, target_noise=torch.zeros(8, N, 1))
    with pytest.raises(ValueError, match="observations"):
        m.act(torch.zeros(4, N, OBS + 1))
    with pytest.raises(ValueError):
        MATD3(2, OBS, [2], UNIQ)
    with pytest.raises(ValueError):
        MATD3(2, OBS, [2, 1], OBS + 1)
    with pytest.raises(ValueError):
        MATD3(2, OBS, [2, 1], UNIQ, critic_hidden_sizes=())


# --------------------------------------------------------------------------- masking


def test_padded_action_dims_are_exactly_zero():
    m = make()
    for k in range(6):
        m.update(make_batch(k))
    obs = make_batch(99).observations * 50  # large inputs saturate tanh elsewhere
    for acts in (m.act(obs), m.act_target(obs)):
        assert torch.all(acts[:, 1, 1] == 0)
        assert torch.all(acts[:, 0].abs() > 0)
    # the padded output row of agent 1's last actor layer never moved, nor did its Adam state
    for params in (m.actor_params, m.actor_target_params):
        assert torch.all(params[-2][1, 1] == 0) and torch.all(params[-1][1, 1] == 0)
    st = m.actor_optimizer.state[m.actor_params[-2]]
    assert torch.all(st["exp_avg"][1, 1] == 0) and torch.all(st["exp_avg_sq"][1, 1] == 0)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_bitwise_identical_updates():
    a, b = make(seed=7), make(seed=7)
    for x, y in zip(all_tensors(a), all_tensors(b)):
        assert torch.equal(x, y)
    for k in range(3):
        batch = make_batch(k)
        a.update(batch)
        b.update(batch)
    for x, y in zip(all_tensors(a), all_tensors(b)):
        assert torch.equal(x, y)
    c = make(seed=8)
    assert not torch.equal(a.actor_params[0], c.actor_params[0])


def test_init_matches_nn_linear_bounds():
    m = MATD3(2, OBS, [2, 1], UNIQ, actor_hidden_sizes=(64,), critic_hidden_sizes=(64,), seed=0)
    w0 = m.actor_params[0]
    bound = 1 / OBS**0.5
    assert w0.abs().max() <= bound and w0.abs().max() > 0.9 * bound
    cw0 = m.critic_params[0]
    assert cw0.abs().max() <= 1 / m.critic_input_dim**0.5
    assert not torch.equal(m.actor_params[0][0], m.actor_params[0][1])  # drawn per agent
    assert not torch.equal(cw0[0, :64], cw0[0, 64:])  # q1 and q2 drawn separately


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    ("dtype", "atol", "max_grad_norm"),
    [(torch.float64, 1e-10, 1.0), (torch.float64, 1e-10, 0.05), (torch.float32, 1e-5, 0.05)],
)
def test_batched_update_equals_per_agent_reference(dtype, atol, max_grad_norm):
    m = make(seed=3, dtype=dtype, max_grad_norm=max_grad_norm)
    ref = ReferenceMATD3.from_matd3(m)
    assert max_diff_to_reference(m, ref) == 0.0
    for k in range(4):  # policy_delay 2: actor + target updates at steps 2 and 4
        batch = make_batch(k, dtype=dtype)
        noise = torch.randn(64, N, 2, generator=torch.Generator().manual_seed(100 + k), dtype=dtype)
        ours = m.update(batch, target_noise=noise, as_float=True)
        theirs = ref.update(batch, target_noise=noise)
        assert ours["losses/critic_loss"] == pytest.approx(theirs["losses/critic_loss"], rel=1e-5)
        if k % 2 == 1:
            assert ours["losses/actor_loss"] == pytest.approx(theirs["losses/actor_loss"], rel=1e-5, abs=1e-6)
    assert max_diff_to_reference(m, ref) < atol
    if max_grad_norm == 0.05:
        assert max(ours["losses/critic_grad_norm_per_agent"]) > 0.05  # clipping was active


def test_preactivation_penalty_matches_reference():
    m = make(seed=6, dtype=torch.float64, actor_preactivation_penalty=0.5)
    ref = ReferenceMATD3.from_matd3(m)
    plain = make(seed=6, dtype=torch.float64)
    for k in range(4):
        batch = make_batch(k, dtype=torch.float64)
        ours = m.update(batch, as_float=True)
        theirs = ref.update(batch)
        plain.update(batch)
    assert ours["losses/actor_loss"] == pytest.approx(theirs["losses/actor_loss"], rel=1e-9)
    assert max_diff_to_reference(m, ref) < 1e-10
    assert not torch.equal(m.actor_params[0], plain.actor_params[0])


def test_reference_draws_the_same_target_noise():
    m = make(seed=5, dtype=torch.float64)
    ref = ReferenceMATD3.from_matd3(m)  # copies the generator state
    for k in range(4):
        batch = make_batch(k, dtype=torch.float64)
        m.update(batch)
        ref.update(batch)
    assert max_diff_to_reference(m, ref) < 1e-10


# --------------------------------------------------------------------------- TD3 mechanics


def test_policy_delay():
    m = make(policy_delay=3)
    actor0 = [p.detach().clone() for p in m.actor_params]
    targets0 = [p.clone() for p in m.actor_target_params + m.critic_target_params]
    critic0 = m.critic_params[0].detach().clone()
    for k in range(2):
        out = m.update(make_batch(k))
        assert "losses/actor_loss" not in out
        assert all(torch.equal(a, p) for a, p in zip(actor0, m.actor_params))
        assert all(torch.equal(a, p) for a, p in zip(targets0, m.actor_target_params + m.critic_target_params))
    assert not torch.equal(critic0, m.critic_params[0])
    out = m.update(make_batch(2))
    assert "losses/actor_loss" in out
    assert all(not torch.equal(a, p) for a, p in zip(actor0, m.actor_params))
    assert all(not torch.equal(a, p) for a, p in zip(targets0, m.actor_target_params + m.critic_target_params))


def test_targets_move_by_tau():
    tau = 0.1
    m = make(tau=tau, dtype=torch.float64)
    m.update(make_batch(0, dtype=torch.float64))
    old_a = m.actor_target_params[0].clone()
    old_c = m.critic_target_params[2].clone()
    m.update(make_batch(1, dtype=torch.float64))  # actor step + Polyak update
    new_a, new_c = m.actor_params[0].detach(), m.critic_params[2].detach()
    torch.testing.assert_close(m.actor_target_params[0], (1 - tau) * old_a + tau * new_a, rtol=0, atol=1e-15)
    torch.testing.assert_close(m.critic_target_params[2], (1 - tau) * old_c + tau * new_c, rtol=0, atol=1e-15)
    assert not torch.equal(m.actor_target_params[0], old_a)


def test_gradient_clipping_bounds_each_agents_norm():
    max_norm = 0.05
    m = make(max_grad_norm=max_norm, dtype=torch.float64)
    out = m.update(make_batch(0, dtype=torch.float64))
    pre = out["losses/critic_grad_norm_per_agent"]
    post = torch.sqrt(sum(p.grad.reshape(N, -1).square().sum(1) for p in m.critic_params))
    assert torch.all(pre > max_norm)
    torch.testing.assert_close(post, torch.full((N,), max_norm, dtype=torch.float64), rtol=1e-4, atol=0)
    # a large bound leaves the gradients untouched
    m2 = make(max_grad_norm=1e6, dtype=torch.float64)
    out2 = m2.update(make_batch(0, dtype=torch.float64))
    post2 = torch.sqrt(sum(p.grad.reshape(N, -1).square().sum(1) for p in m2.critic_params))
    torch.testing.assert_close(post2, out2["losses/critic_grad_norm_per_agent"])
    m3 = make(max_grad_norm=max_norm, dtype=torch.float64)
    m3.update(make_batch(0, dtype=torch.float64))
    out3 = m3.update(make_batch(1, dtype=torch.float64))
    post3 = torch.sqrt(sum(p.grad.reshape(N, -1).square().sum(1) for p in m3.actor_params))
    assert torch.all(post3 <= max_norm * (1 + 1e-6))
    assert torch.all(out3["losses/actor_grad_norm_per_agent"] > 0)


def test_set_learning_rate():
    m = make()
    m.set_learning_rate(3e-4)
    assert all(g["lr"] == 3e-4 for opt in (m.actor_optimizer, m.critic_optimizer) for g in opt.param_groups)
    with pytest.raises(ValueError):
        m.set_learning_rate(0)


# --------------------------------------------------------------------------- export / load


def test_export_loads_into_documented_networks_with_same_outputs():
    m = make(seed=4)
    for k in range(2):
        m.update(make_batch(k))
    b = make_batch(50, batch=32)
    acts = m.act(b.observations)
    q1, q2 = m.critic_values(b.observations, b.actions)
    tq1, _ = m.critic_values(b.observations, b.actions, target=True)
    for i, a in enumerate(ACT_DIMS):
        actor = Actor(OBS, a, torch.float32, hidden_sizes=HID_A)
        actor.load_state_dict(m.actor_state_dict(i))
        torch.testing.assert_close(actor(b.observations[:, i]), acts[:, i, :a], rtol=1e-5, atol=1e-6)
        actor.load_state_dict(m.actor_target_state_dict(i))
        torch.testing.assert_close(actor(b.observations[:, i]), m.act_target(b.observations)[:, i, :a], rtol=1e-5, atol=1e-6)

        critic = CriticTD3(N, OBS, 2, torch.float32, UNIQ, hidden_sizes=HID_C)
        critic.load_state_dict(m.critic_state_dict(i))
        others = torch.cat([b.observations[:, :i, -UNIQ:], b.observations[:, i + 1 :, -UNIQ:]], dim=1)
        cobs = torch.cat([b.observations[:, i], others.reshape(32, -1)], dim=1)
        acts_in = (b.actions * m.action_mask).reshape(32, -1)
        r1, r2 = critic(cobs, acts_in)
        torch.testing.assert_close(r1[:, 0], q1[:, i], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r2[:, 0], q2[:, i], rtol=1e-5, atol=1e-5)
        critic.load_state_dict(m.critic_target_state_dict(i))
        torch.testing.assert_close(critic.q1_forward(cobs, acts_in)[:, 0], tq1[:, i], rtol=1e-5, atol=1e-5)


def test_optimizer_state_loads_into_torch_adam():
    m = make()
    assert m.actor_optimizer_state(0)["state"] == {}  # before the first step, like a fresh Adam
    m.update(make_batch(0))
    m.update(make_batch(1))
    actor = Actor(OBS, ACT_DIMS[1], torch.float32, hidden_sizes=HID_A)
    opt = torch.optim.Adam(actor.parameters())
    opt.load_state_dict(m.actor_optimizer_state(1))
    st = opt.state_dict()["state"]
    assert float(st[0]["step"]) == 1.0  # one actor step
    assert st[len(st) - 2]["exp_avg"].shape == (ACT_DIMS[1], HID_A[-1])


def test_load_agent_round_trip_and_errors():
    src = make(seed=1)
    for k in range(4):
        src.update(make_batch(k))
    dst = make(seed=2)
    for i in range(N):
        dst.load_agent(
            i,
            actor=src.actor_state_dict(i),
            actor_target=src.actor_target_state_dict(i),
            critic=src.critic_state_dict(i),
            critic_target=src.critic_target_state_dict(i),
            actor_opt=src.actor_optimizer_state(i),
            critic_opt=src.critic_optimizer_state(i),
        )
    for x, y in zip(all_tensors(src), all_tensors(dst)):
        assert torch.equal(x, y)
    dst.n_updates = src.n_updates
    dst.generator.set_state(src.generator.get_state())
    batch = make_batch(10)
    src.update(batch)
    dst.update(batch)
    for x, y in zip(all_tensors(src), all_tensors(dst)):
        assert torch.equal(x, y)

    sd = src.actor_state_dict(0)
    bad_key = dict(sd)
    bad_key["net.9.weight"] = bad_key.pop("net.0.weight")
    with pytest.raises(KeyError, match="net.0.weight"):
        dst.load_agent(0, actor=bad_key)
    with pytest.raises(ValueError, match="shape"):
        dst.load_agent(1, actor=sd)  # agent 0 has 2 actions, agent 1 has 1
    before = dst.critic_params[0].detach().clone()
    bad_shape = dict(src.critic_state_dict(0))
    bad_shape["q2.2.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="q2.2.weight"):
        dst.load_agent(0, critic=bad_shape)
    assert torch.equal(before, dst.critic_params[0])  # nothing written
    with pytest.raises(IndexError):
        dst.actor_state_dict(N)


def test_state_dict_round_trip_through_torch_save():
    a = make(seed=1)
    for k in range(3):
        a.update(make_batch(k))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = make(seed=9)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for k in range(3, 5):
        a.update(make_batch(k))
        b.update(make_batch(k))
    for x, y in zip(all_tensors(a), all_tensors(b)):
        assert torch.equal(x, y)
    other = MATD3(N, OBS, [2, 2, 2], UNIQ, actor_hidden_sizes=HID_A, critic_hidden_sizes=HID_C)
    with pytest.raises(ValueError, match="config"):
        other.load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_reference():
    m = make(seed=3, dtype=torch.float64, device="cuda")
    assert all(p.is_cuda for p in all_tensors(m))
    ref = ReferenceMATD3.from_matd3(m)
    for k in range(4):
        batch = make_batch(k, dtype=torch.float64, device="cuda")
        m.update(batch)
        ref.update(batch)
    assert max_diff_to_reference(m, ref) < 1e-10
    assert m.act(batch.observations).is_cuda


# --------------------------------------------------------------------------- hand-written vs autograd kernel


@pytest.fixture
def one_thread():
    """Small matrices: one torch thread (more threads only contend on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _kernel_pair(n, hidden, uniq, max_grad_norm, penalty, dtype=torch.float64):
    act_dims = [2, 1, 2, 1][:n]
    kw = dict(actor_hidden_sizes=hidden, critic_hidden_sizes=tuple(h + 2 for h in hidden), max_grad_norm=max_grad_norm,
              actor_preactivation_penalty=penalty, float_type=dtype, seed=11, policy_delay=2)
    obs_dim = 6
    u = obs_dim if uniq == "obs_dim" else 0
    hand = MATD3(n, obs_dim, act_dims, u, kernel="hand", **kw)
    auto = MATD3(n, obs_dim, act_dims, u, kernel="autograd", **kw)
    return hand, auto


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("hidden", [(8,), (8, 6), (8, 6, 5)], ids=["1layer", "2layers", "3layers"])
@pytest.mark.parametrize("uniq", [0, "obs_dim"])
@pytest.mark.parametrize("max_grad_norm", [None, 0.05], ids=["noclip", "clip"])
@pytest.mark.parametrize("penalty", [0.0, 0.3], ids=["nopenalty", "penalty"])
def test_hand_written_kernel_equals_autograd(n, hidden, uniq, max_grad_norm, penalty, one_thread):
    """The hand-written backward pass against autograd over the same stacked tensors: same
    weights, targets and Adam moments after critic and actor steps, across a change of
    batch size in the middle of the run (the workspace is reallocated)."""
    hand, auto = _kernel_pair(n, hidden, uniq, max_grad_norm, penalty)
    assert (hand.kernel, auto.kernel) == ("hand", "autograd")
    for p, q in zip(all_tensors(hand), all_tensors(auto)):
        assert torch.equal(p, q)
    for k, batch_size in enumerate([16, 16, 16, 16, 7, 7]):  # actor steps at 2, 4, 6; batch size changes at 5
        batch = make_batch(k, batch=batch_size, n=n, obs_dim=6, act=2, dtype=torch.float64)
        batch = batch._replace(actions=batch.actions * hand.action_mask)
        mh = hand.update(batch, as_float=True)
        ma = auto.update(batch, as_float=True)
        assert set(mh) == set(ma)
        for key in mh:
            assert mh[key] == pytest.approx(ma[key], rel=1e-9, abs=1e-12), (k, key)
    for p, q in zip(all_tensors(hand), all_tensors(auto)):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-11)
    sh, sa = hand.state_dict(), auto.state_dict()
    for opt in ("actor_optimizer", "critic_optimizer"):
        for key, st in sh[opt]["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(st[name], sa[opt]["state"][key][name], rtol=0, atol=1e-11)
    if max_grad_norm:
        assert max(mh["losses/critic_grad_norm_per_agent"]) > max_grad_norm  # clipping was active


def test_autograd_kernel_equals_the_per_agent_loop():
    m = make(seed=3, dtype=torch.float64, kernel="autograd", actor_preactivation_penalty=0.2, max_grad_norm=0.05)
    ref = ReferenceMATD3.from_matd3(m)
    for k in range(4):
        batch = make_batch(k, dtype=torch.float64)
        m.update(batch)
        ref.update(batch)
    assert max_diff_to_reference(m, ref) < 1e-10


def test_kernel_choice_and_refusals(monkeypatch):
    from agents import _torch_private

    assert make().kernel == ("hand" if _torch_private.hand_kernel_available() else "autograd")
    with pytest.raises(ValueError, match="kernel"):
        make(kernel="fast")
    monkeypatch.setattr(_torch_private, "MISSING", ("torch._foreach_lerp_ (AttributeError)",))
    import agents.matd3 as matd3_module

    monkeypatch.setattr(matd3_module, "_MISSING_INTERNALS", _torch_private.MISSING)
    monkeypatch.setattr(matd3_module, "hand_kernel_available", _torch_private.hand_kernel_available)
    assert make().kernel == "autograd"
    with pytest.raises(ValueError, match="_foreach_lerp_"):
        make(kernel="hand")


def test_import_check_flags_an_untested_torch_with_one_warning(monkeypatch):
    import importlib
    import warnings

    from agents import _torch_private

    monkeypatch.setattr(torch, "__version__", "3.1.0")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mod = importlib.reload(_torch_private)
        mine = [w for w in caught if issubclass(w.category, mod.TorchInternalsWarning)]
        assert len(mine) == 1 and "3.1.0" in str(mine[0].message) and "autograd" in str(mine[0].message)
        assert not mod.hand_kernel_available() and len(mod.MISSING) == 1
    finally:
        monkeypatch.undo()
        importlib.reload(_torch_private)
    assert _torch_private.hand_kernel_available()


@pytest.mark.slow
def test_missing_internal_falls_back_to_autograd_with_one_warning():
    """A torch outside the tested range (the check's first test; each internal is probed the
    same way): one warning at import, training uses autograd."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import warnings, torch\n"
        "warnings.simplefilter('always')\n"
        "torch.__version__ = '3.1.0'\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from agents.matd3 import MATD3\n"
        "    from agents.buffer import ReplayBufferSamples\n"
        "    m = MATD3(2, 4, [2, 1], 2, actor_hidden_sizes=(8,), critic_hidden_sizes=(8,))\n"
        "    b = ReplayBufferSamples(torch.randn(8, 2, 4), torch.zeros(8, 2, 2), torch.randn(8, 2, 4), torch.randn(8, 2))\n"
        "    for _ in range(2): m.update(b)\n"
        "    m2 = MATD3(2, 4, [2, 1], 2, actor_hidden_sizes=(8,), critic_hidden_sizes=(8,))\n"
        "mine = [x for x in w if 'hand-written backward' in str(x.message)]\n"
        "print(m.kernel, m2.kernel, len(mine), mine[0].category.__name__, '3.1.0' in str(mine[0].message))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["autograd", "autograd", "1", "TorchInternalsWarning", "True"]


# --------------------------------------------------------------------------- imitation (best-response teacher)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("penalty", [0.0, 0.3], ids=["nopenalty", "penalty"])
def test_imitation_term_hand_equals_autograd(n, penalty, one_thread):
    """The actor step with a teacher batch: the hand-written pass equals autograd (weights,
    Adam moments, losses), with NaN targets, an untaught agent (weight 0) and clipping."""
    hand, auto = _kernel_pair(n, (8, 6), "obs_dim", 0.05, penalty)
    gen = torch.Generator().manual_seed(5)
    weight = torch.tensor([2.0, 0.0, 0.5][:n], dtype=torch.float64)
    for k in range(4):  # actor steps at 2 and 4
        batch = make_batch(k, batch=16, n=n, obs_dim=6, act=2, dtype=torch.float64)
        batch = batch._replace(actions=batch.actions * hand.action_mask)
        obs_t = torch.randn(9, n, 6, generator=gen, dtype=torch.float64)
        tgt = torch.rand(9, n, 2, generator=gen, dtype=torch.float64) * 2 - 1
        tgt[0, 0] = float("nan")
        tgt[3, :, 1] = 1.0  # clipped to 0.995 before atanh
        mh = hand.update(batch, as_float=True, imitation=(obs_t, tgt, weight))
        ma = auto.update(batch, as_float=True, imitation=(obs_t, tgt, weight))
        assert set(mh) == set(ma)
        for key in mh:
            assert mh[key] == pytest.approx(ma[key], rel=1e-9, abs=1e-12), (k, key)
    assert "losses/imitation_loss_per_agent" in mh and mh["losses/imitation_loss_per_agent"][0] > 0
    for p, q in zip(all_tensors(hand), all_tensors(auto)):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-11)


def test_imitation_pulls_actors_to_the_teacher_and_leaves_untaught_agents_alone(one_thread):
    """Imitation steps alone bring a saturated actor to the teacher's action (the loss is
    taken before the tanh); an agent with weight 0 is not moved at all."""
    m = MATD3(2, 4, [1, 1], 0, actor_hidden_sizes=(16,), critic_hidden_sizes=(8,), seed=2, float_type=torch.float64)
    with torch.no_grad():
        m.actor_params[-1][0].fill_(6.0)  # agent 0 saturated at +1 (tanh'(6) ~ 2e-5)
    obs = torch.randn(32, 2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before1 = [p[1].clone() for p in m.actor_params]
    assert m.act(obs)[:, 0, 0].min() > 0.999
    target = torch.full((32, 2, 1), -0.3, dtype=torch.float64)
    for _ in range(1500):
        m.imitation_step(obs, target, torch.tensor([1.0, 0.0]))
    a0 = m.act(obs)[:, 0, 0]
    assert abs(a0.mean().item() + 0.3) < 0.02 and (a0 + 0.3).abs().max().item() < 0.15
    for p, b in zip(m.actor_params, before1):
        assert torch.equal(p[1], b)


def test_own_action_values_equal_the_critics_with_one_slot_replaced():
    """own_action_values (critic_search): for each candidate and agent i, min(Q1, Q2) of
    critic i with only agent i's action replaced, the others' kept: compared with
    critic_values on the explicitly edited joint action; padded dims do not matter."""
    m = make(seed=4)
    b = make_batch(5, batch=7)
    g = torch.Generator().manual_seed(6)
    cand = torch.rand(3, 7, N, 2, generator=g) * 2 - 1
    got = m.own_action_values(b.observations, b.actions, cand)
    assert got.shape == (3, 7, N)
    for k in range(3):
        for i in range(N):
            joint = b.actions.clone()
            joint[:, i] = cand[k, :, i]
            q1, q2 = m.critic_values(b.observations, joint)
            torch.testing.assert_close(got[k, :, i], torch.minimum(q1, q2)[:, i], atol=1e-5, rtol=1e-5)
    # agent 1 has one action dim: its padded candidate dim changes nothing
    cand2 = cand.clone()
    cand2[:, :, 1, 1] = 0.77
    torch.testing.assert_close(m.own_action_values(b.observations, b.actions, cand2), got)
    # candidates equal to the actions themselves give the joint action's own values
    q1, q2 = m.critic_values(b.observations, b.actions)
    torch.testing.assert_close(m.own_action_values(b.observations, b.actions, b.actions.unsqueeze(0))[0],
                               torch.minimum(q1, q2), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="candidates"):
        m.own_action_values(b.observations, b.actions, cand[:, :3])


def test_agent_gamma_matches_reference_and_differs_from_the_common_gamma():
    """set_agent_gamma (per_unit_gamma): each agent's critic target uses its own discount,
    in the stacked kernel as in the per-agent reference; None goes back to gamma; bad
    values are refused."""
    m = make(seed=8, dtype=torch.float64)
    m.set_agent_gamma([0.0, 0.5, 0.99])
    ref = ReferenceMATD3.from_matd3(m)
    plain = make(seed=8, dtype=torch.float64)  # gamma 0.99 for all
    for k in range(4):
        batch = make_batch(20 + k, dtype=torch.float64)
        noise = torch.randn(64, N, 2, generator=torch.Generator().manual_seed(200 + k), dtype=torch.float64)
        ours = m.update(batch, target_noise=noise, as_float=True)
        theirs = ref.update(batch, target_noise=noise)
        other = plain.update(batch, target_noise=noise, as_float=True)
        assert ours["losses/critic_loss"] == pytest.approx(theirs["losses/critic_loss"], rel=1e-9)
    assert max_diff_to_reference(m, ref) < 1e-10
    # the same updates with the common gamma 0.99 for all give other losses
    assert ours["losses/critic_loss"] != pytest.approx(other["losses/critic_loss"])
    m.set_agent_gamma(None)
    assert m.agent_gamma is None
    for bad in ([0.5, 0.5], [0.0, 1.5, 0.2], [-0.1, 0.0, 0.0]):
        with pytest.raises(ValueError, match="set_agent_gamma"):
            m.set_agent_gamma(bad)
