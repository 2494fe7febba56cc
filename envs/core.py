"""The market core: unit logic and state for ``B`` copies of one scenario, as arrays.

:class:`MarketCore` is shared by the PettingZoo :class:`~envs.parallel.MarketParallelEnv`
(``B == 1``) and :class:`~envs.vector.VectorMarketEnv` (``B >= 1``), so both give the
same outcomes for the same actions. It knows nothing about PettingZoo, torch or mango.

Per hour, every unit that does not learn (rule-bidding plants and renewables, inelastic
demand) submits bids that do not depend on anyone's actions; their sorted supply curve is
computed once when the core is built. Only the learners' bids and the rule-based storage
bids are assembled per step ("dynamic" bids), then cleared together with that curve by
:func:`envs.market.clear_market`. All copies of a vector env are at the same hour.

Dynamic bid layout (columns of the ``(B, K)`` supply and ``(B, L)`` demand arrays):

* supply: learning plants' inflexible part (``min_power``), learning plants' flexible part
  (``max_power - min_power``), learning renewables, every storage unit's discharge offer;
* demand: every storage unit's charge bid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Scenario
from .fast import STORAGE_BEHIND_TICK, UNDERCUT_TICK
from .market import ClearingResult, clear_market

KINDS = ("plant", "storage", "renewable")
ACT_DIMS = {"plant": 2, "storage": 1, "renewable": 1}
STORAGE_BIDS = ("signed", "two_sided")
"""Storage action encodings: ``"signed"`` (ASSUME's: one price whose sign is the direction)
and ``"two_sided"`` (a charge bid and a discharge offer in the same hour, 2 action
entries); both bid the whole volume the hour allows."""
PLANT_BIDS = ("free", "undercut")
"""How a learning plant's prices are read: as given, or raised to just below the next
rule-bidding offer (:meth:`MarketCore.undercut`)."""
STORAGE_PRICES = ("free", "undercut", "behind")
# how a learning plant dispatched below its minimum power is paid and charged
MIN_POWER_RULES = ("partial", "raise")
"""How a two-sided learning storage unit's prices are read: as given, or the offer raised
to just below the next rule-bidding offer and the bid lowered to just above the rule
offer below it (:meth:`MarketCore.undercut`, :meth:`MarketCore.outbid`); ``"behind"``
as ``"undercut"`` with the offer :data:`STORAGE_BEHIND_TICK` below the rule offer, behind
the learning plants on their grid."""
# agent-id prefix of plants bidding one price for all their capacity
# (powerplant_energy_learning_single_bid): their kind is "plant", but their action has one
# dimension, so they get their own id prefix (agents sharing a prefix share their spaces)
SINGLE_BID_PREFIX = "plantsingle"
UNIQUE_OBS_LEN = 2
OBS_SCALE_FLOOR = 0.05  # MarketCore.observation_scaling: smallest scale of a feature


def agent_name(kind: str, unit: str) -> str:
    """Agent id of a learning unit: ``<kind>_<unit>`` with ``_`` and spaces in the unit
    name replaced by ``-``, so the part before the last ``_`` is exactly the kind (AgileRL
    and TorchRL group agents by that prefix; all agents of a kind share their spaces)."""
    return f"{kind}_{unit.replace('_', '-').replace(' ', '-')}"


@dataclass
class StepOutcome:
    """What one step of the core produced (arrays over the ``B`` copies)."""

    price: np.ndarray  # (B,) clearing price EUR/MWh
    profit: np.ndarray  # (B, n) EUR in this hour
    regret: np.ndarray  # (B, n) EUR opportunity cost
    reward: np.ndarray  # (B, n) scaled reward
    accepted: np.ndarray  # (B, n) MW; + sold, - bought
    bid_price: np.ndarray  # (B, n, 2) EUR/MWh bid prices (one-price units: both equal; no bid: 0)
    volume: np.ndarray  # (B,) traded MW
    demand: np.ndarray  # (B,) fixed demand MW
    scarcity: np.ndarray  # (B,) bool
    clearing: ClearingResult
    node_price: np.ndarray | None = None  # (B, Z) zonal/nodal markets: price per zone/bus; else None


class MarketCore:
    """``B`` synchronised copies of one scenario's market.

    Args:
        scenario: the loaded :class:`~envs.data.Scenario`.
        num_envs: number of copies ``B``.
        max_bid_price: action scale in EUR/MWh (default: the scenario's
            ``learning_config.max_bid_price``, else 100).
        foresight: hours of forecast / price history in the observation.
        regret_scale: weight of the opportunity-cost term subtracted from the reward.
        reward_scale: reward = (profit - regret_scale * regret) / (capacity *
            max_bid_price) * reward_scale.
        max_cycles: episode length in hours (default: the whole horizon, or the whole
            window with ``holdout_hours``).
        start: ``"begin"`` (episodes start at the first hour) or ``"random"`` (a start
            hour drawn from the reset generator so that the episode fits the horizon).
        episode_hours: the same as ``max_cycles`` (the name :func:`envs.parallel_env`
            documents); give one of the two.
        random_start: ``True`` is ``start="random"``.
        demand_noise, availability_noise: standard deviations of seeded multiplicative
            noise, drawn anew at every reset for every hour of the episode: demand
            volumes and renewables' availability are multiplied by log-normal factors
            with mean 1 (availability clipped to [0, 1]). Forecasts in the observation
            stay those of the noise-free data. 0 (default) draws nothing.
        holdout_hours: hold the last ``holdout_hours`` hours of the horizon out of
            training episodes (they start and end before it).
        eval_window: with ``holdout_hours``, run episodes on the held-out hours instead
            (default length: all of them).

    With the defaults no random number is drawn at reset, so every episode is the same
    window as before these options existed.

        learning_units: names of rule units that learn too (see
            :func:`envs.scenario.with_learning_units`); unknown names raise.
        storage_bids: how a learning storage unit bids (both for the whole volume the
            hour allows). ``"signed"`` (default, ASSUME's): one action entry ``a``, an
            offer to discharge at ``a * max_bid_price`` when ``a >= 0``, else a bid to
            charge at ``|a| * max_bid_price``. ``"two_sided"``: two entries, a charge bid
            at ``(min(a0, a1) + 1) / 2 * max_bid_price`` and a discharge offer at
            ``(max(a0, a1) + 1) / 2 * max_bid_price`` in the same hour: the unit charges
            when the price clears at or below the first, discharges at or above the
            second and waits in between, so "wait" lies between "charge" and
            "discharge" for a policy (with ``"signed"``, every switch of direction
            passes through "discharge at any price").
        plant_bids: how a learning plant's two offer prices are read. ``"free"``
            (default): as the actions say. ``"undercut"``: each price ``p`` is raised to
            :data:`UNDERCUT_TICK` below the cheapest offer of the rule-bidding units
            (plants at marginal cost, renewables, imports) priced at or above ``p`` in
            that hour, when that stays within ``max_bid_price``; a price above every
            such offer (or where the next one lies above ``max_bid_price``) is kept.
            The plant then chooses which rule offer to stay under (the price just below
            another unit's offer is where a best response usually sits, and a policy
            gradient cannot find it from the flat side), not a price to the cent.
            Other learners' offers are not on the grid (their costs are, with
            ``grid_learner_costs``). The exact analysis still scores
            best responses over all prices.
        storage_prices: the same for a learning storage unit that bids two-sided.
            ``"free"`` (default): as the actions say. ``"undercut"``: its discharge offer
            is raised as a plant's price is, and its charge bid is moved to
            :data:`UNDERCUT_TICK` above the dearest rule-bidding offer at or below it
            (kept where there is none or that would be negative), never above the
            discharge offer. The charge bid is then matched with the same rule offers
            and, where it sets the price, pays less. Signed storage bids are not moved.
            ``"behind"``: as ``"undercut"``, but the offer is raised to
            :data:`STORAGE_BEHIND_TICK` (half a tick) below the rule offer, so that a
            learning plant on its grid (``plant_bids="undercut"``) that stays under the
            same rule offer is dispatched first and the storage unit takes what is left
            before the rule offer. Without it the two would tie and split the volume,
            and each could gain by undercutting the other by a tick, which neither grid
            can bid.
        start_up_markup_hours: a learning plant with a start-up cost that was not
            dispatched in the previous hour offers both its parts at no less than its
            marginal cost plus its start-up cost spread over this many hours at its
            minimum power (its maximum power where the minimum is 0), as heuristic
            bidders mark up a cold unit's offer (ASSUME's flexABLE strategies do so
            with the start-up cost). A start then pays for itself within about that many
            hours, and the plant can no longer start for a sliver of volume at a price
            just above its cost. Applied before ``plant_bids`` moves the prices; ``0``
            (default) leaves the offers as the actions say. The exact analysis still
            scores best responses over all prices. These are hours of time (energy =
            minimum power x hours), also with a sub-hourly ``time_step``.
        min_power_rule: what a learning plant dispatched for less than its minimum power
            (part of its inflexible offer, at a shared or a marginal price) produces.
            ``"partial"`` (default): what was accepted, at its marginal cost, and it
            counts as running. ``"raise"``: its minimum power (within its availability),
            as ASSUME raises a dispatched unit to its minimum output: it is paid for the
            accepted part only and pays the marginal cost of the whole output, so a
            sliver of volume no longer keeps it running cheaply. The record carries the
            rule (``EpisodeRecord.agent_min_output``) and the exact analysis scores every
            best response under it.
        cost_snap: EUR/MWh. A learning plant's offer price (each of its two) or a learning
            renewable's that lies within this distance of the unit's marginal cost in that
            hour is read as exactly that cost, before ``start_up_markup_hours`` and
            ``plant_bids`` move it. An actor's output is continuous and never lands on a
            price to the cent, while a market where learners compete at cost has its
            equilibrium exactly there: a bid a little below cost loses on every MWh it
            sets the price for, a little above it lets a rival undercut. ``0`` (default)
            reads prices as the actions say.
        tie_below_cost: with ``plant_bids="undercut"`` only. A learning plant's offer price
            that the grid would put a tick under a rule offer priced below the plant's
            marginal cost in that hour is placed at that rule offer's own price instead:
            it ties with the rule unit and the two split the volume at that price pro
            rata. An offer there sells at a loss, which a plant does only to stay on (its
            minimum power) or by mistake; at the tie it sells the least volume that
            keeps it running. ``False`` (default): a tick under, as for every other price.
            Other learners' costs on the grid (``grid_learner_costs``) are not rule offers:
            an offer goes a tick under them.
        grid_learner_costs: with ``plant_bids="undercut"`` or ``storage_prices``
            "undercut"/"behind". The grid's ladder holds, besides the rule offers, every
            learning plant's marginal cost in that hour, so an offer can go a tick under a
            rival learner's cost: the limit price of price competition, which the rival
            cannot undercut without selling at a loss (on a grid of rule offers only, two
            learners that compete for the same volume meet a tick under the same rule
            offer, tie, and each could take all of it a tick lower). ``False``
            (default): the rule offers only.

    With a sub-hourly ``time_step`` every "hour" above is one time step (``foresight``
    and ``max_cycles`` count steps), volumes stay MW, and profit, regret and reward of a
    step are energy x price: MW x EUR/MWh x ``scenario.time_step_hours``.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        num_envs: int = 1,
        max_bid_price: float | None = None,
        foresight: int = 12,
        regret_scale: float = 0.0,
        reward_scale: float = 10.0,
        max_cycles: int | None = None,
        start: str = "begin",
        episode_hours: int | None = None,
        random_start: bool = False,
        demand_noise: float = 0.0,
        availability_noise: float = 0.0,
        holdout_hours: int | None = None,
        eval_window: bool = False,
        learning_units=None,
        storage_bids: str = "signed",
        plant_bids: str = "free",
        storage_prices: str = "free",
        start_up_markup_hours: float = 0.0,
        min_power_rule: str = "partial",
        cost_snap: float = 0.0,
        tie_below_cost: bool = False,
        grid_learner_costs: bool = False,
    ):
        if storage_bids not in STORAGE_BIDS:
            raise ValueError(f"storage_bids must be one of {STORAGE_BIDS}, got {storage_bids!r}")
        if plant_bids not in PLANT_BIDS:
            raise ValueError(f"plant_bids must be one of {PLANT_BIDS}, got {plant_bids!r}")
        if storage_prices not in STORAGE_PRICES:
            raise ValueError(f"storage_prices must be one of {STORAGE_PRICES}, got {storage_prices!r}")
        if min_power_rule not in MIN_POWER_RULES:
            raise ValueError(f"min_power_rule must be one of {MIN_POWER_RULES}, got {min_power_rule!r}")
        self.min_power_rule = str(min_power_rule)
        try:
            cs = float(cost_snap)
        except (TypeError, ValueError):
            cs = float("nan")
        if not (np.isfinite(cs) and cs >= 0.0):
            raise ValueError(f"cost_snap must be a number of EUR/MWh >= 0 (0: prices as the actions say), "
                             f"got {cost_snap!r}")
        self.cost_snap = cs
        if not isinstance(tie_below_cost, (bool, np.bool_)):
            raise ValueError(f"tie_below_cost must be true or false, got {tie_below_cost!r}")
        self.tie_below_cost = bool(tie_below_cost)
        if not isinstance(grid_learner_costs, (bool, np.bool_)):
            raise ValueError(f"grid_learner_costs must be true or false, got {grid_learner_costs!r}")
        self.grid_learner_costs = bool(grid_learner_costs)
        self.storage_bids = str(storage_bids)
        self.plant_bids = str(plant_bids)
        self.storage_prices = str(storage_prices)
        # how far below the next rule offer the storage grid puts a discharge offer
        self.storage_offer_tick = STORAGE_BEHIND_TICK if self.storage_prices == "behind" else UNDERCUT_TICK
        if learning_units is not None:  # rule units named here learn too
            from .scenario import with_learning_units

            scenario = with_learning_units(scenario, learning_units)
        max_cycles, start = self._episode_options(
            scenario, max_cycles, start, episode_hours, random_start, demand_noise, availability_noise,
            holdout_hours, eval_window,
        )
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if int(foresight) < 1:
            raise ValueError(f"foresight must be >= 1 hour, got {foresight}")
        if start not in ("begin", "random"):
            raise ValueError(f"start must be 'begin' or 'random', got {start!r}")
        sc = scenario
        self.scenario = sc
        self.B = int(num_envs)
        self.T = sc.n_hours
        if max_bid_price is None:
            max_bid_price = float((sc.learning_config or {}).get("max_bid_price", 100.0) or 100.0)
        if not np.isfinite(max_bid_price) or max_bid_price <= 0:
            raise ValueError(f"max_bid_price must be a positive number, got {max_bid_price}")
        self.max_bid_price = float(max_bid_price)
        self.foresight = int(foresight)
        self.regret_scale = float(regret_scale)
        self.reward_scale = float(reward_scale)
        if max_cycles is None:
            max_cycles = self.window[1] - self.window[0]
        if not 1 <= int(max_cycles) <= self.T:
            raise ValueError(f"max_cycles must be in [1, {self.T}] (the scenario's hours), got {max_cycles}")
        if int(max_cycles) > self.window[1] - self.window[0]:
            raise ValueError(
                f"episode_hours/max_cycles = {max_cycles} does not fit the episode window: hours "
                f"[{self.window[0]}, {self.window[1]}) of {self.T} (holdout_hours={holdout_hours}, "
                f"eval_window={eval_window}); choose at most {self.window[1] - self.window[0]}"
            )
        self.max_cycles = int(max_cycles)
        self.start_mode = start
        self.cap = float(sc.market.price_cap)
        self.floor = float(sc.market.price_floor)
        self.mechanism = sc.market.mechanism
        self._build_units()
        self.set_start_up_markup(start_up_markup_hours)
        self._build_static_curves()
        self._build_forecasts()
        self.net = sc.network
        if self.net is not None and self.min_power_rule != "partial":
            raise ValueError("min_power_rule='raise' is not supported in a zonal/nodal market (its analysis "
                             "re-clears the network without it); use min_power_rule='partial'")
        if self.net is not None:  # zonal/nodal market (envs/network.py)
            self._build_network()
        self._build_spaces()
        self.t0 = 0
        self.step_count = 0
        self.recording = False
        self._log: list[tuple] = []
        self._alloc_state()

    # ------------------------------------------------------------------ episodes
    def _episode_options(self, sc, max_cycles, start, episode_hours, random_start, demand_noise,
                         availability_noise, holdout_hours, eval_window):
        """Check the episode options, set the episode window and the noise; returns
        ``(max_cycles, start)`` with the aliases resolved."""
        if episode_hours is not None:
            if max_cycles is not None and int(max_cycles) != int(episode_hours):
                raise ValueError(
                    f"episode_hours={episode_hours} and max_cycles={max_cycles} disagree; they are the same "
                    "option (the episode length in hours): give one"
                )
            max_cycles = int(episode_hours)
        if random_start:
            start = "random"
        for name, v in (("demand_noise", demand_noise), ("availability_noise", availability_noise)):
            if not (np.isfinite(v) and 0.0 <= float(v) <= 1.0):
                raise ValueError(f"{name} must be a standard deviation in [0, 1] (e.g. 0.05), got {v!r}")
        self.demand_noise = float(demand_noise)
        self.availability_noise = float(availability_noise)
        T = sc.n_hours
        if holdout_hours is None:
            if eval_window:
                raise ValueError("eval_window=True needs holdout_hours (the held-out hours at the end of the horizon)")
            self.window = (0, T)
        else:
            h = int(holdout_hours)
            if not 1 <= h < T:
                raise ValueError(f"holdout_hours must be in [1, {T - 1}] (the scenario has {T} hours), got {holdout_hours}")
            self.window = (T - h, T) if eval_window else (0, T - h)
        self.holdout_hours = None if holdout_hours is None else int(holdout_hours)
        self.eval_window = bool(eval_window)
        self.base_scenario = sc
        return max_cycles, start

    def _draw_noise(self, rng: np.random.Generator) -> None:
        """Noisy demand and renewables' availability for the episode starting at ``t0``:
        the scenario's series times log-normal factors (mean 1) over the episode hours.
        All copies of a vector env share them (they share the hourly data)."""
        from dataclasses import replace

        base = self.base_scenario
        t0, t1 = self.t0, self.t0 + self.max_cycles
        H = t1 - t0
        dem, rn = base.demands, base.renewables

        def factors(sigma, shape):
            return np.exp(sigma * rng.standard_normal(shape) - 0.5 * sigma * sigma)

        vol = dem.volume
        if self.demand_noise > 0 and len(dem):
            vol = vol.copy()
            vol[t0:t1] *= factors(self.demand_noise, (H, len(dem)))
        av = rn.availability
        if self.availability_noise > 0 and len(rn):
            av = av.copy()
            av[t0:t1] = np.clip(av[t0:t1] * factors(self.availability_noise, (H, len(rn))), 0.0, 1.0)
        self.scenario = replace(base, demands=replace(dem, volume=vol), renewables=replace(rn, availability=av))
        self._build_static_curves()

    # ------------------------------------------------------------------ building
    def _build_units(self) -> None:
        sc = self.scenario
        pl, st, rn = sc.plants, sc.storages, sc.renewables
        self.lp = np.flatnonzero(pl.learning)  # learning plants (indices into plants)
        self.rp = np.flatnonzero(~pl.learning)
        self.lr = np.flatnonzero(rn.learning)
        self.rr = np.flatnonzero(~rn.learning)
        self.ls = np.flatnonzero(st.learning)
        self.n_storage = len(st)
        single = pl.single_bid if pl.single_bid is not None else np.zeros(len(pl), dtype=bool)
        self.lp_single = np.asarray(single, dtype=bool)[self.lp]  # (n_lp,) one price for all capacity
        agents, kinds, units = [], [], []
        for i, one in zip(self.lp, self.lp_single):
            agents.append(agent_name(SINGLE_BID_PREFIX if one else "plant", pl.names[i]))
            kinds.append("plant"), units.append(pl.names[i])
        for i in self.ls:
            agents.append(agent_name("storage", st.names[i])), kinds.append("storage"), units.append(st.names[i])
        for i in self.lr:
            agents.append(agent_name("renewable", rn.names[i])), kinds.append("renewable"), units.append(rn.names[i])
        if len(set(agents)) != len(agents):
            dup = sorted({a for a in agents if agents.count(a) > 1})
            raise ValueError(
                f"learning units map to the same agent id {dup}: unit names that differ only in '_' vs "
                "'-' or spaces collide; rename one of the units in the scenario files"
            )
        self.agents = agents
        self.agent_kind = kinds
        self.agent_unit = units
        self.n = len(agents)
        n_lp, n_ls, n_lr = len(self.lp), len(self.ls), len(self.lr)
        self.sl_plant = slice(0, n_lp)
        self.sl_storage = slice(n_lp, n_lp + n_ls)
        self.sl_ren = slice(n_lp + n_ls, self.n)
        self.act_dims = np.array([ACT_DIMS[k] for k in kinds], dtype=np.int64)
        self.act_dims[self.sl_plant][self.lp_single] = 1
        if self.storage_bids == "two_sided":
            self.act_dims[self.sl_storage] = 2
        self.max_act = int(self.act_dims.max()) if self.n else 1
        # capacity used to scale rewards and dispatch observations
        cap = np.concatenate(
            [
                pl.max_power[self.lp],
                np.maximum(st.max_power_charge, st.max_power_discharge)[self.ls],
                rn.capacity[self.lr],
            ]
        ).astype(np.float64)
        self.agent_capacity = cap
        self.reward_factor = self.reward_scale / (cap * self.max_bid_price) if self.n else np.zeros(0)
        # dynamic supply columns: plant inflex (n_lp), plant flex (n_lp), renewables (n_lr), storage discharge (S)
        self.K = 2 * n_lp + n_lr + self.n_storage
        self._build_fixed_bids()
        self.L = self.n_storage + self.sdem_price.shape[0]
        self.col_ren = slice(2 * n_lp, 2 * n_lp + n_lr)
        self.col_dis = slice(2 * n_lp + n_lr, self.K)

    def _build_fixed_bids(self) -> None:
        """Bids that no agent sets and that are not inelastic demand at the cap: demand
        units bidding below the cap (ASSUME's demand ``price``) and exchange exports as
        demand columns after the storage charge bids; exchange imports as supply."""
        sc = self.scenario
        dm, ex = sc.demands, sc.exchanges
        priced = np.flatnonzero(dm.price < sc.market.price_cap) if len(dm) else np.zeros(0, dtype=np.int64)
        fixed = np.setdiff1d(np.arange(len(dm)), priced)
        names = [dm.names[i] for i in priced]
        kinds = ["demand"] * len(priced)
        prices = [dm.price[priced]]
        vols = [dm.volume[:, priced]]
        self.imp_names: list[str] = []
        self.imp_price = np.zeros((self.T, 0))
        self.imp_volume = np.zeros((self.T, 0))
        if ex is not None and len(ex):
            names += list(ex.names)
            kinds += ["exchange"] * len(ex)
            prices.append(ex.price_export)
            vols.append(ex.volume_export)
            self.imp_names = list(ex.names)
            self.imp_price = np.broadcast_to(ex.price_import, (self.T, len(ex))).astype(float)
            self.imp_volume = ex.volume_import.astype(float)
        self.sdem_names = names
        self.sdem_kind = kinds
        self.sdem_price = np.concatenate(prices).astype(float)  # (Ld,) EUR/MWh
        self.sdem_volume = np.concatenate(vols, axis=1).astype(float) if vols else np.zeros((self.T, 0))  # (T, Ld)
        self.fixed_demand_units = fixed

    def _build_static_curves(self) -> None:
        """Rule-bidding plants (at marginal cost, whole available capacity) and
        rule-bidding renewables, per hour: original order and sorted curve."""
        sc = self.scenario
        pl, rn = sc.plants, sc.renewables
        price = np.concatenate(
            [pl.marginal_cost[:, self.rp], np.broadcast_to(rn.marginal_cost[self.rr], (self.T, len(self.rr))),
             self.imp_price], axis=1
        )
        vol = np.concatenate(
            [pl.max_power[self.rp] * pl.availability[:, self.rp], rn.capacity[self.rr] * rn.availability[:, self.rr],
             self.imp_volume],
            axis=1,
        )
        price = np.clip(price, self.floor, self.cap)
        self.static_names = [pl.names[i] for i in self.rp] + [rn.names[i] for i in self.rr] + self.imp_names
        self.static_kind = ["plant"] * len(self.rp) + ["renewable"] * len(self.rr) + ["exchange"] * len(self.imp_names)
        self.static_price = price  # (T, Ns) original unit order
        self.static_volume = vol
        key = np.where(vol > 0, price, np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        self.static_sorted_price = np.take_along_axis(key, order, 1)
        self.static_sorted_volume = np.take_along_axis(np.where(vol > 0, vol, 0.0), order, 1)
        # the offer grid's ladder (plant_bids / storage_prices "undercut"): the rule offers,
        # with grid_learner_costs also the learning plants' marginal costs
        if self.grid_learner_costs and len(self.lp):
            costs = np.clip(pl.marginal_cost[:, self.lp], self.floor, self.cap)
            self.grid_ladder = np.sort(np.concatenate([self.static_sorted_price, costs], axis=1), axis=1)
        else:
            self.grid_ladder = self.static_sorted_price
        # which points of the ladder are rule offers (tie_below_cost ties only with those)
        self.grid_ladder_rule = np.array([np.isin(g, s) for g, s in zip(self.grid_ladder, self.static_sorted_price)],
                                         dtype=bool).reshape(self.grid_ladder.shape)
        fx = self.fixed_demand_units
        self.fixed_demand = sc.demands.volume[:, fx].sum(axis=1) if len(fx) else np.zeros(self.T)

    def _build_forecasts(self) -> None:
        """Naive forecasts, as in ASSUME: the price every hour would clear at if every
        plant and renewable bid its marginal cost (storage idle), and the residual load
        (demand minus available renewables)."""
        sc = self.scenario
        pl, rn = sc.plants, sc.renewables
        price = np.concatenate(
            [pl.marginal_cost, np.broadcast_to(rn.marginal_cost, (self.T, len(rn))), self.imp_price], axis=1
        )
        vol = np.concatenate([pl.max_power * pl.availability, rn.capacity * rn.availability, self.imp_volume], axis=1)
        res = clear_market(
            price, vol, np.broadcast_to(self.sdem_price, self.sdem_volume.shape), self.sdem_volume,
            fixed_demand=self.fixed_demand, price_cap=self.cap, price_floor=self.floor,
        )
        self.price_forecast = res.price
        ren = (rn.capacity * rn.availability).sum(axis=1) if len(rn) else np.zeros(self.T)
        # residual load: all demand (exports included) minus renewables and imports
        self.residual_load = self.fixed_demand + self.sdem_volume.sum(axis=1) - ren - self.imp_volume.sum(axis=1)
        self.load_scale = float(max((self.fixed_demand + self.sdem_volume.sum(axis=1)).max(), 1.0))
        # padded per-hour arrays so windows never index out of range
        F = self.foresight
        idx_f = np.clip(np.arange(self.T + 1)[:, None] + np.arange(F)[None, :], 0, self.T - 1)
        self._fc_block = np.concatenate(
            [self.residual_load[idx_f] / self.load_scale, self.price_forecast[idx_f] / self.max_bid_price], axis=1
        )  # (T+1, 2F): forecast part of the observation for hour t

    def _build_network(self) -> None:
        """Zonal/nodal market: node of every bid column and agent, per-node forecasts.

        Every agent observes its own zone's/bus's forecasts (residual load of the node,
        naive price of the node) and realised prices. The system-wide series used by
        ``state()``, ``price`` of the step outcome and rule storage are demand-weighted
        averages over the nodes (``node_weight``)."""
        from .network import marginal_cost_prices

        sc, net = self.scenario, self.net
        st_node = net.storage_node
        self.static_node = np.concatenate([net.plant_node[self.rp], net.renewable_node[self.rr]]).astype(np.int64)
        self.dyn_node = np.concatenate(
            [net.plant_node[self.lp], net.plant_node[self.lp], net.renewable_node[self.lr], st_node]
        ).astype(np.int64)
        self.agent_node = np.concatenate(
            [net.plant_node[self.lp], st_node[self.ls], net.renewable_node[self.lr]]
        ).astype(np.int64)
        Z, T, F = net.n_nodes, self.T, self.foresight
        self.node_price_forecast = marginal_cost_prices(sc)  # (T, Z)
        dem = np.zeros((T, Z))
        np.add.at(dem.T, net.demand_node, sc.demands.volume.T)
        ren = np.zeros((T, Z))
        rn = sc.renewables
        np.add.at(ren.T, net.renewable_node, (rn.capacity * rn.availability).T)
        self.node_residual_load = dem - ren
        tot = dem.sum(axis=1, keepdims=True)
        self.node_weight = np.where(tot > 0, dem / np.maximum(tot, 1e-12), 1.0 / Z)  # (T, Z)
        self.price_forecast = (self.node_price_forecast * self.node_weight).sum(axis=1)
        idx_f = np.clip(np.arange(T + 1)[:, None] + np.arange(F)[None, :], 0, T - 1)
        self._fc_nodes = np.concatenate(
            [self.node_residual_load[idx_f].transpose(2, 0, 1) / self.load_scale,
             self.node_price_forecast[idx_f].transpose(2, 0, 1) / self.max_bid_price], axis=2,
        )  # (Z, T+1, 2F)
        self._fc_block = np.concatenate(
            [self.residual_load[idx_f] / self.load_scale, self.price_forecast[idx_f] / self.max_bid_price], axis=1
        )

    def _clear_network(self, t: int, sp, sv, dpr, dvo):
        """Clear hour ``t`` of every copy on the network (one LP for the ``B`` copies).
        Returns a :class:`ClearingResult` over the dynamic columns, with ``price`` the
        demand-weighted average of the node prices, and the node prices ``(B, Z)``."""
        from .network import DEMAND_EPS, clear_network

        sc, net, B = self.scenario, self.net, self.B
        ns = len(self.static_node)
        s_price = np.concatenate([np.broadcast_to(self.static_price[t], (B, ns)), sp], axis=1)
        s_vol = np.concatenate([np.broadcast_to(self.static_volume[t], (B, ns)), sv], axis=1)
        D = len(sc.demands)
        d_price = np.concatenate([np.broadcast_to(sc.demands.price, (B, D)), dpr], axis=1)
        d_vol = np.concatenate([np.broadcast_to(sc.demands.volume[t], (B, D)), dvo], axis=1)
        r = clear_network(
            net, s_price, s_vol, np.concatenate([self.static_node, self.dyn_node]), d_price, d_vol,
            np.concatenate([net.demand_node, net.storage_node]), price_cap=self.cap, price_floor=self.floor,
        )
        node_price = r.price
        price = node_price @ self.node_weight[t]
        fixed_acc = r.demand_accepted[:, :D].sum(axis=1)
        at_cap = sc.demands.price >= self.cap  # unserved: beyond the 1e-6 MW cut of every bid (DEMAND_EPS)
        unserved = np.maximum(sc.demands.volume[t][at_cap] - DEMAND_EPS - r.demand_accepted[:, :D][:, at_cap], 0.0)
        unserved = unserved.sum(axis=1)
        scarcity = unserved > 1e-6
        if net.pricing == "pay_as_bid":
            pay_s, pay_d = r.supply_price[:, ns:], r.demand_price[:, D:]
        else:
            pay_s, pay_d = node_price[:, self.dyn_node], node_price[:, net.storage_node]
        res = ClearingResult(
            price=price, volume=r.supply_accepted.sum(axis=1), supply_accepted=r.supply_accepted[:, ns:],
            demand_accepted=r.demand_accepted[:, D:], supply_payment=pay_s, demand_payment=pay_d,
            scarcity=scarcity, unserved=unserved * scarcity, supply_share=np.full(B, np.nan), fixed_accepted=fixed_acc,
        )
        self._net_static_acc = r.supply_accepted[:, :ns]
        return res, node_price

    def _build_spaces(self) -> None:
        F = self.foresight
        self.obs_dim = 3 * F + UNIQUE_OBS_LEN
        lo_p, hi_p = self.floor / self.max_bid_price, self.cap / self.max_bid_price
        r = float(np.ceil(max(np.abs(self.residual_load).max() / self.load_scale, 1.0)))
        self.obs_low = np.concatenate([np.full(F, -r), np.full(2 * F, lo_p), np.full(UNIQUE_OBS_LEN, min(lo_p, -1.0))])
        self.obs_high = np.concatenate([np.full(F, r), np.full(2 * F, hi_p), np.full(UNIQUE_OBS_LEN, max(hi_p, 1.0))])
        self.obs_low = self.obs_low.astype(np.float32)
        self.obs_high = self.obs_high.astype(np.float32)
        self.state_dim = 3 * F + UNIQUE_OBS_LEN * self.n
        self.state_low = np.concatenate([self.obs_low[: 3 * F], np.tile(self.obs_low[3 * F:], self.n)])
        self.state_high = np.concatenate([self.obs_high[: 3 * F], np.tile(self.obs_high[3 * F:], self.n)])

    def _alloc_state(self) -> None:
        B, n = self.B, self.n
        st = self.scenario.storages
        self.soc = np.zeros((B, self.n_storage))  # MWh
        self.stored_cost = np.zeros((B, self.n_storage))  # EUR/MWh average cost of stored energy
        self.last_dispatch = np.zeros((B, n))  # MW
        self.price_hist = np.zeros((B, self.foresight))  # last F realised prices, oldest first
        self._soc_min = st.min_soc * st.capacity
        self._soc_max = st.max_soc * st.capacity
        self.done = True

    # ------------------------------------------------------------------ episode
    @property
    def hour(self) -> int:
        """Scenario hour index of the next market to clear."""
        return self.t0 + self.step_count

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        """Start an episode in every copy; returns observations ``(B, n, obs_dim)``."""
        w0, w1 = self.window
        if self.start_mode == "random" and self.max_cycles < w1 - w0:
            self.t0 = w0 + int(rng.integers(0, w1 - w0 - self.max_cycles + 1))
        else:
            self.t0 = w0
        if self.demand_noise > 0 or self.availability_noise > 0:
            self._draw_noise(rng)
        self.step_count = 0
        st = self.scenario.storages
        self.soc[:] = st.initial_soc * st.capacity
        self.stored_cost[:] = 0.0
        self.last_dispatch[:] = 0.0
        # before the first hour, the price history holds the forecasts of the hours before it
        F = self.foresight
        idx = np.clip(np.arange(self.t0 - F, self.t0), 0, self.T - 1)
        self.price_hist[:] = self.price_forecast[idx]
        if self.net is not None:
            self.node_price_hist = np.repeat(self.node_price_forecast[idx].T[None], self.B, axis=0)  # (B, Z, F)
        self.done = False
        self._log = []
        return self.observe()

    @property
    def agent_min_output(self) -> np.ndarray:
        """MW every learning agent produces at least once dispatched ``(n,)``: a learning
        plant's minimum power under ``min_power_rule="raise"`` (within its availability
        of the hour), else 0 (what was accepted is what runs)."""
        out = np.zeros(self.n)
        if self.min_power_rule == "raise":
            out[self.sl_plant] = self.scenario.plants.min_power[self.lp]
        return out

    @property
    def agent_start_up_cost(self) -> np.ndarray:
        """EUR per start of every learning agent ``(n,)`` (0 for storage and renewables)."""
        suc = np.zeros(self.n)
        suc[self.sl_plant] = self.scenario.plants.start_up_cost[self.lp]
        return suc

    def observation_scaling(self, min_scale: float = OBS_SCALE_FLOOR) -> tuple[np.ndarray, np.ndarray]:
        """A fixed standardisation of every agent's observation: ``(shift, scale)``, each
        ``(n, obs_dim)`` float32, so that ``(obs - shift) / scale`` has features of mean
        about 0 and spread about 1. A pure function of the scenario and the env options
        (no episode is run): the same in every runtime and for every seed.

        * forecasts (residual load, price): mean and standard deviation of each column of
          the forecast block over the scenario's hours (per agent's node in a network);
        * realised prices: those of the price forecast;
        * plants and renewables: dispatch share ``(x - 0.5) / 0.5``; marginal cost
          (plants) and availability (renewables) by their series over the hours;
        * storage: state-of-charge share ``(x - 0.5) / 0.5``; cost of the stored energy
          by the price forecast's statistics.

        A feature that hardly varies (a constant marginal cost) gets ``scale = min_scale``,
        so it becomes about 0 without amplifying small changes more than ``1 / min_scale``
        times. Used by the trainer's ``obs_normalization``. The statistics cover the env's
        window (:attr:`window`): with ``holdout_hours`` the training env's scaling takes
        nothing from the held-out hours.
        """
        F, n, od = self.foresight, self.n, self.obs_dim
        shift = np.zeros((n, od))
        scale = np.ones((n, od))
        w0, w1 = self.window
        rows = slice(w0, w1 + 1 if w1 == self.T else w1)  # the whole horizon: its end row too, as always
        # per node in a network (agents of one node share its statistics), else one block
        blocks = self._fc_nodes if self.net is not None else self._fc_block[None]  # (Z or 1, T+1, 2F)
        blocks = blocks[:, rows]
        row = self.agent_node if self.net is not None else np.zeros(n, dtype=np.int64)
        shift[:, : 2 * F] = blocks.mean(axis=1)[row]
        scale[:, : 2 * F] = blocks.std(axis=1)[row]
        price = blocks[:, :, F:2 * F]  # price forecast / max_bid_price
        p_mean, p_std = price.mean(axis=(1, 2))[row], price.std(axis=(1, 2))[row]
        shift[:, 2 * F: 3 * F] = p_mean[:, None]
        scale[:, 2 * F: 3 * F] = p_std[:, None]
        u0 = 3 * F
        shift[:, u0], scale[:, u0] = 0.5, 0.5  # dispatch / state-of-charge share
        sc, mbp = self.scenario, self.max_bid_price
        if len(self.lp):
            mc = sc.plants.marginal_cost[w0:w1, self.lp] / mbp
            shift[self.sl_plant, u0 + 1], scale[self.sl_plant, u0 + 1] = mc.mean(axis=0), mc.std(axis=0)
        if len(self.ls):
            shift[self.sl_storage, u0 + 1] = p_mean[self.sl_storage]
            scale[self.sl_storage, u0 + 1] = p_std[self.sl_storage]
        if len(self.lr):
            av = sc.renewables.availability[w0:w1, self.lr]
            shift[self.sl_ren, u0 + 1], scale[self.sl_ren, u0 + 1] = av.mean(axis=0), av.std(axis=0)
        scale = np.maximum(scale, float(min_scale))
        return shift.astype(np.float32), scale.astype(np.float32)

    def unique_obs(self) -> np.ndarray:
        """The agents' own values ``(B, n, 2)`` for the current hour."""
        t = min(self.hour, self.T - 1)
        u = np.empty((self.B, self.n, UNIQUE_OBS_LEN))
        sc = self.scenario
        mbp = self.max_bid_price
        if len(self.lp):
            u[:, self.sl_plant, 0] = self.last_dispatch[:, self.sl_plant] / self.agent_capacity[self.sl_plant]
            u[:, self.sl_plant, 1] = sc.plants.marginal_cost[t, self.lp] / mbp
        if len(self.ls):
            st = sc.storages
            u[:, self.sl_storage, 0] = self.soc[:, self.ls] / st.capacity[self.ls]
            u[:, self.sl_storage, 1] = self.stored_cost[:, self.ls] / mbp
        if len(self.lr):
            u[:, self.sl_ren, 0] = self.last_dispatch[:, self.sl_ren] / self.agent_capacity[self.sl_ren]
            u[:, self.sl_ren, 1] = sc.renewables.availability[t, self.lr]
        return u

    def observe(self) -> np.ndarray:
        """Observations ``(B, n, obs_dim)`` float32, clipped to the observation bounds."""
        F = self.foresight
        obs = np.empty((self.B, self.n, self.obs_dim), dtype=np.float32)
        obs[:, :, : 2 * F] = self._fc_block[min(self.hour, self.T)]
        obs[:, :, 2 * F: 3 * F] = (self.price_hist / self.max_bid_price)[:, None, :]
        obs[:, :, 3 * F:] = self.unique_obs()
        if self.net is not None:  # every agent sees its own zone's/bus's forecasts and prices
            obs[:, :, : 2 * F] = self._fc_nodes[self.agent_node, min(self.hour, self.T)][None]
            obs[:, :, 2 * F: 3 * F] = self.node_price_hist[:, self.agent_node] / self.max_bid_price
        np.minimum(np.maximum(obs, self.obs_low, out=obs), self.obs_high, out=obs)
        return obs

    def state(self) -> np.ndarray:
        """Global state ``(B, state_dim)`` float32: the common part of the observation
        (forecasts and price history) followed by every agent's unique values."""
        F = self.foresight
        s = np.empty((self.B, self.state_dim), dtype=np.float32)
        s[:, : 2 * F] = self._fc_block[min(self.hour, self.T)]
        s[:, 2 * F: 3 * F] = self.price_hist / self.max_bid_price
        s[:, 3 * F:] = self.unique_obs().reshape(self.B, -1)
        np.clip(s, self.state_low, self.state_high, out=s)
        return s

    # ------------------------------------------------------------------ bids
    def rule_storage_direction(self, t: int) -> np.ndarray:
        """Rule-based storage bids for hour ``t``: compare the hour's price forecast with
        the mean forecast of the next 24 hours; below it, bid to charge at that mean
        price, otherwise offer to discharge at it. Returns ``(price, charge?)``."""
        day = max(1, int(round(24 / self.scenario.time_step_hours)))  # the next 24 hours, in steps
        window = self.price_forecast[t: min(t + day, self.T)]
        mean = float(window.mean())
        return mean, bool(self.price_forecast[t] <= mean)

    def set_start_up_markup(self, hours: float) -> None:
        """Set ``start_up_markup_hours`` (see the class docstring; ``0`` turns it off): the
        markup of each learning plant, EUR/MWh, is kept in :attr:`start_up_markup`
        ``(n_lp,)`` (0 for plants without a start-up cost)."""
        h = float(hours)
        if not (np.isfinite(h) and h >= 0.0):
            raise ValueError(f"start_up_markup_hours must be a number >= 0 (0: no markup), got {hours!r}")
        self.start_up_markup_hours = h
        pl = self.scenario.plants
        suc = np.asarray(pl.start_up_cost, dtype=float)[self.lp]
        if h == 0.0 or not len(self.lp):
            self.start_up_markup = np.zeros(len(self.lp))
            return
        power = np.asarray(pl.min_power, dtype=float)[self.lp]
        power = np.where(power > 0, power, np.asarray(pl.max_power, dtype=float)[self.lp])
        self.start_up_markup = np.where((suc > 0) & (power > 0), suc / np.maximum(power, 1e-9) / h, 0.0)

    def cold_offer_floor(self, t: int) -> np.ndarray:
        """``(B, n_lp)`` the lowest offer price of each learning plant in hour ``t`` under
        ``start_up_markup_hours`` (-inf where it does not bind: no markup, or the plant was
        dispatched in the previous hour)."""
        mk = self.start_up_markup
        cold = (self.last_dispatch[:, self.sl_plant] <= 0) & (mk > 0)
        return np.where(cold, self.scenario.plants.marginal_cost[t, self.lp] + mk, -np.inf)

    def undercut(self, price: np.ndarray, t: int, tick: float = UNDERCUT_TICK,
                 tie_below: np.ndarray | float | None = None) -> np.ndarray:
        """Offer prices (EUR/MWh, any shape) moved as ``plant_bids="undercut"`` does in
        hour ``t``: up to ``tick`` (:data:`UNDERCUT_TICK`; a storage unit's offers:
        :attr:`storage_offer_tick`) below the cheapest point of the grid's ladder
        (:attr:`grid_ladder`: the rule-bidding offers, with ``grid_learner_costs`` also the
        learning plants' marginal costs) at or above each, where that is at most
        ``max_bid_price``; else unchanged. ``tie_below`` (the plant's marginal cost,
        broadcast against ``price``; ``tie_below_cost``): where that point is a rule offer
        priced below it, the rule offer's own price instead."""
        ladder = self.grid_ladder[t]  # ascending; inf where a unit offers nothing
        if not ladder.size:
            return np.asarray(price, dtype=float)
        k = np.searchsorted(ladder, price, side="left")
        rule = ladder[np.minimum(k, ladder.size - 1)]
        nxt = rule - tick
        ok = (k < ladder.size) & (nxt <= self.max_bid_price)
        if tie_below is not None:  # a tie only with a rule offer
            is_rule = self.grid_ladder_rule[t][np.minimum(k, ladder.size - 1)]
            nxt = np.where((rule < tie_below) & is_rule, rule, nxt)
        return np.where(ok, nxt, price)

    def plant_grid(self, agent: int) -> tuple:
        """For learning plant ``agent`` (agent index) under ``plant_bids="undercut"``: the
        map ``(prices, hour) -> prices`` the env applies to its offers (:meth:`undercut`,
        with its marginal cost under ``tie_below_cost``) and the map to the middle of each
        grid price's range (:meth:`undercut_centre`), for a best response within the grid
        and a teacher's targets."""
        k = int(agent) - int(self.sl_plant.start or 0)  # learning plants come first
        if not (0 <= k < len(self.lp)):
            raise ValueError(f"agent {agent} is not a learning plant of this market")
        mc = self.scenario.plants.marginal_cost[:, self.lp[k]] if self.tie_below_cost else None

        def to_grid(price, hour):
            return self.undercut(price, hour, tie_below=None if mc is None else mc[hour])

        def centre(price, hour):
            return self.undercut_centre(price, hour, tie_below=None if mc is None else mc[hour])
        return to_grid, centre

    def undercut_centre(self, price: np.ndarray, t: int, low: float | None = None,
                        tick: float = UNDERCUT_TICK, tie_below: float | None = None) -> np.ndarray:
        """For offer prices that :meth:`undercut` produces in hour ``t`` (1-d, EUR/MWh):
        the middle of the range of prices it moves to each, i.e. the bid least likely to
        land elsewhere when a policy imitates it with a small error. A price just below
        the cheapest rule offer gets the middle between ``low`` (the lowest price an
        action gives: ``-max_bid_price`` for a plant, the default, 0 for a storage unit's
        offer) and it; a price that is not one :meth:`undercut` produces (e.g. above
        every rule offer) is returned as it is. ``tick``: the one :meth:`undercut` used
        (:attr:`storage_offer_tick` for a storage unit's offers). ``tie_below``: the one
        :meth:`undercut` used; a rule offer's own price below it (a tie) gets the middle
        of the range moved to it."""
        low = -self.max_bid_price if low is None else float(low)
        price = np.asarray(price, dtype=float)
        ladder = self.grid_ladder[t]
        ladder = np.unique(ladder[np.isfinite(ladder) & (ladder - tick <= self.max_bid_price)])
        out = price.copy()
        if not ladder.size:
            return out
        if tie_below is not None:  # a tie with a rule offer below the cost: the range of a tick under it
            j = np.clip(np.searchsorted(ladder, price - 1e-6), 0, ladder.size - 1)
            price = np.where((np.abs(ladder[j] - price) < 1e-6) & (ladder[j] < tie_below)
                             & np.isin(ladder[j], self.static_sorted_price[t]), ladder[j] - tick, price)
            out = price.copy()
        j = np.clip(np.searchsorted(ladder, price + tick - 1e-6), 0, ladder.size - 1)
        hit = np.abs(ladder[j] - tick - price) < 1e-6
        below = np.where(j > 0, ladder[np.maximum(j - 1, 0)], low)
        below = np.maximum(below, low)
        return np.where(hit, 0.5 * (below + ladder[j] - tick), out)

    def outbid_centre(self, price: np.ndarray, t: int) -> np.ndarray:
        """For charge bid prices that :meth:`outbid` produces in hour ``t`` (1-d,
        EUR/MWh): the middle of the range of prices it moves to each (from the rule offer
        below up to the next dearer rule offer, or ``max_bid_price``), the counterpart of
        :meth:`undercut_centre`. A price that is not one :meth:`outbid` produces (e.g.
        below every rule offer) is returned as it is."""
        price = np.asarray(price, dtype=float)
        ladder = self.grid_ladder[t]
        ladder = np.unique(ladder[np.isfinite(ladder) & (ladder + UNDERCUT_TICK >= 0.0)])
        out = price.copy()
        if not ladder.size:
            return out
        j = np.clip(np.searchsorted(ladder, price - UNDERCUT_TICK - 1e-6), 0, ladder.size - 1)
        hit = np.abs(ladder[j] + UNDERCUT_TICK - price) < 1e-6
        above = np.where(j + 1 < ladder.size, ladder[np.minimum(j + 1, ladder.size - 1)], self.max_bid_price)
        above = np.minimum(above, self.max_bid_price)
        return np.where(hit & (above > ladder[j]), 0.5 * (ladder[j] + above), out)

    def outbid(self, price: np.ndarray, t: int) -> np.ndarray:
        """Charge bid prices (EUR/MWh, any shape) moved as ``storage_prices="undercut"``
        does in hour ``t``: to :data:`UNDERCUT_TICK` above the dearest rule-bidding offer at
        or below each, where there is one and the result is not negative; else unchanged."""
        ladder = self.grid_ladder[t]  # ascending; inf where a unit offers nothing
        k = np.searchsorted(ladder, price, side="right") - 1
        prv = ladder[np.maximum(k, 0)] + UNDERCUT_TICK if ladder.size else price
        ok = (k >= 0) & (prv >= 0.0)
        return np.where(ok, prv, price)

    def _snap_to_cost(self, price: np.ndarray, mc: np.ndarray) -> np.ndarray:
        """``cost_snap``: prices within the band of the unit's marginal cost ``mc`` (broadcast
        over the copies) read as exactly that cost."""
        return np.where(np.abs(price - mc) <= self.cost_snap, mc, price)

    def bid_prices_for(self, actions: np.ndarray) -> np.ndarray:
        """The bid prices ``(P, n, 2)`` (EUR/MWh, as :meth:`build_bids` and the record give
        them) that this one-copy core would read this hour from each of ``P`` action
        profiles ``(P, n, max_act)``, with its current state (state of charge, last
        dispatch): the env's own map from actions to prices, offer grid and readings
        included, for tools that need the range of actions behind a price (e.g. to
        imitate a bid with a margin on both sides)."""
        if self.B != 1:
            raise ValueError(f"bid_prices_for needs a one-copy core (num_envs=1), this one has {self.B} copies")
        actions = np.asarray(actions, dtype=float)
        if actions.ndim != 3 or actions.shape[1:] != (self.n, self.max_act):
            raise ValueError(f"bid_prices_for: actions must be (P, {self.n}, {self.max_act}), got {actions.shape}")
        return self.build_bids(actions, None)[4]

    def build_bids(self, actions: np.ndarray, active: np.ndarray | None):
        """Dynamic bids for the current hour from actions ``(B, n, max_act)`` in [-1, 1].

        Returns ``(supply_price, supply_volume, demand_price, demand_volume, bid_price)``
        with shapes ``(B, K)``, ``(B, K)``, ``(B, L)``, ``(B, L)``, ``(B, n, 2)``. A
        one-copy core also takes ``(P, n, max_act)``: P action profiles against its one
        state (see :meth:`bid_prices_for`)."""
        sc = self.scenario
        B, t, mbp = actions.shape[0], self.hour, self.max_bid_price
        n_lp = len(self.lp)
        sp = np.zeros((B, self.K))
        sv = np.zeros((B, self.K))
        dpr = np.zeros((B, self.L))
        dvo = np.zeros((B, self.L))
        bid_price = np.zeros((B, self.n, 2))
        scaled = actions * mbp
        if n_lp:
            pl = sc.plants
            a = scaled[:, self.sl_plant, :2]
            lo = a.min(axis=2)
            hi = a.max(axis=2)
            if self.lp_single.any():  # one price (the first action) for all available capacity
                one = scaled[:, self.sl_plant, 0]
                lo = np.where(self.lp_single, one, lo)
                hi = np.where(self.lp_single, one, hi)
            avail = pl.max_power[self.lp] * pl.availability[t, self.lp]
            inflex = np.minimum(pl.min_power[self.lp], avail)
            if self.lp_single.any():  # single-bid plants offer everything in their flexible column
                inflex = np.where(self.lp_single, 0.0, inflex)
            if self.cost_snap > 0:
                mc = pl.marginal_cost[t, self.lp]
                lo, hi = self._snap_to_cost(lo, mc), self._snap_to_cost(hi, mc)
            if self.start_up_markup_hours > 0:  # a cold plant offers at least cost + markup
                floor = self.cold_offer_floor(t)
                lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
            if self.plant_bids == "undercut":
                mc = pl.marginal_cost[t, self.lp] if self.tie_below_cost else None
                lo, hi = self.undercut(lo, t, tie_below=mc), self.undercut(hi, t, tie_below=mc)
            sp[:, :n_lp], sp[:, n_lp: 2 * n_lp] = lo, hi
            sv[:, :n_lp], sv[:, n_lp: 2 * n_lp] = inflex, avail - inflex
            bid_price[:, self.sl_plant, 0], bid_price[:, self.sl_plant, 1] = lo, hi
        if len(self.lr):
            rn = sc.renewables
            p_ren = scaled[:, self.sl_ren, 0]
            if self.cost_snap > 0:
                p_ren = self._snap_to_cost(p_ren, rn.marginal_cost[self.lr])
            sp[:, self.col_ren] = p_ren
            sv[:, self.col_ren] = rn.capacity[self.lr] * rn.availability[t, self.lr]
            bid_price[:, self.sl_ren, :] = p_ren[:, :, None]
        if self.n_storage:
            st = sc.storages
            # energy that can be sold / room that can be filled within this hour
            dt = sc.time_step_hours
            can_dis = np.minimum(st.max_power_discharge, (self.soc - self._soc_min) * st.efficiency_discharge / dt)
            can_ch = np.minimum(st.max_power_charge, (self._soc_max - self.soc) / st.efficiency_charge / dt)
            can_dis = np.maximum(can_dis, 0.0)
            can_ch = np.maximum(can_ch, 0.0)
            price_s = np.zeros((B, self.n_storage))
            discharge = np.zeros((B, self.n_storage), dtype=bool)
            if len(self.ls) and self.storage_bids == "two_sided":
                # charge below the lower price, discharge above the higher one (both in [0, mbp])
                a = actions[:, self.sl_storage, :2]
                p_ch = (a.min(axis=2) + 1.0) * (0.5 * mbp)
                p_dis = (a.max(axis=2) + 1.0) * (0.5 * mbp)
                if self.storage_prices != "free":  # "undercut" / "behind"
                    p_dis = self.undercut(p_dis, t, self.storage_offer_tick)
                    p_ch = np.minimum(self.outbid(p_ch, t), p_dis)
                sp[:, self.col_dis.start + self.ls] = p_dis
                sv[:, self.col_dis.start + self.ls] = can_dis[:, self.ls]
                dpr[:, self.ls] = p_ch
                dvo[:, self.ls] = can_ch[:, self.ls]
                bid_price[:, self.sl_storage, 0], bid_price[:, self.sl_storage, 1] = p_ch, p_dis
            elif len(self.ls):
                a = scaled[:, self.sl_storage, 0]
                price_s[:, self.ls] = np.abs(a)
                discharge[:, self.ls] = a >= 0
                bid_price[:, self.sl_storage, :] = a[:, :, None]
            rs = np.flatnonzero(~st.learning)
            if len(rs):
                mean, charge = self.rule_storage_direction(t)
                price_s[:, rs] = mean
                discharge[:, rs] = not charge
                if self.net is not None:  # each rule storage follows its own node's forecast
                    f = self.node_price_forecast[t: min(t + 24, self.T), self.net.storage_node[rs]]
                    price_s[:, rs] = f.mean(axis=0)
                    discharge[:, rs] = f[0] > f.mean(axis=0)
            if self.storage_bids == "two_sided" and len(self.ls):  # the learners' bids are set above
                if len(rs):
                    sp[:, self.col_dis.start + rs] = price_s[:, rs]
                    sv[:, self.col_dis.start + rs] = np.where(discharge[:, rs], can_dis[:, rs], 0.0)
                    dpr[:, rs] = price_s[:, rs]
                    dvo[:, rs] = np.where(discharge[:, rs], 0.0, can_ch[:, rs])
            else:
                sp[:, self.col_dis] = price_s
                sv[:, self.col_dis] = np.where(discharge, can_dis, 0.0)
                dpr[:, : self.n_storage] = price_s
                dvo[:, : self.n_storage] = np.where(discharge, 0.0, can_ch)
        if self.L > self.n_storage:  # priced demand units and exchange exports
            dpr[:, self.n_storage:] = self.sdem_price
            dvo[:, self.n_storage:] = self.sdem_volume[t]
        if active is not None and not active.all():
            # agents left out of the action dict submit no bid this hour
            off = ~active
            if n_lp:
                sv[:, :n_lp] *= active[self.sl_plant]
                sv[:, n_lp: 2 * n_lp] *= active[self.sl_plant]
            if len(self.lr):
                sv[:, self.col_ren] *= active[self.sl_ren]
            if len(self.ls):
                cols = self.ls
                sv[:, self.col_dis.start + cols] *= active[self.sl_storage]
                dvo[:, cols] *= active[self.sl_storage]
            bid_price[:, off, :] = 0.0
        return sp, sv, dpr, dvo, bid_price

    # ------------------------------------------------------------------ step
    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepOutcome:
        """Clear the current hour in every copy and advance by one hour.

        Args:
            actions: ``(B, n, max_act)`` float in [-1, 1] (validated by the caller).
            active: optional ``(n,)`` bool; inactive agents submit no bid.
        """
        if self.done:
            raise RuntimeError("the episode is over: call reset() before step()")
        sc = self.scenario
        t = self.hour
        B, n = self.B, self.n
        dt = sc.time_step_hours  # hours per step: profits and regret are energy (MWh) x price
        sp, sv, dpr, dvo, bid_price = self.build_bids(actions, active)
        res = clear_market(
            sp, sv, dpr, dvo,
            fixed_demand=self.fixed_demand[t],
            static_supply=(self.static_sorted_price[t], self.static_sorted_volume[t]),
            price_cap=self.cap, price_floor=self.floor, mechanism=self.mechanism,
        ) if self.net is None else None
        node_price = None
        if self.net is not None:  # zonal/nodal market: the network LP (envs/network.py)
            res, node_price = self._clear_network(t, sp, sv, dpr, dvo)
        price = res.price
        acc_s, acc_d = res.supply_accepted, res.demand_accepted
        if self.mechanism == "pay_as_bid":
            pay_s, pay_d = res.supply_payment, res.demand_payment[:, : self.n_storage]
        else:  # everyone is paid the clearing price
            pay_s = np.empty((B, self.K))
            pay_s[:] = price[:, None]
            pay_d = price[:, None]
        if node_price is not None:  # each bid is paid its own zone's/bus's price (or its bid)
            pay_s, pay_d = res.supply_payment, res.demand_payment
        pcol = np.broadcast_to(price[:, None], (B, n)) if node_price is None else node_price[:, self.agent_node]  # (B, 1) or (B, n)
        profit = np.zeros((B, n))
        regret = np.zeros((B, n))
        accepted = np.zeros((B, n))
        n_lp = len(self.lp)
        if n_lp:
            pl = sc.plants
            mc = pl.marginal_cost[t, self.lp]
            q_in, q_fx = acc_s[:, :n_lp], acc_s[:, n_lp: 2 * n_lp]
            q = q_in + q_fx
            revenue = q_in * pay_s[:, :n_lp] + q_fx * pay_s[:, n_lp: 2 * n_lp]
            started = (q > 0) & (self.last_dispatch[:, self.sl_plant] <= 0)
            avail = pl.max_power[self.lp] * pl.availability[t, self.lp]
            # energy = power x step length; a start costs its full amount whatever the step
            profit[:, self.sl_plant] = (revenue - mc * q) * dt - started * pl.start_up_cost[self.lp]
            if self.min_power_rule == "raise":  # output raised to min power, the rest unpaid
                short = np.maximum(np.minimum(pl.min_power[self.lp], avail) - q, 0.0) * (q > 0)
                profit[:, self.sl_plant] -= mc * short * dt
            regret[:, self.sl_plant] = np.maximum(pcol[:, self.sl_plant] - mc, 0.0) * np.maximum(avail - q, 0.0)
            accepted[:, self.sl_plant] = q
        if len(self.lr):
            rn = sc.renewables
            q = acc_s[:, self.col_ren]
            mc = rn.marginal_cost[self.lr]
            profit[:, self.sl_ren] = q * (pay_s[:, self.col_ren] - mc) * dt
            avail = rn.capacity[self.lr] * rn.availability[t, self.lr]
            regret[:, self.sl_ren] = np.maximum(pcol[:, self.sl_ren] - mc, 0.0) * np.maximum(avail - q, 0.0)
            accepted[:, self.sl_ren] = q
        if self.n_storage:
            st = sc.storages
            dt = sc.time_step_hours
            q_dis = acc_s[:, self.col_dis]
            q_ch = acc_d[:, : self.n_storage]
            money = q_dis * (pay_s[:, self.col_dis] - st.additional_cost_discharge) - q_ch * (
                pay_d + st.additional_cost_charge
            )
            e_in = q_ch * st.efficiency_charge * dt
            e_out = q_dis / st.efficiency_discharge * dt
            new_soc = self.soc + e_in - e_out
            # average cost of the stored energy (EUR per MWh stored)
            with np.errstate(divide="ignore", invalid="ignore"):
                charged_cost = np.where(
                    e_in > 0,
                    (self.stored_cost * np.maximum(self.soc, 0) + q_ch * pay_d * dt) / np.maximum(self.soc + e_in, 1e-12),
                    self.stored_cost,
                )
            self.stored_cost = np.where(new_soc > 1e-9, charged_cost, 0.0)
            self.soc = np.clip(new_soc, self._soc_min, self._soc_max)
            if len(self.ls):
                profit[:, self.sl_storage] = money[:, self.ls] * dt
                accepted[:, self.sl_storage] = (q_dis - q_ch)[:, self.ls]
        regret *= dt
        reward = (profit - self.regret_scale * regret) * self.reward_factor
        if self.recording:
            self._log.append((t, sp, sv, dpr, dvo, price, acc_s, acc_d, profit, self.last_dispatch, res.supply_share))
            if node_price is not None:  # network: the LP's acceptance of the rule units, the node prices
                self._log[-1] += (self._net_static_acc, node_price)
        self.last_dispatch = accepted
        self.price_hist[:, :-1] = self.price_hist[:, 1:]
        self.price_hist[:, -1] = price
        if node_price is not None:
            self.node_price_hist[:, :, :-1] = self.node_price_hist[:, :, 1:]
            self.node_price_hist[:, :, -1] = node_price
        self.step_count += 1
        if self.step_count >= self.max_cycles:
            self.done = True
        return StepOutcome(
            price=price, profit=profit, regret=regret, reward=reward, accepted=accepted,
            bid_price=bid_price, volume=res.volume, demand=np.full(B, self.fixed_demand[t]),
            scarcity=res.scarcity, clearing=res, node_price=node_price,
        )

    # ------------------------------------------------------------------ fused single-copy step
    def step_observe(self, actions: np.ndarray, active: np.ndarray | None = None):
        """:meth:`step` then :meth:`observe`: ``(StepOutcome, obs (B, n, obs_dim))``.

        With one copy (and pay-as-clear, no recording) it goes through the fused
        single-copy path of :mod:`envs.fast`, which gives the same results several times
        faster (``tests/test_fast_path.py``); otherwise it is exactly ``step`` + ``observe``.
        """
        fast = self.__dict__.get("_fast_step")
        if fast is None:
            from .fast import FastStep

            fast = self._fast_step = FastStep(self)
        if fast.supported():
            fo = fast.step(actions[0].tolist(), None if active is None else active.tolist())
            # reshape, not [None]: a 0 stride on the copy axis sends torch to another matmul
            # kernel (last-bit differences in the actions) -- the same strides as observe()
            return fo.to_outcome(self), fo.obs.reshape((1,) + fo.obs.shape)
        out = self.step(actions, active)
        return out, self.observe()

    # ------------------------------------------------------------------ recording
    def episode_record(self, copy: int = 0):
        """The recorded hours of copy ``copy`` as an :class:`~envs.record.EpisodeRecord`
        (requires ``recording = True`` during the episode)."""
        from .record import EpisodeRecord

        if not self._log:
            raise RuntimeError("nothing recorded: create the env with record=True and step an episode first")
        if not 0 <= copy < self.B:
            raise ValueError(f"copy must be in [0, {self.B}), got {copy}")
        sc = self.scenario
        pl, rn, st = sc.plants, sc.renewables, sc.storages
        units = list(self.static_names)
        kinds = list(self.static_kind)
        def add(name, kind):
            units.append(name)
            kinds.append(kind)
            return len(units) - 1
        lp_u = [add(pl.names[i], "plant") for i in self.lp]
        lr_u = [add(rn.names[i], "renewable") for i in self.lr]
        st_u = [add(st.names[i], "storage") for i in range(self.n_storage)]
        ns = len(self.static_names)
        supply_unit = np.array(list(range(ns)) + lp_u + lp_u + lr_u + st_u, dtype=np.int64)
        # priced demand units and exchange exports (an exchange's name is already a unit when it imports)
        sd_u = [units.index(nm) if k == "exchange" and nm in units else add(nm, k)
                for nm, k in zip(self.sdem_names, self.sdem_kind)]
        demand_unit = np.array(st_u + sd_u, dtype=np.int64)
        hours = np.array([e[0] for e in self._log])
        H = len(hours)
        stat_p = self.static_price[hours]
        stat_v = self.static_volume[hours]
        stat_c = np.concatenate(
            [pl.marginal_cost[hours][:, self.rp], np.broadcast_to(rn.marginal_cost[self.rr], (H, len(self.rr))),
             self.imp_price[hours]], axis=1
        )
        dyn = lambda k: np.stack([e[k][copy] for e in self._log])  # noqa: E731
        res_p = np.stack([e[5][copy] for e in self._log])
        price_row = res_p
        share = np.stack([e[10][copy] for e in self._log])
        static_acc = np.where(stat_p < price_row[:, None], stat_v, 0.0) + np.where(
            stat_p == price_row[:, None], stat_v * share[:, None], 0.0
        )
        if self.net is not None:  # network: the LP's acceptance (clearing_price is the demand-weighted mean)
            static_acc = np.stack([e[11][copy] for e in self._log])
        dyn_cost = np.concatenate(
            [
                pl.marginal_cost[hours][:, self.lp], pl.marginal_cost[hours][:, self.lp],
                np.broadcast_to(rn.marginal_cost[self.lr], (H, len(self.lr))),
                np.broadcast_to(st.additional_cost_discharge, (H, self.n_storage)),
            ],
            axis=1,
        )
        agent_unit = np.array(lp_u + [st_u[i] for i in self.ls] + lr_u, dtype=np.int64)
        return EpisodeRecord(
            hours=hours,
            times=sc.times[hours],
            units=tuple(units),
            unit_kind=tuple(kinds),
            supply_price=np.concatenate([stat_p, dyn(1)], axis=1),
            supply_volume=np.concatenate([stat_v, dyn(2)], axis=1),
            supply_cost=np.concatenate([stat_c, dyn_cost], axis=1),
            supply_unit=supply_unit,
            demand_price=dyn(3),
            demand_volume=dyn(4),
            demand_cost=np.concatenate(
                [np.broadcast_to(st.additional_cost_charge, (H, self.n_storage)), np.zeros((H, len(self.sdem_names)))],
                axis=1,
            ),
            demand_unit=demand_unit,
            fixed_demand=self.fixed_demand[hours].copy(),
            clearing_price=res_p,
            supply_accepted=np.concatenate([static_acc, dyn(6)], axis=1),
            demand_accepted=dyn(7),
            agents=tuple(self.agents),
            agent_unit=agent_unit,
            agent_kind=tuple(self.agent_kind),
            agent_profit=dyn(8),
            agent_prev_dispatch=dyn(9),
            agent_start_up_cost=self.agent_start_up_cost,
            agent_min_output=self.agent_min_output,
            max_bid_price=self.max_bid_price,
            price_cap=self.cap,
            price_floor=self.floor,
            mechanism=self.mechanism,
            dt=sc.time_step_hours,
        )
