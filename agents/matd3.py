"""MATD3 with all agents' networks stacked: one batched pass per layer, no loop over agents.

:class:`MATD3` keeps every agent's actor, twin critic, their targets and the Adam state in
tensors with a leading agent dimension and evaluates all agents at once with batched
matrix products (``torch.baddbmm`` / ``torch.bmm``). A gradient step costs a fixed number
of kernel launches whatever the number of agents, performs no device synchronisation,
allocates no large tensor, and gives the same result as training each agent's own
:class:`~agents.learning_utils.Actor` / :class:`~agents.learning_utils.CriticTD3` with its
own Adam (checked against the loop implementation
:class:`agents.matd3_reference.ReferenceMATD3` in ``tests/test_matd3.py``).

Algorithm (one :meth:`MATD3.update` call = one gradient step)
--------------------------------------------------------------
For every agent ``i`` (all at once)::

    a'   = clamp(actor_target_i(next_obs_i) + clip(N(0, target_policy_noise), +-target_noise_clip), -1, 1)
    y_i  = r_i + gamma * min(Q1'_i, Q2'_i)(next_obs, a')        # no done flag: episodes only truncate
    L_i  = MSE(Q1_i(obs, a), y_i) + MSE(Q2_i(obs, a), y_i)      # a = the sampled actions
    critic_i <- Adam(clip_grad_norm(grad L_i, max_grad_norm))

and every ``policy_delay``-th step::

    J_i  = -mean Q1_i(obs, a with slot i replaced by actor_i(obs_i))
           [+ actor_preactivation_penalty * mean(pre_tanh_i ** 2)]
    actor_i <- Adam(clip_grad_norm(grad J_i, max_grad_norm))
    targets <- (1 - tau) * targets + tau * online               # actors and critics

Each agent's parameters only enter its own loss, so the gradients are exactly the
per-agent ones. One Adam over the stacked tensors is exactly one Adam per agent (Adam is
elementwise); gradient clipping computes one norm per agent (over all tensors of that
agent's network), the rule of ``torch.nn.utils.clip_grad_norm_``.

Layout
------
``n`` agents, ``B`` batch, ``od = obs_dim``, ``u = unique_obs_len``, ``m = max(act_dims)``.
Activations are feature-major, ``(n, features, B)``, so weights keep ``nn.Linear``'s
``(out, in)`` orientation and a layer is ``h = baddbmm(b, W, h)``.

==========================  =================================  ==========================
tensor                      stacked shape                      per-agent export key(s)
==========================  =================================  ==========================
actor layer ``l`` weight    ``(n, out_l, in_l)``               ``net.{2l}.weight``
actor layer ``l`` bias      ``(n, out_l, 1)``                  ``net.{2l}.bias``
critic layer 0 weight       ``(n, 2*h1, D)`` (q1 rows, q2)     ``q1.0.weight``, ``q2.0.weight``
critic layer 0 bias         ``(n, 2*h1, 1)``                   ``q1.0.bias``, ``q2.0.bias``
critic layer ``l>0`` weight ``(n, 2, out_l, in_l)``            ``q1.{2l}.weight``, ``q2...``
critic layer ``l>0`` bias   ``(n, 2, out_l, 1)``               ``q1.{2l}.bias``, ``q2...``
==========================  =================================  ==========================

The critic's two heads share their input, so layer 0 computes both at once (``2*h1``
output rows); from layer 1 on the heads run as ``2n`` "virtual agents" (a view, no copy).

Critic input ``D = od + (n-1)*u + n*m``: the agent's own observation, the last ``u``
values of every other agent's observation in agent order (skipping itself) and all
agents' padded actions -- exactly :class:`~agents.learning_utils.CriticTD3`'s input with
``act_dim = m``. It is built for all agents by one ``index_select`` with an index
precomputed at construction.

Standardised observations
-------------------------
With :meth:`MATD3.set_obs_normalization` every observation entering the networks (acting,
critic values, updates, imitation) is first mapped to ``(obs - obs_shift) / obs_scale``.
The stacked weights live in that standardised space. Every per-agent export folds the
map into the first layer (``W / scale``, ``b - W (shift / scale)``; for a critic on its
observation columns, not its action columns), so an exported ``Actor`` / ``CriticTD3``
takes raw observations. :meth:`MATD3.load_agent` unfolds it again.

Heterogeneous actions
---------------------
Agents may have different action sizes (``act_dims``); every action is padded to ``m``.
``action_mask`` ``(n, m)`` is 1 on an agent's real dimensions and 0 on padding. Actor
outputs, target actions, the smoothing noise and sampled actions are multiplied by it, so
padded dimensions are exactly 0 everywhere. The padded output rows of each actor's last
layer are initialised to 0 and never receive gradient, so they stay 0; exports slice them
away (``net.{2L}`` has ``act_dims[i]`` rows).

Hand-written backward pass, no allocation per step
--------------------------------------------------
The networks are plain MLPs, so :meth:`MATD3.update` backpropagates by hand (a few
batched matrix products per layer) instead of through autograd. All activations and
their gradients live in a workspace allocated once per batch size, and the parameter
gradients in persistent ``.grad`` buffers written with ``out=``. On CPU this avoids the
page faults of fresh large allocations on every step (several microseconds per 4 KiB page
in a VM; they were a third of a 10-agent step) and autograd's per-op overhead. The
parameters are plain tensors (``requires_grad=False``).

Two kernels compute the same step (``MATD3(kernel=...)``): ``"hand"``, the hand-written
pass above, and ``"autograd"``, which builds the same losses from the same stacked
tensors and lets autograd differentiate them. The autograd kernel is the in-package
reference: new losses or layers are written there first, then by hand, and
``tests/test_matd3.py`` checks the two against each other over agent counts, depths,
``unique_obs_len``, clipping, the pre-activation penalty and batch-size changes (and the
autograd kernel against the per-agent loop :class:`agents.matd3_reference.ReferenceMATD3`).
The hand-written pass is 1.1-1.2x faster on CPU at 3-10 agents (``benchmarks/RESULTS.md``). The private
torch calls it needs live in :mod:`agents._torch_private`, which checks them at import;
``kernel="auto"`` (default) falls back to autograd, with one warning, when one is missing.

Actor loss without rebuilding the critic input: the critic's first layer is linear, so
replacing agent ``i``'s action slot changes its pre-activation by
``W_slot_i @ (a_pi_i - a_i)``, where ``W_slot_i`` are the ``m`` columns of agent ``i``'s own
slot. The actor step evaluates the (updated) q1 head's first layer on the sampled batch
and adds that correction; no per-agent copy of the action vector is built and no critic
gradient is computed.

Imitation (best-response teacher)
---------------------------------
``update(batch, imitation=(obs_t, target_t, weight))`` adds, on an actor step, a
behaviour-cloning term towards teacher actions (the trainer's ``best_response_teacher``
passes the exact per-hour best responses of its last evaluations)::

    J_i = -mean Q1_i(...) / max(mean |Q1_i|, 1)                         # taught agents (weight_i > 0)
          + weight_i * mean_{b, d} (z_i - atanh(clip(target_i, +-0.995)))**2   # finite targets only
          [+ actor_preactivation_penalty * mean(z_i ** 2)]

with ``z_i`` the pre-tanh output of actor ``i`` on ``obs_t`` (a batch of its own). The Q
term is normalised as in TD3+BC (Fujimoto & Gu, 2021; detached, floor 1) so that
``weight`` means the same whatever the scale of the returns; the imitation term is taken
before the tanh so that it pulls a saturated actor back. NaN targets (no teacher for that
agent, hour or action dimension) and padding are left out; agents with weight 0 are
trained exactly as without imitation. :meth:`MATD3.imitation_step` takes one step on the
imitation term alone.

Metrics
-------
:meth:`MATD3.update` returns tensors by default (no device sync; convert when logging):
``losses/critic_loss`` (sum over agents, scalar), ``losses/critic_loss_per_agent`` ``(n,)``,
``losses/critic_grad_norm_per_agent`` ``(n,)`` (before clipping), and on actor steps
``losses/actor_loss``, ``losses/actor_loss_per_agent``, ``losses/actor_grad_norm_per_agent``.
``update(..., as_float=True)`` returns Python floats / lists instead (one synchronisation);
:func:`metrics_to_float` converts later. The tensors are fresh (not views of buffers that
the next step overwrites).

Randomness
----------
Initial weights and the target-smoothing noise come from ``self.generator``, a
``torch.Generator`` on ``device`` seeded with ``seed``; no global random state is used.
Each agent's layers are drawn like ``nn.Linear``'s default (kaiming-uniform with
``a=sqrt(5)``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weight and bias), agent after
agent. On CPU, two instances with the same arguments and thread count produce bitwise
identical weights.

Differences from ASSUME
-----------------------
* One object owns all agents' networks; networks do not live on strategy objects.
* No per-agent loop or per-agent ``.to(device)`` / ``.item()`` in a gradient step.
* Target networks are moved with ``torch.lerp`` (``t + tau*(p - t)``), which equals
  ``(1-tau)*t + tau*p`` up to rounding.
* Adam's ``step`` counter is shared by all agents (they are always updated together).
* ``actor_preactivation_penalty`` (default 0, i.e. off) is marketzoo's own option.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ._torch_private import MISSING as _MISSING_INTERNALS
from ._torch_private import ensure_adam_state as _ensure_adam_state
from ._torch_private import hand_kernel_available, lerp_all_
from ._torch_private import relu_grad_ as _relu_grad_

__all__ = ["KERNELS", "MATD3", "metrics_to_float"]

KERNELS = ("auto", "hand", "autograd")

_FORMAT = "marketzoo.matd3/1"
_IMITATION_CLIP = 0.995  # teacher actions are clipped to this before atanh (|z| <= 3.0)


# --------------------------------------------------------------------------- helpers


def _pos_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MATD3: {name} must be a positive integer, got {value!r}")
    return int(value)


def _hidden(sizes: Sequence[int], name: str) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError(f"MATD3: {name} must name at least one hidden layer")
    return tuple(_pos_int(h, f"every entry of {name}") for h in sizes)


def _make_adam(params: list[Tensor], lr: float) -> torch.optim.Adam:
    """Adam over the stacked tensors: fused kernel where supported, else foreach."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def metrics_to_float(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Tensor metrics to Python numbers (scalars -> float, vectors -> list), one sync."""
    keys = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    out: dict[str, Any] = {k: v for k, v in metrics.items() if not isinstance(v, Tensor)}
    if not keys:
        return out
    tensors = [metrics[k].detach().reshape(-1).to(torch.float64) for k in keys]
    flat = torch.cat(tensors).cpu().tolist()
    pos = 0
    for k, t in zip(keys, tensors):
        vals = flat[pos : pos + t.numel()]
        pos += t.numel()
        out[k] = vals[0] if metrics[k].dim() == 0 else vals
    return out


def _stack_forward(
    weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, outs: Sequence[Tensor] | None = None
) -> list[Tensor]:
    """A stack of batched linear layers with ReLU between them (none after the last).

    ``weights[l]``: ``(G, out_l, in_l)``, ``biases[l]``: ``(G, out_l, 1)``, ``x``: ``(G, in_0, B)``.
    Returns every layer's output (post-ReLU for hidden layers, pre-activation for the
    last), written into ``outs`` when given (no allocation).
    """
    h, acts = x, []
    last = len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, w, h) if outs is None else torch.baddbmm(b, w, h, out=outs[layer])
        if layer < last:
            h.relu_()
        acts.append(h)
    return acts


def _stack_backward(
    weights: Sequence[Tensor],
    x: Tensor,
    acts: Sequence[Tensor],
    dz: Tensor,
    dbufs: Sequence[Tensor],
    wgrads: Sequence[Tensor] | None,
    bgrads: Sequence[Tensor] | None,
    dx: Tensor | None = None,
) -> Tensor | None:
    """Backpropagate ``dz`` (gradient of the last layer's pre-activation) through a stack.

    Writes weight / bias gradients into ``wgrads`` / ``bgrads`` (skipped when None) and,
    when ``dx`` is given, the input gradient into it; ``dbufs[l]`` (shaped like
    ``acts[l]``) receives the gradient of hidden layer ``l``'s pre-activation. Nothing is
    allocated.
    """
    for layer in range(len(weights) - 1, -1, -1):
        inp = x if layer == 0 else acts[layer - 1]
        if wgrads is not None:
            torch.bmm(dz, inp.transpose(1, 2), out=wgrads[layer])
            torch.sum(dz, dim=2, keepdim=True, out=bgrads[layer])
        if layer == 0:
            if dx is None:
                return None
            return torch.bmm(weights[0].transpose(1, 2), dz, out=dx)
        d = torch.bmm(weights[layer].transpose(1, 2), dz, out=dbufs[layer - 1])
        dz = _relu_grad_(d, acts[layer - 1])
    return None


class _Workspace:
    """Preallocated buffers of one batch size: a gradient step allocates no large tensor
    (see "Hand-written backward pass" in the module docstring)."""

    def __init__(self, algo: "MATD3", batch: int) -> None:
        n, od, m, bsz = algo.n_agents, algo.obs_dim, algo.max_act, batch
        kw = {"device": algo.device, "dtype": algo.float_type}
        ha, hc = algo.actor_hidden_sizes, algo.critic_hidden_sizes
        self.batch = bsz
        self.src = torch.empty(n * od + n * m, bsz, **kw)  # [obs; actions], feature-major
        self.x = torch.empty(n, algo.critic_input_dim, bsz, **kw)  # gathered critic inputs
        self.noise = torch.empty(bsz, n, m, **kw)
        self.y = torch.empty(n, bsz, **kw)
        self.delta = torch.empty(n, m, bsz, **kw)
        actor_out = (*ha, m)
        self.a_acts = [torch.empty(n, h, bsz, **kw) for h in actor_out]
        self.a_d = [torch.empty(n, h, bsz, **kw) for h in actor_out]
        self.c0 = torch.empty(n, 2 * hc[0], bsz, **kw)
        self.dc0 = torch.empty(n, 2 * hc[0], bsz, **kw)
        self.c_acts = [torch.empty(2 * n, h, bsz, **kw) for h in (*hc[1:], 1)]
        self.c_d = [torch.empty(2 * n, h, bsz, **kw) for h in (*hc[1:], 1)]


# --------------------------------------------------------------------------- MATD3


class MATD3:
    """Multi-agent TD3 for ``n_agents`` learners with stacked (batched) networks.

    Args:
        n_agents: number of learning agents ``n``.
        obs_dim: observation length, the same for all agents; its last
            ``unique_obs_len`` values are the agent's own ("unique") values.
        act_dims: action length of each agent (e.g. plants 2, storage 1); actions are
            padded to ``max_act = max(act_dims)``.
        unique_obs_len: how many trailing observation values each critic sees of every
            other agent (``0 <= unique_obs_len <= obs_dim``).
        actor_hidden_sizes: hidden widths of every actor.
        critic_hidden_sizes: hidden widths of each of the two critic heads.
        learning_rate: Adam learning rate of actors and critics (see
            :meth:`set_learning_rate`).
        gamma: discount factor.
        tau: Polyak coefficient of the target update, in ``[0, 1]``.
        policy_delay: critic steps per actor (and target) step.
        target_policy_noise: standard deviation of the target smoothing noise.
        target_noise_clip: clip of that noise.
        max_grad_norm: per-agent, per-network gradient-norm clip; ``None`` or 0 disables.
        actor_preactivation_penalty: weight of ``mean(pre_tanh**2)`` added to each actor's
            loss (0 disables). A deterministic policy whose tanh saturates at a bound gets
            no gradient back; this keeps it movable.
        device: torch device of all tensors.
        float_type: dtype of all parameters.
        seed: seed of :attr:`generator` (initial weights and target noise).
        kernel: how gradients are computed: ``"hand"`` (the hand-written batched backward
            pass), ``"autograd"`` (autograd over the same stacked tensors: the in-package
            reference) or ``"auto"`` (``"hand"`` unless the torch internals it needs are
            missing, see :mod:`agents._torch_private`). Both give the same step up to
            floating-point rounding (tested).

    Shapes: observations ``(B, n, obs_dim)``, actions ``(B, n, max_act)``, rewards
    ``(B, n)``.
    """

    def __init__(
        self,
        n_agents: int,
        obs_dim: int,
        act_dims: Sequence[int],
        unique_obs_len: int,
        *,
        actor_hidden_sizes: Sequence[int] = (256, 128),
        critic_hidden_sizes: Sequence[int] = (256, 128),
        learning_rate: float = 1e-3,
        gamma: float = 0.99,
        tau: float = 0.005,
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        max_grad_norm: float | None = 1.0,
        actor_preactivation_penalty: float = 0.0,
        device: str | torch.device = "cpu",
        float_type: torch.dtype = torch.float32,
        seed: int = 0,
        kernel: str = "auto",
    ) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"MATD3: kernel must be one of {KERNELS}, got {kernel!r}")
        if kernel == "hand" and not hand_kernel_available():
            raise ValueError("MATD3: kernel='hand' needs torch internals this torch lacks: "
                             + "; ".join(_MISSING_INTERNALS) + " (use kernel='auto' or 'autograd')")
        self.kernel = ("hand" if hand_kernel_available() else "autograd") if kernel == "auto" else kernel
        """The kernel in use: ``"hand"`` or ``"autograd"``."""
        self.n_agents = n = _pos_int(n_agents, "n_agents")
        self.obs_dim = od = _pos_int(obs_dim, "obs_dim")
        self.act_dims = tuple(_pos_int(a, "every entry of act_dims") for a in act_dims)
        if len(self.act_dims) != n:
            raise ValueError(f"MATD3: act_dims has {len(self.act_dims)} entries for {n} agents")
        self.max_act = m = max(self.act_dims)
        if isinstance(unique_obs_len, bool) or not isinstance(unique_obs_len, int) or not 0 <= unique_obs_len <= od:
            raise ValueError(f"MATD3: unique_obs_len must be an integer in [0, obs_dim={od}], got {unique_obs_len!r}")
        self.unique_obs_len = u = int(unique_obs_len)
        self.actor_hidden_sizes = _hidden(actor_hidden_sizes, "actor_hidden_sizes")
        self.critic_hidden_sizes = _hidden(critic_hidden_sizes, "critic_hidden_sizes")
        if not isinstance(float_type, torch.dtype) or not float_type.is_floating_point:
            raise TypeError(f"MATD3: float_type must be a torch floating dtype, got {float_type!r}")
        self.float_type = float_type
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.gamma = float(gamma)
        self.agent_gamma: Tensor | None = None  # (n, 1) per-agent discount (set_agent_gamma), else gamma
        self.tau = float(tau)
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"MATD3: tau must lie in [0, 1], got {tau!r}")
        self.policy_delay = _pos_int(policy_delay, "policy_delay")
        self.target_policy_noise = float(target_policy_noise)
        self.target_noise_clip = float(target_noise_clip)
        if self.target_policy_noise < 0 or self.target_noise_clip < 0:
            raise ValueError("MATD3: target_policy_noise and target_noise_clip must be >= 0")
        self.max_grad_norm = None if not max_grad_norm else float(max_grad_norm)
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ValueError(f"MATD3: max_grad_norm must be >= 0 or None, got {max_grad_norm!r}")
        self.actor_preactivation_penalty = float(actor_preactivation_penalty)
        if not self.actor_preactivation_penalty >= 0:
            raise ValueError(f"MATD3: actor_preactivation_penalty must be >= 0, got {actor_preactivation_penalty!r}")
        self.seed = int(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.n_updates = 0
        """Gradient steps done (critic updates); an actor step happens when it is a
        multiple of ``policy_delay``."""

        kw = {"device": self.device, "dtype": float_type}
        self.action_mask = torch.zeros(n, m, **kw)
        """``(n, max_act)``: 1 on each agent's real action dimensions, 0 on padding."""
        for i, a in enumerate(self.act_dims):
            self.action_mask[i, :a] = 1.0
        self._mask_fm = self.action_mask.unsqueeze(-1)  # (n, m, 1), feature-major

        # critic input: rows of src = [obs (n*od) agent-major, actions (n*m)]
        self.critic_obs_dim = od + (n - 1) * u
        self.critic_input_dim = D = self.critic_obs_dim + n * m
        idx = torch.empty(n, D, dtype=torch.long)
        agents = torch.arange(n)
        for i in range(n):  # construction only
            others = agents[agents != i]
            uniq = (others[:, None] * od + (od - u) + torch.arange(u)[None, :]).reshape(-1)
            idx[i] = torch.cat([i * od + torch.arange(od), uniq, n * od + torch.arange(n * m)])
        self._critic_index = idx.reshape(-1).to(self.device)
        self._act_col0 = self.critic_obs_dim  # first action column of the critic input
        self.obs_shift: Tensor | None = None
        """``(n, obs_dim)``: observation standardisation ``(obs - obs_shift) / obs_scale``
        applied inside every forward pass (:meth:`set_obs_normalization`); ``None``: off."""
        self.obs_scale: Tensor | None = None

        self.actor_params = self._init_actor()
        self.critic_params = self._init_critic()
        self.actor_target_params = [p.clone() for p in self.actor_params]
        self.critic_target_params = [p.clone() for p in self.critic_params]
        # gradients live in persistent buffers, written by the hand-written backward pass
        self._actor_grads = [torch.zeros_like(p) for p in self.actor_params]
        self._critic_grads = [torch.zeros_like(p) for p in self.critic_params]
        self._ws: _Workspace | None = None
        self.learning_rate = float(learning_rate)
        self.actor_optimizer = _make_adam(self.actor_params, self.learning_rate)
        self.critic_optimizer = _make_adam(self.critic_params, self.learning_rate)
        self._opt_loaded: dict[str, set[int]] = {"actor": set(), "critic": set()}

    # ------------------------------------------------------------------ construction

    def _uniform(self, shape: tuple[int, ...], fan_in: int) -> Tensor:
        bound = 1.0 / math.sqrt(fan_in)
        r = torch.rand(shape, generator=self.generator, device=self.device, dtype=self.float_type)
        return r.mul_(2.0 * bound).sub_(bound)

    def _init_actor(self) -> list[Tensor]:
        n, m = self.n_agents, self.max_act
        sizes = (self.obs_dim, *self.actor_hidden_sizes, m)
        params = []
        for fan_in, out in zip(sizes[:-1], sizes[1:]):
            params += [
                torch.zeros(n, out, fan_in, device=self.device, dtype=self.float_type),
                torch.zeros(n, out, 1, device=self.device, dtype=self.float_type),
            ]
        with torch.no_grad():
            for i, a in enumerate(self.act_dims):  # construction only; per-agent draws
                for layer, fan_in in enumerate(sizes[:-1]):
                    rows = a if layer == len(sizes) - 2 else sizes[layer + 1]
                    params[2 * layer][i, :rows] = self._uniform((rows, fan_in), fan_in)
                    params[2 * layer + 1][i, :rows, 0] = self._uniform((rows,), fan_in)
        return params

    def _init_critic(self) -> list[Tensor]:
        n, hid = self.n_agents, self.critic_hidden_sizes
        sizes = (self.critic_input_dim, *hid, 1)
        kw = {"device": self.device, "dtype": self.float_type}
        params = [torch.zeros(n, 2 * hid[0], sizes[0], **kw), torch.zeros(n, 2 * hid[0], 1, **kw)]
        for fan_in, out in zip(sizes[1:-1], sizes[2:]):
            params += [torch.zeros(n, 2, out, fan_in, **kw), torch.zeros(n, 2, out, 1, **kw)]
        with torch.no_grad():
            for i in range(n):  # construction only; agent i: q1 layers, then q2 layers
                for head in range(2):
                    for w, b in self._critic_layer_views(params, i, head):
                        fan_in = w.shape[1]
                        w.copy_(self._uniform(tuple(w.shape), fan_in))
                        b.copy_(self._uniform(tuple(b.shape), fan_in))
        return params

    # ------------------------------------------------------------------ per-agent views

    def _actor_layer_index(self, i: int) -> list[tuple[str, int, tuple]]:
        """(export key, index into the stacked list, index into that tensor) for agent i."""
        n_layers = len(self.actor_hidden_sizes) + 1
        out = []
        for layer in range(n_layers):
            rows = slice(0, self.act_dims[i]) if layer == n_layers - 1 else slice(None)
            out.append((f"net.{2 * layer}.weight", 2 * layer, (i, rows)))
            out.append((f"net.{2 * layer}.bias", 2 * layer + 1, (i, rows, 0)))
        return out

    def _critic_layer_index(self, i: int) -> list[tuple[str, int, tuple]]:
        h1 = self.critic_hidden_sizes[0]
        n_layers = len(self.critic_hidden_sizes) + 1
        out = []
        for head in range(2):
            rows = slice(head * h1, (head + 1) * h1)
            out.append((f"q{head + 1}.0.weight", 0, (i, rows)))
            out.append((f"q{head + 1}.0.bias", 1, (i, rows, 0)))
            for layer in range(1, n_layers):
                out.append((f"q{head + 1}.{2 * layer}.weight", 2 * layer, (i, head)))
                out.append((f"q{head + 1}.{2 * layer}.bias", 2 * layer + 1, (i, head, slice(None), 0)))
        return out

    def _critic_layer_views(self, params: list[Tensor], i: int, head: int) -> list[tuple[Tensor, Tensor]]:
        entries = [e for e in self._critic_layer_index(i) if e[0].startswith(f"q{head + 1}.")]
        return [
            (params[w_pos][w_idx], params[b_pos][b_idx])
            for (_, w_pos, w_idx), (_, b_pos, b_idx) in zip(entries[::2], entries[1::2])
        ]

    # ------------------------------------------------------------------ observation standardisation

    def set_obs_normalization(self, shift: Any | None, scale: Any | None = None) -> None:
        """Standardise observations inside the networks: every actor and critic sees
        ``(obs - shift) / scale`` (both ``(n_agents, obs_dim)``; ``None`` turns it off).

        The weights are not converted: call it before training (or before loading per-agent
        state dicts, which are converted on load). The per-agent exports
        (:meth:`actor_state_dict`, :meth:`critic_state_dict`, ...) fold the standardisation
        into the first layer, so an exported :class:`~agents.learning_utils.Actor` takes the
        raw observation and gives the same output (up to float rounding); :meth:`load_agent`
        unfolds it again. :meth:`state_dict` keeps the stacked weights and both arrays.
        """
        if shift is None:
            self.obs_shift = self.obs_scale = None
            return
        kw = {"device": self.device, "dtype": self.float_type}
        shift_t = torch.as_tensor(shift, **kw).clone()
        scale_t = torch.as_tensor(scale, **kw).clone() if scale is not None else None
        want = (self.n_agents, self.obs_dim)
        if scale_t is None or tuple(shift_t.shape) != want or tuple(scale_t.shape) != want:
            raise ValueError(f"MATD3.set_obs_normalization: shift and scale must both be {want}, got "
                             f"{tuple(shift_t.shape)} and {None if scale_t is None else tuple(scale_t.shape)}")
        if not (torch.isfinite(shift_t).all() and torch.isfinite(scale_t).all() and (scale_t > 0).all()):
            raise ValueError("MATD3.set_obs_normalization: shift must be finite and scale finite and > 0")
        self.obs_shift, self.obs_scale = shift_t, scale_t

    def _normalize(self, obs: Tensor) -> Tensor:
        if self.obs_shift is None:
            return obs
        return (obs - self.obs_shift) / self.obs_scale

    def _input_affine(self, i: int, critic: bool) -> tuple[Tensor, Tensor]:
        """``(shift, scale)`` of the first layer's input of agent ``i``'s actor (obs_dim) or
        critic (critic_input_dim; the action columns are not standardised)."""
        if not critic:
            return self.obs_shift[i], self.obs_scale[i]
        n, m = self.n_agents, self.max_act
        kw = {"device": self.device, "dtype": self.float_type}
        shift = torch.cat([self.obs_shift.reshape(-1), torch.zeros(n * m, **kw)])
        scale = torch.cat([self.obs_scale.reshape(-1), torch.ones(n * m, **kw)])
        cols = self._critic_index.view(n, -1)[i]
        return shift[cols], scale[cols]

    def _first_layer_keys(self, critic: bool) -> list[tuple[str, str]]:
        return [("q1.0.weight", "q1.0.bias"), ("q2.0.weight", "q2.0.bias")] if critic else [("net.0.weight", "net.0.bias")]

    def _fold(self, sd: dict[str, Tensor], i: int, critic: bool) -> dict[str, Tensor]:
        """Export: the first layer rewritten for raw observations (``W / scale``,
        ``b - W (shift / scale)``)."""
        if self.obs_shift is None:
            return sd
        shift, scale = self._input_affine(i, critic)
        for wk, bk in self._first_layer_keys(critic):
            w = sd[wk]
            sd[bk] = sd[bk] - w @ (shift / scale)
            sd[wk] = w / scale
        return sd

    def _unfold(self, sd: Mapping[str, Tensor], i: int, critic: bool) -> Mapping[str, Tensor]:
        """Load: the inverse of :meth:`_fold` (``W scale``, ``b + W shift``)."""
        if self.obs_shift is None:
            return sd
        out = dict(sd)
        shift, scale = self._input_affine(i, critic)
        kw = {"device": self.device, "dtype": self.float_type}
        for wk, bk in self._first_layer_keys(critic):
            if wk not in out or bk not in out:
                return sd  # let the key check report it
            w = torch.as_tensor(out[wk], **kw)
            if w.dim() != 2 or w.shape[1] != shift.shape[0]:
                return sd  # let the shape check report it
            out[bk] = torch.as_tensor(out[bk], **kw) + w @ shift
            out[wk] = w * scale
        return out

    # ------------------------------------------------------------------ acting

    def _as_obs(self, obs: Any) -> tuple[Tensor, bool]:
        obs = torch.as_tensor(obs, device=self.device, dtype=self.float_type)
        single = obs.dim() == 2
        if single:
            obs = obs.unsqueeze(0)
        if obs.dim() != 3 or obs.shape[1:] != (self.n_agents, self.obs_dim):
            raise ValueError(
                f"MATD3: observations must be (batch, {self.n_agents}, {self.obs_dim}) or "
                f"({self.n_agents}, {self.obs_dim}), got {tuple(obs.shape)}"
            )
        return self._normalize(obs), single

    def _act_with(self, params: list[Tensor], obs: Any) -> Tensor:
        """Feature-major forward ``W x``. Kept although ``x^T W^T`` through a transposed
        view is 4x faster for one-row batches: with ``W x`` an actor's output does not
        depend on how many actors share the stack, which the mango unit agents' bitwise
        parity with the plain loop relies on (``x^T W^T`` changed the last bits)."""
        obs, single = self._as_obs(obs)
        with torch.no_grad():
            z = self._actor_forward(params, obs.permute(1, 2, 0))[-1]
            a = torch.tanh(z).mul_(self._mask_fm)  # (n, m, B)
        a = a.permute(2, 0, 1).contiguous()
        return a[0] if single else a

    def act(self, obs: Any) -> Tensor:
        """Deterministic actions of all online actors, without gradient.

        Args:
            obs: ``(B, n, obs_dim)`` or ``(n, obs_dim)`` (tensor or array).

        Returns:
            ``(B, n, max_act)`` or ``(n, max_act)`` in ``[-1, 1]``, padded dims exactly 0.
        """
        return self._act_with(self.actor_params, obs)

    def act_target(self, obs: Any) -> Tensor:
        """Like :meth:`act` with the target actors (no smoothing noise)."""
        return self._act_with(self.actor_target_params, obs)

    def critic_values(self, obs: Any, actions: Any, *, target: bool = False) -> tuple[Tensor, Tensor]:
        """Both Q-estimates of every agent, ``(B, n)`` each, without gradient.

        Args:
            obs: ``(B, n, obs_dim)``.
            actions: ``(B, n, max_act)`` (padded dims are masked to 0).
            target: use the target critics.
        """
        obs, _ = self._as_obs(obs)
        actions = torch.as_tensor(actions, device=self.device, dtype=self.float_type)
        batch = obs.shape[0]
        with torch.no_grad():
            x = self._critic_input(self._to_fm(obs), self._to_fm(actions * self.action_mask))
            q = self._critic_forward(self.critic_target_params if target else self.critic_params, x)
        return q[:, 0].t().reshape(batch, self.n_agents), q[:, 1].t().reshape(batch, self.n_agents)

    def set_agent_gamma(self, values: Any | None) -> None:
        """A discount factor per agent ``(n,)`` for the critic targets instead of
        :attr:`gamma` (``None``: back to :attr:`gamma` for all)."""
        if values is None:
            self.agent_gamma = None
            return
        g = torch.as_tensor(values, device=self.device, dtype=self.float_type).reshape(-1)
        if g.numel() != self.n_agents or bool(((g < 0) | (g > 1)).any()):
            raise ValueError(f"MATD3.set_agent_gamma: {self.n_agents} values in [0, 1] expected, got {values!r}")
        self.agent_gamma = g.view(-1, 1).clone()

    def own_action_values(self, obs: Any, actions: Any, candidates: Any) -> Tensor:
        """min(Q1, Q2) of every agent ``i`` with its own action replaced by each candidate
        and the others' actions as given, without gradient: ``(K, B, n)``.

        Args:
            obs: ``(B, n, obs_dim)``.
            actions: ``(B, n, max_act)``, the joint action the others keep.
            candidates: ``(K, B, n, max_act)``; ``candidates[k, b, i]`` is scored by critic
                ``i`` with slot ``i`` set to it (padded dims are masked to 0).

        Only agent ``i``'s own slot changes, so critic layer 0 is evaluated once on the
        batch and corrected by its own-action columns (as in the actor step).
        """
        obs, _ = self._as_obs(obs)
        kw = {"device": self.device, "dtype": self.float_type}
        actions = torch.as_tensor(actions, **kw) * self.action_mask
        cand = torch.as_tensor(candidates, **kw) * self.action_mask
        n, m = self.n_agents, self.max_act
        K, B = cand.shape[0], cand.shape[1]
        if cand.shape[2:] != (n, m) or actions.shape != (B, n, m):
            raise ValueError(f"MATD3.own_action_values: candidates (K, {B}, {n}, {m}) and actions ({B}, {n}, {m}) "
                             f"expected, got {tuple(cand.shape)} and {tuple(actions.shape)}")
        cp = self.critic_params
        with torch.no_grad():
            x = self._critic_input(self._to_fm(obs), self._to_fm(actions))
            base = torch.baddbmm(cp[1], cp[0], x)  # (n, 2h1, B)
            delta = (cand - actions.unsqueeze(0)).permute(2, 3, 0, 1).reshape(n, m, K * B)  # column k*B + b
            pre = base.repeat(1, 1, K).baddbmm_(self._own_action_columns(cp[0]), delta).relu_()
            q = self._critic_heads(cp, pre).view(n, 2, K, B)
        return q.amin(dim=1).permute(1, 2, 0)

    # ------------------------------------------------------------------ update

    @staticmethod
    def _to_fm(x: Tensor) -> Tensor:
        """``(B, n, d)`` -> contiguous ``(n*d, B)`` (agent-major rows)."""
        return x.reshape(x.shape[0], -1).t().contiguous()

    def _critic_input(self, obs_fm: Tensor, act_fm: Tensor) -> Tensor:
        """``(n*od, B)``, ``(n*m, B)`` -> all agents' critic inputs ``(n, D, B)`` (allocates)."""
        src = torch.cat([obs_fm, act_fm], dim=0)
        return src.index_select(0, self._critic_index).view(self.n_agents, self.critic_input_dim, -1)

    def _actor_forward(self, params: list[Tensor], x: Tensor, outs: Sequence[Tensor] | None = None) -> list[Tensor]:
        """All actors on ``x (n, obs_dim, B)``; the last entry is the pre-tanh output ``(n, max_act, B)``."""
        return _stack_forward(params[0::2], params[1::2], x, outs)

    def _critic_forward(self, params: list[Tensor], x: Tensor, ws: _Workspace | None = None) -> Tensor:
        """All twin critics on ``x (n, D, B)`` -> ``(n, 2, B)``; activations kept in ``ws`` if given."""
        c0 = torch.baddbmm(params[1], params[0], x) if ws is None else torch.baddbmm(params[1], params[0], x, out=ws.c0)
        return self._critic_heads(params, c0.relu_(), ws)

    def _critic_heads(self, params: list[Tensor], c0: Tensor, ws: _Workspace | None = None) -> Tensor:
        """Both heads' layers after the first on its ReLU output ``c0 (n, 2*h1, B)`` -> ``(n, 2, B)``."""
        n, _, bsz = c0.shape
        tail_w = [w.flatten(0, 1) for w in params[2::2]]  # (2n, out, in): heads as virtual agents
        tail_b = [b.flatten(0, 1) for b in params[3::2]]
        acts = _stack_forward(tail_w, tail_b, c0.view(2 * n, self.critic_hidden_sizes[0], bsz),
                              None if ws is None else ws.c_acts)
        return acts[-1].view(n, 2, bsz)

    def _own_action_columns(self, w0: Tensor) -> Tensor:
        """Columns of agent i's own action slot in its critic layer 0: ``(n, 2*h1, m)`` view."""
        n, m = self.n_agents, self.max_act
        acts = w0[:, :, self._act_col0 :].unflatten(2, (n, m))  # (n, 2h1, n, m)
        return torch.diagonal(acts, dim1=0, dim2=2).permute(2, 0, 1)

    def _workspace(self, batch: int) -> _Workspace:
        if self._ws is None or self._ws.batch != batch:
            self._ws = None  # free the old buffers first
            self._ws = _Workspace(self, batch)
        return self._ws

    def _clip_(self, params: list[Tensor], grads: list[Tensor]) -> Tensor:
        """Per-agent gradient norm over all of a network's tensors; clip in place.

        Attaches ``grads`` as the parameters' ``.grad`` (for the optimizer) and returns
        the norms before clipping, ``(n,)``. Same rule as ``torch.nn.utils.clip_grad_norm_``
        applied to each agent's network.
        """
        n = self.n_agents
        for p, g in zip(params, grads):
            p.grad = g
        norms = torch.stack([torch.linalg.vector_norm(g.view(n, -1), dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, dim=0)
        if self.max_grad_norm is not None:
            coef = (self.max_grad_norm / (total + 1e-6)).clamp_(max=1.0)
            for g in grads:
                g.mul_(coef.view((n,) + (1,) * (g.dim() - 1)))
        return total

    def _check_batch(self, batch: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n, od, m = self.n_agents, self.obs_dim, self.max_act
        kw = {"device": self.device, "dtype": self.float_type}
        obs = torch.as_tensor(batch.observations, **kw)
        act = torch.as_tensor(batch.actions, **kw)
        nxt = torch.as_tensor(batch.next_observations, **kw)
        rew = torch.as_tensor(batch.rewards, **kw)
        bsz = obs.shape[0]
        want = {"observations": (bsz, n, od), "actions": (bsz, n, m), "next_observations": (bsz, n, od)}
        for name, t in (("observations", obs), ("actions", act), ("next_observations", nxt)):
            if tuple(t.shape) != want[name]:
                raise ValueError(f"MATD3.update: {name} must be {want[name]} (batch, n_agents, dim), got {tuple(t.shape)}")
        if rew.dim() == 3 and rew.shape[2] == 1:
            rew = rew[..., 0]
        if tuple(rew.shape) != (bsz, n):
            raise ValueError(f"MATD3.update: rewards must be ({bsz}, {n}), got {tuple(rew.shape)}")
        return self._normalize(obs), act, self._normalize(nxt), rew

    def update(self, batch: Any, *, target_noise: Tensor | None = None, as_float: bool = False,
               imitation: tuple[Any, Any, Any] | None = None) -> dict[str, Any]:
        """One gradient step for all agents (critics; actors and targets every ``policy_delay``).

        Args:
            batch: a ``ReplayBufferSamples``-like object with ``observations (B, n, obs_dim)``,
                ``actions (B, n, max_act)``, ``next_observations (B, n, obs_dim)`` and
                ``rewards (B, n)``.
            target_noise: optional standard-normal draw ``(B, n, max_act)`` used instead of
                drawing from :attr:`generator` (it is scaled by ``target_policy_noise`` and
                clipped here).
            as_float: return Python numbers (forces one device sync) instead of tensors.
            imitation: optional ``(obs (B', n, obs_dim), target (B', n, max_act), weight)``
                teacher actions for the actor step (used only if this step is one), see
                "Imitation" in the module docstring. ``weight``: scalar or ``(n,)``.

        Returns:
            metrics, see the module docstring.
        """
        obs, act, nxt, rew = self._check_batch(batch)
        n, od, m = self.n_agents, self.obs_dim, self.max_act
        bsz = obs.shape[0]
        if target_noise is not None and tuple(target_noise.shape) != (bsz, n, m):
            raise ValueError(f"MATD3.update: target_noise must be {(bsz, n, m)}, got {tuple(target_noise.shape)}")
        ws = self._workspace(bsz)
        self.n_updates += 1
        self._opt_loaded = {"actor": set(), "critic": set()}
        h1 = self.critic_hidden_sizes[0]
        mask = self._mask_fm
        obs_fm = ws.src[: n * od].view(n, od, bsz)  # the actors' input
        act_fm = ws.src[n * od :].view(n, m, bsz)  # the action rows of the critics' input
        x_flat = ws.x.view(n * self.critic_input_dim, bsz)
        cp = self.critic_params

        # ---- critic targets: y = r + gamma * min(Q1', Q2')(next_obs, smoothed target actions)
        obs_fm.copy_(nxt.permute(1, 2, 0))
        if target_noise is None:
            torch.randn(ws.noise.shape, generator=self.generator, out=ws.noise)
        else:
            ws.noise.copy_(target_noise)
        noise = ws.noise.mul_(self.target_policy_noise).clamp_(-self.target_noise_clip, self.target_noise_clip)
        z = self._actor_forward(self.actor_target_params, obs_fm, ws.a_acts)[-1]
        torch.tanh(z, out=act_fm).add_(noise.permute(1, 2, 0)).clamp_(-1.0, 1.0).mul_(mask)
        torch.index_select(ws.src, 0, self._critic_index, out=x_flat)
        q_next = self._critic_forward(self.critic_target_params, ws.x, ws)
        g = self.gamma if self.agent_gamma is None else self.agent_gamma
        y = torch.minimum(q_next[:, 0], q_next[:, 1], out=ws.y).mul_(g).add_(rew.t())  # (n, B)

        # ---- critic step: L_i = MSE(Q1_i, y_i) + MSE(Q2_i, y_i)
        obs_fm.copy_(obs.permute(1, 2, 0))
        act_fm.copy_(act.permute(1, 2, 0)).mul_(mask)
        torch.index_select(ws.src, 0, self._critic_index, out=x_flat)
        g = self._critic_grads
        if self.kernel == "autograd":
            critic_loss = self._critic_grads_autograd(ws.x, y, g)
        else:
            q = self._critic_forward(cp, ws.x, ws)
            dq = torch.sub(q, y.unsqueeze(1), out=ws.c_d[-1].view(n, 2, bsz))
            critic_loss = dq.square().sum(dim=(1, 2)).div_(bsz)  # (n,)
            dq.mul_(2.0 / bsz)  # dL/dq
            h0 = ws.c0.view(2 * n, h1, bsz)
            dh0 = ws.dc0.view(2 * n, h1, bsz)
            _stack_backward(
                [w.flatten(0, 1) for w in cp[2::2]], h0, ws.c_acts, ws.c_d[-1], ws.c_d[:-1],
                [t.flatten(0, 1) for t in g[2::2]], [t.flatten(0, 1) for t in g[3::2]], dx=dh0,
            )  # fmt: skip
            dz0 = _relu_grad_(dh0, h0).view(n, 2 * h1, bsz)
            torch.bmm(dz0, ws.x.transpose(1, 2), out=g[0])
            torch.sum(dz0, dim=2, keepdim=True, out=g[1])
        critic_norm = self._clip_(cp, g)
        self.critic_optimizer.step()
        metrics: dict[str, Any] = {
            "losses/critic_loss": critic_loss.sum(),
            "losses/critic_loss_per_agent": critic_loss,
            "losses/critic_grad_norm_per_agent": critic_norm,
        }
        if self.n_updates % self.policy_delay == 0:
            step = self._actor_step_autograd if self.kernel == "autograd" else self._actor_step
            metrics.update(step(ws, obs_fm, act_fm, imitation))
        return metrics_to_float(metrics) if as_float else metrics

    # ---- the autograd kernel: the reference for the hand-written pass (same tensors, same
    # ---- losses, gradients by autograd); new losses or layers are written here first

    def _critic_grads_autograd(self, x: Tensor, y: Tensor, out: list[Tensor]) -> Tensor:
        """L_i = MSE(Q1_i(x_i), y_i) + MSE(Q2_i(x_i), y_i); writes dL/dθ into ``out``."""
        bsz = x.shape[2]
        params = [p.detach().requires_grad_() for p in self.critic_params]
        with torch.enable_grad():
            q = self._critic_forward(params, x)  # (n, 2, B)
            loss = (q - y.unsqueeze(1)).square().sum(dim=(1, 2)) / bsz
            grads = torch.autograd.grad(loss.sum(), params)
        for o, g in zip(out, grads):
            o.copy_(g)
        return loss.detach()

    def _actor_step_autograd(self, ws: _Workspace, obs_fm: Tensor, act_fm: Tensor,
                             imitation: tuple[Any, Any, Any] | None = None) -> dict[str, Tensor]:
        """J_i = -mean Q1_i(obs, a with slot i <- actor_i(obs_i)) [+ penalty]: the critic
        input is rebuilt with each agent's own action slot replaced; autograd; Adam;
        Polyak update of all targets. With ``imitation``: the Q term of every taught agent
        (weight > 0) is divided by ``max(mean |Q1_i|, 1)`` (detached) and the imitation
        loss is added (see "Imitation" in the module docstring)."""
        n, m, bsz = self.n_agents, self.max_act, ws.batch
        h1 = self.critic_hidden_sizes[0]
        cp, mask, col0 = self.critic_params, self._mask_fm, self._act_col0
        params = [p.detach().requires_grad_() for p in self.actor_params]
        eye = torch.eye(n, device=self.device, dtype=self.float_type).view(n, n, 1, 1)
        x = ws.x  # the sampled batch's critic inputs (n, D, B)
        with torch.enable_grad():
            z = self._actor_forward(params, obs_fm)[-1]  # pre-tanh (n, m, B)
            a_pi = torch.tanh(z) * mask
            slots = x[:, col0:].reshape(n, n, m, bsz)  # [agent i's critic, slot j]
            slots = slots * (1.0 - eye) + eye * a_pi.unsqueeze(1)  # slot i <- actor i
            x_pi = torch.cat([x[:, :col0], slots.reshape(n, n * m, bsz)], dim=1)
            h = torch.baddbmm(cp[1][:, :h1], cp[0][:, :h1], x_pi).relu()
            q1 = _stack_forward([w[:, 0] for w in cp[2::2]], [b[:, 0] for b in cp[3::2]], h)[-1].view(n, bsz)
            loss = -q1.mean(dim=1)
            im_loss = None
            if imitation is not None:
                obs_t, tgt_t, w_t = self._imitation_tensors(imitation)
                w_t = w_t.view(n)
                scale = q1.detach().abs().mean(dim=1).clamp(min=1.0)
                loss = torch.where(w_t > 0, loss / scale, loss)
                z_t = self._actor_forward(params, obs_t)[-1]
                valid = torch.isfinite(tgt_t) & (mask > 0)
                goal = torch.where(valid, tgt_t, 0.0).clamp(-_IMITATION_CLIP, _IMITATION_CLIP).atanh()
                count = valid.sum(dim=(1, 2)).clamp(min=1)
                im_loss = w_t * ((z_t - goal) * valid).square().sum(dim=(1, 2)) / count
                loss = loss + im_loss
            if self.actor_preactivation_penalty:
                loss = loss + self.actor_preactivation_penalty * (z * mask).square().mean(dim=(1, 2))
            grads = torch.autograd.grad(loss.sum(), params)
        g = self._actor_grads
        for o, gr in zip(g, grads):
            o.copy_(gr)
        actor_norm = self._clip_(self.actor_params, g)
        self.actor_optimizer.step()
        lerp_all_(self.actor_target_params, self.actor_params, self.tau)
        lerp_all_(self.critic_target_params, self.critic_params, self.tau)
        actor_loss = loss.detach()
        extra = {} if im_loss is None else {"losses/imitation_loss": im_loss.detach().sum(),
                                            "losses/imitation_loss_per_agent": im_loss.detach()}
        return {
            "losses/actor_loss": actor_loss.sum(),
            "losses/actor_loss_per_agent": actor_loss,
            "losses/actor_grad_norm_per_agent": actor_norm,
            **extra,
        }

    def _actor_step(self, ws: _Workspace, obs_fm: Tensor, act_fm: Tensor,
                    imitation: tuple[Any, Any, Any] | None = None) -> dict[str, Tensor]:
        """J_i = -mean Q1_i(obs, a with slot i <- actor_i(obs_i)); Adam; Polyak update of all targets.

        Uses the critic input ``ws.x`` of the sampled batch: the q1 head's first layer is
        evaluated on it and corrected by ``W_slot_i @ (a_pi_i - a_i)`` (see the module
        docstring). Backpropagates by hand through the critic (no critic gradients) and
        the actor.
        """
        n, m, bsz = self.n_agents, self.max_act, ws.batch
        h1 = self.critic_hidden_sizes[0]
        cp, ap, mask = self.critic_params, self.actor_params, self._mask_fm
        half = n * h1 * bsz
        pre = ws.c0.view(-1)[:half].view(n, h1, bsz)  # buffers of the critic step, free now
        dpre = ws.dc0.view(-1)[:half].view(n, h1, bsz)

        torch.baddbmm(cp[1][:, :h1], cp[0][:, :h1], ws.x, out=pre)  # q1 layer 0 on the batch
        acts = self._actor_forward(ap, obs_fm, ws.a_acts)
        z = acts[-1]  # pre-tanh (n, m, B)
        t = torch.tanh(z, out=ws.a_d[-1])
        delta = torch.mul(t, mask, out=ws.delta).sub_(act_fm)  # a_pi - a (own slot)
        w_slot = self._own_action_columns(cp[0])[:, :h1]  # (n, h1, m)
        pre.baddbmm_(w_slot, delta).relu_()
        tail_w = [w[:, 0] for w in cp[2::2]]  # q1 head, (n, out, in)
        tail_b = [b[:, 0] for b in cp[3::2]]
        tacts = _stack_forward(tail_w, tail_b, pre, [c[:n] for c in ws.c_acts])
        actor_loss = tacts[-1].view(n, bsz).mean(dim=1).neg_()  # (n,)

        dq1 = ws.c_d[-1][:n].fill_(-1.0 / bsz)
        if imitation is not None:  # Q term of taught agents normalised by 1 / max(mean |Q1|, 1) (TD3+BC)
            taught = self._imitation_tensors(imitation)[2].view(n) > 0
            q_scale = tacts[-1].view(n, bsz).abs().mean(dim=1).clamp_(min=1.0).reciprocal_()
            q_scale = torch.where(taught, q_scale, torch.ones_like(q_scale))
            actor_loss = actor_loss * q_scale
            dq1.mul_(q_scale.view(n, 1, 1))
        _stack_backward(tail_w, pre, tacts, dq1, [c[:n] for c in ws.c_d[:-1]], None, None, dx=dpre)
        _relu_grad_(dpre, pre)
        da = torch.bmm(w_slot.transpose(1, 2), dpre, out=ws.delta)  # dJ/da_pi (n, m, B)
        dz = t.square_().neg_().add_(1.0).mul_(da).mul_(mask)  # through tanh and the mask
        if self.actor_preactivation_penalty:
            zm = z * mask
            actor_loss = actor_loss + self.actor_preactivation_penalty * zm.square().mean(dim=(1, 2))
            dz.add_(zm, alpha=2.0 * self.actor_preactivation_penalty / (m * bsz))
        g = self._actor_grads
        _stack_backward(ap[0::2], obs_fm, acts, dz, ws.a_d[:-1], g[0::2], g[1::2])
        extra: dict[str, Tensor] = {}
        if imitation is not None:
            im_grads, im_loss = self._imitation_grads(imitation)
            for gi, di in zip(g, im_grads):
                gi.add_(di)
            actor_loss = actor_loss + im_loss
            extra = {"losses/imitation_loss": im_loss.sum(), "losses/imitation_loss_per_agent": im_loss}
        actor_norm = self._clip_(ap, g)
        self.actor_optimizer.step()
        lerp_all_(self.actor_target_params, self.actor_params, self.tau)
        lerp_all_(self.critic_target_params, self.critic_params, self.tau)
        return {
            "losses/actor_loss": actor_loss.sum(),
            "losses/actor_loss_per_agent": actor_loss,
            "losses/actor_grad_norm_per_agent": actor_norm,
            **extra,
        }

    def imitation_step(self, obs: Any, target: Any, weight: Any, *, as_float: bool = False) -> dict[str, Any]:
        """One step of the actors alone on the imitation loss (see :meth:`_imitation_grads`),
        with the actors' Adam and gradient clipping; critics and targets are not touched."""
        grads, loss = self._imitation_grads((obs, target, weight))
        g = self._actor_grads
        for gi, di in zip(g, grads):
            gi.copy_(di)
        norm = self._clip_(self.actor_params, g)
        self.actor_optimizer.step()
        metrics = {"losses/imitation_loss": loss.sum(), "losses/imitation_loss_per_agent": loss,
                   "losses/imitation_grad_norm_per_agent": norm}
        return metrics_to_float(metrics) if as_float else metrics

    def _imitation_tensors(self, imitation: tuple[Any, Any, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """Checked ``(obs (n, obs_dim, B'), target (n, max_act, B'), weight (n,))`` tensors."""
        obs, target, weight = imitation
        obs, _ = self._as_obs(obs)
        n, m = self.n_agents, self.max_act
        bsz = obs.shape[0]
        kw = {"device": self.device, "dtype": self.float_type}
        tgt = torch.as_tensor(target, **kw)
        if tuple(tgt.shape) != (bsz, n, m):
            raise ValueError(f"MATD3: imitation targets must be {(bsz, n, m)}, got {tuple(tgt.shape)}")
        w = torch.as_tensor(weight, **kw).reshape(-1)
        w = w.expand(n) if w.numel() == 1 else w
        if tuple(w.shape) != (n,):
            raise ValueError(f"MATD3: imitation weight must be a scalar or ({n},), got {tuple(w.shape)}")
        return obs.permute(1, 2, 0).contiguous(), tgt.permute(1, 2, 0).contiguous(), w.view(n, 1, 1)

    def _imitation_grads(self, imitation: tuple[Any, Any, Any]) -> tuple[list[Tensor], Tensor]:
        """Gradients (fresh tensors, like :attr:`_actor_grads`) and per-agent values of the
        imitation loss (see "Imitation" in the module docstring), by hand."""
        x, tgt, w = self._imitation_tensors(imitation)
        n = self.n_agents
        valid = torch.isfinite(tgt) & (self._mask_fm > 0)
        goal = torch.where(valid, tgt, torch.zeros((), device=self.device, dtype=self.float_type))
        goal = goal.clamp_(-_IMITATION_CLIP, _IMITATION_CLIP).atanh_()
        count = valid.sum(dim=(1, 2)).clamp_(min=1).to(self.float_type)  # (n,)
        ap = self.actor_params
        acts = self._actor_forward(ap, x)
        diff = (acts[-1] - goal) * valid
        w = w.view(n)
        loss = w * diff.square().sum(dim=(1, 2)) / count
        dz = diff.mul_((2.0 * w / count).view(n, 1, 1))
        grads = [torch.empty_like(p) for p in ap]
        _stack_backward(ap[0::2], x, acts, dz, [torch.empty_like(t) for t in acts[:-1]], grads[0::2], grads[1::2])
        return grads, loss

    # ------------------------------------------------------------------ schedules

    def set_learning_rate(self, lr: float) -> None:
        """Set the learning rate of all actor and critic optimizers (for schedules)."""
        lr = float(lr)
        if not lr > 0:
            raise ValueError(f"MATD3: learning rate must be > 0, got {lr!r}")
        self.learning_rate = lr
        for opt in (self.actor_optimizer, self.critic_optimizer):
            for group in opt.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ per-agent export

    def _check_agent(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.n_agents:
            raise IndexError(f"MATD3: agent index must be in [0, {self.n_agents}), got {i!r}")
        return i

    def _export(self, params: list[Tensor], entries) -> dict[str, Tensor]:
        return {key: params[pos][idx].detach().clone() for key, pos, idx in entries}

    def _export_agent(self, params: list[Tensor], i: int, critic: bool, folded: bool) -> dict[str, Tensor]:
        """Agent ``i``'s slice of the stacked actor or critic ``params`` as a state dict,
        with the observation standardisation folded in when ``folded``."""
        i = self._check_agent(i)
        sd = self._export(params, self._critic_layer_index(i) if critic else self._actor_layer_index(i))
        return self._fold(sd, i, critic=critic) if folded else sd

    def actor_state_dict(self, i: int, *, folded: bool = True) -> dict[str, Tensor]:
        """Agent ``i``'s actor, loadable into ``Actor(obs_dim, act_dims[i], float_type,
        hidden_sizes=actor_hidden_sizes)``. With the observation standardisation on
        (:meth:`set_obs_normalization`) it is folded into the first layer, so the actor
        takes raw observations; ``folded=False`` gives the stacked weights as they are,
        for standardised observations (the mango unit agents' bit-exact path)."""
        return self._export_agent(self.actor_params, i, False, folded)

    def actor_target_state_dict(self, i: int, *, folded: bool = True) -> dict[str, Tensor]:
        """Agent ``i``'s target actor (same keys and ``folded`` as :meth:`actor_state_dict`)."""
        return self._export_agent(self.actor_target_params, i, False, folded)

    def critic_state_dict(self, i: int, *, folded: bool = True) -> dict[str, Tensor]:
        """Agent ``i``'s twin critic, loadable into ``CriticTD3(n_agents, obs_dim, max_act,
        float_type, unique_obs_len, hidden_sizes=critic_hidden_sizes)`` (the observation
        standardisation folded in unless ``folded=False``, as for :meth:`actor_state_dict`)."""
        return self._export_agent(self.critic_params, i, True, folded)

    def critic_target_state_dict(self, i: int, *, folded: bool = True) -> dict[str, Tensor]:
        """Agent ``i``'s target critic (same keys and ``folded`` as :meth:`critic_state_dict`)."""
        return self._export_agent(self.critic_target_params, i, True, folded)

    def input_standardisation(self, i: int, *, critic: bool) -> tuple[Tensor, Tensor] | None:
        """``(shift, scale)`` of the first-layer input of agent ``i``'s actor (``obs_dim``)
        or critic (critic input; 0 and 1 on the action columns), or ``None`` when the
        observations are not standardised. Checkpoints store it next to the unfolded
        weights, so that a learner with the same standardisation reloads them exactly."""
        if self.obs_shift is None:
            return None
        shift, scale = self._input_affine(self._check_agent(i), critic)
        return shift.detach().clone(), scale.detach().clone()

    def _optimizer_state(self, opt: torch.optim.Adam, params: list[Tensor], entries) -> dict[str, Any]:
        group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
        group.update(foreach=None, fused=None, capturable=False, differentiable=False)
        if isinstance(group["lr"], Tensor):
            group["lr"] = float(group["lr"])
        group["params"] = list(range(len(entries)))
        state: dict[int, dict[str, Tensor]] = {}
        for k, (_, pos, idx) in enumerate(entries):
            st = opt.state.get(params[pos])
            if st:
                state[k] = {
                    "step": st["step"].detach().to("cpu", torch.float32).clone(),
                    "exp_avg": st["exp_avg"][idx].detach().clone(),
                    "exp_avg_sq": st["exp_avg_sq"][idx].detach().clone(),
                }
        return {"state": state, "param_groups": [group]}

    def actor_optimizer_state(self, i: int) -> dict[str, Any]:
        """Agent ``i``'s actor Adam state in the format of ``torch.optim.Adam(actor.parameters()).state_dict()``
        for the exported :class:`~agents.learning_utils.Actor` (empty ``state`` before the
        first actor step). ``step`` is the shared counter."""
        return self._optimizer_state(self.actor_optimizer, self.actor_params, self._actor_layer_index(self._check_agent(i)))

    def critic_optimizer_state(self, i: int) -> dict[str, Any]:
        """Agent ``i``'s critic Adam state, as for ``CriticTD3.parameters()`` order."""
        return self._optimizer_state(self.critic_optimizer, self.critic_params, self._critic_layer_index(self._check_agent(i)))

    def _load_params(self, what: str, i: int, params: list[Tensor], entries, sd: Mapping[str, Tensor]) -> None:
        if not isinstance(sd, Mapping):
            raise TypeError(f"MATD3.load_agent: {what} must be a state dict (mapping), got {type(sd).__name__}")
        want = {key for key, _, _ in entries}
        missing, unexpected = sorted(want - set(sd)), sorted(set(sd) - want)
        if missing or unexpected:
            raise KeyError(f"MATD3.load_agent({i}): {what} keys do not match: missing {missing}, unexpected {unexpected}")
        for key, pos, idx in entries:
            dst = params[pos][idx]
            src = sd[key]
            if not isinstance(src, Tensor) or tuple(src.shape) != tuple(dst.shape):
                got = tuple(src.shape) if isinstance(src, Tensor) else type(src).__name__
                raise ValueError(f"MATD3.load_agent({i}): {what}[{key!r}] must have shape {tuple(dst.shape)}, got {got}")
        with torch.no_grad():
            for key, pos, idx in entries:
                params[pos][idx].copy_(sd[key])

    def _load_opt(self, what: str, i: int, opt: torch.optim.Adam, params: list[Tensor], entries, sd: Mapping) -> None:
        if not isinstance(sd, Mapping) or "state" not in sd or "param_groups" not in sd:
            raise ValueError(f"MATD3.load_agent({i}): {what} must be an Adam state dict with 'state' and 'param_groups'")
        state = {int(k): v for k, v in sd["state"].items()}
        if len(sd["param_groups"]) != 1 or len(sd["param_groups"][0]["params"]) != len(entries):
            raise ValueError(f"MATD3.load_agent({i}): {what} must hold one param group of {len(entries)} tensors")
        if not state:
            return  # an optimizer that never stepped: nothing to restore
        if set(state) != set(range(len(entries))):
            raise ValueError(f"MATD3.load_agent({i}): {what} has state for tensors {sorted(state)}, expected all {len(entries)}")
        for k, (key, pos, idx) in enumerate(entries):
            want = tuple(params[pos][idx].shape)
            for name in ("exp_avg", "exp_avg_sq"):
                if name not in state[k] or tuple(state[k][name].shape) != want:
                    raise ValueError(f"MATD3.load_agent({i}): {what} state of {key!r}: {name} must have shape {want}")
            if "step" not in state[k]:
                raise ValueError(f"MATD3.load_agent({i}): {what} state of {key!r} lacks 'step'")
        steps = {float(state[k]["step"]) for k in state}
        if len(steps) != 1:
            raise ValueError(f"MATD3.load_agent({i}): {what} has different step counts per tensor: {sorted(steps)}")
        step = steps.pop()
        _ensure_adam_state(opt)
        kind = "actor" if opt is self.actor_optimizer else "critic"
        current = float(opt.state[params[0]]["step"])
        if self._opt_loaded[kind] and step != current:
            warnings.warn(
                f"MATD3.load_agent({i}): {kind} Adam step {step:g} differs from {current:g} of agents loaded before; "
                "the step counter is shared by all agents, the last loaded value is used",
                stacklevel=3,
            )
        self._opt_loaded[kind].add(i)
        with torch.no_grad():
            for k, (_, pos, idx) in enumerate(entries):
                st = opt.state[params[pos]]
                st["exp_avg"][idx].copy_(state[k]["exp_avg"])
                st["exp_avg_sq"][idx].copy_(state[k]["exp_avg_sq"])
            for p in params:
                opt.state[p]["step"].fill_(step)

    def load_agent(
        self,
        i: int,
        *,
        actor: Mapping[str, Tensor] | None = None,
        actor_target: Mapping[str, Tensor] | None = None,
        critic: Mapping[str, Tensor] | None = None,
        critic_target: Mapping[str, Tensor] | None = None,
        actor_opt: Mapping[str, Any] | None = None,
        critic_opt: Mapping[str, Any] | None = None,
        unfolded: Sequence[str] = (),
    ) -> None:
        """Write agent ``i``'s per-agent state dicts (inverse of the exports).

        With the observation standardisation on, the given dicts are taken as folded
        exports (raw observations) and unfolded, except the parts named in ``unfolded``
        (``"actor"``, ``"actor_target"``, ``"critic"``, ``"critic_target"``), which are
        written as they are (exports with ``folded=False`` of the same standardisation).

        Every given dict is checked completely (keys and shapes) before anything is
        written, so a mismatch raises ``KeyError`` / ``ValueError`` and leaves that part
        untouched. Adam's ``step`` is shared by all agents: the loaded value replaces it
        (a warning is issued when agents loaded since the last update disagree).
        """
        i = self._check_agent(i)
        a_idx, c_idx = self._actor_layer_index(i), self._critic_layer_index(i)
        todo = [
            ("actor", actor, self.actor_params, a_idx),
            ("actor_target", actor_target, self.actor_target_params, a_idx),
            ("critic", critic, self.critic_params, c_idx),
            ("critic_target", critic_target, self.critic_target_params, c_idx),
        ]
        for what, sd, params, entries in todo:
            if sd is not None:
                if what not in unfolded:
                    sd = self._unfold(sd, i, critic=what.startswith("critic"))
                self._load_params(what, i, params, entries, sd)
        if actor_opt is not None:
            self._load_opt("actor_opt", i, self.actor_optimizer, self.actor_params, a_idx, actor_opt)
        if critic_opt is not None:
            self._load_opt("critic_opt", i, self.critic_optimizer, self.critic_params, c_idx, critic_opt)

    # ------------------------------------------------------------------ whole state

    def _config(self) -> dict[str, Any]:
        return {
            "n_agents": self.n_agents,
            "obs_dim": self.obs_dim,
            "act_dims": list(self.act_dims),
            "unique_obs_len": self.unique_obs_len,
            "actor_hidden_sizes": list(self.actor_hidden_sizes),
            "critic_hidden_sizes": list(self.critic_hidden_sizes),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: stacked weights, targets, Adam states, counters,
        generator state and the dimensions (checked on load). ``torch.load(...,
        weights_only=True)``-safe."""
        sd: dict[str, Any] = {"format": _FORMAT, "config": self._config(), "n_updates": self.n_updates}
        for name in ("actor", "actor_target", "critic", "critic_target"):
            sd[name] = [p.detach().clone() for p in getattr(self, f"{name}_params")]
        sd["actor_optimizer"] = self.actor_optimizer.state_dict()
        sd["critic_optimizer"] = self.critic_optimizer.state_dict()
        sd["generator"] = self.generator.get_state()
        sd["learning_rate"] = self.learning_rate
        sd["obs_shift"] = None if self.obs_shift is None else self.obs_shift.detach().clone()
        sd["obs_scale"] = None if self.obs_scale is None else self.obs_scale.detach().clone()
        return sd

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; refuses other dimensions with a clear error."""
        if not isinstance(sd, Mapping) or sd.get("format") != _FORMAT:
            raise ValueError(f"MATD3.load_state_dict: not a {_FORMAT} state dict")
        if sd.get("config") != self._config():
            raise ValueError(f"MATD3.load_state_dict: saved config {sd.get('config')} differs from {self._config()}")
        for name in ("actor", "actor_target", "critic", "critic_target"):
            mine, theirs = getattr(self, f"{name}_params"), sd[name]
            if len(theirs) != len(mine) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(mine, theirs)):
                raise ValueError(f"MATD3.load_state_dict: {name} tensors have other shapes")
        with torch.no_grad():
            for name in ("actor", "actor_target", "critic", "critic_target"):
                for p, v in zip(getattr(self, f"{name}_params"), sd[name]):
                    p.copy_(v)
            for params in (self.actor_params, self.actor_target_params):  # padding stays exactly 0
                last_w, last_b = params[-2], params[-1]
                last_w.mul_(self._mask_fm)
                last_b.mul_(self._mask_fm)
        self.actor_optimizer.load_state_dict(sd["actor_optimizer"])
        self.critic_optimizer.load_state_dict(sd["critic_optimizer"])
        self.generator.set_state(sd["generator"].cpu() if isinstance(sd["generator"], Tensor) else sd["generator"])
        self.n_updates = int(sd["n_updates"])
        self.set_learning_rate(sd.get("learning_rate", self.learning_rate))
        if "obs_shift" in sd:  # older state dicts: leave the standardisation as it is
            self.set_obs_normalization(sd["obs_shift"], sd["obs_scale"])
