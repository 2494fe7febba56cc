"""marketzoo + SuperSuit + Stable-Baselines3: one shared policy for every agent of `default`.

``envs.parallel_env("default", uniform_spaces=True)`` gives the two CCGTs and the
pumped-storage unit the same ``Box`` spaces (actions padded to the plants' two prices, the
storage unit ignores the second; the observation ends with the agent's kind as a one-hot).
SuperSuit then turns it into a vector env with one slot per agent and stacks copies, and
a single SB3 model trains on all slots: parameter sharing, no wrapper of the user's own.

Run::

    pip install -e ".[interop-supersuit,interop-sb3]"
    python examples/supersuit_shared_policy.py --copies 4 --steps 20000
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import supersuit as ss  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.utils import set_random_seed  # noqa: E402

import envs  # noqa: E402


def make_vec_env(scenario: str = "default", copies: int = 4, max_cycles: int | None = 168, **env_kwargs):
    """``copies`` copies of the market as one SB3 ``VecEnv`` with ``copies * n_agents`` slots."""
    env = envs.parallel_env(scenario, uniform_spaces=True, max_cycles=max_cycles, **env_kwargs)
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    return ss.concat_vec_envs_v1(vec, copies, num_cpus=0, base_class="stable_baselines3")


def evaluate(model, scenario: str = "default", max_cycles: int | None = 168, seed: int = 1000) -> dict:
    """Deterministic actions of the shared policy for one episode in a plain ParallelEnv
    (with uniform spaces); returns each agent's total profit (EUR) and reward."""
    env = envs.parallel_env(scenario, uniform_spaces=True, max_cycles=max_cycles)
    obs, _ = env.reset(seed=seed)
    profit = {a: 0.0 for a in env.possible_agents}
    reward = dict(profit)
    while env.agents:
        actions = {a: model.predict(obs[a], deterministic=True)[0] for a in env.agents}
        obs, rew, _, _, infos = env.step(actions)
        for a in rew:
            profit[a] += infos[a]["profit"]
            reward[a] += rew[a]
    return {"profit": profit, "reward": reward}


def main(scenario: str = "default", copies: int = 4, steps: int = 20_000, max_cycles: int | None = 168,
         seed: int = 0) -> dict:
    """PPO with one policy for all agents; returns the model, the vec env's layout and the
    evaluation before and after training."""
    vec = make_vec_env(scenario, copies, max_cycles)
    # not PPO(seed=...): SB3 then calls VecEnv.seed(), which SuperSuit's ConcatVecEnv lacks
    set_random_seed(seed)
    model = PPO("MlpPolicy", vec, n_steps=128, batch_size=256, n_epochs=4, learning_rate=3e-4, gamma=0.9,
                policy_kwargs={"net_arch": [64, 64]}, device="cpu", verbose=0)
    before = evaluate(model, scenario, max_cycles)
    model.learn(total_timesteps=steps)
    after = evaluate(model, scenario, max_cycles)
    out = {"model": model, "num_envs": vec.num_envs, "obs_shape": vec.observation_space.shape,
           "action_shape": vec.action_space.shape, "before": before, "after": after}
    vec.close()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="default")
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = main(a.scenario, a.copies, a.steps, seed=a.seed)
    print(f"{out['num_envs']} slots, observation {out['obs_shape']}, action {out['action_shape']}")
    for agent in out["before"]["profit"]:
        print(f"{agent:28s} evaluation profit {out['before']['profit'][agent] / 1e6:7.3f} -> "
              f"{out['after']['profit'][agent] / 1e6:7.3f} MEUR")
    print("total", sum(out["before"]["profit"].values()) / 1e6, "->", sum(out["after"]["profit"].values()) / 1e6)
    np.set_printoptions(precision=3)
