"""marketzoo + AgileRL: train AgileRL's MATD3 on the default scenario.

AgileRL's multi-agent algorithms take the PettingZoo parallel API directly. They group
agents by the part of the id before the last ``_`` -- marketzoo's ids are
``<kind>_<unit>`` for exactly this reason -- so the two CCGTs (``plant_ccgt-1``,
``plant_ccgt-2``) share one actor network and the pumped-storage unit has its own.

This is AgileRL's own off-policy loop (``agilerl.training.train_multi_agent_off_policy``)
without the evolutionary hyper-parameter search, written out so that every step is
visible: act with exploration noise, store the transition, learn every ``learn_step``
steps, evaluate with ``agent.test`` (sum over agents of the episode's rewards).

Versions: AgileRL >= 2.50 requires ``pettingzoo<1.27`` and ``tensordict==0.13.0``, and
(2.50 - 2.58) imports ``peft`` at start-up although only its ``llm`` extra installs it;
the ``interop-agilerl`` extra of marketzoo pins all three. See docs/INTEROP.md.

Run::

    pip install -e ".[interop-agilerl]"
    python examples/agilerl_example.py --steps 2016
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from agilerl.algorithms import MATD3  # noqa: E402
from agilerl.components.data import MultiAgentTransition, transition_to_tensordict  # noqa: E402
from agilerl.components.replay_buffer import ReplayBuffer  # noqa: E402
from agilerl.components.sampler import Sampler  # noqa: E402
from agilerl.vector import PzDummyVecEnv  # noqa: E402

import envs  # noqa: E402


def make_agent(env, seed: int = 0) -> MATD3:
    torch.manual_seed(seed)
    agent_ids = list(env.possible_agents)
    return MATD3(
        observation_spaces=[env.observation_space(a) for a in agent_ids],
        action_spaces=[env.action_space(a) for a in agent_ids],
        agent_ids=agent_ids,
        # Wide Gaussian exploration (std 0.5 of the [-1, 1] action range): a bid below the
        # clearing price does not change the outcome, so the reward is flat in the action over
        # wide ranges and a narrow noise leaves the critic without a gradient to follow.
        O_U_noise=False, expl_noise=0.5,
        batch_size=128, lr_actor=1e-3, lr_critic=1e-3, learn_step=2, gamma=0.9, tau=0.01, policy_freq=2,
        net_config={"latent_dim": 64, "encoder_config": {"hidden_size": [64]}, "head_config": {"hidden_size": [64]}},
        device="cpu",
    )


def main(scenario: str = "default", steps: int = 2016, seed: int = 0, verbose: bool = False) -> dict:
    """Train for ``steps`` environment steps (hours); evaluate after every episode.
    Returns the evaluation returns (first entry: before training)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only add synchronisation
    try:
        return _train(scenario, steps, seed, verbose)
    finally:
        torch.set_num_threads(threads)


def _train(scenario: str, steps: int, seed: int, verbose: bool) -> dict:
    eval_env = envs.parallel_env(scenario)
    vec_env = PzDummyVecEnv(envs.parallel_env(scenario))  # AgileRL's vector API with one copy
    agent = make_agent(eval_env, seed)
    horizon = eval_env.core.max_cycles
    memory = ReplayBuffer(max_size=100_000)
    sampler = Sampler(memory=memory)
    evals = [float(agent.test(eval_env, loop=1))]
    t0 = time.perf_counter()
    obs, info = vec_env.reset(seed=seed)
    for step in range(1, steps + 1):
        agent.set_training_mode(True)
        action, raw_action = agent.get_action(obs=obs, infos=info)
        next_obs, reward, termination, truncation, info = vec_env.step(action)
        transition = transition_to_tensordict(
            MultiAgentTransition(obs=obs, action=raw_action, reward=reward, next_obs=next_obs, done=termination)
        )  # done = termination only: a truncated (time-limit) episode is bootstrapped
        transition.batch_size = torch.Size([1])
        memory.add(transition)
        # learn every learn_step hours, after one episode of experience
        if step % agent.learn_step == 0 and step > horizon and len(memory) >= agent.batch_size:
            agent.learn(sampler.sample(agent.batch_size))
        obs = next_obs
        if all(np.all(truncation[a]) for a in agent.agent_ids):  # the market horizon: new episode
            obs, info = vec_env.reset()
            evals.append(float(agent.test(eval_env, loop=1)))
            if verbose:
                print(f"step {step:6d}  evaluation return {evals[-1]:9.2f}  ({time.perf_counter() - t0:.1f} s)")
    return {"agents": list(agent.agent_ids), "evaluation_returns": evals, "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="default")
    p.add_argument("--steps", type=int, default=2016)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = main(a.scenario, a.steps, a.seed, verbose=True)
    print(f"evaluation return: {out['evaluation_returns'][0]:.2f} before training, "
          f"{out['evaluation_returns'][-1]:.2f} after {a.steps} steps ({out['seconds']:.1f} s)")
