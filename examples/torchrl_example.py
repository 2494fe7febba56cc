"""marketzoo + TorchRL: the ParallelEnv as a TorchRL multi-agent env.

``torchrl.envs.libs.pettingzoo.PettingZooWrapper`` wraps a PettingZoo env *instance*; it
sees that ours is a ``ParallelEnv`` (all agents act every step) by itself -- the
``parallel=True`` flag belongs to ``PettingZooEnv``, which builds PettingZoo's own
environments by task name and cannot build marketzoo.

TorchRL stacks agents of one *group* into one tensor. Its default grouping only merges
names of the form ``<group>_<int>``; marketzoo's agents are ``<kind>_<unit>``
(``plant_ccgt-1``), so pass a ``group_map`` by kind (the part before the last ``_``):
all agents of a kind share their spaces, so they stack. ``return_state=True`` adds the
global ``state()`` (for centralised critics such as MADDPG/MATD3/MAPPO in TorchRL or
BenchMARL).

Run::

    pip install -e ".[interop-torchrl]"
    python examples/torchrl_example.py --scenario default --steps 336
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torchrl.envs.libs.pettingzoo import PettingZooWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

import envs  # noqa: E402


def group_by_kind(agents: list[str]) -> dict[str, list[str]]:
    """``{"plant": [...], "storage": [...], ...}`` from marketzoo agent names."""
    groups: dict[str, list[str]] = {}
    for a in agents:
        groups.setdefault(a.rsplit("_", 1)[0], []).append(a)
    return groups


def make_env(scenario: str = "default", seed: int = 0, **env_kwargs) -> PettingZooWrapper:
    pz = envs.parallel_env(scenario, **env_kwargs)
    return PettingZooWrapper(pz, group_map=group_by_kind(pz.possible_agents), return_state=True, seed=seed)


def main(scenario: str = "default", steps: int = 100, seed: int = 0):
    env = make_env(scenario, seed)
    check_env_specs(env)  # TorchRL's spec checker: a short rollout must match the declared specs
    td = env.rollout(steps, break_when_any_done=False)  # random actions; resets itself at the horizon
    env.close()
    return env.group_map, td


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="default")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    groups, td = main(a.scenario, a.steps, a.seed)
    print("groups:", groups)
    for g in groups:
        r = td["next", g, "reward"]
        print(f"{g}: action {tuple(td[g, 'action'].shape)}, reward {tuple(r.shape)}, mean reward {r.mean():.3f}, "
              f"mean price {td['next', g, 'info', 'clearing_price'].mean():.1f} EUR/MWh")
    print("state:", tuple(td["state"].shape))
