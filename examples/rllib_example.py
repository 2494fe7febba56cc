"""marketzoo + RLlib: ParallelPettingZooEnv, a rollout and PPO training iterations.

``ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv`` turns the ParallelEnv into
an RLlib ``MultiAgentEnv`` (dict observations/actions keyed by agent id, ``"__all__"``
in terminateds/truncateds). Agents of one kind share their spaces, so one policy (RL
module) per kind: ``policy_mapping_fn`` maps ``plant_ccgt-1`` -> ``"plant"``.

PPO is used because it runs on RLlib's current API stack out of the box for continuous
actions; the env itself has no preference (SAC, APPO, ... work the same way).

Versions: ``ray[rllib]`` pins gymnasium exactly (ray 2.60: ``gymnasium==1.2.2``), so it
needs its own environment next to a newer gymnasium; marketzoo supports gymnasium >= 0.29.

Run::

    pip install -e ".[interop-rllib]"
    python examples/rllib_example.py --iterations 3
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv  # noqa: E402
from ray.tune.registry import register_env  # noqa: E402

import envs  # noqa: E402


def env_creator(config: dict) -> ParallelPettingZooEnv:
    return ParallelPettingZooEnv(envs.parallel_env(config.get("scenario", "default"),
                                                   max_cycles=config.get("max_cycles")))


register_env("marketzoo", env_creator)


def policy_for(agent_id, *args, **kwargs) -> str:
    return agent_id.rsplit("_", 1)[0]  # the agent's kind


def rollout(scenario: str = "default", max_cycles: int | None = None, seed: int = 0) -> dict:
    """One random episode through the RLlib wrapper."""
    env = env_creator({"scenario": scenario, "max_cycles": max_cycles})
    obs, infos = env.reset(seed=seed)
    totals = dict.fromkeys(obs, 0.0)
    steps = 0
    while True:
        actions = {a: env.action_space[a].sample() for a in obs}
        obs, rewards, terminateds, truncateds, infos = env.step(actions)
        for a, r in rewards.items():
            totals[a] += r
        steps += 1
        if terminateds["__all__"] or truncateds["__all__"]:
            break
    return {"steps": steps, "returns": totals, "truncateds": truncateds, "terminateds": terminateds}


def make_config(scenario: str = "default", max_cycles: int | None = 48, batch: int = 192) -> PPOConfig:
    return (
        PPOConfig()
        .environment("marketzoo", env_config={"scenario": scenario, "max_cycles": max_cycles})
        .framework("torch")
        .env_runners(num_env_runners=0, rollout_fragment_length=48)  # sample in the driver process
        .multi_agent(policies={policy_for(a) for a in envs.parallel_env(scenario).possible_agents},
                     policy_mapping_fn=policy_for)
        .training(train_batch_size_per_learner=batch, minibatch_size=64, num_epochs=2)
        .rl_module(model_config={"fcnet_hiddens": [32, 32]})
    )


def train(scenario: str = "default", iterations: int = 1, max_cycles: int | None = 48) -> list[dict]:
    """``iterations`` PPO training iterations; returns RLlib's result dicts."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    algo = make_config(scenario, max_cycles).build_algo()
    try:
        return [algo.train() for _ in range(iterations)]
    finally:
        algo.stop()
        if started:
            ray.shutdown()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="default")
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--max-cycles", type=int, default=48, help="episode hours (default 48)")
    a = p.parse_args()
    print("rollout:", rollout(a.scenario, a.max_cycles))
    for i, r in enumerate(train(a.scenario, a.iterations, a.max_cycles)):
        ret = r["env_runners"].get("agent_episode_returns_mean", {})
        print(f"iteration {i}: env steps {r['env_runners']['num_env_steps_sampled_lifetime']:.0f}, "
              f"episode returns {({k: round(float(v), 2) for k, v in ret.items()})}, "
              f"losses {({k: round(float(v['total_loss']), 3) for k, v in r['learners'].items() if 'total_loss' in v})}")
