"""Will it fit? A memory estimate of MATD3 training, checked before anything is allocated.

:func:`estimate_training_memory` counts the bytes of the large allocations of
:class:`agents.matd3.MATD3` and :class:`agents.buffer.ReplayBuffer` from the sizes alone:

* networks: every agent's actor and twin-head critic, online and target copies. Actors
  are stacked with actions padded to ``max_act``; a critic's input is
  ``obs_dim + (n - 1) * unique_obs_len + n * max_act`` wide, so critics grow with the
  square of the number of agents (1,000 learners with the default ``(256, 128)`` layers
  need about 8.5 GB per copy of the critics);
* gradients: one buffer per parameter tensor;
* optimizers: Adam's two moments per parameter;
* workspace: the per-batch buffers of the hand-written backward pass (``batch_size``);
* buffer: the replay buffer's observations, actions and rewards (``buffer_size``
  transitions), in the buffer's float type.

It is a lower bound of what training needs (Python, torch and the environment come on
top). :func:`check_memory` compares it with the memory available now
(:func:`available_memory_bytes`: ``psutil`` when installed, else ``/proc/meminfo``) and
raises :class:`ResourceError` with one line naming the parts and what to reduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "MemoryEstimate", "ResourceError", "estimate_training_memory", "estimate_for_config", "available_memory_bytes",
    "check_memory", "check_training_memory",
]

GiB = 1024**3


class ResourceError(ValueError):
    """A configuration that cannot fit into the memory of this machine."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of the large allocations of one training run (see the module docstring)."""

    networks: int
    gradients: int
    optimizers: int
    workspace: int
    buffer: int
    n_params: int
    """parameters of all online networks (actors + critics, stacked and padded)"""

    @property
    def total(self) -> int:
        return self.networks + self.gradients + self.optimizers + self.workspace + self.buffer

    def describe(self) -> str:
        parts = ", ".join(
            f"{k} {_fmt(getattr(self, k))}" for k in ("networks", "gradients", "optimizers", "workspace", "buffer")
        )
        return f"{_fmt(self.total)} ({parts})"


def _fmt(b: float) -> str:
    if b >= GiB:
        return f"{b / GiB:.1f} GiB"
    if b >= 1024**2:
        return f"{b / 1024 ** 2:.1f} MiB"
    return f"{b / 1024:.1f} KiB"


def _as_sizes(sizes: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(h) for h in sizes)
    except (TypeError, ValueError):
        raise ResourceError(f"{name} must be a list of positive integers, got {sizes!r}") from None
    if not out or any(h < 1 for h in out):
        raise ResourceError(f"{name} must be a non-empty list of positive integers, got {list(out)}")
    return out


def estimate_training_memory(
    n_agents: int,
    obs_dim: int,
    act_dims: Sequence[int] | int,
    *,
    unique_obs_len: int = 2,
    actor_hidden_sizes: Sequence[int] = (256, 128),
    critic_hidden_sizes: Sequence[int] = (256, 128),
    buffer_size: int = 0,
    batch_size: int = 0,
    float_bytes: int = 4,
    buffer_float_bytes: int | None = None,
) -> MemoryEstimate:
    """Bytes that :class:`~agents.matd3.MATD3` (``n_agents`` learners) and a replay
    buffer of ``buffer_size`` transitions allocate; ``act_dims`` is the list of action
    sizes or their maximum. ``batch_size = 0`` leaves out the update workspace,
    ``buffer_size = 0`` the buffer (e.g. for evaluation). Pure arithmetic on Python
    ints: huge inputs give huge numbers, never an allocation."""
    n, od = int(n_agents), int(obs_dim)
    m = int(act_dims) if isinstance(act_dims, int) else max(int(a) for a in act_dims)
    u = int(unique_obs_len)
    if n < 1 or od < 1 or m < 1 or u < 0:
        raise ResourceError(f"n_agents, obs_dim and act_dims must be positive, got {n}, {od}, {m}")
    ha = _as_sizes(actor_hidden_sizes, "actor_hidden_sizes")
    hc = _as_sizes(critic_hidden_sizes, "critic_hidden_sizes")
    # actors: (n, out, fan_in) + (n, out, 1) per layer
    sizes = (od, *ha, m)
    actor = n * sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
    # critics: first layer of both heads (n, 2*h0, D); then (n, 2, out, fan_in) per layer
    D = od + (n - 1) * u + n * m
    csizes = (*hc, 1)
    critic = n * 2 * (D * hc[0] + hc[0]) + n * 2 * sum(o * i + o for i, o in zip(csizes[:-1], csizes[1:]))
    params = actor + critic
    fb = int(float_bytes)
    networks = 2 * params * fb + n * D * 8  # online + target, plus the critic's gather index (int64)
    gradients = params * fb
    optimizers = 2 * params * fb
    b = int(batch_size)
    if b > 0:
        ws = (n * od + n * m) * b + n * D * b + b * n * m + n * b + n * m * b
        ws += 2 * n * b * sum((*ha, m)) + 2 * n * 2 * hc[0] * b + 2 * 2 * n * b * sum(csizes[1:])
        workspace = ws * fb
    else:
        workspace = 0
    bb = fb if buffer_float_bytes is None else int(buffer_float_bytes)
    buffer = int(buffer_size) * (n * (od + m + 1) * bb + 1) if int(buffer_size) > 0 else 0
    return MemoryEstimate(networks=networks, gradients=gradients, optimizers=optimizers, workspace=workspace,
                          buffer=buffer, n_params=params)


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation now (``psutil.virtual_memory().available``,
    else ``MemAvailable`` of ``/proc/meminfo``); ``None`` when neither can be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil is optional
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(estimate: MemoryEstimate, available: int | None = None, *, what: str = "training",
                 fix: str = "reduce replay_buffer_size, the hidden sizes or the number of learning units") -> MemoryEstimate:
    """Raise :class:`ResourceError` (one line) when ``estimate.total`` exceeds
    ``available`` bytes (default: :func:`available_memory_bytes`; no check when unknown).
    Returns ``estimate``."""
    if available is None:
        available = available_memory_bytes()
    if available is not None and estimate.total > available:
        raise ResourceError(
            f"{what} needs at least {estimate.describe()} but only {_fmt(available)} of memory is available; {fix}"
        )
    return estimate


def estimate_for_config(cfg, n_agents: int, obs_dim: int, act_dims: Sequence[int] | int,
                        unique_obs_len: int = 2) -> MemoryEstimate:
    """:func:`estimate_training_memory` with the sizes of a learning config (anything
    with ``actor_hidden_sizes``, ``critic_hidden_sizes``, ``replay_buffer_size`` and
    ``batch_size`` attributes, e.g. :class:`agents.config.LearningConfig`)."""
    return estimate_training_memory(
        n_agents, obs_dim, act_dims, unique_obs_len=unique_obs_len,
        actor_hidden_sizes=cfg.actor_hidden_sizes, critic_hidden_sizes=cfg.critic_hidden_sizes,
        buffer_size=cfg.replay_buffer_size, batch_size=cfg.batch_size,
    )


def check_training_memory(estimate: MemoryEstimate, device: str = "cpu", *, host_available: int | None = None,
                          device_available: int | None = None) -> MemoryEstimate:
    """Check ``estimate`` where each part lives: everything in host memory for a CPU
    device; for a CUDA device the networks, gradients, optimizers and workspace in the
    GPU's free memory (``torch.cuda.mem_get_info``) and the replay buffer (a NumPy
    array) in host memory. Raises :class:`ResourceError` (one line) when a part does not
    fit; returns ``estimate``."""
    dev = str(device)
    if not dev.startswith("cuda"):
        return check_memory(estimate, host_available)
    on_gpu = MemoryEstimate(estimate.networks, estimate.gradients, estimate.optimizers, estimate.workspace, 0,
                            estimate.n_params)
    if device_available is None:
        try:
            import torch

            index = int(dev.split(":")[1]) if ":" in dev else torch.cuda.current_device()
            device_available = int(torch.cuda.mem_get_info(index)[0])
        except Exception:  # noqa: BLE001 - no CUDA: the device check is left to torch
            device_available = None
    if device_available is not None:
        check_memory(on_gpu, device_available, what=f"training on {dev}",
                     fix="reduce the hidden sizes, batch_size or the number of learning units")
    buf = MemoryEstimate(0, 0, 0, 0, estimate.buffer, 0)
    check_memory(buf, host_available, what="the replay buffer", fix="reduce replay_buffer_size")
    return estimate
