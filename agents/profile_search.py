"""A local search over one episode's env actions for the worst learner's share of its
exact best response, and what it needs: actions rebuilt from a record, open-loop replays
with their exact analysis, the proposals.

A trained policy's deterministic evaluation episode is a profile of bids. Starting from
it, :func:`search` proposes changes (a learner's prices in a window of hours) and keeps
one only where the objective falls: by default the largest gain from deviating alone as
a share of that learner's best-response profit, ties broken by the total gain
(``objective="total"``: the reverse; "both" and "smooth" add the exploitability, see
:func:`score`; the trainer's ``profile_search`` lowers "smooth"). Gains are scored as
training scores its evaluations (:func:`envs.analysis.exploitability`). A learner is
drawn with weight (its gain share)^2 and a window of 1-48 hours; with ``focus="gain"``
(the default) the window is placed around an hour drawn by that learner's gain in it, and
the change is made by that learner or (half the time) another one; with
``focus="uniform"`` anywhere, by it.
The changes:

* a plant adopts its best response within the env's offer grid in the window (the
  best-response teacher's plant targets); a storage unit the two-sided bids of its exact
  best response (the teacher's storage targets);
* its prices (both, the lower or the higher) move by 0.5, 2 or 5 EUR/MWh, either way;
* a plant stays out (both offers at the bid cap) or stays on (its inflexible part at the
  bid floor) in the window;
* a plant runs through one of its shutdowns between two runs, or stays out over one of
  its runs between two shutdowns (stretches of at most 48 hours, shorter ones likelier).

Each proposal is drawn from the best profile so far with a generator of its own
(:func:`proposal_rng`) and kept where it scores better (first improvement). With two
usable cores a helper process (:class:`SearchHelper`) scores proposals drawn ahead of the
one to decide next while this process scores others; they are decided in order, and
those drawn from a profile that a kept step replaced are drawn again, so the result is
the same as in one process. A proposal is cheap where it changes little:
:class:`Replay` steps only the hours from its first change until the state is the old
profile's again, recomputes a plant's best response (and its best response within the
grid, a proposal's target: :func:`envs.analysis.plant_response_prices`) only in the
hours whose bids changed and a storage unit's per-hour tables likewise
(:class:`envs.analysis.StorageTables`), and drops it as soon as a lower bound of its
score shows it cannot be kept, or, before the storage units' exact best responses (the
slow part), where it scores no better with those taken as before the change (a
heuristic: :meth:`Replay.run`'s ``estimate``).

It is a heuristic over open-loop actions, not a solver: it finds profiles near the
policy's that the env's own actions bid; :mod:`agents.distil` turns one into actors.
``benchmarks/search_policy_actions.py`` runs it on a saved policy; the trainer's
``profile_search`` key after training.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from envs.analysis import (StorageTables, _share, best_response, best_responses, changed_hours, cold_offer_map,
                           plant_best_profit, plant_hour_values, plant_response_prices, recorded_profit,
                           storage_response_bids)

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
                raise ValueError("storage units must bid two-sided (storage_bids: two_sided); "
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
    """Open-loop episodes of one market (``core``: one copy, recording; reset with
    ``seed`` as the evaluation resets it) and their exact analysis.

    ``responses_fn(record, agents, scenario)`` computes the best responses of ``agents``
    (default :func:`envs.analysis.best_responses`; e.g. the trainer's
    :meth:`agents.analysis_pool.AnalysisPool.best_responses`, the same on two cores).
    :meth:`run` with ``prev``, the result of a replay of the same market, computes again
    only the best responses of the learners whose opponents bid differently in some hour
    (a best response depends on the others' bids and the market's fixed data, not on the
    learner's own bids); the others keep ``prev``'s, rescored against their own new
    profit as :func:`envs.analysis.exploitability_from` scores them. With ``prev`` it also
    steps only the hours from the first changed action until the state is ``prev``'s
    again, and a plant's best response recomputes only the hours whose bids changed
    (:func:`envs.analysis.plant_hour_values`); the figures are those of a full replay
    and analysis."""

    def __init__(self, core, scenario, seed: int, responses_fn: Callable | None = None):
        self.core, self.scenario, self.seed = core, scenario, seed
        self.responses_fn = responses_fn
        self.computed = 0  # best responses computed so far (the rest were reused)
        # per storage agent: its best response's per-hour tables, and its response
        # bids' (the proposals' targets), kept from one record to the next
        self.tables: dict = {}

    def _others_same(self, rec, old, k: int) -> bool:
        s_own, d_own = rec.agent_supply_columns(k), rec.agent_demand_columns(k)
        s = np.ones(rec.supply_price.shape[1], bool)
        d = np.ones(rec.demand_price.shape[1], bool)
        s[s_own], d[d_own] = False, False
        return (np.array_equal(rec.supply_price[:, s], old.supply_price[:, s])
                and np.array_equal(rec.supply_volume[:, s], old.supply_volume[:, s])
                and np.array_equal(rec.demand_price[:, d], old.demand_price[:, d])
                and np.array_equal(rec.demand_volume[:, d], old.demand_volume[:, d]))

    def _responses(self, rec, agents: list[str]) -> dict:
        if not agents:
            return {}
        self.computed += len(agents)
        if self.responses_fn is None:
            return best_responses(rec, agents, scenario=self.scenario)[0]
        return self.responses_fn(rec, agents, self.scenario)

    def _plant_responses(self, rec, ks: list[int], values: dict) -> dict:
        """The plants ``ks``' best profit per hour, from their hour values
        (:func:`envs.analysis.plant_hour_values`): ``values[k]``, ``(record, hour values)``
        of an earlier replay, keeps the hours that bid the same as that record; the
        rest are computed and ``values[k]`` updated. Equal to the full best response."""
        out = {}
        for k in ks:
            if k in values:
                old, (on, off, either) = values[k]
                hrs = changed_hours(rec, old)
                new = plant_hour_values(rec, k, hrs)
                on, off, either = (o.copy() for o in (on, off, either))
                for kept, fresh in zip((on, off, either), new):
                    kept[hrs] = fresh[hrs]
            else:
                on, off, either = plant_hour_values(rec, k)
            values[k] = (rec, (on, off, either))
            out[rec.agents[k]] = plant_best_profit(rec, k, on, off, either)
        self.computed += len(ks)
        return out

    def run(self, actions: np.ndarray, prev: dict | None = None, *,
            bound: tuple[str, tuple[float, float]] | None = None, estimate: bool = False) -> dict | None:
        """Replay ``actions`` ``(H, n, max_act)``; returns the actions, the record, each
        learner's profit, best-response profit, share, best-response profit per hour and
        gain per hour ``(n, H)``.

        ``bound``, ``(objective, value)``: return None as soon as the profile is shown to
        score no better than ``value`` by :func:`score`, before computing the best
        responses that cannot change that (a search only keeps a strictly better
        profile). The plants' best responses are computed first and the storage units'
        (the slow ones) last; a best response not yet computed counts as no gain, which
        no best response can score below, so a profile is only dropped where the full
        analysis would score it no better.

        ``estimate`` (with ``bound`` and ``prev``): before computing the storage units'
        (and other non-plant learners') best responses, also drop the profile where it
        scores no better with their best-response profits taken as ``prev``'s (each at
        least its new profit). A heuristic, not a bound: a profile that would be kept
        because it lowers a storage unit's best response is dropped too; what is not
        dropped is scored in full. :func:`search` uses it (on ``default`` a proposal
        takes about half the time; some searches keep the same steps, others take
        another path)."""
        rec, trace = self._replay(actions, prev)
        core = self.core
        agents = list(rec.agents)
        todo = [a for k, a in enumerate(agents) if prev is None or not self._others_same(rec, prev["record"], k)]
        rec_h = np.stack([recorded_profit(rec, k) for k in range(len(agents))])
        profit = rec_h.sum(axis=1)
        best_h = np.stack([rec_h[k] if a in todo else prev["best_per_hour"][k] for k, a in enumerate(agents)])
        # the plants from their hour values (only the hours that bid differently are
        # computed), then the other learners (storage: the slow ones)
        values = dict(prev.get("hour_values", {})) if prev is not None else {}
        plants = [k for k, a in enumerate(agents) if a in todo and core.agent_kind[k] == "plant"]
        rest = [a for k, a in enumerate(agents) if a in todo and k not in plants]
        for stage in (plants, rest):
            if bound is not None:  # what is known so far, the rest at no gain: a lower bound of the score
                br = np.maximum(best_h.sum(axis=1), profit)
                if score({"br": br, "profit": profit}, bound[0]) >= bound[1]:
                    return None
                if estimate and stage is rest and rest and prev is not None:  # the slow ones as before
                    est = br.copy()
                    for k, a in enumerate(agents):
                        if a in rest:
                            est[k] = max(float(prev["br"][k]), profit[k])
                    if score({"br": est, "profit": profit}, bound[0]) >= bound[1]:
                        return None
            if stage is plants:
                fresh = self._plant_responses(rec, plants, values)
            else:
                storage = [a for a in stage if core.agent_kind[agents.index(a)] == "storage"]
                fresh = {a: r.best_profit_per_hour
                         for a, r in self._responses(rec, [a for a in stage if a not in storage]).items()}
                for a in storage:  # one at a time, each from its tables
                    k = agents.index(a)
                    tables = self.tables.setdefault(("best response", k), StorageTables())
                    fresh[a] = best_response(rec, k, scenario=self.scenario, tables=tables).best_profit_per_hour
                    self.computed += 1
            for k, a in enumerate(agents):
                if a in fresh:
                    best_h[k] = fresh[a]
        br = np.maximum(best_h.sum(axis=1), profit)  # as exploitability_from: never below the recorded profit
        return {"actions": actions, "record": rec, "profit": profit, "br": br,
                "share": np.array([_share(r, b) for r, b in zip(profit, br)]),
                "best_per_hour": best_h, "gain_per_hour": best_h - rec_h, "hour_values": values, "trace": trace,
                "tables": self.tables}

    def _replay(self, actions: np.ndarray, prev: dict | None):
        """The episode of ``actions`` and its trace (the core's log and, before each hour,
        the state that carries into the next hours' bids and profits: storage levels and
        last dispatch). With ``prev``'s trace, only the hours from the first changed
        action on are stepped, until the state is ``prev``'s again after the last changed
        action; the rest of ``prev``'s log is taken as it is (open-loop bids depend on the
        hour, the actions and that state only)."""
        core = self.core
        core.reset(np.random.default_rng(self.seed))
        H = actions.shape[0]
        t, stop = 0, H
        trace = prev.get("trace") if prev is not None and core.net is None else None
        if trace is not None:
            changed = np.flatnonzero((actions != prev["actions"]).reshape(H, -1).any(axis=1))
            if not len(changed):
                return prev["record"], trace
            t, stop = int(changed[0]), int(changed[-1]) + 1
            soc, last = trace["state"][t]
            core.soc, core.last_dispatch = soc.copy(), last.copy()
            core.step_count = t
            core._log = list(trace["log"][:t])
        states = list(trace["state"][: t + 1]) if trace is not None else [(core.soc.copy(), core.last_dispatch.copy())]
        while not core.done:
            core.step(actions[t][None])
            t += 1
            states.append((core.soc.copy(), core.last_dispatch.copy()))
            if trace is not None and t >= stop and t < H:
                soc, last = trace["state"][t]
                if np.array_equal(core.soc, soc) and np.array_equal(core.last_dispatch, last):
                    core._log.extend(trace["log"][t:])
                    states.extend(trace["state"][t + 1:])
                    break
        return core.episode_record(0), {"log": list(core._log), "state": states}


OBJECTIVES = ("worst", "both", "total", "smooth")

SMOOTH_POWER = 10.0
"""The power of objective "smooth"'s norm (:func:`score`)."""


def score(p: dict, objective: str) -> tuple[float, float]:
    """What the search lowers, compared as a tuple: "worst", ``(largest gain share, total
    gain)``; "both", ``(max(largest gain share, exploitability), total gain)`` (how far
    the profile is from a goal such as "every learner >= 0.90 of its best response and
    exploitability <= 0.10" on both counts); "smooth", the same with the maximum replaced
    by the :data:`SMOOTH_POWER`-norm of the learners' gain shares and the exploitability
    (it also credits a change that lowers some of the figures near the top by more than
    it raises others, where the plain maximum only credits one that lowers them all);
    "total", ``(total gain, largest gain share)``."""
    gain = p["br"] - p["profit"]
    worst = float(np.max(gain / np.maximum(np.abs(p["br"]), 1.0)))
    total = float(np.clip(gain, 0.0, None).sum())
    if objective == "worst":
        return worst, total
    if objective in ("both", "smooth"):
        expl = float(gain.sum() / max(float(np.abs(p["profit"]).sum()), 1e-9))
        if objective == "both":
            return max(worst, expl), total
        x = np.append(np.clip(gain / np.maximum(np.abs(p["br"]), 1.0), 0.0, None), max(expl, 0.0))
        m = float(x.max())
        return (m * float(((x / m) ** SMOOTH_POWER).sum()) ** (1.0 / SMOOTH_POWER) if m > 0 else 0.0), total
    return total, worst


def row(p: dict, agents) -> dict:
    gain = p["br"] - p["profit"]
    worst, total = score(p, "worst")
    return {"exploitability": round(float(gain.sum() / max(np.abs(p["profit"]).sum(), 1e-9)), 4),
            "worst_gain_share": worst, "total_gain": round(total, 2),
            "shares": {a: round(float(s), 4) if np.isfinite(s) else None for a, s in zip(agents, p["share"])}}


def _runs(record, k: int, longest: int = 48) -> list[tuple[int, int, bool]]:
    """Plant ``k``'s stretches of ``record`` between two of the other kind: ``(first hour,
    end, off)`` for each shutdown between two runs and each run between two shutdowns, of
    at most ``longest`` hours."""
    on = record.supply_accepted[:, record.agent_supply_columns(k)].sum(axis=1) > 0
    edges = np.flatnonzero(np.diff(on.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [on.size]])
    out = []
    for i in range(1, bounds.size - 2):  # neither the first nor the last stretch
        a, b = int(bounds[i]), int(bounds[i + 1])
        if b - a <= longest:
            out.append((a, b, not bool(on[a])))
    return out


def propose(p: dict, core, scenario, rng: np.random.Generator, focus: str = "gain") -> tuple[np.ndarray, str, int]:
    """One changed copy of ``p``'s actions, what changed and whose."""
    gain = np.clip(p["br"] - p["profit"], 0.0, None)
    w = (gain / np.maximum(np.abs(p["br"]), 1.0)) ** 2 + 1e-12
    k = int(rng.choice(core.n, p=w / w.sum()))
    A = p["actions"]
    H = A.shape[0]
    W = int(rng.choice([w for w in WINDOWS if w <= H] or [H]))
    if focus == "gain":  # a window around an hour where the drawn learner gains, moved by it or another
        gh = np.clip(p["gain_per_hour"][k], 0.0, None)
        h = int(rng.choice(H, p=gh / gh.sum())) if gh.sum() > 0 else int(rng.integers(0, H))
        t = int(np.clip(h - rng.integers(0, W), 0, H - W))
        if core.n > 1 and rng.random() < 0.5:
            k = int(rng.choice([i for i in range(core.n) if i != k]))
    else:
        t = int(rng.integers(0, H - W + 1))
    hrs = slice(t, t + W)
    B = A.copy()
    mbp = float(core.max_bid_price)
    kind = core.agent_kind[k]
    r = rng.random()
    targets = p.setdefault("targets", {})  # a learner's best-response bids against this profile, once
    if r < 0.4 and kind == "plant":
        if k not in targets:  # the hours that bid as in the last profile's are kept
            to_grid, _ = core.plant_grid(k)
            keep = p.setdefault("tables", {}).setdefault(("grid response", k), {})
            bp = plant_response_prices(p["record"], k, ties="cost", plant_prices=to_grid,
                                       cold_prices=cold_offer_map(core, k, to_grid), keep=keep)
            targets[k] = np.nan_to_num(bp, nan=mbp)
        bp = targets[k]
        B[hrs, k, 0] = np.minimum(bp[hrs, 0], bp[hrs, 1]) / mbp
        B[hrs, k, 1] = np.maximum(bp[hrs, 0], bp[hrs, 1]) / mbp
        what = "best response on the grid"
    elif r < 0.4 and kind == "storage":
        if k not in targets:
            tables = p.setdefault("tables", {}).setdefault(("response bids", k), StorageTables())
            targets[k] = storage_response_bids(p["record"], k, scenario=scenario, tables=tables)
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
    elif r < 0.65 and kind == "plant" and _runs(p["record"], k):
        # a whole stretch of its own schedule: run through a shutdown between two runs, or
        # stay out over a run between two shutdowns (a start less either way)
        runs = _runs(p["record"], k)
        wt = np.array([1.0 / (b - a) for a, b, _ in runs])
        a0, b0, off = runs[int(rng.choice(len(runs), p=wt / wt.sum()))]
        t, W = a0, b0 - a0
        if off:
            B[a0:b0, k, 0] = -1.0
            B[a0:b0, k, 1] = np.maximum(B[a0:b0, k, 1], B[a0:b0, k, 0])
        else:
            B[a0:b0, k, :2] = 1.0
        what = "runs through a shutdown" if off else "stays out of a run"
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


WINDOW = 12
"""How far past the next proposal to decide :func:`search` draws and scores proposals
ahead with a :class:`SearchHelper` (each against the best profile so far, which a kept
proposal makes stale)."""

HELPER_DEPTH = 4
"""Proposals queued at a :class:`SearchHelper` at a time, so that it never waits for the
next one."""


def proposal_rng(base: int, i: int) -> np.random.Generator:
    """The generator of proposal ``i`` of a search whose ``base`` was drawn from its
    generator: proposal ``i`` is the same whichever process draws it, and whenever."""
    return np.random.default_rng([int(base), int(i)])


def _draw(replay: "Replay", best: dict, base: int, i: int, focus: str) -> tuple[np.ndarray, str, int]:
    """Proposal ``i`` drawn from ``best``: its actions, what changed and whose."""
    return propose(best, replay.core, replay.scenario, proposal_rng(base, i), focus)


def _score(replay: "Replay", best: dict, actions: np.ndarray, objective: str) -> tuple:
    """``actions`` scored against ``best``: ``(score, profile)`` where it scores better,
    else ``(None, None)``."""
    bound = (objective, score(best, objective))
    cand = replay.run(actions, prev=best, bound=bound, estimate=True)
    sc = None if cand is None else score(cand, objective)
    return (sc, cand) if sc is not None and sc < bound[1] else (None, None)


def _portable(profile: dict) -> dict:
    """``profile`` to send to another process: without this process's caches (the
    replay's tables, the targets drawn from it)."""
    return {f: v for f, v in profile.items() if f not in ("tables", "targets")}


def _adopted(profile: dict, replay: "Replay") -> dict:
    """A profile from another process (:func:`_portable`), with ``replay``'s caches."""
    return {**profile, "tables": replay.tables}


def search(replay: Replay, start: dict, iterations: int, rng: np.random.Generator, *, objective: str = "worst",
           focus: str = "gain", on_step: Callable[[int, dict | None, str, int], Any] | None = None,
           helper: "SearchHelper | None" = None, stop_at: float | None = None) -> tuple[dict, int]:
    """``iterations`` proposals from ``start`` (a :meth:`Replay.run` result), each drawn
    from the best profile so far (its own generator, :func:`proposal_rng`, from one draw
    of ``rng``) and kept where it scores better than that profile (first improvement).
    Returns the best profile and how many steps were kept. ``on_step(it, best, what, k)``
    after each proposal, in order: ``best`` the new profile where it was kept, else None.
    Proposals are scored with :meth:`Replay.run`'s ``bound`` and ``estimate``.

    ``helper`` (a :class:`SearchHelper` started on the same market and start) draws and
    scores proposals in its process while this one does too: proposals up to
    :data:`WINDOW` ahead of the next one to decide are handed out to whichever process
    is free, each against the best profile so far, and decided in order; after a kept
    proposal, those drawn from the profile before it are drawn again from the new one.
    Each proposal is thus the same as in one process, and so are the figures.
    ``stop_at``: stop before the next proposal once the profile's score (its first
    figure; "both"'s for objective "smooth") is at most this; the proposals made until
    then are those of the search without it."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if focus not in ("gain", "uniform"):
        raise ValueError(f"focus must be 'gain' or 'uniform', got {focus!r}")
    iterations = int(iterations)
    base = int(rng.integers(0, 2 ** 62))
    best, kept, done, version = start, 0, 0, 0
    # proposal -> (score, profile or None, scored here, actions, what, whose), this version
    ready: dict[int, tuple] = {}
    sent: dict[int, tuple] = {}  # proposals at the helper, this version: (actions, what, whose)
    nxt = 0  # the next proposal not yet handed out
    if helper is not None and helper.alive:
        helper.start(objective)

    def helper_failed():  # what was sent there is drawn here
        nonlocal helper, nxt
        helper = None
        sent.clear()
        nxt = min([i for i in range(done, nxt) if i not in ready] + [nxt])

    while done < iterations:
        if stop_at is not None and score(best, "both" if objective == "smooth" else objective)[0] <= stop_at:
            break
        if done in ready:  # decide the next proposal
            sc, cand, here, actions, what, k = ready.pop(done)
            new = None
            if sc is not None:
                if not here:  # the helper's profile, sent with its score
                    cand = _adopted(cand, replay)
                    if helper is not None:
                        helper.adopt(done)
                elif helper is not None:
                    helper.sync(cand)
                best, kept, version, new = cand, kept + 1, version + 1, cand
                ready.clear()  # drawn from the profile before: drawn again
                sent.clear()
                nxt = done + 1
            done += 1
            if on_step is not None:
                on_step(done, new, what, k)
            continue
        limit = min(iterations, done + WINDOW)
        if helper is not None:
            while helper.alive and helper.queued < HELPER_DEPTH and nxt < limit:
                drawn = _draw(replay, best, base, nxt, focus)
                helper.submit(nxt, version, drawn[0])
                sent[nxt] = drawn
                nxt += 1
            if not helper.alive:
                helper_failed()
                continue
        wait = nxt >= limit  # every proposal up to the window's end is out: wait for the helper
        if not wait:
            actions, what, k = _draw(replay, best, base, nxt, focus)
            ready[nxt] = _score(replay, best, actions, objective) + (True, actions, what, k)
            nxt += 1
        if helper is not None:
            for got in helper.results(block=wait):
                if got is SearchHelper.FAILED:
                    helper_failed()
                    break
                i, v, sc, cand = got
                if v == version and i in sent:
                    ready[i] = (sc, cand, False) + sent.pop(i)
    return best, kept


class SearchHelper:
    """A ``spawn`` process (NumPy and ``envs`` only; see :func:`agents.reference.start_process`)
    that draws and scores proposals of :func:`search` on its own copy of the market, from
    the same start profile, while the caller does too. Where it cannot start or fails,
    :attr:`alive` turns False and the caller scores everything itself (the same figures,
    later). :meth:`close` stops it."""

    FAILED = object()

    def __init__(self, core, scenario, seed: int, start_actions: np.ndarray):
        import multiprocessing as mp

        from .reference import start_process

        self.alive = False
        self.failure: str | None = None
        self.queued = 0  # proposals sent whose answer has not come back
        self._proc = None
        try:
            core = copy.copy(core)  # its own copy goes to the process, without the fused step's state
            core.__dict__.pop("_fast_step", None)
            ctx = mp.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_search_worker, args=(child, core, scenario, seed, start_actions),
                                     daemon=True, name="marketzoo-profile-search")
            start_process(self._proc)
            child.close()
            self.alive = True
        except Exception as e:  # noqa: BLE001 -- no second process: the caller scores everything
            self.failure = f"{type(e).__name__}: {e}"

    def _send(self, msg) -> None:
        try:
            self._conn.send(msg)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _fail(self, e) -> None:
        self.alive = False
        self.failure = self.failure or f"{type(e).__name__}: {e}"
        self.close()

    def start(self, objective: str) -> None:
        """A new search, and its objective."""
        self._send(("start", objective))

    def submit(self, i: int, version: int, actions: np.ndarray) -> None:
        """Score proposal ``i``, ``actions`` drawn from profile ``version`` (the count of
        kept steps so far), against the helper's profile."""
        self.queued += 1
        self._send(("score", i, version, actions))

    def results(self, block: bool = False) -> list:
        """The answers that have come back (at least one where ``block``): ``(proposal,
        version, score or None, the profile where it scores better)`` each, or
        :attr:`FAILED`."""
        out: list = []
        if not self.alive:
            return [self.FAILED]
        try:
            while self.queued and (self._conn.poll() or (block and not out)):
                got = self._conn.recv()
                if isinstance(got, BaseException):
                    self._fail(got)
                    return out + [self.FAILED]
                self.queued -= 1
                out.append(got)
        except Exception as e:  # noqa: BLE001
            self._fail(e)
            out.append(self.FAILED)
        return out

    def adopt(self, i: int) -> None:
        """Proposal ``i``, scored there and better, becomes the helper's profile."""
        self._send(("adopt", i))

    def sync(self, profile: dict) -> None:
        """``profile`` (a proposal scored here and kept) becomes the helper's."""
        self._send(("sync", _portable(profile)))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self.alive = False
        if proc is None:
            return
        try:
            self._conn.send(None)
        except Exception:  # noqa: BLE001
            pass
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        self._conn.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


HELPER_MIN_PROPOSALS = 20
"""Fewest proposals for which :func:`start_search_helper` starts a process (starting one
takes about a second)."""


def start_search_helper(replay: Replay, start: dict, iterations: int) -> "SearchHelper | None":
    """A :class:`SearchHelper` for a search of ``iterations`` proposals from ``start`` on
    ``replay``'s market, where two or more cores are usable and the search is long enough
    to be worth a process; else None (the search runs here, with the same result)."""
    from .reference import _usable_cores

    if iterations < HELPER_MIN_PROPOSALS or _usable_cores() < 2:
        return None
    helper = SearchHelper(replay.core, replay.scenario, replay.seed, start["actions"])
    return helper if helper.alive else None


def _search_worker(conn, core, scenario, seed: int, start_actions: np.ndarray) -> None:
    """:class:`SearchHelper`'s process: its own :class:`Replay` of ``core``, the profile of
    ``start_actions``, and the messages "start", "score" (answers ``(proposal, version,
    score or None, the profile where it scores better)``; a proposal drawn from a profile
    that a later message already replaces is answered as no better without being
    scored), "adopt", "sync"; None stops it. An error is sent back and ends it.

    Answers go out through a thread, so that this process keeps reading while a large
    answer waits for the caller (which may itself be sending a profile)."""
    import queue
    import threading

    out: queue.Queue = queue.Queue()

    def sender():
        while True:
            msg = out.get()
            if msg is None:
                return
            try:
                conn.send(msg)
            except Exception:  # noqa: BLE001 -- the caller is gone
                return

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        replay = Replay(core, scenario, seed)
        best, version, cands, objective = replay.run(start_actions), 0, {}, "worst"
        while True:
            msgs = [conn.recv()]
            while msgs[-1] is not None and conn.poll():
                msgs.append(conn.recv())
            moves = [j for j, m in enumerate(msgs) if m is not None and m[0] in ("adopt", "sync")]
            for j, msg in enumerate(msgs):
                if msg is None:
                    return
                op = msg[0]
                if op == "start":
                    objective, cands = msg[1], {}
                elif op == "score":
                    _, i, v, actions = msg
                    if v != version or any(m > j for m in moves):  # stale: its profile is replaced
                        out.put((i, v, None, None))
                        continue
                    sc, cand = _score(replay, best, actions, objective)
                    if cand is not None:
                        cands[i] = cand
                    out.put((i, v, sc, None if cand is None else _portable(cand)))
                elif op == "adopt":
                    best, version, cands = cands[msg[1]], version + 1, {}
                elif op == "sync":
                    best, version, cands = _adopted(msg[1], replay), version + 1, {}
    except EOFError:
        return
    except Exception as e:  # noqa: BLE001 -- the caller falls back to scoring here
        out.put(e)
    finally:
        out.put(None)
        thread.join(timeout=10)


def start_profile(replay: Replay, record, profit) -> dict:
    """The profile of an evaluation episode (``record``, each learner's ``profit``):
    :meth:`Replay.run` of the actions rebuilt from its bids, checked to reproduce its
    clearing prices and profits (a ``ValueError`` names what differs where not, e.g. a
    market whose readings cannot be rebuilt from the recorded bids)."""
    p = replay.run(actions_from_record(replay.core, record))
    if not np.allclose(p["record"].clearing_price, record.clearing_price, atol=1e-9):
        raise ValueError("replaying the recorded bids as actions does not reproduce the episode's clearing prices; "
                         "this market's readings are not supported by the profile search")
    if not np.allclose(p["profit"], np.asarray(profit, dtype=float), rtol=1e-9, atol=1e-6):
        raise ValueError("replaying the recorded bids as actions does not reproduce the learners' profits; "
                         "this market's readings are not supported by the profile search")
    return p
