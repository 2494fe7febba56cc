"""Tests of the ASSUME-format scenario loader (envs/scenario.py) and the built-in scenarios."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envs.data import Scenario, ScenarioError
from envs.scenario import BUILTIN_DIR, _load_cached, list_builtin_scenarios, load_scenario

from _examples import ASSUME_DIR  # the one helper for the shared ASSUME examples


def assume(name: str) -> Path:
    path = ASSUME_DIR / name
    if not (path / "config.yaml").is_file():
        pytest.skip(f"ASSUME reference scenario {name} not available at {path}")
    return path


# --------------------------------------------------------------------------- ASSUME examples


def test_example_02a_shape_and_costs():
    sc = load_scenario(assume("example_02a"))
    assert isinstance(sc, Scenario)
    assert sc.name == "example_02a" and sc.study_case == "base"
    assert sc.n_hours == 720
    assert sc.times.dtype == np.dtype("datetime64[ns]")
    assert sc.times[0] == np.datetime64("2019-03-01T00:00")
    assert sc.times[-1] == np.datetime64("2019-03-30T23:00")
    assert sc.time_step_hours == 1.0
    assert sc.seed is None
    assert len(sc.plants) == 7 and len(sc.renewables) == 0 and len(sc.storages) == 0 and len(sc.demands) == 1
    assert sc.plants.names == tuple(f"pp_{i}" for i in range(1, 8))
    assert sc.plants.learning.tolist() == [False] * 5 + [True, False]
    assert sc.learning_units == [("plant", "pp_6")]
    assert sc.plants.marginal_cost.shape == (720, 7)
    assert sc.plants.availability.shape == (720, 7) and np.all(sc.plants.availability == 1.0)
    mc = sc.plants.marginal_cost
    i6, i7 = sc.plants.names.index("pp_6"), sc.plants.names.index("pp_7")
    assert np.allclose(mc[:, i6], 55.708, atol=1e-3)
    assert np.allclose(mc[:, i7], 85.708, atol=1e-3)
    assert mc[0, i6] == pytest.approx(26 / 0.6 + 0.201 * 25 / 0.6 + 4)
    assert mc[0, 0] == pytest.approx(0.9 / 0.36 + 10)  # nuclear
    assert np.all(sc.plants.start_up_cost == 0)
    assert sc.plants.max_power[i6] == 2500 and sc.plants.min_power[i6] == 1
    assert sc.market.name == "EOM" and sc.market.price_cap == 3000 and sc.market.price_floor == -500
    assert sc.market.mechanism == "pay_as_clear" and sc.market.max_bid_volume == 100000
    assert sc.learning_config["max_bid_price"] == 100
    assert sc.learning_config["training_episodes"] == 100
    assert sc.demands.names == ("demand_EOM",)
    assert sc.demands.price.tolist() == [3000.0]
    assert sc.demands.volume.shape == (720, 1)


def _raw_hour_mean(csv_path: Path, column: str, hour_start: str) -> float:
    start = pd.Timestamp(hour_start)
    values = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            t = pd.Timestamp(row["datetime"])
            if start <= t < start + pd.Timedelta("1h"):
                values.append(float(row[column]))
    assert len(values) == 4
    return sum(values) / 4


@pytest.mark.parametrize("hour", ["2019-03-01 00:00", "2019-03-05 13:00", "2019-03-30 23:00"])
def test_example_02a_demand_is_hourly_mean_of_quarter_hours(hour):
    path = assume("example_02a")
    sc = load_scenario(path)
    t = int(np.flatnonzero(sc.times == np.datetime64(pd.Timestamp(hour)))[0])
    expected = _raw_hour_mean(path / "demand_df.csv", "demand_EOM", hour)
    assert sc.demands.volume[t, 0] == pytest.approx(expected)


def test_example_02a_other_study_cases():
    path = assume("example_02a")
    tiny = load_scenario(path, "tiny")
    assert tiny.n_hours == 96 and tiny.times[0] == np.datetime64("2019-01-01T00:00")
    assert tiny.learning_config["batch_size"] == 64
    assert load_scenario(path, "base_lstm").learning_config["actor_architecture"] == "lstm"
    with pytest.raises(ScenarioError) as err:
        load_scenario(path, "nope")
    msg = str(err.value)
    assert "config.yaml" in msg and "nope" in msg
    assert "base" in msg and "base_lstm" in msg and "tiny" in msg


def test_example_02a_loads_fast():
    path = assume("example_02a")
    _load_cached.cache_clear()
    t0 = time.perf_counter()
    load_scenario(path)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"loading example_02a took {elapsed:.2f} s"


def test_example_02b():
    sc = load_scenario(assume("example_02b"))
    assert sc.n_hours == 744
    assert len(sc.plants) == 11
    assert [n for n, f in zip(sc.plants.names, sc.plants.learning) if f] == [f"pp_{i}" for i in range(6, 11)]
    assert len(sc.learning_units) == 5
    assert np.allclose(sc.plants.marginal_cost[:, 5:10], 55.708, atol=1e-3)


def test_example_02e_storage():
    sc = load_scenario(assume("example_02e"))
    assert sc.n_hours == 1440  # 2019-03-01 .. 2019-04-30, 60 days
    assert len(sc.plants) == 12 and not sc.plants.learning.any()
    st = sc.storages
    assert st.names == ("Storage 1", "Storage 2")
    assert st.technology == ("PSPP", "PSPP")
    assert st.learning.tolist() == [True, True]
    assert st.max_power_charge.tolist() == [150, 150]
    assert st.max_power_discharge.tolist() == [150, 150]
    assert st.efficiency_charge.tolist() == [0.85, 0.89]
    assert st.efficiency_discharge.tolist() == [0.95, 0.91]
    assert st.min_soc.tolist() == [0, 0] and st.max_soc.tolist() == [1, 1]
    assert st.capacity.tolist() == [5000, 5000] and st.initial_soc.tolist() == [0, 0]
    assert st.additional_cost_charge.tolist() == [0.28, 0.28]
    assert st.additional_cost_discharge.tolist() == [0.28, 0.28]
    assert sc.learning_units == [("storage", "Storage 1"), ("storage", "Storage 2")]
    assert sc.plants.marginal_cost[0, 1] == pytest.approx(0.9 / 0.36 + 12)
    assert sc.learning_config["gamma"] == 0.999


# --------------------------------------------------------------------------- built-ins


def test_builtin_list():
    assert list_builtin_scenarios() == ["default", "many", "tiny"]


def test_builtin_many_has_24_learners_of_spread_costs():
    sc = load_scenario("many")
    assert sc.n_hours == 168 and len(sc.storages) == 0
    learn = [i for i, (kind, _) in enumerate(sc.learning_units) if kind == "plant"]
    assert len(sc.learning_units) == 24 and len(learn) == 24
    names = [u for _, u in sc.learning_units]
    idx = [sc.plants.names.index(u) for u in names]
    mc = sc.plants.marginal_cost[0, idx]
    assert len(set(np.round(mc, 6))) == 24 and mc.min() < 50 and mc.max() > 90
    assert np.all(sc.plants.start_up_cost[idx] == 0)
    assert sc.learning_config["actor_hidden_sizes"] == [64, 64]


def test_builtin_default_shape():
    base = load_scenario("default")
    month = load_scenario("default", "month")
    assert base.name == "default" and base.n_hours == 336 and month.n_hours == 672
    assert base.times[0] == month.times[0]
    assert np.array_equal(month.demands.volume[:336], base.demands.volume)
    assert base.time_step_hours == 1.0
    assert len(base.plants) == 12 and len(base.renewables) == 2 and len(base.storages) == 1
    assert set(base.plants.technology) >= {"nuclear", "lignite", "hard coal", "combined cycle gas turbine",
                                           "open cycle gas turbine", "oil"}
    assert base.renewables.names == ("wind_1", "solar_1")
    assert base.learning_units == [("plant", "ccgt_1"), ("plant", "ccgt_2"), ("storage", "pumped_storage_1")]
    assert np.all(base.plants.start_up_cost > 0)
    # CCGTs have distinct costs
    ccgt = [i for i, t in enumerate(base.plants.technology) if t == "combined cycle gas turbine"]
    assert len(ccgt) == 4 and len(set(np.round(base.plants.marginal_cost[0, ccgt], 3))) == 4
    # solar: zero at night, positive around noon
    hours = (base.times - base.times.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)
    solar = base.renewables.availability[:, 1]
    assert np.all(solar[hours <= 4] == 0) and np.all(solar[hours >= 20] == 0)
    assert np.all(solar[hours == 12] > 0)
    wind = base.renewables.availability[:, 0]
    assert 0 < wind.min() and wind.max() < 1 and np.std(wind) > 0.05
    # demand: lower at night and on weekends
    d = base.demands.volume[:, 0]
    assert d[hours == 3].mean() < 0.85 * d[hours == 11].mean()
    dow = ((base.times.astype("datetime64[D]").astype(int) - 4) % 7)  # 0 = Monday
    assert d[dow >= 5].mean() < 0.92 * d[dow < 5].mean()
    # usually supplied: thermal + renewables + storage cover demand in (almost) all hours
    for sc in (base, month):
        supply = (sc.plants.availability * sc.plants.max_power).sum(1)
        supply = supply + (sc.renewables.availability * sc.renewables.capacity).sum(1)
        supply = supply + sc.storages.max_power_discharge.sum()
        assert (sc.demands.volume[:, 0] > supply).mean() <= 0.01
    st = base.storages
    assert st.technology == ("PSPP",) and st.capacity[0] > 0 and st.min_soc[0] <= st.initial_soc[0] <= st.max_soc[0]
    lc = base.learning_config
    assert lc["max_bid_price"] == 100 and lc["algorithm"] == "matd3" and lc["train_freq"] == "24h"
    assert base.market.price_cap == 3000 and base.market.price_floor == -500
    assert base.market.mechanism == "pay_as_clear"


def test_builtin_tiny_has_known_best_response():
    sc = load_scenario("tiny")
    assert sc.n_hours == 48 and len(sc.storages) == 0 and len(sc.renewables) == 0
    assert sc.learning_units == [("plant", "learner_1")]
    assert sc.plants.names == ("base_1", "mid_1", "learner_1", "peak_1")
    assert np.allclose(sc.plants.marginal_cost, [10.0, 25.0, 40.0, 70.0])
    assert sc.plants.max_power.tolist() == [600, 400, 1000, 2000]
    demand = sc.demands.volume[:, 0]
    cheaper = sc.plants.max_power[:2].sum()
    assert np.all(demand > cheaper) and np.all(demand <= cheaper + sc.plants.max_power[2])
    assert sc.learning_config["max_bid_price"] == 100


def test_builtin_by_path_equals_by_name():
    a = load_scenario("tiny")
    b = load_scenario(BUILTIN_DIR / "tiny")
    c = load_scenario(str(BUILTIN_DIR / "tiny"))
    assert a.source == b.source == c.source
    assert np.array_equal(a.plants.marginal_cost, b.plants.marginal_cost)


def test_generator_reproduces_shipped_files(tmp_path):
    from envs.scenarios import make_builtin

    for name, fn in (("default", make_builtin.make_default), ("tiny", make_builtin.make_tiny),
                     ("many", make_builtin.make_many)):
        fn(tmp_path / name)
        shipped = sorted(p.name for p in (BUILTIN_DIR / name).iterdir() if p.is_file())
        generated = sorted(p.name for p in (tmp_path / name).iterdir())
        assert generated == shipped
        for f in shipped:
            assert (tmp_path / name / f).read_bytes() == (BUILTIN_DIR / name / f).read_bytes(), f
    total = sum(p.stat().st_size for p in BUILTIN_DIR.rglob("*") if p.suffix in (".csv", ".yaml"))
    assert total < 300_000


def test_cache_returns_independent_copies_and_sees_file_changes(tmp_path):
    folder = tiny_copy(tmp_path)
    a = load_scenario(folder)
    a.plants.marginal_cost[:] = -1
    a.learning_config["max_bid_price"] = 1
    b = load_scenario(folder)
    assert np.allclose(b.plants.marginal_cost[0], [10, 25, 40, 70])
    assert b.learning_config["max_bid_price"] == 100
    edit_csv(folder / "demand_df.csv", lambda df: df.assign(demand_EOM="1900.0"))
    assert np.all(load_scenario(folder).demands.volume == 1900.0)


# --------------------------------------------------------------------------- input variants


def tiny_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "scn"
    shutil.copytree(BUILTIN_DIR / "tiny", dst)
    return dst


def edit_csv(path: Path, fn) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


def set_cell(path: Path, unit: str, column: str, value: str) -> None:
    def f(df):
        df.loc[df["name"] == unit, column] = value
        return df

    edit_csv(path, f)


def edit_config(folder: Path, old: str, new: str) -> None:
    cfg = folder / "config.yaml"
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new))


def add_storage(folder: Path, **overrides) -> None:
    row = {
        "name": "battery_1", "technology": "battery", "bidding_EOM": "storage_energy_learning",
        "max_power_charge": "-100", "max_power_discharge": "100", "efficiency_charge": "0.9",
        "efficiency_discharge": "0.95", "min_soc": "0.1", "max_soc": "0.9", "capacity": "400",
        "initial_soc": "0.5", "additional_cost_charge": "0.1", "additional_cost_discharge": "0.2",
        "natural_inflow": "0", "unit_operator": "Operator-RL",
    }
    row.update(overrides)
    pd.DataFrame([row]).to_csv(folder / "storage_units.csv", index=False)


def add_wind(folder: Path) -> None:
    with open(folder / "powerplant_units.csv", "a") as fh:
        fh.write("wind_1,wind onshore,powerplant_energy_naive,renewable,0,500,0,1,0.5,0,Operator 1\n")


def test_storage_units_read_with_absolute_charge_power(tmp_path):
    folder = tiny_copy(tmp_path)
    add_storage(folder)
    st = load_scenario(folder).storages
    assert st.names == ("battery_1",)
    assert st.max_power_charge.tolist() == [100.0] and st.max_power_discharge.tolist() == [100.0]
    assert st.min_soc.tolist() == [0.1] and st.max_soc.tolist() == [0.9] and st.initial_soc.tolist() == [0.5]
    assert st.additional_cost_charge.tolist() == [0.1] and st.additional_cost_discharge.tolist() == [0.2]
    assert st.learning.tolist() == [True]


def test_renewables_and_availability(tmp_path):
    folder = tiny_copy(tmp_path)
    add_wind(folder)
    sc = load_scenario(folder)
    assert sc.renewables.names == ("wind_1",) and len(sc.plants) == 4
    assert sc.renewables.capacity.tolist() == [500.0] and sc.renewables.marginal_cost.tolist() == [0.5]
    assert np.all(sc.renewables.availability == 1.0)  # no availability file -> 1
    times = pd.date_range("2023-01-02", periods=48, freq="h")
    wind = np.linspace(0, 1, 48).round(3)
    pd.DataFrame({"datetime": times, "wind_1": wind, "peak_1": 0.5}).to_csv(folder / "availability_df.csv", index=False)
    sc = load_scenario(folder)
    assert np.allclose(sc.renewables.availability[:, 0], wind)
    assert np.allclose(sc.plants.availability[:, 3], 0.5) and np.all(sc.plants.availability[:, :3] == 1.0)


def test_fuel_price_time_series_resampled(tmp_path):
    folder = tiny_copy(tmp_path)
    times = pd.date_range("2023-01-02", periods=48 * 4, freq="15min")
    gas = np.arange(len(times), dtype=float)
    pd.DataFrame({"datetime": times, "uranium": 2.5, "lignite": 5.0, "natural gas": gas, "oil": 32.0,
                  "co2": 10.0}).to_csv(folder / "fuel_prices_df.csv", index=False)
    sc = load_scenario(folder)
    hourly_gas = gas.reshape(48, 4).mean(1)
    assert np.allclose(sc.plants.marginal_cost[:, 2], (hourly_gas + 0.201 * 10.0) / 0.5 + 8.0)
    assert np.allclose(sc.plants.marginal_cost[:, 0], 2.5 / 0.5 + 5.0)


def test_coarse_fuel_series_is_repeated(tmp_path):
    folder = tiny_copy(tmp_path)
    pd.DataFrame({"datetime": ["2023-01-02", "2023-01-03"], "uranium": 2.5, "lignite": 5.0,
                  "natural gas": [16.0, 20.0], "oil": 32.0, "co2": 0.0}).to_csv(folder / "fuel_prices_df.csv", index=False)
    mc = load_scenario(folder).plants.marginal_cost[:, 2]
    assert np.allclose(mc[:24], 40.0) and np.allclose(mc[24:], 48.0)


def test_fuel_prices_long_form(tmp_path):
    folder = tiny_copy(tmp_path)
    (folder / "fuel_prices_df.csv").write_text("fuel,price\nuranium,2.5\nlignite,5\nnatural gas,16\noil,32\nco2,0\n")
    assert np.allclose(load_scenario(folder).plants.marginal_cost[0], [10, 25, 40, 70])


def test_start_up_cost_fallbacks(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "powerplant_units.csv", lambda df: df.drop(columns=["start_up_cost"]))
    assert np.all(load_scenario(folder).plants.start_up_cost == 0)
    edit_csv(folder / "powerplant_units.csv", lambda df: df.assign(hot_start_cost=["1", "2", "3", "4"]))
    # ASSUME's hot_start_cost is EUR per MW of max_power (600, 400, 1000, 2000 MW)
    assert load_scenario(folder).plants.start_up_cost.tolist() == [600, 800, 3000, 8000]


def test_two_hour_time_step_averages(tmp_path):
    folder = tiny_copy(tmp_path)
    times = pd.date_range("2023-01-02", periods=48, freq="h")
    pd.DataFrame({"datetime": times, "demand_EOM": np.arange(48.0)}).to_csv(folder / "demand_df.csv", index=False)
    edit_config(folder, "time_step: 1h", "time_step: 2h")
    sc = load_scenario(folder)
    assert sc.n_hours == 24 and sc.time_step_hours == 2.0
    assert np.allclose(sc.demands.volume[:, 0], np.arange(48.0).reshape(24, 2).mean(1))


def test_other_bidding_column_name(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "powerplant_units.csv", lambda df: df.rename(columns={"bidding_EOM": "bidding_energy"}))
    assert load_scenario(folder).learning_units == [("plant", "learner_1")]


def test_renewables_only_need_no_fuel_file(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "powerplant_units.csv", lambda df: df.iloc[:0])
    add_wind(folder)
    (folder / "fuel_prices_df.csv").unlink()
    sc = load_scenario(folder)
    assert len(sc.plants) == 0 and sc.plants.marginal_cost.shape == (48, 0) and len(sc.renewables) == 1


# --------------------------------------------------------------------------- bad inputs


def expect_error(folder, *fragments, study_case="base"):
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder, study_case)
    msg = str(err.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message: {msg}"
    return msg


def test_scenario_error_is_value_error():
    assert issubclass(ScenarioError, ValueError)


def test_unknown_builtin_name_and_missing_path(tmp_path):
    msg = expect_error("no_such_scenario", "no_such_scenario", "default", "tiny")
    assert "built-in" in msg
    expect_error(tmp_path / "missing", "missing", "default", "tiny")


@pytest.mark.parametrize("fname", ["config.yaml", "powerplant_units.csv", "demand_units.csv", "demand_df.csv",
                                   "fuel_prices_df.csv"])
def test_missing_file(tmp_path, fname):
    folder = tiny_copy(tmp_path)
    (folder / fname).unlink()
    expect_error(folder, fname, "missing file")


@pytest.mark.parametrize("column", ["fuel_type", "max_power", "unit_operator", "bidding_EOM"])
def test_missing_column(tmp_path, column):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "powerplant_units.csv", lambda df: df.drop(columns=[column]))
    expect_error(folder, "powerplant_units.csv", column, "missing column")


def test_missing_storage_column(tmp_path):
    folder = tiny_copy(tmp_path)
    add_storage(folder)
    edit_csv(folder / "storage_units.csv", lambda df: df.drop(columns=["capacity"]))
    expect_error(folder, "storage_units.csv", "capacity")


def test_unknown_fuel(tmp_path):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "learner_1", "fuel_type", "unobtainium")
    expect_error(folder, "powerplant_units.csv", "fuel_prices_df.csv", "learner_1", "unobtainium", "fuel_type")


def test_unknown_fuel_in_time_series_form(tmp_path):
    folder = tiny_copy(tmp_path)
    pd.DataFrame({"datetime": pd.date_range("2023-01-02", periods=48, freq="h"), "uranium": 2.5, "lignite": 5.0,
                  "oil": 32.0, "co2": 0.0}).to_csv(folder / "fuel_prices_df.csv", index=False)
    expect_error(folder, "fuel_prices_df.csv", "learner_1", "natural gas")


def test_missing_co2_price(tmp_path):
    folder = tiny_copy(tmp_path)
    (folder / "fuel_prices_df.csv").write_text("fuel,uranium,lignite,natural gas,oil\nprice,2.5,5,16,32\n")
    expect_error(folder, "fuel_prices_df.csv", "co2")


@pytest.mark.parametrize("value", ["0", "-100"])
def test_bad_max_power(tmp_path, value):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "peak_1", "max_power", value)
    expect_error(folder, "powerplant_units.csv", "peak_1", "max_power", "line 5")


def test_bad_renewable_capacity(tmp_path):
    folder = tiny_copy(tmp_path)
    add_wind(folder)
    set_cell(folder / "powerplant_units.csv", "wind_1", "max_power", "0")
    expect_error(folder, "powerplant_units.csv", "wind_1", "max_power")


@pytest.mark.parametrize("value", ["-1", "1500"])
def test_bad_min_power(tmp_path, value):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "learner_1", "min_power", value)
    expect_error(folder, "powerplant_units.csv", "learner_1", "min_power")


@pytest.mark.parametrize("value", ["0", "1.2", "-0.4"])
def test_bad_efficiency(tmp_path, value):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "mid_1", "efficiency", value)
    expect_error(folder, "powerplant_units.csv", "mid_1", "efficiency", "(0, 1]")


@pytest.mark.parametrize("value", ["abc", "1e999"])
def test_empty_or_bad_cell_in_unit_table(tmp_path, value):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "mid_1", "additional_cost", value)
    expect_error(folder, "powerplant_units.csv", "mid_1", "additional_cost")


def test_empty_text_cell_in_unit_table(tmp_path):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "mid_1", "technology", "")
    expect_error(folder, "powerplant_units.csv", "mid_1", "technology", "empty")


def test_nan_in_series(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "demand_df.csv", lambda df: df.assign(demand_EOM=["2000.0"] * 10 + [""] + ["2000.0"] * 37))
    expect_error(folder, "demand_df.csv", "demand_EOM", "line 12", "2023-01-02 10:00")


def test_non_numeric_in_series(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "demand_df.csv", lambda df: df.assign(demand_EOM=["2000.0"] * 10 + ["lots"] + ["2000.0"] * 37))
    expect_error(folder, "demand_df.csv", "demand_EOM", "line 12", "lots")


def test_gap_in_series(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "demand_df.csv", lambda df: df.drop(index=5))
    expect_error(folder, "demand_df.csv", "missing timestamps", "2023-01-02 04:00", "2023-01-02 06:00")


def test_duplicate_timestamp_in_series(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_csv(folder / "demand_df.csv", lambda df: pd.concat([df.iloc[:6], df.iloc[5:]]))
    expect_error(folder, "demand_df.csv", "duplicate", "2023-01-02 05:00")


def test_unparsable_timestamp_in_series(tmp_path):
    folder = tiny_copy(tmp_path)

    def f(df):
        df.iloc[3, 0] = "yesterday"
        return df

    edit_csv(folder / "demand_df.csv", f)
    expect_error(folder, "demand_df.csv", "yesterday", "line 5", "datetime")


def test_horizon_outside_data(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_config(folder, "end_date: 2023-01-04 00:00", "end_date: 2023-01-05 00:00")
    expect_error(folder, "demand_df.csv", "covers 2023-01-02 00:00:00 .. 2023-01-03 23:00:00", "2023-01-05")


def test_horizon_before_data(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_config(folder, "start_date: 2023-01-02 00:00", "start_date: 2023-01-01 00:00")
    expect_error(folder, "demand_df.csv", "covers 2023-01-02", "2023-01-01")


def test_duplicate_unit_name_in_one_file(tmp_path):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "mid_1", "name", "base_1")
    expect_error(folder, "powerplant_units.csv", "duplicate", "base_1")


def test_duplicate_unit_name_across_files(tmp_path):
    folder = tiny_copy(tmp_path)
    add_storage(folder, name="learner_1")
    expect_error(folder, "storage_units.csv", "powerplant_units.csv", "duplicate", "learner_1")


def test_duplicate_demand_and_plant_name(tmp_path):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "powerplant_units.csv", "peak_1", "name", "demand_EOM")
    expect_error(folder, "demand_units.csv", "duplicate", "demand_EOM")


def test_unknown_study_case(tmp_path):
    folder = tiny_copy(tmp_path)
    expect_error(folder, "config.yaml", "month", "available study cases: base", study_case="month")


@pytest.mark.parametrize("key,old,new", [
    ("start_date", "start_date: 2023-01-02 00:00", "start_date: not a date"),
    ("end_date", "end_date: 2023-01-04 00:00", "end_date: 2023-13-45 00:00"),
    ("time_step", "time_step: 1h", "time_step: banana"),
])
def test_unparsable_config_dates(tmp_path, key, old, new):
    folder = tiny_copy(tmp_path)
    edit_config(folder, old, new)
    expect_error(folder, "config.yaml", key, "cannot parse")


def test_time_step_not_dividing_an_hour_not_supported(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_config(folder, "time_step: 1h", "time_step: 7min")
    expect_error(folder, "config.yaml", "time_step", "not supported")


def test_end_before_start(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_config(folder, "end_date: 2023-01-04 00:00", "end_date: 2023-01-01 00:00")
    expect_error(folder, "config.yaml", "end_date", "after start_date")


def test_missing_start_date(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_config(folder, "  start_date: 2023-01-02 00:00\n", "")
    expect_error(folder, "config.yaml", "start_date", "missing")


def test_bad_market_mechanism(tmp_path):
    folder = tiny_copy(tmp_path)
    edit_config(folder, "market_mechanism: pay_as_clear", "market_mechanism: redispatch")
    expect_error(folder, "config.yaml", "market_mechanism", "redispatch", "pay_as_bid")


def test_demand_unit_without_column(tmp_path):
    folder = tiny_copy(tmp_path)
    set_cell(folder / "demand_units.csv", "demand_EOM", "name", "demand_DE")
    expect_error(folder, "demand_df.csv", "demand_DE", "no column")


def test_availability_out_of_range(tmp_path):
    folder = tiny_copy(tmp_path)
    times = pd.date_range("2023-01-02", periods=48, freq="h")
    avail = np.ones(48)
    avail[7] = 1.3
    pd.DataFrame({"datetime": times, "peak_1": avail}).to_csv(folder / "availability_df.csv", index=False)
    expect_error(folder, "availability_df.csv", "peak_1", "[0, 1]", "2023-01-02 07:00")


@pytest.mark.parametrize("column,value,fragment", [
    ("initial_soc", "0.95", "outside [min_soc, max_soc]"),
    ("max_soc", "400", "[0, 1]"),
    ("capacity", "0", "capacity must be positive"),
    ("max_power_discharge", "0", "non-zero"),
    ("efficiency_charge", "1.1", "(0, 1]"),
    ("min_soc", "x", "not a number"),
])
def test_bad_storage(tmp_path, column, value, fragment):
    folder = tiny_copy(tmp_path)
    add_storage(folder, **{column: value})
    expect_error(folder, "storage_units.csv", "battery_1", column, fragment)


def test_nothing_half_loaded_cache_not_poisoned(tmp_path):
    folder = tiny_copy(tmp_path)
    good = load_scenario(folder)
    set_cell(folder / "powerplant_units.csv", "mid_1", "efficiency", "0")
    expect_error(folder, "efficiency")
    set_cell(folder / "powerplant_units.csv", "mid_1", "efficiency", "0.5")
    again = load_scenario(folder)
    assert np.array_equal(good.plants.marginal_cost, again.plants.marginal_cost)


# ----------------------------------------------------------------------------- variants
def test_perturb_scenario_draws_documented_factors_per_unit_and_is_seeded():
    """perturb_scenario: every factor is constant over the horizon, inside its documented
    range, the same for the same seed and different for another; the original is untouched
    and the variant runs in the env with forecasts of its own."""
    from envs import MarketCore, perturb_scenario

    sc = load_scenario("default")
    before = sc.plants.marginal_cost.copy()
    a, b, c = perturb_scenario(sc, 7), perturb_scenario(sc, 7), perturb_scenario(sc, 8)
    assert a.name == "default~v7" and a.learning_units == sc.learning_units
    assert a.learning_config == sc.learning_config and a.market == sc.market
    np.testing.assert_array_equal(sc.plants.marginal_cost, before)
    for x, y in ((a.plants.marginal_cost, b.plants.marginal_cost), (a.storages.capacity, b.storages.capacity),
                 (a.demands.volume, b.demands.volume)):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.plants.marginal_cost, c.plants.marginal_cost)

    def factors(new, old):
        f = np.asarray(new, float) / np.asarray(old, float)
        return f

    cost = factors(a.plants.marginal_cost, sc.plants.marginal_cost)
    np.testing.assert_allclose(cost, cost[:1].repeat(len(cost), axis=0))  # one factor per unit, all hours
    assert np.all(np.abs(cost - 1) <= 0.15) and np.ptp(cost[0]) > 0.02
    power = factors(a.plants.max_power, sc.plants.max_power)
    assert np.all(np.abs(power - 1) <= 0.2)
    on = sc.plants.min_power > 0
    np.testing.assert_allclose(factors(a.plants.min_power[on], sc.plants.min_power[on]), power[on])
    for field, lo, hi in (("capacity", -0.3, 0.3), ("max_power_charge", -0.3, 0.3), ("max_power_discharge", -0.3, 0.3)):
        f = factors(getattr(a.storages, field), getattr(sc.storages, field))
        assert np.all((f >= 1 + lo) & (f <= 1 + hi)) and np.all(f != 1.0), field
    assert np.all(a.storages.efficiency_charge <= 1.0) and np.all(a.storages.efficiency_discharge <= 1.0)
    dem = factors(a.demands.volume, sc.demands.volume)
    assert np.all(np.abs(dem - 1) <= 0.1 + 1e-12)
    same = perturb_scenario(sc, 7, strength=0.0)
    np.testing.assert_array_equal(same.plants.marginal_cost, sc.plants.marginal_cost)
    np.testing.assert_array_equal(same.storages.capacity, sc.storages.capacity)
    assert not np.allclose(MarketCore(a).price_forecast, MarketCore(sc).price_forecast)
    for bad in (-0.1, 3.0, float("nan")):
        with pytest.raises(ValueError, match="strength"):
            perturb_scenario(sc, 0, bad)


def test_heldout_like_scenarios_build_and_load(tmp_path):
    """benchmarks/make_heldout_like.py: ten learning CCGTs with one marginal cost, and one
    learning solar unit whose availability is a daylight curve in [0, 1]."""
    import subprocess
    import sys

    if not (ASSUME_DIR / "example_02b").exists():
        pytest.skip("shared ASSUME example_02b absent")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "make_heldout_like.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    c = load_scenario(tmp_path / "like_02c")
    pl = c.plants
    assert pl.learning.sum() == 10 and len(pl.names) == 16
    assert np.ptp(pl.marginal_cost[:, pl.learning]) == 0  # all learners share one cost
    assert pl.marginal_cost[0, list(pl.names).index("pp_16")] == pytest.approx(pl.marginal_cost[0, pl.learning][0] + 30)
    d = load_scenario(tmp_path / "like_02d")
    rn = d.renewables
    assert not d.plants.learning.any() and rn.learning.tolist() == [True]
    av = rn.availability[:, 0]
    hours = pd.DatetimeIndex(d.times).hour
    assert av.min() >= 0 and av.max() <= 1 and av[(hours < 6) | (hours >= 18)].max() < 1e-12 and av.max() > 0.3
