"""marketzoo + SuperSuit: the ParallelEnv as one batched Gymnasium-style vector env.

``pettingzoo_env_to_vec_env_v1`` turns a PettingZoo ``ParallelEnv`` whose agents all share
one observation space and one action space into a vector env with one slot per agent;
``concat_vec_envs_v1`` stacks ``N`` copies of it, so a single-agent algorithm sees
``N * n_agents`` parallel slots (parameter sharing across agents and copies).

Homogeneous spaces are required. Action spaces differ by kind (plants
``Box(-1, 1, (2,))``, storage and renewables ``Box(-1, 1, (1,))``), so:

* ``tiny`` (one plant) and scenarios whose learners are all plants (e.g. ASSUME's
  ``example_02b``: five CCGTs) work as they are;
* mixed scenarios such as ``default`` (two CCGTs and a pumped-storage unit) are built with
  ``uniform_spaces=True``: every agent then has the ``(2,)`` action (storage and
  renewables ignore entry 1) and an observation ending in its kind as a one-hot.

Run::

    pip install -e ".[interop-supersuit]"
    python examples/supersuit_example.py --scenario default --copies 8 --steps 400
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import supersuit as ss  # noqa: E402

import envs  # noqa: E402


def make_vec_env(scenario: str = "tiny", copies: int = 8, uniform_spaces: bool | None = None, **env_kwargs):
    """``copies`` copies of the market as one vector env (``copies * n_agents`` slots).
    ``uniform_spaces=None``: only when the scenario's agents are of more than one kind."""
    if uniform_spaces is None:
        kinds = {a.rsplit("_", 1)[0] for a in envs.parallel_env(scenario, **env_kwargs).possible_agents}
        uniform_spaces = len(kinds) > 1
    env = envs.parallel_env(scenario, uniform_spaces=uniform_spaces, **env_kwargs)
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    return ss.concat_vec_envs_v1(vec, copies, num_cpus=0, base_class="gymnasium")


def main(scenario: str = "tiny", copies: int = 8, steps: int = 200, seed: int = 0) -> dict:
    """Random bids for ``steps`` vector steps; returns a few numbers about the run."""
    vec = make_vec_env(scenario, copies)
    rng = np.random.default_rng(seed)
    obs, infos = vec.reset(seed=seed)
    episodes, total_reward, prices = 0, 0.0, []
    for _ in range(steps):
        actions = rng.uniform(-1.0, 1.0, size=(vec.num_envs, *vec.action_space.shape)).astype(np.float32)
        obs, rewards, terminations, truncations, infos = vec.step(actions)  # auto-resets finished copies
        total_reward += float(rewards.sum())
        episodes += int(truncations.sum())
        prices.append(infos[0]["clearing_price"])
    vec.close()
    return {
        "num_envs": vec.num_envs, "obs_shape": obs.shape, "action_shape": vec.action_space.shape,
        "finished_agent_episodes": episodes, "total_reward": total_reward, "mean_price": float(np.mean(prices)),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="tiny")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(main(a.scenario, a.copies, a.steps, a.seed))
