"""Tests of the equilibrium reference (envs.equilibrium, re-exported by envs.analysis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs import load_scenario
from envs.analysis import (
    EquilibriumResult,
    distance_to_equilibrium,
    equilibrium,
    exploitability,
)
from envs.core import MarketCore

from _examples import ASSUME_DIR  # noqa: E402


def test_tiny_equilibrium_is_the_hand_computed_one():
    """tiny: one learner (1000 MW at 40) between 1000 MW of cheaper plants and a 2000 MW
    peaker at 70: it sets the price at 70 - tick and sells demand - 1000 MW."""
    sc = load_scenario("tiny")
    eq = equilibrium(sc)
    assert isinstance(eq, EquilibriumResult)
    assert eq.converged and eq.reason == "converged"
    demand = sc.demands.volume.sum(axis=1)
    np.testing.assert_allclose(eq.prices, 70.0 - 0.01)
    assert eq.profit[0] == pytest.approx(((demand - 1000.0) * (70.0 - 0.01 - 40.0)).sum())
    assert eq.exploitability == pytest.approx(0.0, abs=1e-9)
    assert np.all(eq.residual_gain <= eq.tolerance)
    assert "equilibrium found" in eq.verdict()
    assert eq.require() is eq
    # the certificate is an independent analysis of the final record
    ex = exploitability(eq.record, scenario=sc)
    assert np.all(ex.gain <= eq.tolerance + 1e-6)
    # by name, as the issue asks
    assert equilibrium("tiny").profit[0] == pytest.approx(eq.profit[0])


def test_profile_record_equals_env_record_without_storage_override():
    """The profile simulator is the env's core: with no storage volumes given, the record
    is the one a plain MarketCore makes from the same actions."""
    from envs.equilibrium import _make_core, simulate_profile

    sc = load_scenario("default")
    H = 30
    rng = np.random.default_rng(1)
    core = _make_core(sc, H, None)
    act = rng.uniform(-1, 1, (H, core.n, core.max_act))
    rec = simulate_profile(core, act, None)
    plain = MarketCore(sc, max_cycles=H)
    plain.recording = True
    plain.reset(np.random.default_rng(0))
    for h in range(H):
        plain.step(act[h][None])
    ref = plain.episode_record()
    np.testing.assert_array_equal(rec.clearing_price, ref.clearing_price)
    np.testing.assert_array_equal(rec.agent_profit, ref.agent_profit)


def test_not_converged_is_reported_not_pretended():
    eq = equilibrium("default", hours=48, max_passes=1)
    assert not eq.converged and eq.reason == "max_passes"
    assert "NO equilibrium" in eq.verdict()
    assert np.any(eq.residual_gain > eq.tolerance)
    assert len(eq.changing_hours) > 0
    with pytest.raises(RuntimeError, match="NO equilibrium"):
        eq.require()
    d = eq.summary_dict()
    assert d["converged"] is False and d["reason"] == "max_passes"


def test_default_short_window_storage_and_start_ups():
    """24 hours of the built-in default (two CCGTs with start-up costs, one pumped
    storage): whatever the outcome, the certificate matches an independent analysis of
    the final record, and a converged result leaves every agent within tolerance."""
    sc = load_scenario("default")
    eq = equilibrium(sc, hours=24, max_passes=6)
    # the search and its certificate play on the state-of-charge grid (storage_off_grid=False)
    ex = exploitability(eq.record, scenario=sc, soc_points=101, storage_off_grid=False)
    np.testing.assert_allclose(ex.best_response_profit, np.maximum(eq.best_response_profit, eq.profit), rtol=1e-9)
    if eq.converged:
        assert np.all(eq.residual_gain <= eq.tolerance)
    else:
        assert eq.reason in ("cycle", "max_passes")
        assert np.any(eq.residual_gain > eq.tolerance)
    # the storage follows a feasible schedule: the env's SoC limits hold in the record
    k = eq.kinds.index("storage")
    assert np.all(np.abs(eq.storage_volume[:, k]) <= 400.0 + 1e-9)


def test_distance_to_equilibrium():
    sc = load_scenario("tiny")
    eq = equilibrium(sc)
    same = distance_to_equilibrium(eq.record, eq)
    assert same.price_rmse == 0.0 and same.mean_price_difference == 0.0
    np.testing.assert_allclose(same.profit_ratio, 1.0)
    # the learner bidding its marginal cost: price 40 in every hour (it is marginal)
    core = MarketCore(sc)
    core.recording = True
    core.reset(np.random.default_rng(0))
    while not core.done:
        core.step(np.full((1, core.n, core.max_act), 40.0 / core.max_bid_price))
    rec = core.episode_record()
    d = distance_to_equilibrium(rec, eq)
    diff = rec.clearing_price - eq.prices
    assert d.mean_price_difference == pytest.approx(diff.mean())
    assert d.price_rmse == pytest.approx(np.sqrt((diff ** 2).mean()))
    assert d.mean_price_difference < -20  # far below the equilibrium price of 69.99
    assert d.profit[0] == pytest.approx(rec.agent_profit.sum())
    assert d.profit_ratio[0] == pytest.approx(rec.agent_profit.sum() / eq.profit[0])
    assert set(d.as_dict()) >= {"mean_price_difference", "price_rmse", "agents"}
    # another window: refused with a clear message
    short = equilibrium(sc, hours=24)
    with pytest.raises(ValueError, match="hours"):
        distance_to_equilibrium(rec, short)


def test_plot_prices_vs_equilibrium(tmp_path):
    pytest.importorskip("matplotlib")
    from envs.plots_analysis import plot_prices_vs_equilibrium

    sc = load_scenario("tiny")
    eq = equilibrium(sc)
    path = plot_prices_vs_equilibrium(eq.record, eq, tmp_path / "prices.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input():
    with pytest.raises(ValueError, match="tick"):
        equilibrium("tiny", tick=0.0)
    with pytest.raises(ValueError, match="max_passes"):
        equilibrium("tiny", max_passes=0)


@pytest.mark.skipif(not (ASSUME_DIR / "example_02b").is_dir(), reason="shared ASSUME scenarios not present")
@pytest.mark.slow
def test_02b_converges_with_certificate():
    sc = load_scenario(ASSUME_DIR / "example_02b")
    eq = equilibrium(sc)
    assert eq.converged, eq.verdict()
    ex = exploitability(eq.record, scenario=sc)
    assert np.all(ex.gain <= eq.tolerance + 1e-6)
    assert eq.prices.mean() > 40


def test_verdict_and_agent_rows():
    from envs.analysis import agent_rows, deviation_verdict, max_relative_gain

    sc = load_scenario("tiny")
    eq = equilibrium(sc)
    ex = exploitability(eq.record, scenario=sc)
    assert deviation_verdict(ex).startswith("near equilibrium: no agent can gain more than 0.0 %")
    rows = agent_rows(ex, eq)
    a = eq.agents[0]
    assert rows[a]["equilibrium_profit"] == pytest.approx(eq.profit[0])
    assert rows[a]["profit"] == pytest.approx(eq.profit[0])
    # bidding marginal cost: the learner can gain (70 - 0.01 - 40) / (70 - 0.01 - 40) = 100 %
    core = MarketCore(sc)
    core.recording = True
    core.reset(np.random.default_rng(0))
    while not core.done:
        core.step(np.full((1, core.n, core.max_act), 0.4))
    ex = exploitability(core.episode_record(), scenario=sc)
    rel, who = max_relative_gain(ex)
    assert who == a and rel == pytest.approx(1.0)
    assert deviation_verdict(ex).startswith(f"not at equilibrium: {a} can gain")
    # the agent's sales as a scale: at marginal cost it sells a lot and earns nothing
    rec = core.episode_record()
    revenue = rec.agent_revenue()
    cols = rec.agent_supply_columns(0)
    assert revenue[0] == pytest.approx((rec.supply_accepted[:, cols].sum(axis=1) * rec.clearing_price).sum() * rec.dt)
    assert revenue[0] > 1e6 and ex.recorded_profit[0] == pytest.approx(0.0, abs=1e-6)  # sells at its cost
    share = 100 * ex.gain[0] / revenue[0]
    assert deviation_verdict(ex, revenue=revenue).endswith(f"; the gain is {share:.2g} % of its sales of {revenue[0]:,.0f} EUR)")


@pytest.mark.parametrize("k", [0, 1, 2])
def test_best_response_replayed_in_the_env_earns_what_it_promised(k):
    """default, 72 hours, from the equilibrium's starting profile (plants at marginal
    cost, storage idle): the agent's exact best response (plants: start-ups over the
    episode; storage: the SoC schedule), replayed through the env's core with everything
    else fixed, earns exactly the computed profit in every hour."""
    from envs.analysis import best_response
    from envs.equilibrium import _actions, _adopt, _initial_profile, _make_core, simulate_profile

    sc = load_scenario("default")
    core = _make_core(sc, 72, None)
    price, vol = _initial_profile(core)
    rec = simulate_profile(core, _actions(core, price), vol, price)
    br = best_response(rec, k, scenario=sc, soc_points=101)
    assert br.best_profit > rec.agent_profit[:, k].sum() + 1.0
    _adopt(core, price, vol, k, br, None)
    again = simulate_profile(core, _actions(core, price), vol, price)
    np.testing.assert_allclose(again.agent_profit[:, k], br.best_profit_per_hour, rtol=1e-9, atol=1e-6)
    if core.agent_kind[k] == "plant":
        # start-ups happen where the computed schedule says (dispatch after an hour without)
        q = again.supply_accepted[:, again.agent_supply_columns(k)].sum(axis=1)
        starts = (q > 0) & (np.concatenate([[0.0], q[:-1]]) <= 0)
        assert starts.sum() >= 1


def test_whole_volume_storage_equilibrium():
    """``storage_moves="full"``: the equilibrium of the game in which the learning storage
    trades its whole feasible volume or waits (24 hours of `default`). Every storage move
    of the profile is idle, the largest move of the grid, or a move onto an end of its
    state-of-charge range; the certificate is the whole-volume best responses to the
    final profile (the any-volume best response of the storage can only earn more)."""
    from envs.analysis import _storage_params  # noqa: PLC2701 - the unit's limits as the analysis uses them
    from envs.analysis import best_response, soc_grid

    sc = load_scenario("default")
    eq = equilibrium(sc, hours=24, storage_moves="full", max_passes=10)
    assert eq.converged
    k = eq.kinds.index("storage")
    assert eq.certificate.responses[eq.agents[k]].n_candidates > 0
    rec = eq.record
    full = best_response(rec, k, scenario=sc, storage_moves="full", storage_off_grid=False)
    assert full.best_profit == pytest.approx(eq.best_response_profit[k], rel=1e-9)
    assert best_response(rec, k, scenario=sc, storage_off_grid=False).best_profit >= full.best_profit - 1e-6
    # off the grid, whole-volume moves can only find more (the env's own action)
    assert best_response(rec, k, scenario=sc, storage_moves="full").best_profit >= full.best_profit - 1e-6
    p = _storage_params(rec, k, sc, None)
    levels, _ = soc_grid(p, 201)
    step = levels[1] - levels[0]
    q = eq.storage_volume[:, k]
    largest_dis = np.floor(p.max_power_discharge / (step * p.efficiency_discharge) + 1e-9) * step * p.efficiency_discharge
    largest_ch = np.floor(p.max_power_charge * p.efficiency_charge / step + 1e-9) * step / p.efficiency_charge
    soc = full.recorded_soc[:-1]
    to_end = np.isclose(np.abs(q), np.where(q > 0, (soc - p.soc_min) * p.efficiency_discharge,
                                             (p.soc_max - soc) / p.efficiency_charge), rtol=1e-6, atol=1e-6)
    whole = np.isclose(q, 0) | np.isclose(q, largest_dis) | np.isclose(q, -largest_ch) | to_end
    assert whole.all() and (q != 0).any()
    with pytest.raises(ValueError, match="storage_moves"):
        equilibrium(sc, hours=4, storage_moves="some")


def test_equilibrium_off_the_grid_certifies_with_off_grid_best_responses():
    """``storage_off_grid=True``: the search adopts off-grid schedules (their bid volumes)
    and its certificate is the off-grid best responses to the final profile; the
    storage's recorded profit is what the simulated profile pays it."""
    from envs.analysis import best_response

    sc = load_scenario("default")
    eq = equilibrium(sc, hours=24, storage_moves="full", storage_off_grid=True, max_passes=10)
    k = eq.kinds.index("storage")
    br = best_response(eq.record, k, scenario=sc, storage_moves="full")
    assert eq.certificate.responses[eq.agents[k]].best_profit == pytest.approx(br.best_profit, rel=1e-9)
    assert eq.best_response_profit[k] == pytest.approx(br.best_profit, rel=1e-9)
    np.testing.assert_allclose(eq.profit, eq.record.agent_profit.sum(axis=0))
    if eq.converged:
        assert np.all(eq.residual_gain <= eq.tolerance + 1e-9)
