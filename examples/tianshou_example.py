"""marketzoo + Tianshou: one DDPG learner per agent through Tianshou's PettingZoo adapter.

``tianshou.env.PettingZooEnv`` takes a PettingZoo AEC env whose agents all have the same
observation and action space. ``envs.env("default", uniform_spaces=True)`` is exactly
that: every agent gets the same ``Box`` actions (plants' two prices; the storage unit uses
the first entry and ignores the second) and an observation that carries the agent's kind.
No wrapper of the user's own is needed.

Tianshou steps the AEC env one agent at a time; ``MultiAgentOffPolicyAlgorithm`` routes each
transition to the learner of the agent that acted and gives it that agent's reward.

Run::

    pip install -e ".[interop-tianshou]"
    python examples/tianshou_example.py --scenario default --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tianshou.algorithm import DDPG, MultiAgentOffPolicyAlgorithm  # noqa: E402
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy  # noqa: E402
from tianshou.algorithm.multiagent.marl import MultiAgentPolicy  # noqa: E402
from tianshou.algorithm.optim import AdamOptimizerFactory  # noqa: E402
from tianshou.data import Batch, Collector, CollectStats, VectorReplayBuffer  # noqa: E402
from tianshou.env import DummyVectorEnv, PettingZooEnv  # noqa: E402
from tianshou.exploration import GaussianNoise  # noqa: E402
from tianshou.trainer import OffPolicyTrainerParams  # noqa: E402
from tianshou.utils.net.common import Net  # noqa: E402
from tianshou.utils.net.continuous import ContinuousActorDeterministic, ContinuousCritic  # noqa: E402

import envs  # noqa: E402


class ContinuousMultiAgentPolicy(MultiAgentPolicy):
    """Two fixes for Tianshou 2.0.1's ``MultiAgentPolicy.forward`` with continuous actions
    (any env; nothing marketzoo-specific, and they touch neither the env nor learning):

    * it reads ``batch.obs_next`` whenever observations carry no action mask, and the batch
      a ``Collector`` asks actions for has none (``AttributeError: 'dict' object has no
      attribute 'obs_next'``): an empty one is added;
    * it deep-copies the sub-policies' actions with ``Batch.cat``, which fails for actions
      that are tensors with gradients (DDPG/TD3/SAC actors): the ``Collector`` calls it
      with gradients on, so it runs under ``torch.no_grad()`` (only collection calls this
      method; the learners' updates call their own policies).
    """

    def forward(self, batch, state=None, **kwargs):
        if "obs_next" not in batch.get_keys():
            batch = Batch(batch, copy=False)
            batch.obs_next = Batch()
        with torch.no_grad():
            return super().forward(batch, state, **kwargs)


class AgentDDPG(DDPG):
    """DDPG for one agent inside ``MultiAgentOffPolicyAlgorithm``. Tianshou 2.0.1's DDPG
    computes its target from ``buffer[indices].obs_next``, which in a multi-agent buffer is
    the adapter's dict ``{agent_id, obs}``, not the observation array (its multi-agent code
    strips that dict from the batch it hands over but not from this buffer look-up). This
    takes the array out of it; everything else is Tianshou's DDPG."""

    def _target_q(self, buffer, indices):
        obs_next = buffer[indices].obs_next
        if isinstance(obs_next, Batch) and "obs" in obs_next.get_keys():
            obs_next = obs_next.obs
        obs_next_batch = Batch(obs=obs_next, info=[None] * len(indices))
        return self._target_q_compute_value(obs_next_batch, self._target_q_compute_action(obs_next_batch))


def make_env(scenario: str = "default", max_cycles: int | None = 48) -> PettingZooEnv:
    """The AEC env with uniform spaces in Tianshou's adapter (no other wrapper)."""
    return PettingZooEnv(envs.env(scenario, uniform_spaces=True, max_cycles=max_cycles))


def make_algorithm(env: PettingZooEnv, hidden=(64, 64), noise: float = 0.3, lr: float = 1e-3,
                   gamma: float = 0.9) -> MultiAgentOffPolicyAlgorithm:
    """One DDPG (actor + critic) per agent, in the adapter's agent order."""
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    learners = []
    for _ in env.agents:
        actor = ContinuousActorDeterministic(
            preprocess_net=Net(state_shape=obs_shape, hidden_sizes=hidden), action_shape=act_shape, max_action=1.0
        )
        critic = ContinuousCritic(
            preprocess_net=Net(state_shape=obs_shape, action_shape=act_shape, hidden_sizes=hidden, concat=True)
        )
        policy = ContinuousDeterministicPolicy(
            actor=actor, exploration_noise=GaussianNoise(sigma=noise),
            action_space=env.action_space, observation_space=env.observation_space,
        )
        learners.append(AgentDDPG(policy=policy, policy_optim=AdamOptimizerFactory(lr=lr), critic=critic,
                                  critic_optim=AdamOptimizerFactory(lr=lr), gamma=gamma))
    algorithm = MultiAgentOffPolicyAlgorithm(algorithms=learners, env=env)
    algorithm.policy.__class__ = ContinuousMultiAgentPolicy  # Tianshou 2.0.1 bug, see the class
    return algorithm


def main(scenario: str = "default", epochs: int = 2, epoch_steps: int = 576, n_envs: int = 2,
         max_cycles: int | None = 48, seed: int = 0) -> dict:
    """Train for ``epochs`` x ``epoch_steps`` agent steps (one agent acts per step); returns
    the algorithm and the per-agent returns of one test episode before and after training."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    env = make_env(scenario, max_cycles)
    algorithm = make_algorithm(env)
    train_envs = DummyVectorEnv([lambda: make_env(scenario, max_cycles) for _ in range(n_envs)])
    test_envs = DummyVectorEnv([lambda: make_env(scenario, max_cycles)])
    train_envs.seed(seed)
    test_envs.seed(seed + 1000)
    buffer = VectorReplayBuffer(20_000, n_envs)
    train_collector = Collector[CollectStats](algorithm, train_envs, buffer, exploration_noise=True)
    test_collector = Collector[CollectStats](algorithm, test_envs)

    def test_returns() -> np.ndarray:  # undiscounted return of every agent over one test episode
        return test_collector.collect(n_episode=1, reset_before_collect=True).returns[0]

    before = test_returns()
    train_collector.collect(n_step=256, reset_before_collect=True, random=True)  # warm-up
    result = algorithm.run_training(OffPolicyTrainerParams(
        training_collector=train_collector, test_collector=test_collector, max_epochs=epochs,
        epoch_num_steps=epoch_steps, collection_step_num_env_steps=16, batch_size=64,
        update_step_num_gradient_steps_per_sample=0.25, test_step_num_episodes=1,
        verbose=False, show_progress=False,
    ))
    after = test_returns()
    train_envs.close()
    test_envs.close()
    return {"algorithm": algorithm, "agents": list(env.agents), "returns_before": before,
            "returns_after": after, "env_steps": train_collector.collect_step,
            "result": result}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="default")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--epoch-steps", type=int, default=576)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = main(a.scenario, a.epochs, a.epoch_steps, seed=a.seed)
    for agent, r0, r1 in zip(out["agents"], out["returns_before"], out["returns_after"]):
        print(f"{agent:28s} test return {r0:9.2f} -> {r1:9.2f}")
