"""torch_threads: the auto thread tuner (agents.threads) and the claim it rests on, that
a gradient step gives the same numbers on one thread or several."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from agents.config import LearningConfig
from agents.learner import Learner
from agents.matd3 import MATD3
from agents.threads import MIN_PARALLEL_FLOP, ThreadTuner, step_flop


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _params_after_updates(threads: int, n: int, steps: int = 3) -> list[torch.Tensor]:
    torch.set_num_threads(threads)
    act_dims = [2] * n if n == 1 else [2] * (n - 1) + [1]  # padding too
    algo = MATD3(n, 20, act_dims, 2, actor_hidden_sizes=(64, 32), critic_hidden_sizes=(96, 48),
                 learning_rate=1e-3, seed=5)
    g = torch.Generator().manual_seed(1)
    bsz = 128
    for _ in range(steps):
        batch = SimpleNamespace(observations=torch.randn(bsz, n, 20, generator=g),
                                actions=torch.rand(bsz, n, 2, generator=g) * 2 - 1,
                                next_observations=torch.randn(bsz, n, 20, generator=g),
                                rewards=torch.randn(bsz, n, generator=g))
        algo.update(batch)
    return [p.clone() for p in algo.actor_params + algo.critic_params + algo.critic_target_params]


@pytest.mark.parametrize("n", [1, 7, 40])
def test_gradient_step_is_bit_identical_on_one_and_two_threads(restore_threads, n):
    one = _params_after_updates(1, n)
    two = _params_after_updates(2, n)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def _run(tuner: ThreadTuner, steps: int, seconds_at: dict[int, float]) -> list[int]:
    used = []
    for _ in range(steps):
        with tuner.step() as threads:
            assert torch.get_num_threads() == threads
            time.sleep(seconds_at[threads])
        used.append(threads)
        assert torch.get_num_threads() == tuner.base  # the simulation runs on the base count
    return used


def test_auto_keeps_the_faster_count_and_reprobes(restore_threads):
    tuner = ThreadTuner(None, 1e12, cores=2, reprobe_every=5)
    assert tuner.auto and tuner.candidates == (1, 2) and tuner.base == 1
    used = _run(tuner, 21, {1: 0.012, 2: 0.002})  # two threads faster
    assert used[:3] == [2, 1, 2]  # warm-up, then one timed step at each count
    assert used[3:] == [2 if k % 5 else 1 for k in range(3, 21)]  # the other count re-timed every 5th step
    assert tuner.steps == {1: used.count(1), 2: used.count(2)}
    tuner = ThreadTuner(None, 1e12, cores=2, reprobe_every=5)
    used = _run(tuner, 12, {1: 0.002, 2: 0.012})  # a busy second core: one thread faster
    assert used[3:] == [1 if k % 5 else 2 for k in range(3, 12)]


def test_auto_follows_a_change_of_load(restore_threads):
    tuner = ThreadTuner(None, 1e12, cores=2, reprobe_every=4)
    _run(tuner, 8, {1: 0.010, 2: 0.002})
    assert tuner.current == 2
    used = _run(tuner, 8, {1: 0.002, 2: 0.010})  # the other core gets busy: the next probe moves it
    assert used[-3:] == [1, 1, 1]


def test_small_steps_and_fixed_counts_do_not_probe(restore_threads):
    small = ThreadTuner(None, MIN_PARALLEL_FLOP / 2, cores=8)
    assert not small.auto and _run(small, 4, {1: 0.0}) == [1] * 4
    one_core = ThreadTuner(None, 1e12, cores=1)
    assert not one_core.auto and one_core.candidates == (1,)
    fixed = ThreadTuner(3, 1e12, cores=8)
    assert not fixed.auto and fixed.base == 3 and _run(fixed, 3, {3: 0.0}) == [3] * 3


def test_step_flop_counts_the_stacked_update():
    # example_03a: 143 agents, obs 74 (2 unique), 2 actions, batch 128, nets 256/128;
    # torch.utils.flop_counter gave 54.49 GFLOP for the hand kernel (benchmarks/RESULTS.md)
    assert step_flop(143, 74, 2, 2, 128, (256, 128), (256, 128)) == pytest.approx(54.5e9, rel=0.02)
    # the built-in default (3 agents) stays on one thread; 03a and `many` (24) are timed
    assert step_flop(3, 74, 2, 2, 128, (256, 128), (256, 128)) < MIN_PARALLEL_FLOP
    assert step_flop(24, 74, 2, 2, 128, (256, 128), (256, 128)) > MIN_PARALLEL_FLOP


def test_learner_wires_torch_threads(restore_threads):
    big = LearningConfig(critic_hidden_sizes=(256, 128), batch_size=256)
    lr = Learner(big, [f"u{i}" for i in range(60)], 74, [2] * 60)
    assert lr.threads.fixed is None
    assert lr.threads.auto == (lr.threads.candidates[-1] > 1)
    fixed = Learner(big.with_overrides(["torch_threads=2"]), ["a", "b"], 10, [2, 2])
    assert fixed.threads.fixed == 2 and not fixed.threads.auto


def test_torch_threads_accepts_auto_and_names_the_choices():
    assert LearningConfig().with_overrides(["torch_threads=auto"]).torch_threads is None
    assert LearningConfig().with_overrides(["torch_threads=4"]).torch_threads == 4
    with pytest.raises(ValueError, match='torch_threads.*"auto"'):
        LearningConfig().with_overrides(["torch_threads=many"])
