"""Replay buffer: exact contents, episode boundaries, wrap-around, shapes, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import ReplayBuffer, ReplayBufferSamples

N, OBS, ACT = 3, 4, 2


def step_arrays(tag: float, num_envs: int | None = None):
    """Observation/action/reward all carrying ``tag`` (plus an env offset when batched)."""
    if num_envs is None:
        obs = np.full((N, OBS), tag, dtype=float)
        act = np.full((N, ACT), tag, dtype=float)
        rew = np.full((N,), tag, dtype=float)
    else:
        env = np.arange(num_envs)[:, None]
        obs = np.broadcast_to((tag + 1000 * env)[..., None], (num_envs, N, OBS)).copy()
        act = np.broadcast_to((tag + 1000 * env)[..., None], (num_envs, N, ACT)).copy()
        rew = np.broadcast_to(tag + 1000 * env, (num_envs, N)).copy()
    return obs, act, rew


def make(buffer_size=100, seed=0, **kw):
    return ReplayBuffer(buffer_size, OBS, ACT, N, "cpu", torch.float32, seed=seed, **kw)


def sampled_pairs(buf: ReplayBuffer, n=4000) -> set[tuple[float, float]]:
    s = buf.sample(n)
    obs = s.observations[:, 0, 0].numpy()
    nxt = s.next_observations[:, 0, 0].numpy()
    # every agent and every feature of a row carries the same tag
    assert torch.all(s.observations == s.observations[:, :1, :1])
    assert torch.all(s.next_observations == s.next_observations[:, :1, :1])
    assert torch.all(s.actions == s.observations[:, :, :1])
    assert torch.all(s.rewards == s.observations[:, :, 0])
    return set(zip(obs.tolist(), nxt.tolist()))


def test_shapes_dtypes_device():
    buf = make()
    for t in range(5):
        buf.add(*step_arrays(t))
    s = buf.sample(7)
    assert isinstance(s, ReplayBufferSamples)
    assert s.observations.shape == (7, N, OBS)
    assert s.next_observations.shape == (7, N, OBS)
    assert s.actions.shape == (7, N, ACT)
    assert s.rewards.shape == (7, N)
    for x in s:
        assert x.dtype == torch.float32 and x.device.type == "cpu"
    buf64 = ReplayBuffer(10, OBS, ACT, N, torch.device("cpu"), torch.float64)
    assert buf64.observations.dtype == np.float64
    buf64.add(*step_arrays(0))
    buf64.add(*step_arrays(1))
    assert all(x.dtype == torch.float64 for x in buf64.sample(3))


def test_transitions_are_consecutive_and_newest_row_is_never_sampled():
    buf = make()
    for t in range(10):
        buf.add(*step_arrays(t))
    # 10 rows, the newest (t=9) has no successor yet
    assert buf.size() == 9
    pairs = sampled_pairs(buf)
    assert pairs == {(float(t), float(t + 1)) for t in range(9)}


def test_end_episode_keeps_last_transition_and_never_crosses_episodes():
    buf = make()
    for t in range(5):
        buf.add(*step_arrays(t))
    buf.end_episode(step_arrays(5)[0])  # final observation of episode 1
    for t in range(100, 104):
        buf.add(*step_arrays(t))
    buf.end_episode(step_arrays(104)[0])
    assert buf.size() == 5 + 4
    pairs = sampled_pairs(buf)
    expected = {(float(t), float(t + 1)) for t in range(5)} | {(float(t), float(t + 1)) for t in range(100, 104)}
    assert pairs == expected  # (4, 5) is kept; nothing pairs 5 with 100


def test_last_flag_drops_the_boundary_transition():
    buf = make()
    for t in range(4):
        buf.add(*step_arrays(t), last=(t == 3))
    for t in range(10, 13):
        buf.add(*step_arrays(t))
    pairs = sampled_pairs(buf)
    assert pairs == {(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (10.0, 11.0), (11.0, 12.0)}
    with pytest.raises(ValueError, match="no open episode"):
        make().end_episode(step_arrays(0)[0])
    b = make()
    b.add(*step_arrays(0), last=True)
    with pytest.raises(ValueError, match="no open episode"):
        b.end_episode(step_arrays(1)[0])


def test_wrap_around_never_pairs_newest_with_oldest():
    buf = make(buffer_size=8)
    for t in range(20):  # wraps twice and a half
        buf.add(*step_arrays(t))
    # rows hold t = 12..19; the newest (19) sits just before the oldest (12)
    assert buf.full and buf.size() == 7
    pairs = sampled_pairs(buf)
    assert pairs == {(float(t), float(t + 1)) for t in range(12, 19)}


def test_wrap_around_with_episode_ends():
    buf = make(buffer_size=7, seed=3)
    tags = []
    for ep in range(6):
        for k in range(3):
            t = 100 * ep + k
            buf.add(*step_arrays(t))
            tags.append(t)
        buf.end_episode(step_arrays(100 * ep + 3)[0])
        tags.append(100 * ep + 3)
        # check after each episode: every pair is consecutive within an episode and
        # both rows are still in the buffer
        present = set(buf.observations[:, 0, 0, 0].tolist()) if buf.full else set(tags)
        for a, b in sampled_pairs(buf, 500):
            assert b == a + 1 and a // 100 == b // 100
            assert a in present and b in present
    # a row whose successor slot was overwritten by the next episode is not sampled
    buf2 = make(buffer_size=4, seed=1)
    for t in range(3):
        buf2.add(*step_arrays(t))
    buf2.end_episode(step_arrays(3)[0])  # rows: 0 1 2 3(final)
    buf2.add(*step_arrays(50))  # overwrites row 0
    assert sampled_pairs(buf2, 500) == {(1.0, 2.0), (2.0, 3.0)}
    buf2.add(*step_arrays(51))  # overwrites row 1
    assert sampled_pairs(buf2, 500) == {(2.0, 3.0), (50.0, 51.0)}


def test_batched_envs_keep_streams_separate():
    E = 3
    buf = make(buffer_size=30, num_envs=E)
    assert buf.observations.shape == (10, E, N, OBS)
    for t in range(4):
        buf.add(*step_arrays(t, E))
    buf.end_episode(step_arrays(4, E)[0])
    for t in range(20, 25):
        buf.add(*step_arrays(t, E))
    assert buf.size() == (4 + 4) * E
    pairs = sampled_pairs(buf, 6000)
    expected = {
        (float(t + 1000 * e), float(t + 1 + 1000 * e))
        for e in range(E)
        for t in list(range(4)) + list(range(20, 24))
    }
    assert pairs == expected


def test_single_env_accepts_leading_axis_and_tensors():
    buf = make()
    obs, act, rew = step_arrays(1)
    buf.add(obs[None], act[None], rew[None])
    buf.add(torch.as_tensor(obs + 1), torch.as_tensor(act + 1), torch.as_tensor(rew + 1))
    assert sampled_pairs(buf, 50) == {(1.0, 2.0)}


def test_bad_input_is_refused():
    buf = make()
    obs, act, rew = step_arrays(0)
    with pytest.raises(ValueError, match="obs must have shape"):
        buf.add(obs[:, :2], act, rew)
    with pytest.raises(ValueError, match="actions must have shape"):
        buf.add(obs, act[:1], rew)
    with pytest.raises(ValueError, match="reward must have shape"):
        buf.add(obs, act, rew[:, None])
    bad = obs.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        buf.add(bad, act, rew)
    with pytest.raises(ValueError, match="obs must have shape"):
        make(num_envs=2, buffer_size=10).add(obs, act, rew)
    with pytest.raises(ValueError, match="at least 2"):
        make(buffer_size=3, num_envs=2)
    with pytest.raises(ValueError, match="positive integer"):
        make(buffer_size=0)
    with pytest.raises(TypeError, match="float_type"):
        ReplayBuffer(10, OBS, ACT, N, "cpu", np.float32)
    assert buf.size() == 0  # nothing half-written


def test_sample_without_transitions_raises():
    buf = make()
    with pytest.raises(ValueError, match="no complete transition"):
        buf.sample(4)
    buf.add(*step_arrays(0))
    with pytest.raises(ValueError, match="no complete transition"):
        buf.sample(4)
    buf.add(*step_arrays(1))
    assert buf.sample(4).observations.shape[0] == 4
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0)


def test_sparse_valid_rows_use_exact_index_path():
    # one-step episodes: closed by end_episode (1 valid transition in 2 rows) or by
    # last=True (no transition in 1 row)
    buf = make(buffer_size=50)
    for ep in range(10):
        if ep % 3 == 0:
            buf.add(*step_arrays(10 * ep))
            buf.end_episode(step_arrays(10 * ep + 1)[0])
        else:
            buf.add(*step_arrays(10 * ep), last=True)
    # 14 rows, only 4 valid -> exact index path rather than rejection
    assert buf.size() == 4
    assert sampled_pairs(buf, 500) == {(float(10 * ep), float(10 * ep + 1)) for ep in (0, 3, 6, 9)}


def test_seeded_sampling_is_reproducible():
    def run(seed):
        buf = make(buffer_size=64, seed=seed, num_envs=2)
        for t in range(40):
            buf.add(*step_arrays(t, 2))
            if t % 7 == 6:
                buf.end_episode(step_arrays(t + 0.5, 2)[0])
        return [buf.sample(16) for _ in range(3)]

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    assert not all(torch.equal(x.observations, y.observations) for x, y in zip(a, c))


def test_memory_is_obs_actions_rewards_plus_small_bookkeeping():
    buf = ReplayBuffer(10_000, 8, 2, 5, "cpu", torch.float32, num_envs=4)
    rows = 10_000 // 4
    assert buf.observations.nbytes == rows * 4 * 5 * 8 * 4
    payload = buf.observations.nbytes + buf.actions.nbytes + buf.rewards.nbytes
    assert payload == rows * 4 * 5 * (8 + 2 + 1) * 4
    assert payload <= buf.nbytes <= 1.1 * payload


def test_to_torch():
    buf = make()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = buf.to_torch(x)
    assert t.dtype == torch.float32 and torch.equal(t, torch.arange(6.0).reshape(2, 3))
    x[0, 0] = 99.0
    assert t[0, 0] == 0.0  # copied
    shared = buf.to_torch(x, copy=False)
    x[0, 1] = 42.0
    assert shared[0, 1] == 42.0  # same memory on cpu with matching dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device():
    buf = ReplayBuffer(10, OBS, ACT, N, "cuda", torch.float32)
    buf.add(*step_arrays(0))
    buf.add(*step_arrays(1))
    assert all(x.device.type == "cuda" for x in buf.sample(4))
