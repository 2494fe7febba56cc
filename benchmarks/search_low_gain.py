"""Search for a bid profile with a small total gain from deviating alone, where the
equilibrium reference's best-response dynamics cycle (e.g. `default`).

    PYTHONPATH=$PWD python benchmarks/search_low_gain.py [--scenario default]
        [--iterations 1500] [--seed 0] [--step 1.0] [--out profile.npz] [--start profile.npz]
        [--objective total|worst] [--storage-proposals whole|window]

It answers one question: does a pure-strategy profile exist whose exploitability is low,
or is a goal such as "exploitability <= 0.10" out of reach for deterministic bids? It is
a heuristic (a local search), not a solver: it can show that such a profile exists, not
that none does.

1. Start: the last iterate of :func:`envs.analysis.equilibrium` at a 1 EUR/MWh tick with
   whole-volume storage moves (the env's storage action), or ``--start``.
2. Local search. Each step proposes one change and keeps it only when it lowers the
   objective: ``--objective total`` (the default), the learners' total gain from
   deviating alone, Σ (best-response profit − profit); ``--objective worst``, the largest
   share of its best-response profit that one learner could gain, ties broken by the
   total. Gains are scored exactly as training scores its evaluations
   (:func:`envs.analysis.exploitability`: 0.01 EUR/MWh tick, storage off the
   state-of-charge grid). Proposals, drawn from the run's seeded generator:

   * a learner (drawn in proportion to its gain) adopts its best response in a window of
     1–48 hours, placed where its gain per hour is concentrated, or anywhere;
   * a learner's prices move by ``±step`` or ``±3 step`` in such a window;
   * in hours where a learning plant loses money (a start-up for a sliver of volume at a
     tie with another learner), every learning plant bidding at about the price bids just
     above it;
   * a storage unit adopts its best response bidding the whole feasible volume
     (everywhere; with ``--storage-proposals window`` also in a window of 2–168 hours
     only, or moves its price by ``±step`` or ``±3 step`` in such a window, keeping the
     direction).

   Storage bids are the env's own action: the whole feasible volume at one signed price
   (an offer at the top of the bid range in hours it waits), accepted in part where it
   sets the price. Every profile is therefore one that env actions reproduce exactly.
3. Output: one JSON line per 25 steps, the final figures, and the profile (``--out``,
   written atomically): bid prices ``(H, n, 2)`` EUR/MWh (storage: signed by direction),
   i.e. env actions ``price / max_bid_price``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.jsonio import write_atomic  # noqa: E402
from envs import load_scenario  # noqa: E402
from envs import equilibrium as eqm  # noqa: E402  (the profile helpers of the equilibrium search)
from envs.analysis import best_response, equilibrium, exploitability  # noqa: E402

WINDOWS = (1, 2, 4, 8, 16, 24, 48)
STORAGE_WINDOWS = (2, 4, 8, 16, 24, 48, 96, 168)


class Profile:
    """The learners' bid prices, with their exact gains from deviating alone."""

    def __init__(self, core, scenario, price: np.ndarray):
        self.core, self.scenario = core, scenario
        self.price = price
        # storage: the env's own action (the whole feasible volume at the signed price)
        self.record = eqm.simulate_profile(core, eqm._actions(core, price), None, price)
        ex = exploitability(self.record, scenario=scenario)  # scored as training scores its evaluations
        self.responses = [ex.responses[a] for a in core.agents]
        self.profit = np.asarray(ex.recorded_profit, dtype=float)
        self.gains = np.asarray(ex.best_response_profit, dtype=float) - self.profit
        self.total_gain = float(np.clip(self.gains, 0, None).sum())
        self.exploitability = float(ex.joint)
        self._full: dict[int, object] = {}

    def full(self, k: int):
        """Storage unit ``k``'s best response bidding its whole feasible volume (computed
        once, when a proposal asks for it)."""
        if k not in self._full:
            self._full[k] = best_response(self.record, k, scenario=self.scenario, storage_moves="full")
        return self._full[k]

    def worst_share_gain(self) -> float:
        """The largest gain from deviating alone as a share of that learner's
        best-response profit."""
        br = np.maximum(self.profit + self.gains, 1e-9)
        return float((np.clip(self.gains, 0, None) / br).max())

    def score(self, objective: str) -> tuple[float, ...]:
        """What the search lowers (compared as a tuple)."""
        if objective == "worst":
            return (self.worst_share_gain(), self.total_gain)
        return (self.total_gain,)

    def row(self) -> dict:
        return {"total_gain": round(self.total_gain), "exploitability": round(self.exploitability, 4),
                "worst_share_gain": round(self.worst_share_gain(), 4),
                "gain": {a: round(float(g)) for a, g in zip(self.core.agents, self.gains)},
                "profit": {a: round(float(p)) for a, p in zip(self.core.agents, self.profit)}}


def env_storage_prices(core, price: np.ndarray, vol: np.ndarray, k: int) -> None:
    """Write storage unit ``k``'s schedule (signed volumes ``vol[:, k]``, prices
    ``price[:, k, 0]``) as env bids: the price signed by the direction where it trades,
    an offer at the top of the bid range where it waits (in place)."""
    q = vol[:, k]
    p = np.where(np.abs(q) < 1e-9, core.max_bid_price, np.sign(q) * np.abs(price[:, k, 0]))
    price[:, k, 0] = price[:, k, 1] = p


def window(p: Profile, k: int, rng: np.random.Generator, lengths) -> np.ndarray:
    """A window of hours (boolean mask) of one of ``lengths``, placed where learner
    ``k``'s gain per hour is concentrated (60 %) or anywhere."""
    H = p.record.n_hours
    L = min(int(rng.choice(lengths)), H)
    if rng.random() < 0.6:
        g = np.convolve(np.clip(p.responses[k].gain_per_hour, 0, None), np.ones(L), "valid") + 1e-9
        s = int(rng.choice(len(g), p=g / g.sum()))
    else:
        s = int(rng.integers(0, H - L + 1))
    mask = np.zeros(H, dtype=bool)
    mask[s:s + L] = True
    return mask


def propose_storage(p: Profile, k: int, rng: np.random.Generator, step: float, mbp: float,
                    windows: bool) -> np.ndarray:
    """A proposed change of storage unit ``k``'s env bids: its whole-volume best response
    everywhere or (``windows``) in a window, or its price moved in a window."""
    core = p.core
    price = p.price.copy()
    u = rng.random() if windows else 0.0
    if u < 0.65:
        new = price.copy()
        vol = np.full((price.shape[0], core.n), np.nan)
        vol[:, k] = 0.0
        eqm._adopt(core, new, vol, k, p.full(k), None)
        env_storage_prices(core, new, vol, k)
        mask = window(p, k, rng, STORAGE_WINDOWS) if u >= 0.15 else slice(None)
        price[mask, k, :] = new[mask, k, :]
        return price
    mask = window(p, k, rng, STORAGE_WINDOWS)
    a = price[mask, k, 0]
    trades = np.abs(a) < mbp - 1e-9  # at the top of the range it waits
    moved = np.clip(np.abs(a) + rng.choice([-3, -1, 1, 3]) * step, 0.0, mbp - 0.01)
    price[mask, k, 0] = price[mask, k, 1] = np.where(trades, np.sign(a) * moved, a)
    return price


def propose(p: Profile, rng: np.random.Generator, step: float, mbp: float,
            storage_windows: bool = False) -> np.ndarray:
    """One proposed change of ``p``'s bid prices (a copy)."""
    core = p.core
    price = p.price.copy()
    vol = np.full((price.shape[0], core.n), np.nan)
    H = p.record.n_hours
    weights = np.clip(p.gains, 0, None) + 1.0
    k = int(rng.choice(core.n, p=weights / weights.sum())) if rng.random() < 0.7 else int(rng.integers(core.n))
    if core.agent_kind[k] == "storage":
        return propose_storage(p, k, rng, step, mbp, storage_windows)
    u = rng.random()
    if u < 0.2:
        # hours where a learning plant loses money (typically a start-up for a sliver of
        # volume at a tie): every learning plant bidding at about the price there bids
        # just above it (lifting one alone hands the sliver to the other)
        plants = [j for j in range(core.n) if core.agent_kind[j] == "plant"]
        bad = np.zeros(H, dtype=bool)
        for j in plants:
            bad |= p.responses[j].recorded_profit_per_hour < -500
        bad = np.flatnonzero(bad)
        if len(bad) > 1 and rng.random() < 0.5:
            bad = bad[rng.random(len(bad)) < 0.5]
        cp = p.record.clearing_price[bad, None]
        lift = cp + rng.uniform(0.01, 1.0)
        for j in plants:
            near = price[bad, j, :] >= cp - 0.5  # at the margin, not well inside the merit order
            price[bad, j, :] = np.where(near, np.maximum(price[bad, j, :], lift), price[bad, j, :])
        return np.clip(price, -mbp, mbp)
    mask = window(p, k, rng, WINDOWS)
    if u < 0.6:
        eqm._adopt(core, price, vol, k, p.responses[k], mask)
    else:
        price[mask, k, int(rng.integers(2))] += rng.choice([-3, -1, 1, 3]) * step
    return np.clip(price, -mbp, mbp)


def save(path: Path, p: Profile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: np.savez(f, price=p.price, agents=np.array(p.core.agents)), binary=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--study-case", default="base")
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=float, default=1.0, help="price move of a proposal, EUR/MWh")
    ap.add_argument("--start", type=Path, default=None, help="a profile written by --out")
    ap.add_argument("--out", type=Path, default=None, help="where to write the best profile (.npz)")
    ap.add_argument("--objective", choices=("total", "worst"), default="total",
                    help="lower the total gain, or the largest gain as a share of a learner's best response")
    ap.add_argument("--storage-proposals", choices=("whole", "window"), default="whole",
                    help="storage units adopt their best response everywhere only, or also in windows")
    a = ap.parse_args(argv)
    sc = load_scenario(a.scenario, a.study_case)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    core = eqm._make_core(sc, None, None)
    mbp = float(core.max_bid_price)
    if a.start is not None:
        price = np.load(a.start)["price"].copy()
    else:
        eq = equilibrium(sc, tick=1.0, max_passes=30, storage_moves="full")
        print(json.dumps({"start": eq.verdict(), "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        price = eq.bid_prices.copy()
        for k in range(core.n):
            if core.agent_kind[k] == "storage":
                env_storage_prices(core, price, eq.storage_volume, k)
    best = Profile(core, sc, price)
    print(json.dumps({"it": 0, **best.row()}), flush=True)
    kept = 0
    for it in range(1, a.iterations + 1):
        cand = Profile(core, sc, propose(best, rng, a.step, mbp, a.storage_proposals == "window"))
        if cand.score(a.objective) < best.score(a.objective):
            best, kept = cand, kept + 1
            if a.out is not None:
                save(a.out, best)
        if it % 25 == 0:
            print(json.dumps({"it": it, "kept": kept, "seconds": round(time.perf_counter() - t0), **best.row()}),
                  flush=True)
    if a.out is not None:  # also when no step improved on the start
        save(a.out, best)
    print(json.dumps({"final": True, "scenario": a.scenario, "iterations": a.iterations, "kept": kept,
                      "seconds": round(time.perf_counter() - t0), **best.row()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
