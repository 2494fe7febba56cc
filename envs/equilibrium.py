"""Equilibrium reference: iterated exact best responses of the learning agents.

:func:`equilibrium` (also importable as ``envs.analysis.equilibrium``) looks for a
profile of bids, one per learning agent and hour of the episode, from which no agent can
gain more than a tolerance by deviating alone, over the whole episode:

1. Start: every learning plant and renewable bids its marginal cost, every learning
   storage unit stays idle. Rule units bid as in the env (rule storage follows its rule,
   its state of charge evolving with the market).
2. Gauss-Seidel best-response dynamics: for each learning agent in turn, compute its
   exact best response (:func:`envs.analysis.best_response` -- the same code as the
   analysis; start-ups over the episode, storage by dynamic programming over the state
   of charge) to the current bids of everyone else; if it gains more than the tolerance,
   it adopts it and the episode is re-simulated by :class:`envs.core.MarketCore`.
3. Stop when a whole pass leaves every agent within the tolerance: the best responses of
   that pass were all computed against the final profile, so they form the
   exploitability certificate (:class:`envs.analysis.Exploitability`).
4. A profile seen before at the end of a pass, or ``patience`` passes without progress
   (the pass's total gain not falling below 0.9 x its best), is a cycle: the dynamics
   are damped (a plant or renewable then adopts its best response only in a seeded
   random share of the hours, a storage unit moves its schedule that share of the way
   towards its best response; the share is halved at every detected cycle) until
   ``min_damping``; below it, or after ``max_passes`` passes, the result says
   ``converged=False`` with the reason and the residual gains, and is **not** an
   equilibrium (:meth:`EquilibriumResult.require` raises
   :class:`EquilibriumNotConverged`).

With ``warm_ticks`` (e.g. ``(1.0, 0.1)``) the dynamics first run with those coarser
undercut ticks as a warm start; only the last stage, at ``tick``, decides convergence.

The tolerance: agent ``i`` is within it when ``gain_i <= atol + rtol * max(|profit_i|,
|best_response_i|)`` (EUR over the episode).

What a learning storage agent's bid is in the profile: a price and a volume per hour (its
net injection from the DP schedule), which the env's own storage action cannot express
(it offers its whole feasible volume); the profile is simulated by a
:class:`~envs.core.MarketCore` whose learning storage offers exactly the profile's
volume (clipped to what its state of charge allows). All learners' prices are set in
EUR/MWh directly, not as ``action * max_bid_price`` (whose rounding can miss a tie that
the best response relies on); ``EquilibriumResult.actions`` holds the nearest actions.
:class:`_ProfileCore` overrides only :meth:`envs.core.MarketCore.build_bids`.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .analysis import BestResponse, Exploitability, best_response, exploitability_from
from .core import MarketCore
from .record import EpisodeRecord

__all__ = [
    "EquilibriumDistance",
    "EquilibriumNotConverged",
    "EquilibriumResult",
    "distance_to_equilibrium",
    "equilibrium",
    "simulate_profile",
]


class EquilibriumNotConverged(RuntimeError):
    """Raised by :meth:`EquilibriumResult.require` when no equilibrium was found."""


class _ProfileCore(MarketCore):
    """A :class:`MarketCore` whose learning storage units offer the volumes of a profile
    (signed MW per hour and learning storage unit; + sells) instead of their whole
    feasible volume. Everything else is the env's own logic."""

    storage_volume: np.ndarray | None = None  # (H, n_learning_storage)
    bid_prices: np.ndarray | None = None  # (H, n, 2) exact EUR/MWh (actions * mbp can miss a tie by a rounding step)

    def build_bids(self, actions, active):
        sp, sv, dpr, dvo, bid_price = super().build_bids(actions, active)
        if self.bid_prices is not None:
            p = self.bid_prices[self.step_count]  # (n, 2)
            n_lp = len(self.lp)
            if n_lp:
                pp = p[self.sl_plant]
                sp[:, :n_lp] = pp.min(axis=1)
                sp[:, n_lp: 2 * n_lp] = pp.max(axis=1)
            if len(self.lr):
                sp[:, self.col_ren] = p[self.sl_ren, 0]
            if len(self.ls):
                ps = np.abs(p[self.sl_storage, 0])
                sp[:, self.col_dis.start + self.ls] = ps
                dpr[:, self.ls] = ps
            bid_price[:] = p[None]
        if self.storage_volume is not None and len(self.ls):
            st = self.scenario.storages
            dt = self.scenario.time_step_hours
            q = self.storage_volume[self.step_count]
            ls = self.ls
            soc = self.soc[:, ls]
            can_dis = np.maximum(np.minimum(st.max_power_discharge[ls],
                                            (soc - self._soc_min[ls]) * st.efficiency_discharge[ls] / dt), 0.0)
            can_ch = np.maximum(np.minimum(st.max_power_charge[ls],
                                           (self._soc_max[ls] - soc) / st.efficiency_charge[ls] / dt), 0.0)
            cols = self.col_dis.start + ls
            sv[:, cols] = np.where(q > 0, np.minimum(q, can_dis), 0.0)
            dvo[:, ls] = np.where(q < 0, np.minimum(-q, can_ch), 0.0)
        return sp, sv, dpr, dvo, bid_price


def _make_core(scenario, hours: int | None, max_bid_price: float | None,
               min_power_rule: str = "partial") -> _ProfileCore:
    core = _ProfileCore(scenario, max_cycles=hours, max_bid_price=max_bid_price, min_power_rule=min_power_rule)
    core.recording = True
    return core


def simulate_profile(core: _ProfileCore, actions: np.ndarray, storage_volume: np.ndarray | None,
                     bid_prices: np.ndarray | None = None) -> EpisodeRecord:
    """Run one episode of ``core`` (from hour 0) with env actions ``(H, n, max_act)`` and,
    for learning storage, the profile's signed volumes ``(H, n)`` (nan elsewhere);
    ``bid_prices`` ``(H, n, 2)`` (EUR/MWh; storage: sign = direction), when given, set the
    learners' prices exactly instead of ``actions * max_bid_price``. Returns its
    :class:`~envs.record.EpisodeRecord`."""
    core.storage_volume = None if storage_volume is None else storage_volume[:, core.sl_storage]
    core.bid_prices = bid_prices
    core.reset(np.random.default_rng(0))
    h = 0
    while not core.done:
        core.step(actions[h][None])
        h += 1
    return core.episode_record()


def _initial_profile(core: MarketCore) -> tuple[np.ndarray, np.ndarray]:
    """Learning plants and renewables at marginal cost (cut to the bid range), learning
    storage idle. Returns bid prices ``(H, n, 2)`` EUR/MWh and storage volumes ``(H, n)``."""
    sc = core.scenario
    H = core.max_cycles
    mbp = core.max_bid_price
    price = np.zeros((H, core.n, 2))
    hrs = np.arange(H)
    if len(core.lp):
        mc = sc.plants.marginal_cost[hrs][:, core.lp]
        price[:, core.sl_plant, 0] = mc
        price[:, core.sl_plant, 1] = mc
    if len(core.lr):
        price[:, core.sl_ren, :] = sc.renewables.marginal_cost[core.lr][None, :, None]
    vol = np.full((H, core.n), np.nan)
    vol[:, core.sl_storage] = 0.0
    return np.clip(price, -mbp, mbp), vol


def _actions(core: MarketCore, price: np.ndarray) -> np.ndarray:
    """Env actions ``(H, n, max_act)`` of a price profile (storage: sign = direction)."""
    act = np.zeros((price.shape[0], core.n, core.max_act))
    k = min(core.max_act, 2)
    act[:, :, :k] = price[:, :, :k] / core.max_bid_price
    return np.clip(act, -1.0, 1.0)


def _adopt(core: MarketCore, price: np.ndarray, vol: np.ndarray, k: int, br: BestResponse,
           hours_mask: np.ndarray | None, mix: float = 1.0) -> None:
    """Write agent ``k``'s best response into the profile (in place)."""
    kind = core.agent_kind[k]
    if kind == "storage":
        q = br.best_volume if br.bid_volume is None else br.bid_volume  # what is bid (off the grid: more than is sold)
        p = np.where(q < 0, -1.0, 1.0) * np.nan_to_num(br.best_price[:, 0], nan=0.0)
        if mix < 1.0:
            # damped: a convex mix of the old and the new schedule (feasible: the power
            # and state-of-charge limits are convex); the new price where it trades
            q = (1.0 - mix) * vol[:, k] + mix * q
            p = np.where(br.best_volume != 0, p, price[:, k, 0])
        price[:, k, 0] = price[:, k, 1] = p
        vol[:, k] = q
        return
    m = np.ones(len(br.best_price), dtype=bool) if hours_mask is None else hours_mask
    p0 = br.best_price[:, 0]
    p1 = br.best_price[:, 1] if kind == "plant" and np.isfinite(br.best_price[:, 1]).all() else p0
    price[m, k, 0] = p0[m]
    price[m, k, 1] = p1[m]


def _profile_key(act: np.ndarray, vol: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(np.round(act, 9).tobytes())
    h.update(np.round(np.nan_to_num(vol, nan=-1e18), 6).tobytes())
    return h.hexdigest()


@dataclass
class EquilibriumResult:
    """Outcome of :func:`equilibrium`.

    When ``converged`` is False the fields describe the LAST iterate, which is not an
    equilibrium: ``reason`` says why it stopped (``"cycle"`` or ``"max_passes"``) and
    ``residual_gain`` how much each agent could still gain. Check ``converged`` (or call
    :meth:`require`) before using it as a reference.
    """

    converged: bool
    reason: str  # "converged" | "cycle" | "max_passes"
    agents: tuple[str, ...]
    kinds: tuple[str, ...]
    passes: int  # best-response passes over all agents
    adoptions: int  # best responses adopted
    damping: float  # share of hours a plant/renewable adopts its best response in, at the end
    record: EpisodeRecord  # the market under the (final) profile
    actions: np.ndarray  # (H, n, max_act) env actions of the profile (storage: sign = direction)
    bid_prices: np.ndarray  # (H, n, 2) exact bid prices EUR/MWh (plants: inflexible, flexible part)
    storage_volume: np.ndarray  # (H, n) signed MW of learning storage (nan for other agents)
    prices: np.ndarray  # (H,) clearing prices EUR/MWh
    profit: np.ndarray  # (n,) EUR over the episode
    best_response_profit: np.ndarray  # (n,) EUR: each agent's best response to the profile
    residual_gain: np.ndarray  # (n,) best_response_profit - profit
    tolerance: np.ndarray  # (n,) EUR: the gain each agent is allowed
    certificate: Exploitability  # the best responses against the final profile
    wall_time: float  # seconds
    history: list[dict] = field(default_factory=list)  # per pass: max/total gain, damping, hours changed
    changing_hours: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # not converged:
    # the scenario hours whose bids still changed in the last pass

    @property
    def exploitability(self) -> float:
        """Joint exploitability of the profile (the certificate's ``joint``)."""
        return float(self.certificate.joint)

    @property
    def max_relative_gain(self) -> float:
        """Largest ``gain / max(|profit|, |best response|)`` over the agents (0 when no gain)."""
        den = np.maximum(np.maximum(np.abs(self.profit), np.abs(self.best_response_profit)), 1e-9)
        return float(max(0.0, np.max(self.residual_gain / den))) if len(self.agents) else 0.0

    def require(self) -> "EquilibriumResult":
        """Return self if converged, else raise :class:`EquilibriumNotConverged`."""
        if not self.converged:
            raise EquilibriumNotConverged(self.verdict())
        return self

    def verdict(self) -> str:
        """One plain line."""
        passes = f"{self.passes} pass{'' if self.passes == 1 else 'es'}"
        if self.converged:
            return (f"equilibrium found after {passes}: no agent can gain more than "
                    f"{100 * self.max_relative_gain:.2f} % by deviating alone (exploitability {self.exploitability:.4f})")
        worst = int(np.argmax(self.residual_gain)) if len(self.agents) else 0
        return (f"NO equilibrium ({self.reason} after {passes}): {self.agents[worst]} can still gain "
                f"{self.residual_gain[worst]:,.0f} EUR ({100 * self.max_relative_gain:.1f} %), bids still changing "
                f"in {len(self.changing_hours)} hours; the profile is the last iterate, not an equilibrium")

    def summary_dict(self) -> dict:
        """JSON-ready summary (the ``evaluate`` layout plus the convergence report)."""
        return {
            "converged": bool(self.converged), "reason": self.reason, "verdict": self.verdict(),
            "passes": int(self.passes), "adoptions": int(self.adoptions), "damping": float(self.damping),
            "hours": int(self.record.n_hours), "mean_price": float(np.mean(self.prices)),
            "exploitability": self.exploitability, "max_relative_gain": self.max_relative_gain,
            "wall_time_s": float(self.wall_time), "changing_hours": [int(h) for h in self.changing_hours],
            "agents": {
                a: {"unit": self.record.units[int(self.record.agent_unit[i])], "kind": self.kinds[i],
                    "profit": float(self.profit[i]),
                    "best_response_profit": float(self.best_response_profit[i]),
                    "share_of_best_response": float(self.certificate.share[i]),
                    "residual_gain": float(self.residual_gain[i]), "tolerance": float(self.tolerance[i])}
                for i, a in enumerate(self.agents)
            },
        }


def equilibrium(
    scenario,
    study_case: str = "base",
    *,
    hours: int | None = None,
    max_bid_price: float | None = None,
    tick: float = 0.01,
    soc_points: int = 201,
    rtol: float = 1e-3,
    atol: float = 1.0,
    max_passes: int = 50,
    min_damping: float = 0.125,
    patience: int = 4,
    warm_ticks: tuple[float, ...] = (),
    seed: int = 0,
    storage_moves: str = "any",
    storage_off_grid: bool = False,
    min_power_rule: str = "partial",
) -> EquilibriumResult:
    """Equilibrium reference of a scenario's learning agents (see the module docstring).

    Args:
        scenario: a :class:`~envs.data.Scenario`, or a name/path for
            :func:`envs.load_scenario` (with ``study_case``).
        hours: episode length from the first hour (default: the whole horizon).
        max_bid_price: action scale (default as the env: ``learning_config.max_bid_price``).
        tick: undercut step of the best responses, EUR/MWh.
        soc_points: state-of-charge grid of the storage best responses.
        rtol, atol: tolerance on each agent's gain (see the module docstring).
        max_passes: passes over all agents before giving up.
        min_damping: smallest share of hours adopted per best response before a detected
            cycle ends the search.
        warm_ticks: coarser ticks run first, in this order, as a warm start (those not
            larger than ``tick`` are skipped; ``()`` for none). Only the last stage, at
            ``tick``, decides convergence; ``max_passes`` applies to each stage.
        patience: passes without progress (the pass's total gain not below 0.9 x the
            best so far) that count as a cycle.
        seed: seeds the choice of hours under damping.
        storage_moves: the storage best responses' moves (see
            :func:`envs.analysis.best_response`): ``"any"`` (default), or ``"full"``, whole-
            volume moves only -- the equilibrium of the game in which every learning storage
            unit trades its whole feasible volume or waits, as the env's storage actions do
            when accepted in full; its certificate measures such deviations only.
        storage_off_grid: the storage best responses also search off the state-of-charge
            grid (see :func:`envs.analysis.best_response`); with ``storage_moves="full"``
            that is the env's storage action exactly (the whole feasible volume at one
            price, accepted in part where it sets the price). Off by default: the grid's
            best responses are about 5 times faster.
        min_power_rule: the env's rule for a plant dispatched below its minimum power
            (:class:`envs.core.MarketCore`): ``"partial"`` (default) or ``"raise"``; the
            best responses are scored under the same rule.

    Returns:
        :class:`EquilibriumResult` -- ``converged`` True with a certificate, or False with
        the reason and the residual gains (never raises for non-convergence; call
        ``.require()`` for that).
    """
    t_start = time.perf_counter()
    if not hasattr(scenario, "plants"):
        from .scenario import load_scenario

        scenario = load_scenario(scenario, study_case)
    if not tick > 0:
        raise ValueError(f"tick must be > 0, got {tick}")
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be >= 0, got {rtol}, {atol}")
    if int(max_passes) < 1:
        raise ValueError(f"max_passes must be >= 1, got {max_passes}")
    if storage_moves not in ("any", "full"):
        raise ValueError(f"storage_moves must be 'any' or 'full', got {storage_moves!r}")
    core = _make_core(scenario, hours, max_bid_price, min_power_rule)
    if core.n == 0:
        raise ValueError(f"scenario {scenario.name!r} has no learning units: nothing to find an equilibrium for")
    rng = np.random.default_rng(seed)
    price, vol = _initial_profile(core)
    record = simulate_profile(core, _actions(core, price), vol, price)
    ticks = [t for t in warm_ticks if t > tick] + [tick]
    history: list[dict] = []
    adoptions = 0
    passes = 0
    changing = np.zeros(0, dtype=np.int64)
    converged, reason = False, "max_passes"
    responses: dict[str, BestResponse] = {}
    damping = 1.0
    for stage, t_stage in enumerate(ticks):
        # coarse ticks first (a warm start: undercutting races move a whole coarse tick
        # per pass), then the requested tick decides convergence
        final = stage == len(ticks) - 1
        kw = dict(tick=t_stage, scenario=scenario, soc_points=soc_points, storage_moves=storage_moves,
                  storage_off_grid=storage_off_grid)
        damping = 1.0
        seen: set[str] = set()
        best_total = np.inf  # smallest total gain of a pass so far (for stagnation)
        since_best = 0
        converged, reason = False, "max_passes"
        for _ in range(int(max_passes)):
            passes += 1
            changed = False
            max_gain = total_gain = 0.0
            responses = {}
            price_before, vol_before = price.copy(), vol.copy()
            for k, a in enumerate(core.agents):
                br = best_response(record, k, **kw)
                rec_p = float(record.agent_profit[:, k].sum())
                gain = br.best_profit - rec_p
                tol = atol + rtol * max(abs(rec_p), abs(br.best_profit))
                max_gain = max(max_gain, gain)
                total_gain += max(gain, 0.0)
                responses[a] = br
                if gain > tol:
                    mask = None
                    if damping < 1.0 and core.agent_kind[k] != "storage":
                        mask = rng.random(record.n_hours) < damping
                        if not mask.any():
                            mask[rng.integers(record.n_hours)] = True
                    _adopt(core, price, vol, k, br, mask, mix=damping)
                    record = simulate_profile(core, _actions(core, price), vol, price)
                    adoptions += 1
                    changed = True
            diff = (price != price_before).any(axis=(1, 2)) | (
                np.abs(np.nan_to_num(vol - vol_before)) > 1e-9).any(axis=1)
            changing = np.flatnonzero(diff)
            history.append({"pass": passes, "tick": t_stage, "max_gain": max_gain, "total_gain": total_gain,
                            "damping": damping, "changed": changed, "hours_changed": int(len(changing))})
            if not changed:
                converged, reason = True, "converged"
                break
            # a cycle: a profile seen before, or no progress (the total gain has not fallen
            # below 0.9 x its best for `patience` passes)
            key = _profile_key(price, vol)
            if total_gain < 0.9 * best_total:
                best_total, since_best = total_gain, 0
            else:
                since_best += 1
            if key in seen or since_best >= patience:
                if damping / 2 < min_damping - 1e-12:
                    reason = "cycle"
                    break
                damping /= 2
                seen.clear()
                best_total, since_best = np.inf, 0
            seen.add(key)
        if final:
            break
    kw = dict(tick=tick, scenario=scenario, soc_points=soc_points, storage_moves=storage_moves,
                  storage_off_grid=storage_off_grid)
    if not converged:
        # residual gains of the last iterate, against its own record
        responses = {a: best_response(record, k, **kw) for k, a in enumerate(core.agents)}
    cert = exploitability_from(record, responses)
    profit = record.agent_profit.sum(axis=0)
    brp = np.array([responses[a].best_profit for a in core.agents])
    tolv = atol + rtol * np.maximum(np.abs(profit), np.abs(brp))
    return EquilibriumResult(
        converged=converged, reason=reason, agents=tuple(core.agents), kinds=tuple(core.agent_kind),
        passes=passes, adoptions=adoptions, damping=damping, record=record, actions=_actions(core, price),
        bid_prices=price, storage_volume=vol,
        prices=record.clearing_price.copy(), profit=profit, best_response_profit=brp, residual_gain=brp - profit,
        tolerance=tolv, certificate=cert, wall_time=time.perf_counter() - t_start, history=history,
        changing_hours=np.asarray(record.hours)[changing] if not converged else np.zeros(0, dtype=np.int64),
    )


# ---------------------------------------------------------------------------- distance
@dataclass(frozen=True)
class EquilibriumDistance:
    """How far a recorded episode is from an equilibrium reference (same hours)."""

    mean_price_difference: float  # EUR/MWh: mean(record price) - mean(equilibrium price)
    price_rmse: float  # EUR/MWh: root mean square of the hourly price differences
    price_mae: float  # EUR/MWh: mean absolute hourly price difference
    agents: tuple[str, ...]
    profit: np.ndarray  # (n,) EUR in the record
    equilibrium_profit: np.ndarray  # (n,) EUR at the equilibrium
    profit_ratio: np.ndarray  # (n,) profit / equilibrium profit (nan when the latter is <= 0)
    equilibrium_converged: bool

    def as_dict(self) -> dict:
        return {
            "mean_price_difference": self.mean_price_difference, "price_rmse": self.price_rmse,
            "price_mae": self.price_mae, "equilibrium_converged": self.equilibrium_converged,
            "agents": {a: {"profit": float(self.profit[i]), "equilibrium_profit": float(self.equilibrium_profit[i]),
                           "profit_ratio": float(self.profit_ratio[i])} for i, a in enumerate(self.agents)},
        }


def distance_to_equilibrium(record: EpisodeRecord, eq: EquilibriumResult) -> EquilibriumDistance:
    """Distance of a (learned) episode ``record`` to the equilibrium ``eq``: mean price
    difference, hourly price RMSE and MAE, and each agent's profit next to its
    equilibrium profit. The record must cover the same hours and agents as ``eq``."""
    ref = eq.record
    if record.n_hours != ref.n_hours or not np.array_equal(np.asarray(record.hours), np.asarray(ref.hours)):
        raise ValueError(
            f"the record covers hours {_span(record)} but the equilibrium covers {_span(ref)}: compute the "
            "equilibrium for the same episode (equilibrium(..., hours=record.n_hours)) or evaluate the whole horizon"
        )
    if tuple(record.agents) != tuple(eq.agents):
        raise ValueError(f"the record's agents {list(record.agents)} differ from the equilibrium's {list(eq.agents)}")
    d = np.asarray(record.clearing_price, float) - np.asarray(eq.prices, float)
    prof = record.agent_profit.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(eq.profit > 1e-9, prof / np.where(eq.profit > 1e-9, eq.profit, 1.0), np.nan)
    return EquilibriumDistance(
        mean_price_difference=float(d.mean()), price_rmse=float(np.sqrt(np.mean(d ** 2))),
        price_mae=float(np.mean(np.abs(d))), agents=tuple(eq.agents), profit=prof,
        equilibrium_profit=np.asarray(eq.profit, float), profit_ratio=ratio, equilibrium_converged=eq.converged,
    )


def _span(rec: EpisodeRecord) -> str:
    h = np.asarray(rec.hours)
    return f"{int(h[0])}..{int(h[-1])} ({len(h)} h)" if len(h) else "none"


def _equilibrium_in_process(conn, scenario, kwargs: dict) -> None:
    """Target of a separate process (``agents.reference.PendingEquilibrium``): compute
    :func:`equilibrium` and send ``("ok", result)``, ``("value_error", message)`` or
    ``("error", message)`` through the pipe end ``conn``. Lives here, not in ``agents``,
    so that the process imports NumPy only, not torch. It starts with Ctrl-C ignored
    (:func:`agents.reference.start_process`): the parent stops it.

    It runs at the lowest CPU priority (``nice`` 19, where the system has it): it fills
    the time the training run leaves a core idle and never slows the run's own work (the
    trainer, its analysis worker and its search helper), which the final summary waits
    for first anyway."""
    try:
        os.nice(19)
    except (AttributeError, OSError):  # no nice (Windows) or not allowed: as it is
        pass
    try:
        msg = ("ok", equilibrium(scenario, **kwargs))
    except ValueError as exc:
        msg = ("value_error", str(exc))
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, which computes it itself
        msg = ("error", f"{type(exc).__name__}: {exc}")
    try:
        conn.send(msg)
    finally:
        conn.close()
