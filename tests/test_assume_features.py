"""ASSUME 0.6 features of the scenario loader and the market core (issue 11): sub-hourly
steps, exchange units, learning strategy variants, learning_units, file-name keys,
optional-column defaults, the scenario device fallback."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import envs
from envs.data import ScenarioError
from envs.scenario import KNOWN_STRATEGIES, load_scenario, scenario_device
from envs.vector import VectorMarketEnv

from _examples import ASSUME_DIR  # noqa: E402


def write_scenario(folder: Path, *, time_step: str = "1h", days: int = 2, learner_strategy: str = "powerplant_energy_learning",
                   learner_min_power: float = 0.0, start_up_cost: float = 0.0, extra_case: str = "",
                   exchanges: tuple[float, float, float, float] | None = None) -> Path:
    """A two-plant market: ``learner`` (100 MW, marginal cost 20) and ``rule`` (200 MW,
    marginal cost 50), constant demand 150 MW given every 15 minutes. ``exchanges`` =
    (import MW, export MW, price_import, price_export) adds one exchange unit ``ex``."""
    folder.mkdir(parents=True, exist_ok=True)
    case = (
        f"base:\n  start_date: 2023-01-02 00:00\n  end_date: 2023-01-{2 + days:02d} 00:00\n  time_step: {time_step}\n"
        "  learning_config:\n    max_bid_price: 100\n"
        "  markets_config:\n    EOM:\n      maximum_bid_price: 3000\n      minimum_bid_price: -500\n"
        "      market_mechanism: pay_as_clear\n"
    )
    (folder / "config.yaml").write_text(case + extra_case)
    pd.DataFrame([
        dict(name="learner", technology="ccgt", bidding_EOM=learner_strategy, fuel_type="gas", emission_factor=0,
             max_power=100, min_power=learner_min_power, efficiency=0.5, additional_cost=0, start_up_cost=start_up_cost,
             unit_operator="op"),
        dict(name="rule", technology="ocgt", bidding_EOM="powerplant_energy_naive", fuel_type="gas", emission_factor=0,
             max_power=200, min_power=0, efficiency=0.2, additional_cost=0, start_up_cost=0, unit_operator="op"),
    ]).to_csv(folder / "powerplant_units.csv", index=False)
    pd.DataFrame([dict(name="demand_EOM", technology="inflex", bidding_EOM="demand_energy_naive", max_power=1000,
                       min_power=0, unit_operator="eom")]).to_csv(folder / "demand_units.csv", index=False)
    times = pd.date_range("2023-01-02", periods=(days + 1) * 96, freq="15min")
    pd.DataFrame({"datetime": times, "demand_EOM": 150.0}).to_csv(folder / "demand_df.csv", index=False)
    (folder / "fuel_prices_df.csv").write_text("fuel,gas,co2\nprice,10,0\n")
    if exchanges is not None:
        imp, exp, p_imp, p_exp = exchanges
        (folder / "exchange_units.csv").write_text(
            f"name,bidding_EOM,price_import,price_export,unit_operator\nex,exchange_energy_naive,{p_imp},{p_exp},x\n"
        )
        pd.DataFrame({"datetime": times, "ex_import": imp, "ex_export": exp}).to_csv(folder / "exchanges_df.csv", index=False)
    return folder


def run_day(env, action: float, steps: int):
    """Sum of profit and reward over ``steps`` steps with a constant action."""
    env.reset(seed=0)
    profit = reward = 0.0
    infos = []
    for _ in range(steps):
        acts = {a: np.full(env.action_space(a).shape, action, np.float32) for a in env.agents}
        _, rew, _, _, info = env.step(acts)
        a = env.possible_agents[0]
        profit += info[a]["profit"]
        reward += rew[a]
        infos.append(info[a])
    return profit, reward, infos


# --------------------------------------------------------------------------- sub-hourly steps


def test_quarter_hours_give_the_same_daily_profit_as_hours(tmp_path):
    hourly = load_scenario(write_scenario(tmp_path / "h", start_up_cost=1000.0))
    quarter = load_scenario(write_scenario(tmp_path / "q", time_step="15min", start_up_cost=1000.0))
    assert hourly.time_step_hours == 1.0 and quarter.time_step_hours == 0.25
    assert quarter.n_hours == 4 * hourly.n_hours == 192
    p_h, r_h, info_h = run_day(envs.parallel_env(hourly), 0.3, 24)
    p_q, r_q, info_q = run_day(envs.parallel_env(quarter), 0.3, 96)
    # learner sells 100 MW at the rule plant's 50 EUR/MWh: 100 * 30 EUR/h, one start of 1000 EUR
    assert p_h == pytest.approx(24 * 100 * 30 - 1000)
    assert p_q == pytest.approx(p_h)
    assert r_q == pytest.approx(r_h)
    assert info_q[1]["profit"] == pytest.approx(info_h[1]["profit"] / 4)  # energy = power x 0.25 h
    assert info_q[1]["accepted_volume"] == info_h[1]["accepted_volume"] == 100.0  # volumes stay MW


def test_quarter_hour_record_carries_dt_and_energy_profit(tmp_path):
    env = envs.parallel_env(write_scenario(tmp_path / "q", time_step="15min"), record=True, max_cycles=8)
    run_day(env, 0.3, 8)
    rec = env.episode_record()
    assert rec.dt == 0.25
    assert rec.agent_profit[:, 0] == pytest.approx(np.full(8, 100 * 30 * 0.25))


def test_foresight_counts_steps(tmp_path):
    core = envs.parallel_env(write_scenario(tmp_path / "q", time_step="15min"), foresight=8).core
    assert core.obs_dim == 3 * 8 + 2


def test_example_01h_quarter_hours():
    if not (ASSUME_DIR / "example_01h").is_dir():
        pytest.skip("shared ASSUME scenarios not present")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = load_scenario(ASSUME_DIR / "example_01h", "eom")
    assert sc.time_step_hours == 0.25 and sc.market.mechanism == "pay_as_bid"
    assert sc.demands.price.tolist() == [62.88]  # demand_units.csv `price`
    env = envs.parallel_env(sc, learning_units=["NEURATH F"])
    _, _, infos = run_day(env, 0.5, 4)
    assert all(np.isfinite(i["profit"]) for i in infos)


# --------------------------------------------------------------------------- exchanges


def test_exchange_import_and_export_take_part_in_the_clearing(tmp_path):
    env = envs.parallel_env(write_scenario(tmp_path / "x", exchanges=(50.0, 30.0, 0.0, 2999.0)), record=True, max_cycles=3)
    _, _, infos = run_day(env, 0.1, 3)
    rec = env.episode_record()
    ex = rec.units.index("ex")
    s_cols = np.flatnonzero(rec.supply_unit == ex)
    d_cols = np.flatnonzero(rec.demand_unit == ex)
    assert rec.supply_accepted[:, s_cols].sum(axis=1) == pytest.approx([50.0] * 3)  # import sold
    assert rec.demand_accepted[:, d_cols].sum(axis=1) == pytest.approx([30.0] * 3)  # export bought
    rule = rec.units.index("rule")
    # demand 150 + export 30 = import 50 + learner 100 + rule 30
    assert rec.supply_accepted[:, rec.supply_unit == rule].sum(axis=1) == pytest.approx([30.0] * 3)
    assert infos[0]["clearing_price"] == 50.0


def test_cheap_imports_set_the_price(tmp_path):
    env = envs.parallel_env(write_scenario(tmp_path / "x", exchanges=(300.0, 0.0, 5.0, 2999.0)))
    _, _, infos = run_day(env, 0.5, 2)
    assert infos[0]["clearing_price"] == 5.0 and infos[0]["accepted_volume"] == 0.0


def test_exchange_price_defaults_and_null_key(tmp_path):
    folder = write_scenario(tmp_path / "x", exchanges=(50.0, 30.0, 0.0, 2999.0))
    (folder / "exchange_units.csv").write_text("name,unit_operator\nex,x\n")
    sc = load_scenario(folder)
    assert sc.exchanges.price_import.tolist() == [0.0] and sc.exchanges.price_export.tolist() == [2999.0]
    folder2 = write_scenario(tmp_path / "y", exchanges=(50.0, 30.0, 0.0, 2999.0), extra_case="")
    text = (folder2 / "config.yaml").read_text().replace("  time_step: 1h\n", "  time_step: 1h\n  exchange_units: null\n")
    (folder2 / "config.yaml").write_text(text)
    assert load_scenario(folder2).exchanges is None


def test_missing_exchange_flows_is_one_clear_line(tmp_path):
    folder = write_scenario(tmp_path / "x", exchanges=(50.0, 30.0, 0.0, 2999.0))
    (folder / "exchanges_df.csv").unlink()
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    msg = str(err.value)
    assert "\n" not in msg and "exchanges_df.csv" in msg and "missing file" in msg and "ex_import" in msg


def test_example_01a_exchanges_change_the_prices():
    if not (ASSUME_DIR / "example_01a").is_dir():
        pytest.skip("shared ASSUME scenarios not present")
    base = envs.parallel_env(ASSUME_DIR / "example_01a", learning_units=["Unit 1"]).core
    ex = envs.parallel_env(ASSUME_DIR / "example_01a", study_case="base_with_exchanges", learning_units=["Unit 1"]).core
    assert base.scenario.exchanges is None and len(ex.scenario.exchanges) == 1
    # net exports raise the merit-order price in some hours and never lower it
    assert np.all(ex.price_forecast >= base.price_forecast) and np.any(ex.price_forecast > base.price_forecast)


# --------------------------------------------------------------------------- strategies


def test_single_bid_plant_has_one_price_and_own_prefix(tmp_path):
    env = envs.parallel_env(write_scenario(tmp_path / "s", learner_strategy="powerplant_energy_learning_single_bid",
                                           learner_min_power=40.0))
    assert env.possible_agents == ["plantsingle_learner"]
    assert env.action_space("plantsingle_learner").shape == (1,)
    assert env.core.agent_kind == ["plant"]
    _, _, infos = run_day(env, 0.6, 1)
    assert infos[0]["bid_price_0"] == infos[0]["bid_price_1"] == pytest.approx(60.0)
    # one price above the rule plant's 50: the learner sells nothing, min_power part included
    assert infos[0]["accepted_volume"] == 0.0 and infos[0]["clearing_price"] == 50.0


def test_single_bid_plant_best_response_is_one_price(tmp_path):
    from envs.analysis import exploitability

    folder = write_scenario(tmp_path / "s", learner_strategy="powerplant_energy_learning_single_bid", learner_min_power=40.0)
    env = envs.parallel_env(folder, record=True, max_cycles=4)
    run_day(env, 0.6, 4)
    rec = env.episode_record()
    cols = rec.agent_supply_columns(0)
    assert (rec.supply_volume[:, cols] > 0).sum(axis=1).tolist() == [1] * 4  # one live bid per step
    ex = exploitability(rec)
    # best single price: just below the rule plant's 50 -> 100 MW x (50 - 20) per hour
    assert ex.best_response_profit[0] == pytest.approx(4 * 100 * 30, rel=1e-3)


@pytest.mark.parametrize("strategy, agent, dim", [
    ("powerplant_energy_learning", "plant_learner", 2),
    ("pp_learning", "plant_learner", 2),
    ("learning_advanced_orders", "plant_learner", 2),
    ("powerplant_energy_learning_single_bid", "plantsingle_learner", 1),
    ("renewable_energy_learning_single_bid", "plantsingle_learner", 1),
])
def test_learning_strategy_variants(tmp_path, strategy, agent, dim):
    env = envs.parallel_env(write_scenario(tmp_path / "s", learner_strategy=strategy))
    assert env.possible_agents == [agent] and env.action_space(agent).shape == (dim,)


def test_renewable_learning_and_storage_aliases(tmp_path):
    folder = write_scenario(tmp_path / "s", learner_strategy="powerplant_energy_naive")
    pp = pd.read_csv(folder / "powerplant_units.csv")
    pp.loc[len(pp)] = dict(name="wind", technology="wind", bidding_EOM="renewable_eom_learning", fuel_type="renewable",
                           emission_factor=0, max_power=80, min_power=0, efficiency=1, additional_cost=0,
                           start_up_cost=0, unit_operator="op")
    pp.to_csv(folder / "powerplant_units.csv", index=False)
    (folder / "storage_units.csv").write_text(
        "name,technology,bidding_EOM,max_power_charge,max_power_discharge,capacity,unit_operator\n"
        "bat,battery,storage_learning,-10,10,40,op\n"
    )
    env = envs.parallel_env(folder)
    assert env.possible_agents == ["storage_bat", "renewable_wind"]
    st = env.core.scenario.storages  # ASSUME Storage defaults
    assert st.efficiency_charge.tolist() == [1.0] and st.min_soc.tolist() == [0.0] and st.max_soc.tolist() == [1.0]
    assert st.initial_soc.tolist() == [0.0]


def test_misspelt_strategy_lists_the_known_ones(tmp_path):
    folder = write_scenario(tmp_path / "s", learner_strategy="powerplant_energy_lerning")
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    msg = str(err.value)
    assert "powerplant_energy_lerning" in msg and "line 2" in msg and "powerplant_energy_learning_single_bid" in msg
    assert "storage_energy_learning" in msg and "powerplant_energy_naive" in msg
    assert "powerplant_energy_learning" in KNOWN_STRATEGIES


@pytest.mark.parametrize("strategy, fragment", [
    ("powerplant_capacity_heuristic_balancing_pos", "reserve"),
    ("demand_energy_heuristic_elastic", "elastic demand"),
])
def test_unsupported_strategies_are_named(tmp_path, strategy, fragment):
    folder = write_scenario(tmp_path / "s", learner_strategy=strategy)
    with pytest.raises(ScenarioError, match=fragment):
        load_scenario(folder)


def test_block_order_heuristics_bid_hourly_with_a_warning(tmp_path):
    """Block/linked heuristics are approximated by hourly marginal-cost bids (the unit is a
    rule unit, not a learner), with a warning naming what is not modelled."""
    folder = write_scenario(tmp_path / "s", learner_strategy="powerplant_energy_heuristic_block")
    with pytest.warns(UserWarning, match="block orders"):
        sc = load_scenario(folder)
    assert not sc.plants.learning[list(sc.plants.names).index("learner")]


def test_portfolio_learning_is_refused(tmp_path):
    folder = write_scenario(tmp_path / "s")
    (folder / "unit_operators.csv").write_text("name,bidding_EOM\nop,portfolio_learning\n")
    with pytest.raises(ScenarioError, match="operator-level learning"):
        load_scenario(folder)


# --------------------------------------------------------------------------- learning_units


def test_learning_units_turn_rule_units_into_learners(tmp_path):
    folder = write_scenario(tmp_path / "s", learner_strategy="powerplant_energy_naive")
    with pytest.raises(ValueError, match="learning_units"):
        envs.parallel_env(folder)
    env = envs.parallel_env(folder, learning_units=["rule"])
    assert env.possible_agents == ["plant_rule"]
    vec = VectorMarketEnv(folder, num_envs=2, learning_units=["learner", "rule"])
    assert vec.agents == ["plant_learner", "plant_rule"]
    with pytest.raises(ScenarioError) as err:
        envs.parallel_env(folder, learning_units=["nope"])
    assert "'nope'" in str(err.value) and "'learner'" in str(err.value) and "'rule'" in str(err.value)


# --------------------------------------------------------------------------- files and defaults


def test_study_case_keys_name_other_files(tmp_path):
    folder = write_scenario(tmp_path / "s")
    (folder / "powerplant_units.csv").rename(folder / "plants_other.csv")
    (folder / "demand_df.csv").rename(folder / "load.csv")
    text = (folder / "config.yaml").read_text().replace(
        "  time_step: 1h\n", "  time_step: 1h\n  powerplant_units: plants_other.csv\n  demand_df: load.csv\n")
    (folder / "config.yaml").write_text(text)
    sc = load_scenario(folder)
    assert sc.plants.names == ("learner", "rule") and sc.demands.volume[0, 0] == 150.0
    (folder / "load.csv").unlink()
    with pytest.raises(ScenarioError, match="load.csv: missing file"):
        load_scenario(folder)


def test_optional_plant_columns_take_assume_defaults(tmp_path):
    folder = write_scenario(tmp_path / "s")
    pp = pd.read_csv(folder / "powerplant_units.csv").drop(
        columns=["additional_cost", "efficiency", "min_power", "emission_factor"])
    pp.to_csv(folder / "powerplant_units.csv", index=False)
    sc = load_scenario(folder)
    assert sc.plants.efficiency.tolist() == [1.0, 1.0] and sc.plants.min_power.tolist() == [0.0, 0.0]
    assert sc.plants.additional_cost.tolist() == [0.0, 0.0] and sc.plants.emission_factor.tolist() == [0.0, 0.0]
    assert sc.plants.marginal_cost[0].tolist() == [10.0, 10.0]  # fuel 10 / efficiency 1


def test_plural_cost_columns_are_ignored_like_assume(tmp_path):
    folder = write_scenario(tmp_path / "s")
    pp = pd.read_csv(folder / "powerplant_units.csv").rename(columns={"additional_cost": "additional_costs"})
    pp["additional_costs"] = 7.0
    pp.to_csv(folder / "powerplant_units.csv", index=False)
    with pytest.warns(UserWarning, match="additional_costs"):
        sc = load_scenario(folder)
    assert sc.plants.additional_cost.tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- device


def test_scenario_device_falls_back_to_cpu_once():
    with pytest.warns(UserWarning, match="no CUDA GPU"):
        assert scenario_device("cuda:0", from_scenario=True, cuda_available=False) == "cpu"
    assert scenario_device("cuda:0", from_scenario=True, cuda_available=True) == "cuda:0"
    # asked on the command line: unchanged, the trainer then fails clearly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scenario_device("cuda", from_scenario=False, cuda_available=False) == "cuda"
        assert scenario_device("cpu", from_scenario=True, cuda_available=False) == "cpu"
