"""marketzoo + Gymnasium + Stable-Baselines3: train one bidder with TD3.

``envs.single_agent_env(scenario, agent=None)`` is a plain ``gymnasium.Env``: one learning
unit is the agent, every other learning unit bids by rule (its marginal cost; storage
against the price forecast). It is registered as ``marketzoo/SingleAgentMarket-v0``, so
``gymnasium.make("marketzoo/SingleAgentMarket-v0", scenario="tiny")`` works too (after
``import envs``).

On ``tiny`` the learner (1000 MW at 40 EUR/MWh) is always marginal: the exact best
response is to bid just below the next offer (70 EUR/MWh), about 30 kEUR per hour. An
untrained TD3 actor bids about 0 EUR/MWh and loses money; a few thousand TD3 steps find
a markup. The example reports the evaluation profit before and after training and the
share of the exact best-response profit (:mod:`envs.analysis`).

Run::

    pip install -e ".[interop-sb3]"
    python examples/sb3_example.py --steps 3000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from stable_baselines3 import TD3  # noqa: E402
from stable_baselines3.common.noise import NormalActionNoise  # noqa: E402

from envs.analysis import exploitability  # noqa: E402
from envs.single_agent import single_agent_env  # noqa: E402  (also envs.single_agent_env)


def evaluate(model, scenario: str = "tiny", agent: str | None = None, seed: int = 0) -> dict:
    """One deterministic episode: the learner's profit (EUR), its exact best-response
    profit and the share reached."""
    env = single_agent_env(scenario, agent, record=True)
    obs, _ = env.reset(seed=seed)
    profit, done = 0.0, False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        profit += info["profit"]
        done = terminated or truncated
    ex = exploitability(env.episode_record())
    br = float(np.asarray(ex.best_response_profit)[env.index])
    return {"profit": profit, "best_response_profit": br, "share": profit / br if br > 0 else float("nan"),
            "bid": float(info["bid_price_1"])}


def main(steps: int = 3000, scenario: str = "tiny", agent: str | None = None, seed: int = 0) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only add synchronisation
    try:
        return _train(steps, scenario, agent, seed)
    finally:
        torch.set_num_threads(threads)


def _train(steps: int, scenario: str, agent: str | None, seed: int) -> dict:
    env = single_agent_env(scenario, agent)
    check_env(env)  # Gymnasium's API checker
    n_act = env.action_space.shape[0]
    model = TD3(
        "MlpPolicy", env, learning_rate=1e-3, gamma=0.9, learning_starts=env.core.max_cycles * 10,
        action_noise=NormalActionNoise(np.zeros(n_act), 0.2 * np.ones(n_act)),
        policy_kwargs={"net_arch": [64, 64]}, seed=seed, device="cpu", verbose=0,
    )
    before = evaluate(model, scenario, agent)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    after = evaluate(model, scenario, agent)
    return {"agent": env.agent, "steps": steps, "train_seconds": train_s, "before": before, "after": after}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--scenario", default="tiny")
    p.add_argument("--agent", default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = main(a.steps, a.scenario, a.agent, a.seed)
    b, f = out["before"], out["after"]
    print(f"{out['agent']}: {out['steps']} TD3 steps in {out['train_seconds']:.1f} s")
    print(f"  evaluation profit before {b['profit']:,.0f} EUR, after {f['profit']:,.0f} EUR "
          f"(best response {f['best_response_profit']:,.0f} EUR, share {f['share']:.2f}; last bid {f['bid']:.1f} EUR/MWh)")
