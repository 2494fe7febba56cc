"""Policy checkpoints: per-agent files in ASSUME's layout plus a JSON manifest.

A checkpoint is a folder::

    manifest.json                 format, agents (order), kinds, dims, network sizes,
                                  scenario, episode, metrics, library versions
    actors/actor_<agent>.pt       {"actor", "actor_target", "actor_optimizer"}
    critics/critic_<agent>.pt     {"critic", "critic_target", "critic_optimizer"}

``actor``/``actor_target`` load into :class:`agents.learning_utils.Actor` (``obs_dim``,
the agent's own ``act_dim``) and ``critic``/``critic_target`` into
:class:`agents.learning_utils.CriticTD3` (``n_agents``, ``obs_dim``, ``max_act``,
``unique_obs_len``), with the hidden sizes the manifest records. Optimizer entries hold
that agent's Adam moments.

Writes are atomic: the folder is built under a temporary name next to the target and
renamed into place, so a crash leaves either the old or the new checkpoint, never a mix.
Reads use ``torch.load(..., weights_only=True)``; a missing, corrupt or mismatched file
raises :class:`CheckpointError` naming the file and what does not fit, before any
weight is changed.

Continuing with different agents: :func:`load_checkpoint` with ``remap=True`` matches
agents **by name**. An agent present in both keeps its actor and its critic; the
critic's first-layer weights are rebuilt column by column: its own observation columns
are kept, the columns of every other agent's unique observations and actions are copied
from the old critic when that agent existed before and left at their fresh
initialisation when it is new (columns of agents that left are dropped). New agents keep
their fresh networks. Optimizer moments are reset for remapped critics.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

FORMAT = "marketzoo.policy/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the learner."""


def _safe(agent: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in agent)


def _versions() -> dict[str, str]:
    import numpy

    try:
        from importlib.metadata import version

        mz = version("marketzoo")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        mz = "0.1.0"
    return {"marketzoo": mz, "torch": torch.__version__, "numpy": numpy.__version__}


def save_checkpoint(
    directory: str | os.PathLike,
    algo,
    agents: list[str],
    *,
    agent_kind: list[str] | None = None,
    scenario: dict[str, Any] | None = None,
    episode: int | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``algo`` (an :class:`agents.matd3.MATD3`) as a checkpoint folder, atomically."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        (tmp / "actors").mkdir()
        (tmp / "critics").mkdir()
        files = {}
        for i, agent in enumerate(agents):
            a_name, c_name = f"actors/actor_{_safe(agent)}.pt", f"critics/critic_{_safe(agent)}.pt"
            torch.save(
                {
                    "actor": algo.actor_state_dict(i),
                    "actor_target": algo.actor_target_state_dict(i),
                    "actor_optimizer": algo.actor_optimizer_state(i),
                },
                tmp / a_name,
            )
            torch.save(
                {
                    "critic": algo.critic_state_dict(i),
                    "critic_target": algo.critic_target_state_dict(i),
                    "critic_optimizer": algo.critic_optimizer_state(i),
                },
                tmp / c_name,
            )
            files[agent] = {"actor": a_name, "critic": c_name}
        manifest = {
            "format": FORMAT,
            "agents": list(agents),
            "agent_kind": list(agent_kind) if agent_kind else None,
            "files": files,
            "obs_dim": algo.obs_dim,
            "act_dims": list(algo.act_dims),
            "max_act": algo.max_act,
            "unique_obs_len": algo.unique_obs_len,
            "actor_hidden_sizes": list(algo.actor_hidden_sizes),
            "critic_hidden_sizes": list(algo.critic_hidden_sizes),
            "n_updates": int(algo.n_updates),
            "scenario": scenario or {},
            "episode": episode,
            "metrics": metrics or {},
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if extra:
            manifest.update(extra)
        with open(tmp / "manifest.json", "w") as f:
            json.dump(manifest, f, indent=2, default=float)
            f.flush()
            os.fsync(f.fileno())
        # swap into place: old -> .old, new -> target, drop old
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a checkpoint folder, validated."""
    d = Path(directory)
    path = d / "manifest.json"
    if not d.is_dir():
        raise CheckpointError(f"checkpoint folder {d} does not exist (expected a folder written by train.py, e.g. RUN/policies/best)")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {d} is not a marketzoo checkpoint (it needs manifest.json, actors/, critics/)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the checkpoint is corrupt") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    for key in ("agents", "files", "obs_dim", "act_dims", "unique_obs_len", "actor_hidden_sizes", "critic_hidden_sizes"):
        if key not in manifest:
            raise CheckpointError(f"{path}: key {key!r} is missing; the checkpoint is corrupt")
    return manifest


def _load_file(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc}); the file is corrupt") from exc
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise CheckpointError(f"{path}: expected a dict with keys {list(keys)}, got {type(obj).__name__}")
    return obj


def load_actor_files(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(manifest, {agent: {"actor", "actor_target", "actor_optimizer"}})``."""
    d = Path(directory)
    manifest = read_manifest(d)
    return manifest, {a: _load_file(d / manifest["files"][a]["actor"], ("actor",)) for a in manifest["agents"]}


def load_critic_files(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(manifest, {agent: {"critic", "critic_target", "critic_optimizer"}})``."""
    d = Path(directory)
    manifest = read_manifest(d)
    return manifest, {a: _load_file(d / manifest["files"][a]["critic"], ("critic",)) for a in manifest["agents"]}


def _critic_columns(agents: list[str], i: int, obs_dim: int, u: int, m: int) -> dict[tuple[str, str, int], int]:
    """Map of (kind, agent, k) -> column of agent i's critic input layer."""
    cols: dict[tuple[str, str, int], int] = {}
    for k in range(obs_dim):
        cols[("own", agents[i], k)] = k
    c = obs_dim
    for j, a in enumerate(agents):
        if j == i:
            continue
        for k in range(u):
            cols[("unique", a, k)] = c
            c += 1
    for a in agents:
        for k in range(m):
            cols[("action", a, k)] = c
            c += 1
    return cols


def remap_critic(sd: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], old_agents: list[str],
                 new_agents: list[str], agent: str, obs_dim: int, u: int, old_m: int, new_m: int) -> dict[str, torch.Tensor]:
    """Rebuild a critic state dict for a new agent list (see the module docstring)."""
    out = {k: v.clone() for k, v in fresh.items()}
    for k, v in sd.items():
        if not (k.endswith(".0.weight")):
            if k in out and out[k].shape == v.shape:
                out[k] = v.clone()
    old_cols = _critic_columns(old_agents, old_agents.index(agent), obs_dim, u, old_m)
    new_cols = _critic_columns(new_agents, new_agents.index(agent), obs_dim, u, new_m)
    for head in ("q1", "q2"):
        key = f"{head}.0.weight"
        w_old, w_new = sd[key], out[key]
        for name, c_new in new_cols.items():
            c_old = old_cols.get(name)
            if c_old is not None:
                w_new[:, c_new] = w_old[:, c_old]
    return out


def load_checkpoint(directory: str | os.PathLike, algo, agents: list[str], *, remap: bool = False,
                    load_optimizers: bool = True, load_critics: bool = True) -> dict[str, Any]:
    """Load a checkpoint into ``algo`` (an :class:`agents.matd3.MATD3` for ``agents``).

    Without ``remap`` the agent lists must match exactly. Everything is read and checked
    first; weights change only when all files fit. Returns the manifest.
    """
    d = Path(directory)
    manifest, actors = load_actor_files(d)
    old_agents = list(manifest["agents"])
    if manifest["obs_dim"] != algo.obs_dim or manifest["unique_obs_len"] != algo.unique_obs_len:
        raise CheckpointError(
            f"{d}: observation size {manifest['obs_dim']} (unique {manifest['unique_obs_len']}) does not match the "
            f"environment's {algo.obs_dim} (unique {algo.unique_obs_len}); was the checkpoint trained with another foresight?"
        )
    if list(manifest["actor_hidden_sizes"]) != list(algo.actor_hidden_sizes) or (
        load_critics and list(manifest["critic_hidden_sizes"]) != list(algo.critic_hidden_sizes)
    ):
        raise CheckpointError(
            f"{d}: network sizes actor {manifest['actor_hidden_sizes']} / critic {manifest['critic_hidden_sizes']} differ from "
            f"the configured {list(algo.actor_hidden_sizes)} / {list(algo.critic_hidden_sizes)}; set actor_hidden_sizes / "
            "critic_hidden_sizes to the checkpoint's values"
        )
    if not remap and old_agents != list(agents):
        missing = [a for a in agents if a not in old_agents]
        extra = [a for a in old_agents if a not in agents]
        raise CheckpointError(
            f"{d}: agents differ from the environment's (missing in checkpoint: {missing}, not in env: {extra}, "
            f"or a different order); continue learning with remapping (continue_learning with a changed agent set) "
            "or use a checkpoint of this scenario"
        )
    critics = load_critic_files(d)[1] if load_critics else {}
    old_dims = dict(zip(old_agents, manifest["act_dims"]))
    plan = []
    for i, agent in enumerate(agents):
        if agent not in actors:
            continue
        if old_dims[agent] != algo.act_dims[i]:
            raise CheckpointError(f"{d}: agent {agent!r} has action size {old_dims[agent]} there, {algo.act_dims[i]} here")
        plan.append((i, agent))
    same_set = old_agents == list(agents) and manifest.get("max_act", algo.max_act) == algo.max_act
    # check every tensor's name and shape for every agent before changing any weight
    for i, agent in plan:
        checks = [(actors[agent]["actor"], algo.actor_state_dict(i), f"actor of {agent!r}")]
        if load_critics and same_set:
            checks.append((critics[agent]["critic"], algo.critic_state_dict(i), f"critic of {agent!r}"))
        for got, want, what in checks:
            if set(got) != set(want):
                raise CheckpointError(f"{d}: {what} has tensors {sorted(got)}, expected {sorted(want)}")
            for k, v in want.items():
                if tuple(got[k].shape) != tuple(v.shape):
                    raise CheckpointError(f"{d}: {what}: {k} has shape {tuple(got[k].shape)}, expected {tuple(v.shape)}")
    try:
        for i, agent in plan:
            a = actors[agent]
            kw: dict[str, Any] = {"actor": a["actor"], "actor_target": a.get("actor_target", a["actor"])}
            if load_optimizers and a.get("actor_optimizer"):
                kw["actor_opt"] = a["actor_optimizer"]
            if load_critics:
                c = critics[agent]
                if same_set:
                    kw["critic"], kw["critic_target"] = c["critic"], c.get("critic_target", c["critic"])
                    if load_optimizers and c.get("critic_optimizer"):
                        kw["critic_opt"] = c["critic_optimizer"]
                else:
                    args = (old_agents, list(agents), agent, algo.obs_dim, algo.unique_obs_len,
                            manifest.get("max_act", max(manifest["act_dims"])), algo.max_act)
                    kw["critic"] = remap_critic(c["critic"], algo.critic_state_dict(i), *args)
                    kw["critic_target"] = remap_critic(c.get("critic_target", c["critic"]), algo.critic_target_state_dict(i), *args)
            algo.load_agent(i, **kw)
    except CheckpointError:
        raise
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{d}: the checkpoint does not fit the learner: {exc}") from exc
    return manifest
