"""The private torch internals the hand-written MATD3 kernel uses, in one place.

:class:`agents.matd3.MATD3`'s hand-written backward pass (``kernel="hand"``) is 1.1-1.2x
faster than autograd on the same stacked tensors at 3-10 agents on CPU
(``benchmarks/RESULTS.md``), but leans on three things torch does not promise to keep:

* ``torch.ops.aten.threshold_backward.grad_input`` -- ReLU's backward, in place, with no
  temporary mask (:func:`relu_grad_`);
* ``torch._foreach_lerp_`` -- the Polyak update of all target tensors in one call
  (:func:`lerp_all_`);
* Adam's state layout (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter;
  ``fused``/``capturable`` in the parameter groups) -- the kernel hands Adam gradients it
  wrote itself, and the per-agent checkpoint export reads and writes that state
  (:func:`ensure_adam_state`).

At import this module checks the torch version against the range the kernel was tested
with (:data:`TESTED_TORCH`) and probes each internal. :data:`MISSING` lists what failed;
when it is not empty, :func:`hand_kernel_available` is false, ``MATD3(kernel="auto")``
(the default) uses the autograd kernel, and one :class:`TorchInternalsWarning` says so.
The autograd kernel uses public API only (Adam's state layout aside, which the per-agent
checkpoint export needs in any case).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = [
    "MISSING", "TESTED_TORCH", "TorchInternalsWarning", "ensure_adam_state", "hand_kernel_available", "lerp_all_",
    "relu_grad_",
]

TESTED_TORCH = ((2, 2), (3, 0))
"""Torch versions the hand-written kernel is tested with: ``>= 2.2, < 3.0``."""

ADAM_STATE_KEYS = frozenset({"step", "exp_avg", "exp_avg_sq"})


class TorchInternalsWarning(RuntimeWarning):
    """A torch internal of the hand-written MATD3 kernel is missing: autograd is used."""


def _version() -> tuple[int, int]:
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return (0, 0)


def _probe() -> list[str]:
    """Check every internal on tiny tensors; return what is missing or behaves otherwise."""
    missing = []
    low, high = TESTED_TORCH
    if not low <= _version() < high:
        missing.append(f"torch {torch.__version__} outside the tested range >= {low[0]}.{low[1]}, < {high[0]}.{high[1]}")
    try:
        g = torch.tensor([1.0, 2.0, 3.0])
        out = torch.tensor([0.0, 0.5, 0.0])
        torch.ops.aten.threshold_backward.grad_input(g, out, 0, grad_input=g)
        if g.tolist() != [0.0, 2.0, 0.0]:
            missing.append("aten.threshold_backward.grad_input (other result)")
    except Exception as exc:  # noqa: BLE001 - any failure means: do not use it
        missing.append(f"aten.threshold_backward.grad_input ({type(exc).__name__})")
    try:
        t, p = [torch.zeros(2)], [torch.ones(2)]
        torch._foreach_lerp_(t, p, 0.25)
        if t[0].tolist() != [0.25, 0.25]:
            missing.append("torch._foreach_lerp_ (other result)")
    except Exception as exc:  # noqa: BLE001
        missing.append(f"torch._foreach_lerp_ ({type(exc).__name__})")
    try:
        w = torch.zeros(2, requires_grad=True)
        opt = torch.optim.Adam([w], lr=0.1)
        w.grad = torch.ones(2)
        opt.step()
        group = opt.param_groups[0]
        if set(opt.state[w]) != ADAM_STATE_KEYS or "fused" not in group or "capturable" not in group:
            missing.append("Adam state layout (step, exp_avg, exp_avg_sq; fused/capturable)")
    except Exception as exc:  # noqa: BLE001
        missing.append(f"Adam state layout ({type(exc).__name__})")
    return missing


MISSING: tuple[str, ...] = tuple(_probe())
"""What the import-time check found missing (empty: the hand-written kernel may run)."""

if MISSING:
    warnings.warn(
        "marketzoo MATD3: the hand-written backward pass needs torch internals that this torch lacks ("
        + "; ".join(MISSING) + "); using the autograd kernel (same results, slower: see benchmarks/RESULTS.md)",
        TorchInternalsWarning, stacklevel=2,
    )


def hand_kernel_available() -> bool:
    """Whether every internal passed the import-time check."""
    return not MISSING


def relu_grad_(grad: Tensor, relu_out: Tensor) -> Tensor:
    """``grad *= (relu_out > 0)`` in place, without a temporary mask."""
    return torch.ops.aten.threshold_backward.grad_input(grad, relu_out, 0, grad_input=grad)


def lerp_all_(targets: list[Tensor], sources: list[Tensor], weight: float) -> None:
    """``t += weight * (s - t)`` for every pair, in one call where torch has it."""
    if hasattr(torch, "_foreach_lerp_"):
        torch._foreach_lerp_(targets, sources, weight)
    else:  # pragma: no cover - torch without the foreach op
        for t, s in zip(targets, sources):
            t.lerp_(s, weight)


def ensure_adam_state(opt: torch.optim.Adam) -> None:
    """Create Adam's lazily initialised state (zeros) the way ``Adam.step`` would."""
    for group in opt.param_groups:
        on_device = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            state = opt.state[p]
            if len(state) == 0:
                state["step"] = (
                    torch.zeros((), dtype=torch.float32, device=p.device)
                    if on_device
                    else torch.tensor(0.0, dtype=torch.float32)
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
