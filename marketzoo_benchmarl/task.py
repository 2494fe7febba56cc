"""BenchMARL task class, task enum and config schema for marketzoo."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml
from benchmarl.environments.common import Task, TaskClass
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.envs.libs.pettingzoo import PettingZooWrapper

import envs

CONF_DIR = Path(__file__).resolve().parent / "conf"
"""Hydra config folder of this package (``task/marketzoo/<name>.yaml``)."""


@dataclass
class TaskConfig:
    """Keys of a marketzoo task YAML (``conf/task/marketzoo/*.yaml``)."""

    scenario: str = "default"
    uniform_spaces: bool = True
    max_cycles: Optional[int] = None
    env_kwargs: Dict[str, Any] = field(default_factory=dict)


_KEYS = tuple(f.name for f in fields(TaskConfig))


def _check_config(config: Dict[str, Any], where: str) -> Dict[str, Any]:
    """The config with defaults filled in; one clear error for an unknown or ill-typed key."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: a marketzoo task config must be a mapping with keys {list(_KEYS)}, got {type(config).__name__}")
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; a marketzoo task has the keys {list(_KEYS)} "
            "(put envs.parallel_env options under 'env_kwargs')"
        )
    out = TaskConfig(**config).__dict__
    out["env_kwargs"] = dict(out["env_kwargs"] or {})
    if not isinstance(out["scenario"], str):
        raise ValueError(f"{where}: 'scenario' must be a built-in scenario name or a folder path, got {out['scenario']!r}")
    if not isinstance(out["uniform_spaces"], bool):
        raise ValueError(f"{where}: 'uniform_spaces' must be true or false, got {out['uniform_spaces']!r}")
    mc = out["max_cycles"]
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
        raise ValueError(f"{where}: 'max_cycles' must be a positive number of hours or null, got {mc!r}")
    clash = sorted({"scenario", "uniform_spaces", "max_cycles"} & set(out["env_kwargs"]))
    if clash:
        raise ValueError(f"{where}: {clash} must be set as top-level keys, not under 'env_kwargs'")
    return out


def _group_map(pz, uniform: bool) -> Dict[str, List[str]]:
    """One group ``agents`` with uniform spaces; otherwise one group per agent kind
    (the part of the agent id before the last ``_``: ``plant``, ``storage``, ``renewable``)."""
    if uniform:
        return {"agents": list(pz.possible_agents)}
    groups: Dict[str, List[str]] = {}
    for a in pz.possible_agents:
        groups.setdefault(a.rsplit("_", 1)[0], []).append(a)
    return groups


def make_env(config: Dict[str, Any], *, seed: Optional[int] = None, device="cpu") -> EnvBase:
    """The TorchRL env BenchMARL trains on: ``envs.parallel_env`` in TorchRL's
    ``PettingZooWrapper`` with a global ``state`` for centralised critics (MAPPO, MADDPG)."""
    cfg = _check_config(dict(config), "marketzoo task config")
    kwargs = dict(cfg["env_kwargs"])
    if cfg["uniform_spaces"]:
        kwargs["uniform_spaces"] = True
    pz = envs.parallel_env(cfg["scenario"], max_cycles=cfg["max_cycles"], **kwargs)
    return PettingZooWrapper(
        pz,
        group_map=_group_map(pz, cfg["uniform_spaces"]),
        return_state=True,
        categorical_actions=True,
        seed=seed,
        device=device,
    )


class MarketzooTaskClass(TaskClass):
    """How BenchMARL builds and reads a marketzoo env (continuous actions only)."""

    def get_env_fun(self, num_envs: int, continuous_actions: bool, seed: Optional[int], device) -> Callable[[], EnvBase]:
        if not continuous_actions:
            raise ValueError("marketzoo has continuous actions only; use an algorithm with continuous actions (e.g. mappo, maddpg)")
        config = copy.deepcopy(self.config)
        # not vectorised: BenchMARL wraps it in a SerialEnv/ParallelEnv of num_envs copies
        return lambda: make_env(config, seed=seed, device=device)

    def supports_continuous_actions(self) -> bool:
        return True

    def supports_discrete_actions(self) -> bool:
        return False

    def has_render(self, env: EnvBase) -> bool:
        return False

    def max_steps(self, env: EnvBase) -> int:
        return int(env._env.core.max_cycles)

    def group_map(self, env: EnvBase) -> Dict[str, List[str]]:
        return env.group_map

    def _only(self, env: EnvBase, key: str) -> Composite:
        spec = env.observation_spec.clone()
        for group in self.group_map(env):
            for k in list(spec[group].keys()):
                if k != key:
                    del spec[group][k]
        if "state" in spec.keys():
            del spec["state"]
        return spec

    def observation_spec(self, env: EnvBase) -> Composite:
        return self._only(env, "observation")

    def info_spec(self, env: EnvBase) -> Optional[Composite]:
        return self._only(env, "info")

    def state_spec(self, env: EnvBase) -> Optional[Composite]:
        return Composite({"state": env.observation_spec["state"].clone()})

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec

    def action_mask_spec(self, env: EnvBase) -> Optional[Composite]:
        return None

    @staticmethod
    def env_name() -> str:
        return "marketzoo"


class MarketzooTask(Task):
    """marketzoo tasks; each loads ``conf/task/marketzoo/<name>.yaml`` of this package."""

    DEFAULT = None
    TINY = None

    @staticmethod
    def associated_class():
        return MarketzooTaskClass

    def get_from_yaml(self, path: Optional[str] = None) -> TaskClass:
        """The task with its config from ``path`` (default: this package's YAML for the task)."""
        if path is None:
            path = CONF_DIR / "task" / "marketzoo" / f"{self.name.lower()}.yaml"
        with open(path) as f:
            config = yaml.safe_load(f) or {}
        config.pop("defaults", None)
        return self.get_task(config=_check_config(config, str(path)))

    def get_task(self, config: Optional[Dict[str, Any]] = None) -> TaskClass:
        if config is None:
            return self.get_from_yaml()
        return MarketzooTaskClass(name=self.name, config=_check_config(dict(config), f"marketzoo/{self.name.lower()}"))


def register() -> None:
    """Make ``task=marketzoo/<name>`` known to BenchMARL's Hydra loader
    (:func:`benchmarl.hydra_config.load_task_config_from_hydra`)."""
    from benchmarl.environments import task_config_registry

    for task in MarketzooTask:
        task_config_registry[f"marketzoo/{task.name.lower()}"] = task
