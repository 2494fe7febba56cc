"""Local search over a kept policy's own env actions, for the worst learner's share of its
exact best response.

    PYTHONPATH=$PWD python benchmarks/search_policy_actions.py --policy RUN/policies/best
        [--scenario default] [--iterations 1500] [--seed 0] [--objective worst|total]
        [--hours N] [--out actions.npz] [--start actions.npz]

It answers one question about a goal such as "every learner earns at least 0.90 of its
exact best-response profit": is there a profile that the env's *own actions* can bid
(the plants' offer grid, the storage's two-sided bids, the readings the checkpoint
records) and that meets it, near what training found? ``search_low_gain.py`` asks the
same with exact prices, which the env's grid cannot always bid. This is a heuristic (a
local search over one episode's open-loop actions), not a solver and not a policy: it can
show that such a profile exists near the policy, not that none does.

1. Start: the actions of ``--policy`` in its deterministic evaluation episode
   (``agents.trainer.evaluate_policy``), rebuilt from the bids its record holds and replayed on
   the same market; the script stops with an error where the replay does not reproduce
   the episode's clearing prices and profits. ``--start`` continues from the actions of an
   earlier ``--out`` instead (the same policy's market and readings).
2. Each step proposes one change and keeps it only where the objective falls:
   ``--objective worst`` (default) the largest gain from deviating alone as a share of that
   learner's best-response profit, ties broken by the total gain; ``--objective total``
   the total gain, ties broken by the largest share. Gains are scored as training scores
   its evaluations (``envs.analysis.exploitability``). A learner is drawn with weight
   (its gain share)^2, a window of 1–48 hours at random, and one of:

   * a plant adopts its best response within the env's offer grid in the window (the
     best-response teacher's plant targets); a storage unit the two-sided bids of its
     exact best response (the teacher's storage targets);
   * its prices (both, the lower or the higher) move by 0.5, 2 or 5 EUR/MWh, either way;
   * a plant stays out (both offers at the bid cap) or stays on (its inflexible part at the
     bid floor) in the window.
3. Output: one JSON line per kept step and every 100 steps, a final line, and with
   ``--out`` the best actions ``(H, n, max_act)`` with their profits and best-response
   profits (``.npz``, written atomically after every kept step and at the end).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from agents.jsonio import write_atomic  # noqa: E402
from envs import load_scenario  # noqa: E402
from envs.analysis import best_response, cold_offer_map, exploitability, storage_response_bids  # noqa: E402
from bench_quality import resolve_scenario  # noqa: E402

WINDOWS = (1, 2, 4, 8, 24, 48)
SHIFTS = (-5.0, -2.0, -0.5, 0.5, 2.0, 5.0)


def _below(a: np.ndarray, price: np.ndarray, to_price) -> np.ndarray:
    """``a``, lowered by one float step where ``to_price(a)`` lies above ``price``: a price
    at a point of the env's grid (e.g. a tie with a rule offer) maps to that point only from
    at or below it."""
    return np.where(to_price(a) > price, np.nextafter(a, -np.inf), a)


def actions_from_record(core, record) -> np.ndarray:
    """Env actions ``(H, n, max_act)`` that bid the prices of ``record`` again on ``core``:
    a plant's two offers (inflexible, flexible) ``price / max_bid_price``, a renewable's
    offer likewise, a two-sided storage unit's charge bid and discharge offer ``2 price /
    max_bid_price - 1`` (the env's grid and readings map a bid they produced to itself)."""
    mbp = float(core.max_bid_price)
    H = record.n_hours
    act = np.zeros((H, core.n, core.max_act))
    for k, kind in enumerate(core.agent_kind):
        sup = record.supply_price[:, record.agent_supply_columns(k)]
        if kind == "storage":
            dem = record.demand_price[:, record.agent_demand_columns(k)]
            if core.storage_bids != "two_sided" or core.max_act < 2 or sup.shape[1] != 1 or dem.shape[1] != 1:
                raise SystemExit("search_policy_actions: storage units must bid two-sided (storage_bids: two_sided); "
                                 "a signed storage action cannot be rebuilt from its recorded bids")
            def st_price(a):
                return (a + 1.0) * (0.5 * mbp)  # as MarketCore.build_bids reads a two-sided action
            act[:, k, 0] = _below(2.0 * dem[:, 0] / mbp - 1.0, dem[:, 0], st_price)
            act[:, k, 1] = _below(2.0 * sup[:, 0] / mbp - 1.0, sup[:, 0], st_price)
        elif kind == "plant":
            act[:, k, : sup.shape[1]] = _below(sup / mbp, sup, lambda a: a * mbp)
        else:
            act[:, k, 0] = _below(sup[:, 0] / mbp, sup[:, 0], lambda a: a * mbp)
    return np.clip(act, -1.0, 1.0)


class Replay:
    """Open-loop episodes of one market (``core``, reset as the evaluation does) and their
    exact analysis."""

    def __init__(self, core, scenario, seed: int):
        self.core, self.scenario, self.seed = core, scenario, seed

    def run(self, actions: np.ndarray) -> dict:
        core = self.core
        core.reset(np.random.default_rng(self.seed))
        h = 0
        while not core.done:
            core.step(actions[h][None])
            h += 1
        rec = core.episode_record(0)
        ex = exploitability(rec, scenario=self.scenario)
        profit = np.asarray(ex.recorded_profit, dtype=float)
        br = np.asarray(ex.best_response_profit, dtype=float)
        return {"actions": actions, "record": rec, "profit": profit, "br": br,
                "share": np.asarray(ex.share, dtype=float)}


def score(p: dict, objective: str) -> tuple[float, float]:
    """``(largest gain share, total gain)`` or the reverse for ``objective`` "total"."""
    gain = p["br"] - p["profit"]
    worst = float(np.max(gain / np.maximum(np.abs(p["br"]), 1.0)))
    total = float(np.clip(gain, 0.0, None).sum())
    return (worst, total) if objective == "worst" else (total, worst)


def row(p: dict, agents) -> dict:
    gain = p["br"] - p["profit"]
    worst, total = score(p, "worst")
    return {"exploitability": round(float(gain.sum() / max(np.abs(p["profit"]).sum(), 1e-9)), 4),
            "worst_gain_share": worst, "total_gain": round(total, 2),
            "shares": {a: round(float(s), 4) if np.isfinite(s) else None for a, s in zip(agents, p["share"])}}


def propose(p: dict, core, scenario, rng: np.random.Generator) -> tuple[np.ndarray, str, int]:
    """One changed copy of ``p``'s actions, what changed and whose."""
    gain = np.clip(p["br"] - p["profit"], 0.0, None)
    w = (gain / np.maximum(np.abs(p["br"]), 1.0)) ** 2 + 1e-12
    k = int(rng.choice(core.n, p=w / w.sum()))
    A = p["actions"]
    H = A.shape[0]
    W = int(rng.choice([w for w in WINDOWS if w <= H] or [H]))
    t = int(rng.integers(0, H - W + 1))
    hrs = slice(t, t + W)
    B = A.copy()
    mbp = float(core.max_bid_price)
    kind = core.agent_kind[k]
    r = rng.random()
    targets = p.setdefault("targets", {})  # a learner's best-response bids against this profile, once
    if r < 0.4 and kind == "plant":
        if k not in targets:
            to_grid, _ = core.plant_grid(k)
            resp = best_response(p["record"], k, ties="cost", plant_prices=to_grid,
                                 cold_prices=cold_offer_map(core, k, to_grid))
            targets[k] = np.nan_to_num(np.asarray(resp.best_price, dtype=float), nan=mbp)
        bp = targets[k]
        B[hrs, k, 0] = np.minimum(bp[hrs, 0], bp[hrs, 1]) / mbp
        B[hrs, k, 1] = np.maximum(bp[hrs, 0], bp[hrs, 1]) / mbp
        what = "best response on the grid"
    elif r < 0.4 and kind == "storage":
        if k not in targets:
            targets[k] = storage_response_bids(p["record"], k, scenario=scenario)
        bids = targets[k]
        B[hrs, k, :2] = 2.0 * bids[hrs, :2] / mbp - 1.0
        what = "best response bids"
    elif r < 0.55 and kind == "plant":
        out = rng.random() < 0.5
        if out:
            B[hrs, k, :2] = 1.0
        else:
            B[hrs, k, 0] = -1.0
            B[hrs, k, 1] = np.maximum(B[hrs, k, 1], B[hrs, k, 0])
        what = "stays out" if out else "stays on"
    else:
        d = float(rng.choice(SHIFTS))
        step = d / mbp * (2.0 if kind == "storage" else 1.0)  # storage actions span half the price range
        j = int(rng.integers(0, 3))  # 0: both prices, 1: the lower, 2: the higher
        m = min(core.max_act, 2)
        lohi = np.sort(B[hrs, k, :m], axis=1)
        if j in (0, 1):
            lohi[:, 0] += step
        if j in (0, 2) and m > 1:
            lohi[:, -1] += step
        B[hrs, k, :m] = np.clip(np.sort(lohi, axis=1), -1.0, 1.0)
        what = f"prices {('both', 'lower', 'higher')[j]} {d:+g} EUR/MWh"
    return B, f"{what}, hours {t}-{t + W - 1}", k


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", type=Path, required=True, help="a checkpoint folder, e.g. RUN/policies/best")
    ap.add_argument("--scenario", default="default",
                    help="a built-in, a folder, or a name under ../shared/scenarios/assume")
    ap.add_argument("--study-case", default=None)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="seed of the proposals")
    ap.add_argument("--objective", choices=("worst", "total"), default="worst")
    ap.add_argument("--hours", type=int, default=None, help="episode length (the env's max_cycles), as the policy ran")
    ap.add_argument("--out", type=Path, default=None, help="where to write the best actions (.npz)")
    ap.add_argument("--start", type=Path, default=None, help="continue from the actions of an earlier --out")
    a = ap.parse_args(argv)
    if a.iterations < 0:
        ap.error(f"--iterations must be >= 0, got {a.iterations}")
    if not (a.policy / "manifest.json").is_file():
        ap.error(f"--policy {a.policy}: no manifest.json there; pass a checkpoint folder such as RUN/policies/best")
    from agents.config import LearningConfig
    from agents.trainer import evaluate_policy

    name = resolve_scenario(a.scenario)
    if name is None:
        ap.error(f"--scenario {a.scenario}: neither a built-in, a folder, nor an example under ../shared/scenarios/assume")
    sc = load_scenario(name, study_case=a.study_case) if a.study_case else load_scenario(name)
    cfg = LearningConfig.from_dict(sc.learning_config or {}, source="learning_config")
    opts = {"max_cycles": a.hours} if a.hours else None
    t0 = time.perf_counter()
    res, core = evaluate_policy(sc, cfg, a.policy, env_options=opts)
    agents = list(core.agents)
    start_actions = actions_from_record(core, res.record)
    # the evaluation episode's hours do not depend on the reset's seed; checked below
    replay = Replay(core, sc, 0)
    best = replay.run(start_actions)
    rec0 = res.record
    if not (np.allclose(best["record"].clearing_price, rec0.clearing_price, atol=1e-9)
            and np.allclose(best["profit"], res.agent_profit, rtol=1e-9, atol=1e-6)):
        raise SystemExit("search_policy_actions: replaying the policy's recorded bids as actions does not reproduce "
                         "its episode (clearing prices or profits differ); this market's readings are not supported")
    if a.start is not None:
        start = np.load(a.start)["actions"]
        if start.shape != start_actions.shape:
            raise SystemExit(f"search_policy_actions: --start {a.start} holds actions of shape {start.shape}, "
                             f"this policy's episode needs {start_actions.shape}; pass the same --policy and --hours")
        best = replay.run(start)
    print(json.dumps({"it": 0, "start": str(a.start or a.policy), **row(best, agents),
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    def save(b: dict) -> None:
        if a.out is not None:
            write_atomic(a.out, lambda f: np.savez(f, actions=b["actions"], profit=b["profit"],
                                                   best_response_profit=b["br"], agents=np.array(agents)), binary=True)

    rng = np.random.default_rng(a.seed)
    kept = 0
    for it in range(1, a.iterations + 1):
        actions, what, k = propose(best, core, sc, rng)
        cand = replay.run(actions)
        if score(cand, a.objective) < score(best, a.objective):
            best, kept = cand, kept + 1
            save(best)  # after every kept step: a stopped search keeps its best so far
            print(json.dumps({"it": it, "kept": kept, "agent": agents[k], "change": what, **row(best, agents)}),
                  flush=True)
        elif it % 100 == 0:
            print(json.dumps({"it": it, "kept": kept, "seconds": round(time.perf_counter() - t0)}), flush=True)
    save(best)  # also when no step improved on the start
    print(json.dumps({"final": True, "policy": str(a.policy), "scenario": a.scenario, "objective": a.objective,
                      "iterations": a.iterations, "kept": kept, "seconds": round(time.perf_counter() - t0),
                      **row(best, agents)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
