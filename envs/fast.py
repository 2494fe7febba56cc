"""The fused single-copy step: one market hour of a ``B == 1`` core in plain Python.

:meth:`MarketCore.step <envs.core.MarketCore.step>` is written for ``B`` copies at once
and spends most of a single copy's step in some 80 small NumPy calls. For ``B == 1``
(the PettingZoo env) :class:`FastStep` does the same hour with Python floats: the bids
of the few dynamic units, :func:`envs.market.clear_single` for the clearing, the
profits and the storage update, and the next observation. Everything an hour needs
that does not depend on the actions (available capacities, marginal costs, the
rule-bidding units' sorted supply curve, the rule storage's signal, the clipped
forecast part of the observation) is precomputed per hour in one table and read with a
single ``tolist()``.

It performs the same floating-point operations as the generic path, so the results are
equal (``tests/test_fast_path.py`` checks every output against :meth:`MarketCore.step`
on random actions, for every built-in and ASSUME scenario). It applies when
:meth:`FastStep.supported` says so (one copy, pay-as-clear, not recording, a moderate
number of bids); the env falls back to the generic path otherwise.

Any change to the unit logic of :meth:`MarketCore.build_bids` / :meth:`MarketCore.step`
must be mirrored here or excluded in :meth:`FastStep.supported`; the equality test
fails otherwise.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import NamedTuple

import numpy as np

from .market import SingleClearing, clear_single

UNDERCUT_TICK = 0.01
"""EUR/MWh below the next rule-bidding offer where ``plant_bids="undercut"`` places a
learning plant's offer (the exact analysis's price tick); :data:`envs.core.UNDERCUT_TICK`."""

STORAGE_BEHIND_TICK = 0.005
"""EUR/MWh below the next rule-bidding offer where ``storage_prices="behind"`` places a
two-sided learning storage unit's discharge offer: half of :data:`UNDERCUT_TICK`, so that
a learning plant on its grid that stays under the same rule offer comes first in the
merit order and the storage unit second (:data:`envs.core.STORAGE_BEHIND_TICK`)."""

# bids per hour (static + dynamic) up to which the fused path is used; measured faster
# than the array path up to 300 bids (200 units, 100 learners: 1.5x) on the dev machine
FAST_MAX_BIDS = 512


def _undercut(ladder: list, p: float, mbp: float, tick: float = UNDERCUT_TICK, tie_below: float | None = None,
              rules=None) -> float:
    """:meth:`MarketCore.undercut <envs.core.MarketCore.undercut>` for one price and the
    hour's sorted rule offers ``ladder``."""
    k = bisect_left(ladder, p)
    if k < len(ladder):
        rule = ladder[k]
        v = rule - tick
        if v <= mbp:
            if tie_below is not None and rule < tie_below and (rules is None or rule in rules):
                return rule
            return v
    return p


def _outbid(ladder: list, p: float) -> float:
    """:meth:`MarketCore.outbid <envs.core.MarketCore.outbid>` for one price."""
    k = bisect_right(ladder, p) - 1
    if k >= 0:
        v = ladder[k] + UNDERCUT_TICK
        if v >= 0.0:
            return v
    return p


class FastOutcome(NamedTuple):
    """One step of the fused path (lists over the agents, floats)."""

    hour: int
    price: float
    profit: list
    regret: list
    reward: list
    accepted: list
    bid_price: list  # [[p0, p1], ...]
    marginal_cost: list
    volume: float
    demand: float
    scarcity: bool
    clearing: SingleClearing
    obs: np.ndarray  # (n, obs_dim) float32: the observation after the step

    def to_outcome(self, core):
        """The same result as a :class:`~envs.core.StepOutcome` of arrays (for rendering)."""
        from .core import StepOutcome
        from .market import ClearingResult

        c = self.clearing
        price = np.array([self.price])
        res = ClearingResult(
            price=price, volume=np.array([c.volume]), supply_accepted=np.array([c.supply_accepted]).reshape(1, -1),
            demand_accepted=np.array([c.demand_accepted]).reshape(1, -1), supply_payment=price[:, None],
            demand_payment=price[:, None], scarcity=np.array([c.scarcity]), unserved=np.array([c.unserved]),
            supply_share=np.array([c.supply_share]), fixed_accepted=np.array([c.fixed_accepted]),
        )
        n = core.n
        return StepOutcome(
            price=price, profit=np.array([self.profit]).reshape(1, n), regret=np.array([self.regret]).reshape(1, n),
            reward=np.array([self.reward]).reshape(1, n), accepted=np.array([self.accepted]).reshape(1, n),
            bid_price=np.array([self.bid_price]).reshape(1, n, 2), volume=np.array([self.volume]),
            demand=np.array([self.demand]), scarcity=np.array([self.scarcity]), clearing=res,
        )


class FastStep:
    """The fused ``B == 1`` step of one :class:`~envs.core.MarketCore` (see module doc)."""

    def __init__(self, core):
        self.core = core
        self._key = None
        self._row_hour = -1
        self._row: list = []
        self.obs_tail: np.ndarray | None = None  # extra constant columns appended to every observation

    def supported(self) -> bool:
        """Whether :meth:`step` may be used for the core's next step."""
        c = self.core
        return (
            c.B == 1 and c.mechanism == "pay_as_clear" and not c.recording
            and c.net is None  # zonal/nodal markets clear by LP (envs/network.py)
            and c.L == c.n_storage  # no priced demand units or exchange exports (dynamic demand columns)
            and not c.lp_single.any()  # single-bid plants: one supply column per plant
            and c.static_sorted_price.shape[1] + c.K + c.L <= FAST_MAX_BIDS
        )

    # ------------------------------------------------------------------ tables
    def _refresh(self) -> None:
        """(Re)build the per-hour table when the core's hourly data changed (new
        scenario arrays, e.g. the noise of a new episode)."""
        c = self.core
        key = (id(c.scenario), id(c.static_sorted_price), id(c.grid_ladder), id(c.static_sorted_volume), id(c.fixed_demand),
               id(c._fc_block), c.max_bid_price, c.foresight)
        if key == self._key:
            return
        sc = c.scenario
        pl, rn, st = sc.plants, sc.renewables, sc.storages
        T, F = c.T, c.foresight
        lp, lr = c.lp, c.lr
        avail = pl.max_power[lp] * pl.availability[:, lp]
        inflex = np.minimum(pl.min_power[lp], avail)
        ren_avail = rn.capacity[lr] * rn.availability[:, lr]
        rs_key = (id(c.price_forecast), T)
        if getattr(self, "_rs_key", None) != rs_key:  # the rule storage's signal, per hour (noise leaves it)
            if c.n_storage and not st.learning.all():
                rs = [c.rule_storage_direction(t) for t in range(T)]
                self._rs = np.array([[m for m, _ in rs], [float(ch) for _, ch in rs]])
            else:
                self._rs = np.zeros((2, T))
            self._rs_key = rs_key
        rs_mean, rs_charge = self._rs
        Ns = c.static_sorted_price.shape[1]
        parts = [avail, inflex, pl.marginal_cost[:, lp], ren_avail, rn.availability[:, lr],
                 c.fixed_demand[:, None], rs_mean[:, None], rs_charge[:, None],
                 c.static_sorted_price, c.static_sorted_volume]
        if c.grid_ladder is not c.static_sorted_price:  # grid_learner_costs: the grid's own ladder
            parts.append(c.grid_ladder)
        self.table = np.concatenate([np.asarray(p, np.float64).reshape(T, -1) for p in parts], axis=1)
        P, R = len(lp), len(lr)
        o = np.cumsum([0, P, P, P, R, R, 1, 1, 1, Ns, Ns] + ([c.grid_ladder.shape[1]] if len(parts) > 10 else []))
        self.off = o.tolist()
        # the forecast part of the observation, clipped to the bounds, per hour 0..T
        lo = c.obs_low[: 2 * F].astype(np.float64)
        hi = c.obs_high[: 2 * F].astype(np.float64)
        self.fc = np.minimum(np.maximum(c._fc_block, lo), hi)
        self.ph_lo = c.obs_low[2 * F: 3 * F].astype(np.float64)
        self.ph_hi = c.obs_high[2 * F: 3 * F].astype(np.float64)
        self.u_lo = float(c.obs_low[3 * F])
        self.u_hi = float(c.obs_high[3 * F])
        # static per-unit values
        self.P, self.R, self.S = P, R, c.n_storage
        self.suc = pl.start_up_cost[lp].tolist()
        self.ren_mc = rn.marginal_cost[lr].tolist()
        self.cap = c.agent_capacity.tolist()
        self.rf = np.asarray(c.reward_factor, np.float64).tolist()
        self.st = [
            a.tolist() for a in (
                st.max_power_discharge, st.max_power_charge, st.efficiency_discharge, st.efficiency_charge,
                np.asarray(c._soc_min, np.float64), np.asarray(c._soc_max, np.float64),
                st.additional_cost_discharge, st.additional_cost_charge, st.capacity,
            )
        ]
        # storage unit index -> agent index (learning) or -1 (rule)
        slot = [-1] * c.n_storage
        for m, s in enumerate(c.ls.tolist()):
            slot[s] = P + m
        self.st_slot = slot
        self.ls = c.ls.tolist()
        self.ls_add_dis = st.additional_cost_discharge[c.ls].tolist()
        self._buf_soc = np.zeros((1, c.n_storage))
        self._buf_cost = np.zeros((1, c.n_storage))
        self._buf_ld = np.zeros((1, c.n))
        self._key = key
        self._row_hour = -1

    def _row_at(self, t: int) -> list:
        if t != self._row_hour:
            self._row = self.table[t].tolist()
            self._row_hour = t
        return self._row

    # ------------------------------------------------------------------ step
    def step(self, acts: list, active: list | None) -> FastOutcome:
        """Clear the current hour and advance, like ``core.step`` then ``core.observe``.

        Args:
            acts: per agent, a list of its action entries (floats already clipped to
                [-1, 1]; at least the agent's own action size).
            active: ``None`` (everyone bids) or a list of bools per agent.
        """
        c = self.core
        if c.done:
            raise RuntimeError("the episode is over: call reset() before step()")
        self._refresh()
        t = c.hour
        row = self._row_at(t)
        o = self.off
        P, R, S, n = self.P, self.R, self.S, c.n
        mbp = c.max_bid_price
        dt = c.scenario.time_step_hours
        sp = []
        sv = []
        bid_price = [[0.0, 0.0] for _ in range(n)]
        avail_p = row[o[0]: o[1]]
        inflex_p = row[o[1]: o[2]]
        mc_p = row[o[2]: o[3]]
        his = []
        g0, g1 = (o[10], o[11]) if len(o) > 11 else (o[8], o[9])  # the grid's ladder (core.grid_ladder)
        ladder = row[g0: g1] if c.plant_bids == "undercut" else None
        rules = set(row[o[8]: o[9]]) if c.tie_below_cost and c.plant_bids == "undercut" else None
        # start_up_markup_hours: a cold plant offers at least its cost + markup (core.cold_offer_floor)
        markup = c.start_up_markup.tolist() if c.start_up_markup_hours > 0 else None
        last_d = c.last_dispatch[0].tolist() if markup is not None else None
        snap = c.cost_snap
        tie_cost = c.tie_below_cost
        for j in range(P):
            a0 = acts[j][0] * mbp
            a1 = acts[j][1] * mbp
            lo = a0 if a0 <= a1 else a1
            hi = a1 if a0 <= a1 else a0
            if snap > 0:  # core.cost_snap: a price within the band of the cost is the cost
                m = mc_p[j]
                lo = m if abs(lo - m) <= snap else lo
                hi = m if abs(hi - m) <= snap else hi
            if markup is not None and markup[j] > 0 and last_d[j] <= 0:
                f = mc_p[j] + markup[j]
                lo = lo if lo >= f else f
                hi = hi if hi >= f else f
            if ladder is not None:  # MarketCore.undercut, one price at a time
                tie = mc_p[j] if tie_cost else None  # core.tie_below_cost
                lo = _undercut(ladder, lo, mbp, UNDERCUT_TICK, tie, rules)
                hi = _undercut(ladder, hi, mbp, UNDERCUT_TICK, tie, rules)
            sp.append(lo)
            his.append(hi)
            bid_price[j] = [lo, hi]
        sp += his
        sv += inflex_p
        sv += [a - i for a, i in zip(avail_p, inflex_p)]
        ren_avail = row[o[3]: o[4]]
        ren_mc = self.ren_mc
        for r in range(R):
            a = acts[c.sl_ren.start + r][0] * mbp
            if snap > 0 and abs(a - ren_mc[r]) <= snap:
                a = ren_mc[r]
            sp.append(a)
            bid_price[c.sl_ren.start + r] = [a, a]
        sv += ren_avail
        dpr = []
        dvo = []
        if S:
            mx_d, mx_c, eff_d, eff_c, smin, smax, add_d, add_c, _ = self.st
            soc = c.soc[0].tolist()
            rs_mean, rs_charge = row[o[6]], row[o[7]]
            two_sided = c.storage_bids == "two_sided"
            st_ladder = row[g0: g1] if two_sided and c.storage_prices != "free" else None
            st_tick = c.storage_offer_tick
            for s in range(S):
                x = soc[s]
                cd = (x - smin[s]) * eff_d[s] / dt
                cd = mx_d[s] if mx_d[s] <= cd else cd
                cd = cd if cd >= 0.0 else 0.0
                cc = (smax[s] - x) / eff_c[s] / dt
                cc = mx_c[s] if mx_c[s] <= cc else cc
                cc = cc if cc >= 0.0 else 0.0
                k = self.st_slot[s]
                if k >= 0 and two_sided:  # charge bid at the lower price, offer at the higher
                    a0, a1 = acts[k][0], acts[k][1]
                    lo, hi = (a0, a1) if a0 <= a1 else (a1, a0)
                    p_ch, p_dis = (lo + 1.0) * (0.5 * mbp), (hi + 1.0) * (0.5 * mbp)
                    if st_ladder is not None:  # MarketCore.undercut / outbid
                        p_dis = _undercut(st_ladder, p_dis, mbp, st_tick)
                        p_ch = _outbid(st_ladder, p_ch)
                        p_ch = p_ch if p_ch <= p_dis else p_dis
                    bid_price[k] = [p_ch, p_dis]
                    sp.append(p_dis)
                    sv.append(cd)
                    dpr.append(p_ch)
                    dvo.append(cc)
                    continue
                if k >= 0:
                    a = acts[k][0] * mbp
                    ps = abs(a)
                    dis = a >= 0
                    bid_price[k] = [a, a]
                else:
                    ps = rs_mean
                    dis = not rs_charge
                sp.append(ps)
                sv.append(cd if dis else 0.0)
                dpr.append(ps)
                dvo.append(0.0 if dis else cc)
        if active is not None:
            for j in range(P):
                if not active[j]:
                    sv[j] = 0.0
                    sv[P + j] = 0.0
                    bid_price[j] = [0.0, 0.0]
            for r in range(R):
                i = c.sl_ren.start + r
                if not active[i]:
                    sv[2 * P + r] = 0.0
                    bid_price[i] = [0.0, 0.0]
            for m, s in enumerate(self.ls):
                if not active[P + m]:
                    sv[2 * P + R + s] = 0.0
                    dvo[s] = 0.0
                    bid_price[P + m] = [0.0, 0.0]
        fixed = row[o[5]]
        res = clear_single(sp, sv, dpr, dvo, fixed, row[o[8]: o[9]], row[o[9]: o[10]], c.cap, c.floor)
        price = res.price
        acc = res.supply_accepted
        profit = [0.0] * n
        regret = [0.0] * n
        accepted = [0.0] * n
        mcs = [0.0] * n
        last = c.last_dispatch[0].tolist()
        raise_output = c.min_power_rule == "raise"
        for j in range(P):
            q_in = acc[j]
            q_fx = acc[P + j]
            q = q_in + q_fx
            revenue = q_in * price + q_fx * price
            mc = mc_p[j]
            pr = (revenue - mc * q) * dt  # energy = power x step length; a start costs its full amount
            if raise_output and 0.0 < q < inflex_p[j]:  # min_power_rule="raise": min power runs, the rest unpaid
                pr = pr - mc * (inflex_p[j] - q) * dt
            if q > 0 and last[j] <= 0:
                pr = pr - self.suc[j]
            else:
                pr = pr - 0.0
            profit[j] = pr
            m1 = price - mc
            m2 = avail_p[j] - q
            regret[j] = (m1 if m1 > 0.0 else 0.0) * (m2 if m2 > 0.0 else 0.0) * dt
            accepted[j] = q
            mcs[j] = mc
        r0 = c.sl_ren.start
        for r in range(R):
            q = acc[2 * P + r]
            mc = self.ren_mc[r]
            profit[r0 + r] = q * (price - mc) * dt
            m1 = price - mc
            m2 = ren_avail[r] - q
            regret[r0 + r] = (m1 if m1 > 0.0 else 0.0) * (m2 if m2 > 0.0 else 0.0) * dt
            accepted[r0 + r] = q
            mcs[r0 + r] = mc
        if S:
            cost = c.stored_cost[0].tolist()
            dacc = res.demand_accepted
            new_soc = [0.0] * S
            new_cost = [0.0] * S
            for s in range(S):
                q_dis = acc[2 * P + R + s]
                q_ch = dacc[s]
                money = q_dis * (price - add_d[s]) - q_ch * (price + add_c[s])
                e_in = q_ch * eff_c[s] * dt
                e_out = q_dis / eff_d[s] * dt
                x = soc[s]
                ns = x + e_in - e_out
                if e_in > 0:
                    cc = (cost[s] * (x if x >= 0 else 0) + q_ch * price * dt) / max(x + e_in, 1e-12)
                else:
                    cc = cost[s]
                new_cost[s] = cc if ns > 1e-9 else 0.0
                ns = smin[s] if ns < smin[s] else ns
                new_soc[s] = smax[s] if ns > smax[s] else ns
                k = self.st_slot[s]
                if k >= 0:
                    profit[k] = money * dt
                    accepted[k] = q_dis - q_ch
            for m, s in enumerate(self.ls):
                mcs[P + m] = self.ls_add_dis[m]
            b = self._buf_soc
            if c.soc is not b:
                b = self._buf_soc = np.zeros((1, S))
            b[0] = new_soc
            c.soc = b
            b = self._buf_cost
            if c.stored_cost is not b:
                b = self._buf_cost = np.zeros((1, S))
            b[0] = new_cost
            c.stored_cost = b
        rs = c.regret_scale
        rf = self.rf
        reward = [(p - rs * g) * f for p, g, f in zip(profit, regret, rf)]
        b = self._buf_ld
        if c.last_dispatch is not b:
            b = self._buf_ld = np.zeros((1, n))
        b[0] = accepted
        c.last_dispatch = b
        ph = c.price_hist
        ph[0, :-1] = ph[0, 1:]
        ph[0, -1] = price
        c.step_count += 1
        if c.step_count >= c.max_cycles:
            c.done = True
        obs = self._observe(accepted)
        return FastOutcome(t, price, profit, regret, reward, accepted, bid_price, mcs, res.volume, fixed,
                           res.scarcity, res, obs)

    def _observe(self, dispatch: list) -> np.ndarray:
        """``core.observe()[0]`` after the step, from the values at hand."""
        c = self.core
        F = c.foresight
        h = c.hour
        row = self._row_at(min(h, c.T - 1))
        o = self.off
        mbp = c.max_bid_price
        lo, hi = self.u_lo, self.u_hi
        u = []
        P, R = self.P, self.R
        cap = self.cap
        mc = row[o[2]: o[3]]
        for j in range(P):
            u.append([dispatch[j] / cap[j], mc[j] / mbp])
        if self.ls:
            st_cap = self.st[8]
            soc = c.soc[0].tolist()
            cost = c.stored_cost[0].tolist()
            for s in self.ls:
                u.append([soc[s] / st_cap[s], cost[s] / mbp])
        r0 = c.sl_ren.start
        av = row[o[4]: o[5]]
        for r in range(R):
            u.append([dispatch[r0 + r] / cap[r0 + r], av[r]])
        u = [[lo if x < lo else (hi if x > hi else x) for x in pair] for pair in u]
        D = c.obs_dim
        tail = self.obs_tail
        obs = np.empty((c.n, D if tail is None else D + tail.shape[1]), dtype=np.float32)
        obs[:, : 2 * F] = self.fc[min(h, c.T)]
        p = c.price_hist[0] / mbp
        obs[:, 2 * F: 3 * F] = np.minimum(np.maximum(p, self.ph_lo, out=p), self.ph_hi, out=p)
        obs[:, 3 * F: D] = u
        if tail is not None:
            obs[:, D:] = tail
        return obs
