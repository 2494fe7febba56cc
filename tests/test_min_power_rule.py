"""``min_power_rule="raise"``: a learning plant dispatched for less than its minimum power
runs its minimum power, is paid for the accepted part only and pays the marginal cost of
all of it (ASSUME raises a dispatched unit to its minimum output).

What would be wrong if this broke: an env that pays a sliver of volume as before (or
charges the raise where nothing was dispatched, or beyond the availability), a fused step
or a record that disagrees with the array step, a best response that is not the brute
force's under the same rule (or ignores it), and a rule that training, the manifest and
``evaluate`` do not carry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import envs
from _grid import replay
from agents.checkpoint import read_manifest
from agents.config import ConfigError, LearningConfig
from agents.trainer import Trainer, evaluate_policy
from envs.analysis import _evaluate, _slots, best_response, recorded_profit
from test_analysis import TICK, _tile_hours, assert_matches_brute_force, random_record
from test_start_up_markup import TINY

H = 48


def _day(rule: str, seed: int = 3):
    sc = envs.load_scenario("default")
    core = envs.MarketCore(sc, num_envs=1, plant_bids="undercut", max_cycles=H, min_power_rule=rule)
    a = np.random.default_rng(seed).uniform(0.3, 0.9, (H, 1, core.n, core.max_act))
    return sc, core, a, replay(core, a)


def test_a_sliver_runs_min_power_unpaid_and_the_fused_step_and_the_record_agree():
    sc, core, a, rec = _day("raise")
    _, _, _, part = _day("partial")
    np.testing.assert_array_equal(rec.clearing_price, part.clearing_price)  # the clearing is the same
    pl = sc.plants
    slivers = 0
    for i in range(len(core.lp)):
        j = core.lp[i]
        cols = rec.agent_supply_columns(i)
        q = rec.supply_accepted[:, cols].sum(axis=1)
        hours = np.asarray(rec.hours)
        mc = pl.marginal_cost[hours, j]
        runs = np.minimum(pl.min_power[j], pl.max_power[j] * pl.availability[hours, j])
        started = (q > 0) & (rec.agent_prev_dispatch[:, i] <= 0)
        want = (q * rec.clearing_price - mc * np.where(q > 0, np.maximum(q, runs), 0.0)) * rec.dt
        want -= started * pl.start_up_cost[j]
        np.testing.assert_allclose(rec.agent_profit[:, i], want, rtol=0, atol=1e-6)
        sl = (q > 0) & (q < runs - 1e-6)
        slivers += int(sl.sum())
        # the partial rule pays the sliver only
        np.testing.assert_allclose(part.agent_profit[sl, i] - rec.agent_profit[sl, i],
                                   mc[sl] * (runs[sl] - q[sl]) * rec.dt, rtol=1e-9)
        np.testing.assert_allclose(part.agent_profit[~sl, i], rec.agent_profit[~sl, i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(recorded_profit(rec, i), rec.agent_profit[:, i], rtol=0, atol=1e-6)
    assert slivers >= 3
    assert rec.agent_min_output.tolist() == [pl.min_power[j] for j in core.lp] + [0.0] * (core.n - len(core.lp))
    assert not part.agent_min_output.any()
    # the fused single-copy step (step_observe) pays the same
    core.recording = False
    core.reset(np.random.default_rng(0))
    fused = np.array([core.step_observe(a[h])[0].profit[0] for h in range(H)])
    np.testing.assert_allclose(fused, rec.agent_profit, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mechanism", ["pay_as_clear", "pay_as_bid"])
def test_the_best_response_equals_brute_force_under_the_rule(mechanism):
    """Random multi-hour markets with a start-up cost and a minimum output: the analysis's
    on/off programme equals the enumeration of every on/off pattern by the independent
    loop-based reference, and it earns no more than without the rule (less where slivers
    paid)."""
    lower = 0
    for seed in range(10):
        rng = np.random.default_rng(500 + seed)
        rec = _tile_hours(random_record(rng, "plant", mechanism), 4, rng)
        cost = rec.supply_cost.copy()
        own = rec.agent_supply_columns(0)
        cost[:, own] = np.abs(cost[:, own]) + 1.0  # running more costs more
        rec = replace(rec, agent_start_up_cost=np.array([float(rng.uniform(5, 120))]), supply_cost=cost)
        raised = replace(rec, agent_min_output=np.array([float(rng.uniform(10, 60))]))
        br = assert_matches_brute_force(raised, seed)
        free = best_response(rec, 0, tick=TICK).best_profit
        assert br.best_profit <= free + 1e-6, seed
        lower += br.best_profit < free - 1e-6
    assert lower >= 2


def test_the_residual_fast_path_charges_the_raise_as_the_full_clearing_does():
    _, _, _, rec = _day("raise")
    for i in range(2):
        sl = _slots(rec, i)
        rng = np.random.default_rng(i)
        own = np.sort(rng.uniform(40.0, 90.0, (H, 25, 2)), axis=2)
        fast = _evaluate(rec, sl, 0, H, own, np.zeros((H, 25, 0)))
        full = _evaluate(rec, sl, 0, H, own, np.zeros((H, 25, 0)), via_clearing=True)
        np.testing.assert_allclose(fast[0], full[0], rtol=1e-12, atol=1e-7)
        np.testing.assert_array_equal(fast[1], full[1])


def test_the_rule_is_validated_and_carried_by_training_the_manifest_and_evaluate(tmp_path):
    with pytest.raises(ValueError, match="min_power_rule"):
        envs.MarketCore(envs.load_scenario("tiny"), min_power_rule="round")
    with pytest.raises(ValueError, match="min_power_rule"):
        envs.parallel_env("tiny", min_power_rule="all")
    with pytest.raises(ConfigError, match="min_power_rule"):
        LearningConfig().with_overrides(["min_power_rule=all"])
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(
        TINY + ["min_power_rule=raise"])
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    assert tr.core.min_power_rule == tr.eval_core.min_power_rule == "raise"
    tr.train()
    tr.close()
    best = run / "policies" / "best"
    assert read_manifest(best)["trainer"]["min_power_rule"] == "raise"
    ev, core = evaluate_policy(sc, cfg, best, seed=0, env_options={"max_cycles": H})
    assert core.min_power_rule == "raise" and ev.record.agent_min_output[0] > 0
