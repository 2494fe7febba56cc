"""Evaluation: one deterministic episode, its result, its tables and the run summary.

* :func:`evaluation_episode` -- a deterministic episode on copy 0 of a market core as a
  generator that takes the actions (the plain loop feeds the learner's, the mango
  runtime the unit agents' bids); :func:`run_episode` drives it; :class:`EvalResult`;
* :func:`market_frame` / :func:`orders_frame` / :func:`write_market_csvs` -- the
  ``market.csv`` and ``orders.csv`` tables (DESIGN.md format);
* :func:`run_summary` / :func:`print_run_summary` / :func:`write_json_atomic` -- the
  ``summary.json`` of a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from envs.record import EpisodeRecord

if TYPE_CHECKING:
    from envs import MarketCore, Scenario


@dataclass
class EvalResult:
    """One deterministic evaluation episode (copy 0 of the market)."""

    reward: float  # mean reward per agent and hour
    profit: float  # EUR, all agents together
    regret: float  # EUR, all agents together
    mean_price: float  # EUR/MWh
    agent_profit: np.ndarray  # (n,) EUR
    agent_reward: np.ndarray  # (n,)
    markup: float  # mean (bid price - marginal cost) of the plants' accepted-or-not bids, EUR/MWh
    dispatch: np.ndarray  # (n,) MWh over the episode
    br_profit: np.ndarray | None = None  # (n,) EUR best-response profit
    br_share: np.ndarray | None = None  # (n,) profit / best-response profit
    exploitability: float | None = None
    prices: np.ndarray | None = None  # (H,) clearing prices
    bids: np.ndarray | None = None  # (H, n, 2) EUR/MWh
    marginal_cost: np.ndarray | None = None  # (H, n)
    record: Any = None
    analysis_result: Any = None  # envs.analysis.Exploitability of the episode (with the analysis)

    def metrics(self) -> dict[str, float]:
        out = {
            "reward": self.reward, "profit": self.profit, "regret": self.regret, "mean_price": self.mean_price,
            "markup": self.markup,
        }
        if self.br_share is not None:
            # all agents together: total profit / total best-response profit (a mean of
            # per-agent ratios explodes when one agent's best response is near zero)
            total_br = float(np.sum(self.br_profit))
            out["br_share"] = float(np.sum(self.agent_profit)) / total_br if total_br > 0 else float("nan")
            out["exploitability"] = float(self.exploitability)
            # EUR the learners could gain together by each deviating alone to its best response
            out["gain"] = float(np.sum(np.asarray(self.br_profit) - np.asarray(self.agent_profit)))
        return out


def evaluation_episode(core: MarketCore, scenario: Scenario, *, seed: int, analysis: bool, exploitability_fn=None):
    """One deterministic evaluation episode on copy 0 of ``core``, as a generator.

    It yields the observations ``(B, n, obs_dim)`` of every hour and takes the actions
    ``(B, n, max_act)`` for them through ``send()``; its return value (``StopIteration.value``,
    see :func:`run_episode`) is the :class:`EvalResult`. :meth:`agents.learner.Learner.evaluate`
    feeds it the learner's deterministic actions, the mango runtime the unit agents' bids.
    ``exploitability_fn(record, scenario)`` replaces :func:`envs.analysis.exploitability`
    (same result), e.g. :meth:`agents.analysis_pool.AnalysisPool.exploitability`.
    """
    obs = core.reset(np.random.default_rng(seed))
    n, H = core.n, core.max_cycles
    rewards = np.zeros((H, n))
    profit = np.zeros((H, n))
    regret = np.zeros((H, n))
    prices = np.zeros(H)
    bids = np.zeros((H, n, 2))
    mc = np.zeros((H, n))
    dispatch = np.zeros(n)
    h = 0
    sc = scenario
    while not core.done:
        t = core.hour
        a = yield obs
        out, obs = core.step_observe(a)
        rewards[h], profit[h], regret[h] = out.reward[0], out.profit[0], out.regret[0]
        prices[h] = out.price[0]
        bids[h] = out.bid_price[0]
        if len(core.lp):
            mc[h, core.sl_plant] = sc.plants.marginal_cost[t, core.lp]
        if len(core.lr):
            mc[h, core.sl_ren] = sc.renewables.marginal_cost[core.lr]
        dispatch += np.abs(out.accepted[0])
        h += 1
    plants = [i for i, k in enumerate(core.agent_kind) if k == "plant"]
    markup = float(np.mean(bids[:, plants, 1] - mc[:, plants])) if plants else float("nan")
    res = EvalResult(
        reward=float(rewards.mean()), profit=float(profit.sum()), regret=float(regret.sum()),
        mean_price=float(prices.mean()), agent_profit=profit.sum(axis=0), agent_reward=rewards.mean(axis=0),
        markup=markup, dispatch=dispatch, prices=prices, bids=bids, marginal_cost=mc,
    )
    rec = core.episode_record(0)
    res.record = rec
    if analysis:
        try:
            from envs.analysis import exploitability
        except ImportError:  # analysis module not available
            return res
        if getattr(scenario, "network", None) is not None:  # zonal/nodal market: re-clear on the network
            from envs.network import network_exploitability

            ex = network_exploitability(rec, scenario)
        elif exploitability_fn is not None:
            ex = exploitability_fn(rec, scenario)
        else:
            ex = exploitability(rec, scenario=scenario)  # exact storage and start-up best responses
        res.br_profit = np.asarray(ex.best_response_profit, dtype=float)
        res.br_share = np.asarray(ex.share, dtype=float)
        res.exploitability = float(ex.joint)
        res.analysis_result = ex
    return res


def run_episode(episode, act) -> Any:
    """Drive an episode generator such as :func:`evaluation_episode` with ``act(obs) ->
    actions``; returns the generator's return value."""
    try:
        obs = next(episode)
        while True:
            obs = episode.send(act(obs))
    except StopIteration as stop:
        return stop.value


def market_frame(record: EpisodeRecord) -> pd.DataFrame:
    """Per hour: ``time, clearing_price, demand, supply_volume`` (MW)."""
    return pd.DataFrame(
        {
            "time": pd.to_datetime(record.times),
            "clearing_price": record.clearing_price,
            "demand": record.fixed_demand + record.demand_accepted.sum(axis=1),
            "supply_volume": record.supply_accepted.sum(axis=1),
        }
    )


def orders_frame(record: EpisodeRecord) -> pd.DataFrame:
    """One row per bid and hour: ``time, unit, price, volume, accepted_volume,
    clearing_price, marginal_cost``; demand volumes are negative. Zero-volume bids are
    left out."""
    H = record.n_hours
    units = np.asarray(record.units, dtype=object)
    parts = []
    for price, vol, acc, cost, owner, sign in (
        (record.supply_price, record.supply_volume, record.supply_accepted, record.supply_cost, record.supply_unit, 1.0),
        (record.demand_price, record.demand_volume, record.demand_accepted, record.demand_cost, record.demand_unit, -1.0),
    ):
        nb = price.shape[1]
        if nb == 0:
            continue
        parts.append(pd.DataFrame({
            "time": np.repeat(pd.to_datetime(record.times).values, nb),
            "unit": np.tile(units[owner], H),
            "price": price.reshape(-1),
            "volume": sign * vol.reshape(-1),
            "accepted_volume": sign * acc.reshape(-1),
            "clearing_price": np.repeat(record.clearing_price, nb),
            "marginal_cost": cost.reshape(-1),
        }))
    # inelastic demand at the cap
    parts.append(pd.DataFrame({
        "time": pd.to_datetime(record.times), "unit": "demand", "price": record.price_cap,
        "volume": -record.fixed_demand,
        "accepted_volume": -(record.supply_accepted.sum(axis=1) - record.demand_accepted.sum(axis=1)),
        "clearing_price": record.clearing_price, "marginal_cost": np.nan,
    }))
    df = pd.concat(parts, ignore_index=True)
    df = df[df["volume"] != 0].sort_values(["time", "unit"], kind="stable").reset_index(drop=True)
    return df


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value):
    """``value`` with a leading ``'`` when it is text that a spreadsheet would run as a
    formula (starts with ``= + - @``, tab or carriage return); other values unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names are :func:`neutralise_cell`-ed
    (numbers untouched: a negative volume stays a number), against CSV formula injection
    through unit names."""
    out = df.rename(columns=neutralise_cell)
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise_cell)
    return out


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    neutralise_frame(df).to_csv(tmp, index=False)
    os.replace(tmp, path)


def write_market_csvs(out: str | os.PathLike, record: EpisodeRecord, scenario=None) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m, o = out / "market.csv", out / "orders.csv"
    _atomic_csv(market_frame(record), m)
    _atomic_csv(orders_frame(record), o)
    return m, o


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as standard JSON (non-finite numbers become ``null``), atomically
    (:func:`agents.jsonio.write_json_strict`)."""
    from .jsonio import write_json_strict

    write_json_strict(path, obj)


def full_moves_best_responses(scenario: Scenario, core: MarketCore, ev: EvalResult) -> dict[str, float]:
    """Each storage agent's best-response profit restricted to whole-volume bids
    (``envs.analysis.best_response(..., storage_moves="full")``, searched off the
    state-of-charge grid): the best the env's storage action (the whole feasible volume
    at one price, accepted in part where it sets the price) can do against the same bids,
    beside the any-volume best response that may also withhold. Empty without storage
    learners, without an analysed record, or in a zonal/nodal market."""
    rec = ev.record
    if rec is None or ev.br_profit is None or getattr(scenario, "network", None) is not None:
        return {}
    from envs.analysis import best_response

    return {a: float(best_response(rec, a, scenario=scenario, storage_moves="full").best_profit)
            for a, kind in zip(core.agents, core.agent_kind) if kind == "storage"}


def grid_best_responses(core: MarketCore, ev: EvalResult, *, undercut_learners: bool = False) -> dict[str, float]:
    """Where ``core`` reads plant offers on its grid (``plant_bids="undercut"``): each
    plant agent's best-response profit restricted to the prices the grid produces
    (``envs.analysis.best_response(..., plant_prices=core.plant_grid(i)[0])``: the grid
    of :meth:`envs.MarketCore.undercut`, with ``tie_below_cost`` where the env has it), i.e. the best its
    actions can do against the same bids. The gap to the unrestricted best response is
    gain no action of the env can take (e.g. one tick under another learner). Empty for
    free plant bids, without an analysed record, or in a zonal/nodal market. With a
    ``start_up_markup_hours`` a plant's offers after an hour without dispatch are raised
    to its floor first (``cold_prices``), as the env raises them. As for any best
    response, the others' bids are held as recorded; under a markup they would in fact
    move where the plant's deviation changes whether another plant ran the hour before.

    ``undercut_learners``: the grid widened by the prices up to a tick under another
    learner's offer (:func:`envs.analysis.undercut_learners_map`): the part of the gap
    that is the Bertrand-Edgeworth race between learners at (or next to) the same price."""
    rec = ev.record
    if (rec is None or ev.br_profit is None or getattr(core, "plant_bids", "free") != "undercut"
            or getattr(core.scenario, "network", None) is not None):
        return {}
    from envs.analysis import best_response, cold_offer_map, undercut_learners_map

    out = {}
    for i, (a, kind) in enumerate(zip(core.agents, core.agent_kind)):
        if kind != "plant":
            continue
        grid = core.plant_grid(i)[0]  # the env's grid for this plant's offers
        prices = undercut_learners_map(rec, i, grid) if undercut_learners else grid
        out[a] = float(best_response(rec, a, plant_prices=prices,
                                     cold_prices=cold_offer_map(core, i, prices)).best_profit)
    return out


def plant_gain_split(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    """Each learning plant's gain (best-response profit − profit, EUR) split by the prices
    its best response needs, from summary rows with both grid figures: (within the env's
    grid, a tick under another learner's offer, other prices off the grid). Empty for
    rows without them (free plant bids, storage, no analysis)."""
    return {a: (r["grid_best_response_profit"] - r["profit"],
                r["undercut_learners_best_response_profit"] - r["grid_best_response_profit"],
                r["best_response_profit"] - r["undercut_learners_best_response_profit"])
            for a, r in rows.items()
            if "grid_best_response_profit" in r and "undercut_learners_best_response_profit" in r}


def off_grid_line(rows: dict[str, dict[str, Any]]) -> str | None:
    """One line splitting the learning plants' total gain (best-response profit − profit)
    by the prices it needs (:func:`plant_gain_split`): within the env's grid, a tick under
    another learner's offer, other prices off the grid; ``None`` without the grid figures."""
    split = plant_gain_split(rows)
    if not split:
        return None
    parts = np.sum(list(split.values()), axis=0)
    total = parts.sum()
    return (f"the learning plants could gain {total:,.0f} EUR: {parts[0]:,.0f} within the env's offer grid "
            f"(training's shortfall), {parts[1]:,.0f} a tick under another learner's offer (the race between "
            f"learners at a shared price, which no fixed grid offers both), {parts[2]:,.0f} at other prices "
            "off the grid (ties with or just above a rule offer)")


def _agent_rows(scenario: Scenario, core: MarketCore, ev: EvalResult, *, dispatch: bool) -> dict[str, dict[str, Any]]:
    """Per agent: unit, kind, profit (and dispatch), best-response profit and share when
    the analysis ran, for storage the full-move best-response profit and for plants on
    the env's grid the best-response profit within the grid."""
    full = full_moves_best_responses(scenario, core, ev)
    grid = grid_best_responses(core, ev)
    under = grid_best_responses(core, ev, undercut_learners=True) if grid else {}
    on_off = on_off_rows(ev)
    by_hours = gain_by_hours_rows(ev)
    agents = {}
    for i, a in enumerate(core.agents):
        row = {"unit": core.agent_unit[i], "kind": core.agent_kind[i], "profit": float(ev.agent_profit[i])}
        if dispatch:
            row["dispatch_mwh"] = float(ev.dispatch[i])
        if ev.br_profit is not None:
            row["best_response_profit"] = float(ev.br_profit[i])
            row["share_of_best_response"] = float(ev.br_share[i])
        if a in full:
            row["full_moves_best_response_profit"] = full[a]
        if a in grid:
            row["grid_best_response_profit"] = grid[a]
        if a in under:
            row["undercut_learners_best_response_profit"] = under[a]
        if a in on_off:
            row["on_off"] = on_off[a]
        if a in by_hours:
            row["gain_by_hours"] = by_hours[a]
        agents[a] = row
    return agents


def run_summary(scenario: Scenario, core: MarketCore, ev: EvalResult, *, episodes: int, wall_time: float,
                stopped_early: bool, best: dict[str, float]) -> dict[str, Any]:
    """The JSON summary of a run: the final evaluation, per agent with its best response."""
    agents = _agent_rows(scenario, core, ev, dispatch=True)
    out = {
        "scenario": scenario.name, "study_case": scenario.study_case,
        "episodes": int(episodes), "wall_time_s": round(float(wall_time), 2), "stopped_early": bool(stopped_early),
        "best": dict(best), "evaluation": ev.metrics(), "agents": agents,
    }
    out.update(_readings(core))
    return out


def _readings(core: MarketCore) -> dict[str, Any]:
    """How the evaluated policy's bids were read where that is not the env's plain reading
    (a start-up markup, ties below cost, the learners' costs on the grid), for a summary."""
    out: dict[str, Any] = {}
    if getattr(core, "start_up_markup_hours", 0.0):  # the policy bids with a start-up markup
        out["start_up_markup_hours"] = float(core.start_up_markup_hours)
    for key in ("tie_below_cost", "grid_learner_costs"):
        if getattr(core, key, False) and getattr(core, "plant_bids", "free") == "undercut":
            out[key] = True
    return out


def evaluation_summary(scenario: Scenario, core: MarketCore, ev: EvalResult, *, policy: str | None = None) -> dict[str, Any]:
    """The JSON summary of one evaluation (``train.py evaluate``, ``learning_mode: false``):
    scenario, hours, the metrics and each agent's profit with its best response."""
    out: dict[str, Any] = {"policy": policy, "scenario": scenario.name, "study_case": scenario.study_case,
                           "hours": int(ev.record.n_hours) if ev.record is not None else None,
                           "evaluation": ev.metrics(), "agents": {}}
    out["agents"] = _agent_rows(scenario, core, ev, dispatch=False)
    out.update(_readings(core))
    return out


def _responses(ev: EvalResult) -> dict:
    """The per-agent best responses of an evaluation's analysis, by agent name; empty
    without a record or an analysis that keeps them (e.g. zonal/nodal markets)."""
    responses = getattr(getattr(ev, "analysis_result", None), "responses", None)
    return responses if ev.record is not None and responses else {}


def on_off_rows(ev: EvalResult) -> dict[str, dict[str, float]]:
    """:func:`envs.analysis.on_off_comparisons` of an evaluation: the plants with
    start-up costs, by agent name; empty without the analysis."""
    from envs.analysis import on_off_comparisons

    responses = _responses(ev)
    return on_off_comparisons(ev.record, responses) if responses else {}


def gain_by_hours_rows(ev: EvalResult) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`envs.analysis.gain_by_hours` of every analysed agent of an evaluation that
    has one, by agent name; empty without the analysis."""
    from envs.analysis import gain_by_hours

    out = {a: gain_by_hours(ev.record, br) for a, br in _responses(ev).items()}
    return {a: o for a, o in out.items() if o is not None}


def on_off_line(o: dict[str, Any]) -> str:
    """One line of :func:`envs.analysis.on_off_comparison`: "runs 132 h with 13 starts;
    its best response runs 300 h with 2 starts (20,000 EUR a start)"."""
    def runs(h, n):
        return f"runs {h:g} h with {n} start{'' if n == 1 else 's'}"

    return (f"{runs(o['hours_on'], o['starts'])}; its best response {runs(o['best_response_hours_on'], o['best_response_starts'])}"
            f" ({o['start_up_cost']:,.0f} EUR a start)")


def print_run_summary(s: dict[str, Any]) -> None:
    """Print :func:`run_summary` as a short table."""
    e = s["evaluation"]
    print(f"\n== {s['scenario']} [{s['study_case']}]: {s['episodes']} episodes in {s['wall_time_s']:.1f} s ==")
    print(f"evaluation ({s.get('evaluated_policy', 'best policy')}):\n  mean price {e['mean_price']:.2f} EUR/MWh, total profit {e['profit']:,.0f} EUR, "
          f"mean reward {e['reward']:.4f}" + (f", exploitability {e['exploitability']:.3f}" if "exploitability" in e else ""))
    for a, r in s["agents"].items():
        br = f"  best response {r['best_response_profit']:>14,.0f} EUR  share {r['share_of_best_response']:.3f}" if "best_response_profit" in r else ""
        eq = f"  equilibrium {r['equilibrium_profit']:>14,.0f} EUR" if "equilibrium_profit" in r else ""
        print(f"  {a:<30s} profit {r['profit']:>14,.0f} EUR{br}{eq}")
        if "full_moves_best_response_profit" in r:
            print(f"  {'':<30s} {'':>26s}  full-volume moves {r['full_moves_best_response_profit']:>10,.0f} EUR "
                  "(best response bidding the whole volume, as the env's storage action does)")
        if "grid_best_response_profit" in r:
            print(f"  {'':<30s} {'':>26s}  on the env's grid {r['grid_best_response_profit']:>10,.0f} EUR "
                  "(best response within the offer prices its actions can bid, plant_bids: undercut"
                  + "".join(note for k, note in (("start_up_markup_hours", "; a cold plant's offers marked up"),
                                                 ("tie_below_cost", "; ties with rule offers below its cost"),
                                                 ("grid_learner_costs", "; the learners' costs on the grid"))
                            if s.get(k)) + ")")
        if "undercut_learners_best_response_profit" in r:
            print(f"  {'':<30s} {'':>26s}  + a tick under others {r['undercut_learners_best_response_profit']:>7,.0f} EUR "
                  "(the grid, or a tick under another learner's offer)")
        if "on_off" in r:
            print(f"  {'':<30s} {on_off_line(r['on_off'])}")
        if "gain_by_hours" in r:
            from envs.analysis import gain_by_hours_line

            print(f"  {'':<30s} {gain_by_hours_line(r['gain_by_hours'])}")
    line = off_grid_line(s["agents"])
    if line:
        print(f"  ({line})")
    if s.get("equilibrium_teacher"):
        report = str(s["equilibrium_teacher"]).removeprefix("equilibrium teacher: ")
        print(f"  (trained with the equilibrium teacher: {report})")
    if s.get("stay_out"):
        print(f"  ({str(s['stay_out']).removeprefix('stay_out_fallback: ')})")
    if s.get("start_up_markup"):
        print(f"  ({str(s['start_up_markup']).removeprefix('start_up_markup_fallback: ')})")
    if s.get("tie_below_cost_fallback"):
        print(f"  ({str(s['tie_below_cost_fallback']).removeprefix('tie_below_cost_fallback: ')})")
    if s.get("actor_mix_fallback"):
        print(f"  ({str(s['actor_mix_fallback']).removeprefix('actor_mix_fallback: ')})")
    from .reference import print_reference

    print_reference(s)
