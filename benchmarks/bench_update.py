"""MATD3 gradient steps per second: stacked (batched) vs the per-agent loop, and the
batched step's hand-written backward pass vs autograd on the same stacked tensors.

For each number of agents, both implementations start from the same weights
(:meth:`ReferenceMATD3.from_matd3`) and train on the same random batches with the same
network sizes, thread count and device. The machine's large-matmul rate is measured in
the same run (at the start and again before each agent count; the best is kept), and each step's FLOPs are counted analytically to give the share of that
rate a gradient step reaches.

FLOPs ("model FLOPs", multiply-add = 2): per agent and sample, with ``A`` the actor's and
``C`` one critic head's forward multiply-adds, a step does target actor ``A`` + target
critic ``2C`` + critic forward/backward ``3 * 2C``, and every ``policy_delay`` steps actor
forward/backward ``3A`` + critic q1 forward/backward ``3C`` (backward ~ 2x forward). The
batched implementation executes fewer (no input gradient for the critic's first layer, no
critic weight gradients in the actor step); ``exec_gflop_per_step`` is what
``torch.utils.flop_counter`` counts for it.

``--kernels``: time the batched update with each of MATD3's kernels (``hand``: the
hand-written backward pass, ``autograd``: autograd over the same stacked tensors, the
in-package reference), both from the same weights, interleaved in one run.

Prints one JSON line per measurement. Examples::

    python benchmarks/bench_update.py --quick
    python benchmarks/bench_update.py --threads 1 --agents 1 5 10 50 100
    python benchmarks/bench_update.py --device cuda
    python benchmarks/bench_update.py --kernels --skip-loop --agents 3 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.buffer import ReplayBufferSamples  # noqa: E402
from agents.matd3 import MATD3  # noqa: E402
from agents.matd3_reference import ReferenceMATD3  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(size: int, device: torch.device, seconds: float) -> float:
    """FLOP/s of a ``size x size`` float32 matmul (best of repeated timings)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.rand(size, size, generator=g, device=device)
    b = torch.rand(size, size, generator=g, device=device)
    out = torch.empty(size, size, device=device)
    for _ in range(3):
        torch.mm(a, b, out=out)
    _sync(device)
    best = float("inf")
    reps = 1
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        _sync(device)
        dt = (time.perf_counter() - t0) / reps
        best = min(best, dt)
        if dt * reps < 0.05:
            reps *= 2
    return 2.0 * size**3 / best


def model_flops(n: int, obs_dim: int, u: int, act: int, actor_h, critic_h, batch: int, delay: int) -> float:
    """Analytic FLOPs of one gradient step (see the module docstring)."""
    sizes_a = (obs_dim, *actor_h, act)
    a = sum(i * o for i, o in zip(sizes_a[:-1], sizes_a[1:]))
    d = obs_dim + (n - 1) * u + n * act
    sizes_c = (d, *critic_h, 1)
    c = sum(i * o for i, o in zip(sizes_c[:-1], sizes_c[1:]))
    macs = a + 2 * c + 3 * 2 * c + (3 * a + 3 * c) / delay
    return 2.0 * batch * n * macs


def executed_flops(m: MATD3, batches) -> float:
    """Matmul FLOPs per step of the batched update, counted by torch (avg over policy_delay steps)."""
    from torch.utils.flop_counter import FlopCounterMode

    state = m.state_dict()
    counter = FlopCounterMode(display=False)
    with counter:
        for k in range(m.policy_delay):
            m.update(batches[k % len(batches)])
    m.load_state_dict(state)
    return counter.get_total_flops() / m.policy_delay


def make_batches(k: int, batch: int, n: int, obs_dim: int, act: int, device, seed: int):
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for _ in range(k):
        kw = {"generator": g, "device": device}
        out.append(
            ReplayBufferSamples(
                torch.randn(batch, n, obs_dim, **kw),
                torch.rand(batch, n, act, **kw) * 2 - 1,
                torch.randn(batch, n, obs_dim, **kw),
                torch.randn(batch, n, **kw),
            )
        )
    return out


def time_updates(algo, batches, device, seconds: float, min_steps: int, delay: int) -> tuple[int, float]:
    """Run whole policy_delay cycles until ``seconds`` have passed; (steps, elapsed)."""
    for k in range(2 * delay):  # warm-up
        algo.update(batches[k % len(batches)])
    _sync(device)
    steps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(delay):
            algo.update(batches[steps % len(batches)])
            steps += 1
        if steps >= min_steps:
            _sync(device)
            if time.perf_counter() - t0 >= seconds:
                break
    return steps, time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, nargs="+", default=[1, 5, 10, 50, 100])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--obs-dim", type=int, default=74, help="ASSUME: 3 * foresight(24) + 2 unique")
    p.add_argument("--unique-obs-len", type=int, default=2)
    p.add_argument("--act-dim", type=int, default=2)
    p.add_argument("--actor-hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--critic-hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    p.add_argument("--min-steps", type=int, default=4)
    p.add_argument("--matmul-size", type=int, default=None, help="default 1024 (cpu) / 8192 (cuda)")
    p.add_argument("--skip-loop", action="store_true", help="only time the batched implementation")
    p.add_argument("--kernels", action="store_true",
                   help="also time the batched update with kernel='autograd' (same weights) next to kernel='hand'")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --kernels: alternate the timings this many times and keep each kernel's best")
    p.add_argument("--quick", action="store_true", help="short timings (0.5 s each)")
    p.add_argument(
        "--no-remeasure", dest="remeasure", action="store_false",
        help="measure the matmul rate once at the start only (default: again before each agent count, keep the best)",
    )  # fmt: skip
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    seconds = 0.5 if args.quick else args.seconds
    size = args.matmul_size or (8192 if device.type == "cuda" else 1024)
    rate = matmul_rate(size, device, 1.0 if args.quick else 3.0)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        json.dumps(
            {
                "kind": "matmul",
                "device": str(device),
                "device_name": dev_name,
                "threads": torch.get_num_threads(),
                "size": size,
                "dtype": "float32",
                "gflops": round(rate / 1e9, 2),
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )
    delay = 2
    per_agent_ms = {}
    for n in args.agents:
        batches = make_batches(4, args.batch, n, args.obs_dim, args.act_dim, device, seed=n)
        m = MATD3(
            n,
            args.obs_dim,
            [args.act_dim] * n,
            args.unique_obs_len,
            actor_hidden_sizes=args.actor_hidden,
            critic_hidden_sizes=args.critic_hidden,
            policy_delay=delay,
            device=device,
            seed=0,
            kernel="hand" if args.kernels else "auto",
        )
        flops = model_flops(
            n, args.obs_dim, args.unique_obs_len, args.act_dim, args.actor_hidden, args.critic_hidden, args.batch, delay
        )
        exec_flops = executed_flops(m, batches)
        # re-measure the matmul rate next to each block, so drift (turbo, other load) hits both alike
        rate = max(rate, matmul_rate(size, device, 0.3 if args.quick else 1.0)) if args.remeasure else rate
        impls = [("batched", m)]
        if args.kernels:
            auto = MATD3(n, args.obs_dim, [args.act_dim] * n, args.unique_obs_len, actor_hidden_sizes=args.actor_hidden,
                         critic_hidden_sizes=args.critic_hidden, policy_delay=delay, device=device, seed=0,
                         kernel="autograd")
            auto.load_state_dict(m.state_dict())
            impls.append(("batched_autograd", auto))
        if not args.skip_loop:
            impls.append(("loop", ReferenceMATD3.from_matd3(m)))
        sps = {}
        best: dict[str, tuple[int, float]] = {}
        for _ in range(max(1, args.rounds) if args.kernels else 1):  # alternate: drift hits all alike
            for name, algo in impls:
                steps, elapsed = time_updates(algo, batches, device, seconds, args.min_steps, delay)
                if name not in best or steps / elapsed > best[name][0] / best[name][1]:
                    best[name] = (steps, elapsed)
        for name, algo in impls:
            steps, elapsed = best[name]
            sps[name] = steps / elapsed
            ms = 1e3 * elapsed / steps
            rec = {
                "kind": "update",
                "impl": name,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "n_agents": n,
                "batch": args.batch,
                "steps": steps,
                "steps_per_s": round(sps[name], 3),
                "ms_per_step": round(ms, 3),
                "ms_per_agent_step": round(ms / n, 4),
                "model_gflop_per_step": round(flops / 1e9, 4),
                "model_gflops": round(flops * sps[name] / 1e9, 2),
                "matmul_gflops": round(rate / 1e9, 2),
                "share_of_matmul": round(flops * sps[name] / rate, 4),
            }
            if name == "batched":
                rec["exec_gflop_per_step"] = round(exec_flops / 1e9, 4)
                rec["exec_share_of_matmul"] = round(exec_flops * sps[name] / rate, 4)
                per_agent_ms[n] = ms / n
            print(json.dumps(rec), flush=True)
        summary = {"kind": "summary", "n_agents": n, "threads": torch.get_num_threads(), "device": str(device)}
        if "loop" in sps:
            summary["speedup_batched_vs_loop"] = round(sps["batched"] / sps["loop"], 2)
        if "batched_autograd" in sps:
            summary["speedup_hand_written_vs_autograd"] = round(sps["batched"] / sps["batched_autograd"], 2)
        first = args.agents[0]
        summary[f"batched_per_agent_cost_vs_{first}_agent(s)"] = round(per_agent_ms[n] / per_agent_ms[first], 3)
        print(json.dumps(summary), flush=True)
        del m, impls, batches


if __name__ == "__main__":
    main()
