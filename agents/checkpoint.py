"""Policy checkpoints: per-agent files in ASSUME's layout plus a JSON manifest.

A checkpoint is a folder::

    manifest.json                 format, agents (order), kinds, dims, network sizes,
                                  scenario, episode, metrics, library versions
    actors/actor_<agent>.pt       {"actor", "actor_target", "actor_optimizer"[, "standardised"]}
    critics/critic_<agent>.pt     {"critic", "critic_target", "critic_optimizer"[, "standardised"]}

``actor``/``actor_target`` load into :class:`agents.learning_utils.Actor` (``obs_dim``,
the agent's own ``act_dim``) and ``critic``/``critic_target`` into
:class:`agents.learning_utils.CriticTD3` (``n_agents``, ``obs_dim``, ``max_act``,
``unique_obs_len``), with the hidden sizes the manifest records. Optimizer entries hold
that agent's Adam moments. With ``obs_normalization`` these take raw observations (the
standardisation is folded into the first layer); ``standardised`` then also holds the
unfolded weights with their input ``shift`` and ``scale``, which a learner with the same
standardisation loads bit for bit.

File names: ``<agent>`` is the agent id with every character other than letters, digits,
``-``, ``_`` and ``.`` replaced by ``-``. When two agents would get the same file name that
way (``x/1`` and ``x:1``, or names that differ only in upper/lower case, which collide on
case-insensitive file systems), both get a suffix from a hash of their exact name
(``actor_x-1-<10 hex>.pt``). The manifest's ``files`` map is the authority, and the
loader refuses a manifest in which two agents share one file.

Writes are atomic: the folder is built under a temporary name next to the target
(``.<name>.tmp-<pid>-*``), then the old folder is renamed away (``.<name>.old-<pid>-*``),
the new one renamed into place and the old one deleted. An error between the two renames
puts the old folder back at once. After a hard crash between them (``kill -9``, power
loss), :func:`recover_checkpoint` -- run by every read and every save -- restores the
newest ``.old`` folder of a dead writer, and removes the temporary and old folders that
dead writers left behind. Folders of a writer that is still running are left alone.

Reads use ``torch.load(..., weights_only=True)`` and treat the checkpoint as untrusted
data: ``manifest.json`` goes through one schema check (:func:`validate_manifest`: types,
sizes, file paths confined to the checkpoint folder, a memory estimate of the networks it
describes) before any file is opened or any tensor allocated, and every tensor must be
finite. A missing, corrupt or mismatched file raises :class:`CheckpointError` naming the
file and what does not fit, before any weight is changed.

Continuing with different agents: :func:`load_checkpoint` with ``remap=True`` matches
agents **by name**. An agent present in both keeps its actor and its critic; the
critic's first-layer weights are rebuilt column by column: its own observation columns
are kept, the columns of every other agent's unique observations and actions are copied
from the old critic when that agent existed before and left at their fresh
initialisation when it is new (columns of agents that left are dropped). New agents keep
their fresh networks. Optimizer moments are reset for remapped critics.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from envs.core import MIN_POWER_RULES, PLANT_BIDS, STORAGE_PRICES

from .jsonio import dump_json_strict

FORMAT = "marketzoo.policy/1"

_MAX_STEM = 100  # characters of the agent id kept in a file name (the rest: hash)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the learner."""


def _safe(agent: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in agent)


def file_stems(agents: list[str]) -> dict[str, str]:
    """The file-name part of every agent: :func:`_safe` of its id, made unique.

    Agents whose safe names collide (also case-insensitively) or are longer than
    ``_MAX_STEM`` characters get ``-<10 hex digits of sha256(id)>`` appended, so two
    different ids never share a file. Raises :class:`CheckpointError` for duplicate ids.
    """
    dup = sorted({a for a in agents if agents.count(a) > 1})
    if dup:
        raise CheckpointError(f"agent ids {dup} appear more than once; every agent needs its own id")
    safe = {a: _safe(a) for a in agents}
    count: dict[str, int] = {}
    for v in safe.values():
        count[v.lower()] = count.get(v.lower(), 0) + 1
    out = {}
    for a in agents:
        stem = safe[a]
        if count[stem.lower()] > 1 or len(stem) > _MAX_STEM:
            stem = f"{stem[:_MAX_STEM]}-{hashlib.sha256(a.encode('utf-8')).hexdigest()[:10]}"
        out[a] = stem
    seen: dict[str, str] = {}
    for a, stem in out.items():
        if stem.lower() in seen:  # only with adversarial ids that spell out another's hash
            raise CheckpointError(f"agents {seen[stem.lower()]!r} and {a!r} map to one file name {stem!r}; rename one")
        seen[stem.lower()] = a
    return out


# --------------------------------------------------------------------------- crash recovery

_IN_FLIGHT: set[str] = set()  # targets this process is writing now
_IN_FLIGHT_LOCK = threading.Lock()
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>old|tmp)-(?P<pid>\d+)-(?P<rest>.*)$")
_LEGACY_TMP_AGE_S = 3600.0  # temporary folders without a pid (older versions): stale after this


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process: writes in flight are tracked in _IN_FLIGHT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _key(target: Path) -> str:
    return str(target.absolute())


def _leftovers(target: Path) -> tuple[list[tuple[int, int, Path]], list[Path], list[tuple[int, Path]]]:
    """(old folders of dead writers as (time_ns, pid, path), temporary folders of dead
    writers, old folders of live writers as (pid, path))."""
    olds, tmps, live = [], [], []
    parent = target.parent
    if not parent.is_dir():
        return olds, tmps, live
    prefix = f".{target.name}."
    for p in parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        m = _LEFTOVER.match(p.name)
        if m is None or m.group("name") != target.name:
            if p.name.startswith(f"{prefix}tmp-"):  # legacy mkdtemp name without a pid
                try:
                    if time.time() - p.stat().st_mtime > _LEGACY_TMP_AGE_S:
                        tmps.append(p)
                except OSError:
                    pass
            continue
        pid = int(m.group("pid"))
        alive = _pid_alive(pid)
        if m.group("kind") == "old":
            if alive:
                live.append((pid, p))
            else:
                ns = m.group("rest")
                olds.append((int(ns) if ns.isdigit() else 0, pid, p))
        elif not alive:
            tmps.append(p)
    return olds, tmps, live


def recover_checkpoint(directory: str | os.PathLike) -> list[str]:
    """Finish what a crashed :func:`save_checkpoint` of ``directory`` left behind.

    If the checkpoint folder is missing and a dead writer left ``.<name>.old-*`` (the
    previous checkpoint, renamed away just before the crash), the newest one is renamed
    back into place. Then the old and temporary folders of dead writers are deleted.
    Returns one line per action taken (empty when there was nothing to do). Writes of
    this process that are in flight, and folders of writers that are still running, are
    left alone.
    """
    target = Path(directory)
    with _IN_FLIGHT_LOCK:
        if _key(target) in _IN_FLIGHT:
            return []
    notes: list[str] = []
    olds, tmps, _ = _leftovers(target)
    if not olds and not tmps:
        return notes
    olds.sort()
    if not target.exists():
        for ns, pid, p in reversed(olds):
            if (p / "manifest.json").is_file():
                os.replace(p, target)
                olds.remove((ns, pid, p))
                notes.append(f"restored {target} from {p.name} (a save by process {pid} was interrupted)")
                break
    if target.exists():
        for _, _, p in olds:
            shutil.rmtree(p, ignore_errors=True)
            notes.append(f"removed {p.name} (left by an interrupted save)")
    for p in tmps:
        shutil.rmtree(p, ignore_errors=True)
        notes.append(f"removed {p.name} (an unfinished save)")
    return notes


def _recover_for_read(d: Path) -> None:
    try:
        recover_checkpoint(d)
    except OSError:
        pass  # e.g. a read-only copy: the error below names the folder to rename
    if not d.exists():
        olds, _, live = _leftovers(d)
        cands = sorted(olds) + [(0, pid, p) for pid, p in live]
        if cands:
            _, pid, p = cands[-1]
            raise CheckpointError(
                f"checkpoint folder {d} is missing, but {p} holds the previous checkpoint from an interrupted save "
                f"(process {pid}); if no save is running, rename it to {d.name}"
            )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_file(obj: dict[str, Any], path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


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
    """Write ``algo`` (an :class:`agents.matd3.MATD3`) as a checkpoint folder, atomically
    (see the module docstring for the swap and its crash recovery)."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    agents = list(agents)
    stems = file_stems(agents)
    try:
        recover_checkpoint(target)  # a crashed earlier save: restore / clean up first
    except OSError:
        pass  # a concurrent recovery won the race, or a leftover cannot be removed: save anyway
    key = _key(target)
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(key)
    try:
        return _save(target, algo, agents, stems, agent_kind=agent_kind, scenario=scenario, episode=episode,
                     metrics=metrics, extra=extra)
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(key)


def _save(target: Path, algo, agents: list[str], stems: dict[str, str], *, agent_kind, scenario, episode, metrics,
          extra) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        (tmp / "actors").mkdir()
        (tmp / "critics").mkdir()
        files = {}
        for i, agent in enumerate(agents):
            a_name, c_name = f"actors/actor_{stems[agent]}.pt", f"critics/critic_{stems[agent]}.pt"
            actor_file = {
                "actor": algo.actor_state_dict(i),
                "actor_target": algo.actor_target_state_dict(i),
                "actor_optimizer": algo.actor_optimizer_state(i),
            }
            critic_file = {
                "critic": algo.critic_state_dict(i),
                "critic_target": algo.critic_target_state_dict(i),
                "critic_optimizer": algo.critic_optimizer_state(i),
            }
            std = algo.input_standardisation(i, critic=False)
            if std is not None:  # obs_normalization: the unfolded weights too, for exact reloads
                actor_file["standardised"] = {
                    "shift": std[0], "scale": std[1], "actor": algo.actor_state_dict(i, folded=False),
                    "actor_target": algo.actor_target_state_dict(i, folded=False)}
                c_shift, c_scale = algo.input_standardisation(i, critic=True)
                critic_file["standardised"] = {
                    "shift": c_shift, "scale": c_scale, "critic": algo.critic_state_dict(i, folded=False),
                    "critic_target": algo.critic_target_state_dict(i, folded=False)}
            _save_file(actor_file, tmp / a_name)
            _save_file(critic_file, tmp / c_name)
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
            dump_json_strict(manifest, f)  # standard JSON: NaN/inf metrics become null
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        # swap into place: old -> .old, new -> target, drop old
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None and not target.exists():
                try:
                    os.replace(old, target)  # put the previous checkpoint back
                except OSError:
                    pass  # left as .old-*; recover_checkpoint restores it
            raise
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _confined(d: Path, rel: Any, where: str) -> Path:
    """``d / rel`` when ``rel`` is a relative path that stays inside ``d`` (also after
    following links); else a CheckpointError."""
    if not isinstance(rel, str) or not rel:
        raise CheckpointError(f"{where}: expected a file path inside the checkpoint folder, got {rel!r}")
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or ".." in re.split(r"[/\\]", rel):
        raise CheckpointError(
            f"{where}: path {rel!r} leaves the checkpoint folder; files must be relative paths inside it "
            "(e.g. actors/actor_<agent>.pt)"
        )
    path = d / pure
    try:
        inside = path.resolve().is_relative_to(d.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise CheckpointError(f"{where}: path {rel!r} points outside the checkpoint folder (through a link); refused")
    return path


# upper bounds of the manifest's sizes: far above any real network, far below overflow
_DIM_MAX = 1_000_000
_HIDDEN_MAX = 1_000_000
_AGENTS_MAX = 1_000_000


def validate_manifest(manifest: Any, directory: str | os.PathLike, *, check_memory: bool = True) -> dict[str, Any]:
    """Check a manifest as untrusted data, before anything is opened or allocated.

    Every problem is one :class:`CheckpointError` line naming ``manifest.json``, the key
    and what is expected: the format tag; ``agents`` a non-empty list of distinct
    strings; ``files`` one ``{"actor", "critic"}`` entry per agent with distinct paths
    inside the checkpoint folder; ``obs_dim``, ``act_dims`` (one per agent),
    ``unique_obs_len``, hidden sizes positive integers within bounds; ``episode``,
    ``n_updates`` and the recorded seeds non-negative integers (or null); ``agent_kind``
    one string per agent. With ``check_memory`` the networks it describes must fit into
    the available memory (:mod:`agents.resources`). Returns the manifest.
    """
    d = Path(directory)
    path = d / "manifest.json"

    def bad(key: str, expected: str, got: Any) -> CheckpointError:
        shown = repr(got)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return CheckpointError(f"{path}: key {key!r} must be {expected}, got {shown}; the checkpoint is corrupt or was edited")

    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}; not a marketzoo policy checkpoint")
    for key in ("agents", "files", "obs_dim", "act_dims", "unique_obs_len", "actor_hidden_sizes", "critic_hidden_sizes"):
        if key not in manifest:
            raise CheckpointError(f"{path}: key {key!r} is missing; the checkpoint is corrupt")
    agents = manifest["agents"]
    if not isinstance(agents, list) or not agents or not all(isinstance(a, str) and a for a in agents):
        raise bad("agents", "a non-empty list of agent ids (strings)", agents)
    if len(agents) > _AGENTS_MAX:
        raise bad("agents", f"at most {_AGENTS_MAX} agents", f"{len(agents)} agents")
    if len(set(agents)) != len(agents):
        raise bad("agents", "a list of distinct ids", sorted({a for a in agents if agents.count(a) > 1}))
    od = manifest["obs_dim"]
    if not _is_int(od) or not 1 <= od <= _DIM_MAX:
        raise bad("obs_dim", f"an integer in [1, {_DIM_MAX}]", od)
    dims = manifest["act_dims"]
    if not isinstance(dims, list) or len(dims) != len(agents) or not all(_is_int(x) and 1 <= x <= _DIM_MAX for x in dims):
        raise bad("act_dims", f"a list of {len(agents)} positive integers (one per agent)", dims)
    u = manifest["unique_obs_len"]
    if not _is_int(u) or not 0 <= u <= od:
        raise bad("unique_obs_len", f"an integer in [0, obs_dim={od}]", u)
    if "max_act" in manifest and (not _is_int(manifest["max_act"]) or not 1 <= manifest["max_act"] <= _DIM_MAX):
        raise bad("max_act", f"an integer in [1, {_DIM_MAX}]", manifest["max_act"])
    for key in ("actor_hidden_sizes", "critic_hidden_sizes"):
        h = manifest[key]
        if not isinstance(h, list) or not h or len(h) > 64 or not all(_is_int(x) and 1 <= x <= _HIDDEN_MAX for x in h):
            raise bad(key, f"a non-empty list of layer widths in [1, {_HIDDEN_MAX}]", h)
    for key in ("episode", "n_updates"):
        v = manifest.get(key)
        if v is not None and (not _is_int(v) or v < 0):
            raise bad(key, "a non-negative integer or null", v)
    kinds = manifest.get("agent_kind")
    if kinds is not None and (not isinstance(kinds, list) or len(kinds) != len(agents) or not all(isinstance(k, str) for k in kinds)):
        raise bad("agent_kind", f"null or a list of {len(agents)} strings", kinds)
    for key in ("scenario", "metrics"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise bad(key, "an object", manifest[key])
    for section in ("trainer", "learning_role"):
        info = manifest.get(section)
        if info is None:
            continue
        if not isinstance(info, dict):
            raise bad(section, "an object", info)
        seed = info.get("seed")
        if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**64):
            raise bad(f"{section}.seed", "an integer in [0, 2**64) or null", seed)
        for k in ("episode", "n_updates", "foresight"):
            v = info.get(k)
            if v is not None and (not _is_int(v) or v < 0 or (k == "foresight" and not 1 <= v <= 10_000)):
                raise bad(f"{section}.{k}", "a non-negative integer" + (" in [1, 10000]" if k == "foresight" else ""), v)
        mbp = info.get("max_bid_price")
        if mbp is not None and (isinstance(mbp, bool) or not isinstance(mbp, (int, float)) or not math.isfinite(mbp) or mbp <= 0):
            raise bad(f"{section}.max_bid_price", "a positive finite number", mbp)
        for k in ("start_up_markup_hours", "cost_snap"):
            mk = info.get(k)
            if mk is not None and (isinstance(mk, bool) or not isinstance(mk, (int, float)) or not math.isfinite(mk)
                                   or mk < 0):
                raise bad(f"{section}.{k}", "a finite number >= 0", mk)
        for k in ("tie_below_cost", "grid_learner_costs"):
            if info.get(k) is not None and not isinstance(info[k], bool):
                raise bad(f"{section}.{k}", "true or false", info[k])
        mix = info.get("actor_mix")  # actor_mix_fallback: agent -> episode its actor comes from
        if mix is not None and (not isinstance(mix, dict) or any(a not in agents for a in mix)
                                or any(not _is_int(e) or e < 0 for e in mix.values())):
            raise bad(f"{section}.actor_mix", "an object mapping agents of this checkpoint to episodes (integers >= 0)",
                      mix)
        for k, allowed in (("plant_bids", PLANT_BIDS), ("storage_prices", STORAGE_PRICES),
                           ("min_power_rule", MIN_POWER_RULES)):
            if info.get(k) is not None and info[k] not in allowed:
                raise bad(f"{section}.{k}", " or ".join(repr(v) for v in allowed), info[k])
    files = manifest["files"]
    if not isinstance(files, dict):
        raise bad("files", "an object mapping every agent to {\"actor\": path, \"critic\": path}", files)
    seen: dict[str, str] = {}
    for a in agents:
        entry = files.get(a)
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: files has no entry for agent {a!r} (expected {{\"actor\": ..., \"critic\": ...}}); "
                                  "the checkpoint is corrupt")
        for part in ("actor", "critic"):
            if part not in entry:
                raise CheckpointError(f"{path}: files[{a!r}] has no {part!r} path; the checkpoint is corrupt")
            p = _confined(d, entry[part], f"{path}: files[{a!r}][{part!r}]")
            k = os.path.normcase(str(p.resolve()))
            if k in seen:
                raise CheckpointError(
                    f"{path}: agents {seen[k]!r} and {a!r} share the file {entry[part]!r}, so one would get the other's "
                    "weights (a checkpoint written before agent names were disambiguated); retrain, or remove one agent"
                )
            seen[k] = a
    if check_memory:
        from .resources import ResourceError, check_memory as _check, estimate_training_memory

        try:
            est = estimate_training_memory(
                len(agents), od, dims, unique_obs_len=u, actor_hidden_sizes=manifest["actor_hidden_sizes"],
                critic_hidden_sizes=manifest["critic_hidden_sizes"],
            )
            _check(est, what=f"{path}: the networks it describes", fix="this is not a checkpoint this machine can load")
        except ResourceError as exc:
            raise CheckpointError(str(exc)) from None
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a checkpoint folder, validated (:func:`validate_manifest`). An
    interrupted save of the folder is recovered first (:func:`recover_checkpoint`)."""
    d = Path(directory)
    path = d / "manifest.json"
    _recover_for_read(d)
    if not d.is_dir():
        raise CheckpointError(f"checkpoint folder {d} does not exist (expected a folder written by train.py, e.g. RUN/policies/best)")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {d} is not a marketzoo checkpoint (it needs manifest.json, actors/, critics/)")
    try:
        size = path.stat().st_size
        if size > 64 * 1024**2:
            raise CheckpointError(f"{path} is {size / 1024 ** 2:.0f} MiB; a manifest is a few KiB, this is not a checkpoint")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({type(exc).__name__}: {exc}); the checkpoint is corrupt") from None
    return validate_manifest(manifest, d)


def _nonfinite(obj: Any, prefix: str) -> str | None:
    """Key path of the first tensor or float in ``obj`` with a NaN/inf value."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            if not bool(torch.isfinite(obj).all()):
                return prefix
        return None
    if isinstance(obj, float):
        return None if math.isfinite(obj) else prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = _nonfinite(v, f"{prefix}/{k}" if prefix else str(k))
            if hit is not None:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = _nonfinite(v, f"{prefix}[{i}]")
            if hit is not None:
                return hit
    return None


def _load_file(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc}); the file is corrupt") from exc
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise CheckpointError(f"{path}: expected a dict with keys {list(keys)}, got {type(obj).__name__}")
    hit = _nonfinite(obj, "")
    if hit is not None:
        raise CheckpointError(
            f"{path}: {hit} holds NaN or infinite values (training diverged before this save); "
            "use another checkpoint, e.g. an earlier policies/best"
        )
    return obj


def _agent_files(d: Path, manifest: dict[str, Any], part: str, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    where = d / "manifest.json"
    return {a: _load_file(_confined(d, manifest["files"][a][part], f"{where}: files[{a!r}][{part!r}]"), keys)
            for a in manifest["agents"]}


def _same_standardisation(saved: dict[str, Any], current: tuple[torch.Tensor, torch.Tensor] | None) -> bool:
    """Whether a saved actor or critic file holds unfolded weights (``obs_normalization``)
    of exactly the standardisation the loading learner uses: then those load bit for bit,
    else the folded ones are unfolded (equal up to float rounding)."""
    std = saved.get("standardised")
    if current is None or not isinstance(std, dict):
        return False
    shift, scale = std.get("shift"), std.get("scale")
    return (isinstance(shift, torch.Tensor) and isinstance(scale, torch.Tensor)
            and shift.shape == current[0].shape and scale.shape == current[1].shape
            and torch.equal(shift.to(current[0]), current[0]) and torch.equal(scale.to(current[1]), current[1]))


def load_actor_files(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(manifest, {agent: {"actor", "actor_target", "actor_optimizer"}})``."""
    d = Path(directory)
    manifest = read_manifest(d)
    return manifest, _agent_files(d, manifest, "actor", ("actor",))


def load_critic_files(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(manifest, {agent: {"critic", "critic_target", "critic_optimizer"}})``."""
    d = Path(directory)
    manifest = read_manifest(d)
    return manifest, _agent_files(d, manifest, "critic", ("critic",))


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
        trained = (manifest["obs_dim"] - manifest["unique_obs_len"]) // 3  # obs = 3 x foresight + unique
        raise CheckpointError(
            f"{d}: observation size {manifest['obs_dim']} (unique {manifest['unique_obs_len']}) does not match the "
            f"environment's {algo.obs_dim} (unique {algo.unique_obs_len}): the checkpoint was trained with another foresight; "
            f"set learning_config foresight to {trained} (e.g. --set foresight={trained})"
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
    shared = [a for a in agents if a in actors]
    if not shared:
        raise CheckpointError(
            f"{d}: shares no agent with the environment (checkpoint: {old_agents[:5]}"
            f"{' ...' if len(old_agents) > 5 else ''}; environment: {list(agents)[:5]}"
            f"{' ...' if len(agents) > 5 else ''}); nothing would be loaded. Use a checkpoint of this scenario's "
            "learning units, or start without one"
        )
    critics = load_critic_files(d)[1] if load_critics else {}
    old_dims = dict(zip(old_agents, manifest["act_dims"]))
    plan = []
    for i, agent in enumerate(agents):
        if agent not in actors:
            continue
        if old_dims[agent] != algo.act_dims[i]:
            hint = ""
            if agent.startswith("storage_") and {old_dims[agent], algo.act_dims[i]} == {1, 2}:
                mode = "signed" if old_dims[agent] == 1 else "two_sided"
                hint = (f"; the checkpoint's storage bids {mode!r} (1 entry: 'signed', 2: 'two_sided'): "
                        f"set storage_bids: {mode} in the config (or --set storage_bids={mode})")
            raise CheckpointError(
                f"{d}: agent {agent!r} has action size {old_dims[agent]} there, {algo.act_dims[i]} here{hint}")
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
            unfolded: list[str] = []
            if _same_standardisation(a, algo.input_standardisation(i, critic=False)):
                kw.update(actor=a["standardised"]["actor"], actor_target=a["standardised"]["actor_target"])
                unfolded += ["actor", "actor_target"]
            if load_optimizers and a.get("actor_optimizer"):
                kw["actor_opt"] = a["actor_optimizer"]
            if load_critics:
                c = critics[agent]
                if same_set:
                    kw["critic"], kw["critic_target"] = c["critic"], c.get("critic_target", c["critic"])
                    if _same_standardisation(c, algo.input_standardisation(i, critic=True)):
                        kw.update(critic=c["standardised"]["critic"], critic_target=c["standardised"]["critic_target"])
                        unfolded += ["critic", "critic_target"]
                    if load_optimizers and c.get("critic_optimizer"):
                        kw["critic_opt"] = c["critic_optimizer"]
                else:
                    args = (old_agents, list(agents), agent, algo.obs_dim, algo.unique_obs_len,
                            manifest.get("max_act", max(manifest["act_dims"])), algo.max_act)
                    kw["critic"] = remap_critic(c["critic"], algo.critic_state_dict(i), *args)
                    kw["critic_target"] = remap_critic(c.get("critic_target", c["critic"]), algo.critic_target_state_dict(i), *args)
            algo.load_agent(i, unfolded=unfolded, **kw)
    except CheckpointError:
        raise
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{d}: the checkpoint does not fit the learner: {exc}") from exc
    return manifest
