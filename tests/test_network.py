"""Zonal and nodal clearing (envs/network.py): hand-solved markets, the env path, and
parity with ASSUME 0.6 through the reference prices stored in tests/data/."""

import csv
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from envs import load_scenario
from envs.data import ScenarioError
from envs.network import (
    Network, best_response_on_grid, clear_network, marginal_cost_prices, reclear_with_bid,
)

ROOT = Path(__file__).resolve().parents[1]
from _examples import ASSUME_DIR  # noqa: E402
DATA = ROOT / "tests" / "data"
needs_shared = pytest.mark.skipif(not ASSUME_DIR.is_dir(), reason="shared ASSUME scenarios not present")


def _net(kind, nodes, lines, x=None):
    """lines: [(from, to, capacity)] by node index."""
    Z = len(nodes)
    lf = np.array([a for a, _, _ in lines], dtype=np.int64)
    lt = np.array([b for _, b, _ in lines], dtype=np.int64)
    return Network(
        kind=kind, mechanism="nodal" if kind == "nodal" else "complex_clearing", pricing="pay_as_clear",
        nodes=tuple(nodes), buses=tuple(nodes), bus_node=np.arange(Z), line_names=tuple(f"l{i}" for i in range(len(lines))),
        line_from=lf, line_to=lt, line_capacity=np.array([c for *_, c in lines], float),
        line_x=np.ones(len(lines)) * (x if x is not None else np.nan), plant_node=np.zeros(0, np.int64),
        renewable_node=np.zeros(0, np.int64), storage_node=np.zeros(0, np.int64), demand_node=np.zeros(0, np.int64),
    )


# --------------------------------------------------------------------------- hand-solved


def test_two_zones_congested_and_uncongested():
    # zone A: 100 MW at 10; zone B: 100 MW at 40, 60 MW demand at the cap
    for cap, expect_a, expect_b, flow in ((20.0, 10.0, 40.0, 20.0), (1000.0, 10.0, 10.0, 60.0)):
        net = _net("zonal", ["A", "B"], [(0, 1, cap)])
        r = clear_network(net, [10.0, 40.0], [100.0, 100.0], [0, 1], [3000.0], [60.0], [1])
        assert np.allclose(r.price, [[expect_a, expect_b]])
        assert np.isclose(r.flow[0, 0], flow)
        assert np.allclose(r.supply_accepted, [[flow, 60.0 - flow]])
        assert np.allclose(r.demand_accepted, [[60.0]])


def test_scarcity_sets_the_cap_and_floor_clips_bids():
    net = _net("zonal", ["A", "B"], [(0, 1, 5.0)])
    # B needs 50 MW, has 30 MW locally and 5 MW import: the demand at the cap sets B's price
    r = clear_network(net, [-900.0, 20.0], [100.0, 30.0], [0, 1], [3000.0], [50.0], [1], price_floor=-500.0)
    assert np.allclose(r.price, [[-500.0, 3000.0]])  # A's only bid is clipped to the floor
    assert np.isclose(r.demand_accepted[0, 0], 35.0)


def test_nodal_triangle_lmp_above_every_offer():
    # equal reactances: 1/3 of an injection at bus 0 for bus 2 loops through bus 1.
    # line 0-2 (50 MW) binds at g0 = 60, g1 = 30; an extra MW at bus 2 needs -1 MW at bus 0
    # and +2 MW at bus 1, so bus 2's price is 2 * 30 - 10 = 50
    net = _net("nodal", ["b0", "b1", "b2"], [(0, 1, 1e4), (0, 2, 50.0), (1, 2, 1e4)], x=0.1)
    r = clear_network(net, [10.0, 30.0], [1000.0, 1000.0], [0, 1], [3000.0], [90.0], [2])
    assert np.allclose(r.price, [[10.0, 30.0, 50.0]])
    assert np.allclose(r.supply_accepted, [[60.0, 30.0]])
    assert np.allclose(r.flow, [[10.0, 50.0, 40.0]])  # 0->1: 60/3 - 30/3
    # the same network as a transport model (zonal): no loop flows, bus 0 ships 50 + 1e4
    zonal = dataclasses.replace(net, kind="zonal", mechanism="complex_clearing")
    rz = clear_network(zonal, [10.0, 30.0], [1000.0, 1000.0], [0, 1], [3000.0], [90.0], [2])
    assert np.allclose(rz.price, [[10.0, 10.0, 10.0]])


def test_ties_share_pro_rata_and_batch_equals_single():
    net = _net("zonal", ["A", "B"], [(0, 1, 1000.0)])
    sp = np.array([[10.0, 10.0, 10.0, 50.0]])
    sv = np.array([[30.0, 10.0, 60.0, 100.0]])
    r = clear_network(net, sp, sv, [0, 1, 1, 0], [3000.0], [50.0], [1])
    assert np.allclose(r.price, 10.0)
    # ties are shared within a zone: B's two bids at 10 get the same fraction of their volume
    acc = r.supply_accepted[0]
    assert np.isclose(acc[:3].sum(), 50.0) and acc[3] == 0.0
    assert np.isclose(acc[1] / 10.0, acc[2] / 60.0)
    # B copies in one LP give each copy's own result
    rng = np.random.default_rng(0)
    spb = rng.uniform(0, 100, (5, 4))
    dvb = rng.uniform(10, 200, (5, 1))
    rb = clear_network(net, spb, np.repeat(sv, 5, 0), [0, 1, 1, 0], np.full((5, 1), 3000.0), dvb, [1])
    for b in range(5):
        r1 = clear_network(net, spb[b], sv[0], [0, 1, 1, 0], [3000.0], dvb[b], [1])
        assert np.allclose(rb.price[b], r1.price[0]) and np.allclose(rb.supply_accepted[b], r1.supply_accepted[0])


def test_price_is_the_highest_accepted_offer_where_supply_steps_at_demand():
    # demand 50 = the first offer exactly: any price in [10, 20] clears; marketzoo (and
    # ASSUME's HiGHS solve on example_01d) gives 10, in a batch or alone
    net = _net("zonal", ["A", "B"], [(0, 1, 1000.0)])
    sp, sv = np.array([[10.0, 20.0]]), np.array([[50.0, 50.0]])
    for B in (1, 5):
        r = clear_network(net, np.repeat(sp, B, 0), np.repeat(sv, B, 0), [0, 1], np.full((B, 1), 3000.0),
                          np.full((B, 1), 50.0), [1])
        assert np.allclose(r.price, 10.0)
        assert np.allclose(r.supply_accepted, [[50.0, 0.0]] * B, atol=1e-5)


def test_best_response_on_grid_finds_the_withholding_price():
    # agent (column 0, 50 MW at cost 10) in zone B with 40 MW demand; the rival in A offers
    # 100 MW at 20 but only 30 MW can be imported. Bidding up to 3000 the agent still sells
    # 10 MW (the import limit binds) and sets B's price at its bid: best q = 3000.
    net = _net("zonal", ["A", "B"], [(0, 1, 30.0)])
    args = (net, [10.0, 20.0], [50.0, 100.0], [1, 0], [3000.0], [40.0], [1])
    best, prices, q = best_response_on_grid(*args, [0], 10.0, price_cap=3000.0)
    assert q == 3000.0 and np.isclose(best, 10.0 * (3000.0 - 10.0))
    r = reclear_with_bid(*args, [0], [[10.0], [25.0]])
    assert np.allclose(r.price[:, 1], [10.0, 25.0])  # at 10 it covers B alone; at 25 it is marginal
    assert np.allclose(r.supply_accepted[:, 0], [40.0, 10.0])
    # truthful bidding earns less than the best response
    assert best > r.supply_accepted[0, 0] * (r.price[0, 1] - 10.0)


# --------------------------------------------------------------------------- loading


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text.strip() + "\n")


def _tiny(tmp_path: Path, mech: str, zones: bool = True, x: bool = True) -> Path:
    f = tmp_path / "tiny"
    f.mkdir()
    pdict = "\n        zones_identifier: zone_id" if zones else ""
    _write(f, "config.yaml", f"""
base:
  start_date: 2020-01-01 00:00
  end_date: 2020-01-01 04:00
  time_step: 1h
  markets_config:
    EOM:
      operator: op
      maximum_bid_price: 3000
      minimum_bid_price: -500
      market_mechanism: {mech}
      param_dict:
        network_path: .{pdict}
""")
    _write(f, "buses.csv", "name,v_nom,zone_id\nn1,380,Z1\nn2,380,Z1\ns1,380,Z2")
    _write(f, "lines.csv", "name,bus0,bus1,s_nom,s_max_pu" + (",x" if x else "") + "\n"
           + "\n".join(f"{n},{a},{b},{c},0.5" + (",0.01" if x else "") for n, a, b, c in
                       (("l1", "n1", "n2", 1000), ("l2", "n1", "s1", 40), ("l3", "n2", "s1", 40))))
    _write(f, "powerplant_units.csv", """
name,technology,bidding_EOM,fuel_type,emission_factor,max_power,min_power,efficiency,additional_cost,node,unit_operator
cheap,coal,powerplant_energy_learning,coal,0,100,0,1,10,n1,op
mid,gas,powerplant_energy_naive,gas,0,100,0,1,30,n2,op
dear,gas,powerplant_energy_learning,gas,0,100,0,1,60,s1,op
""")
    _write(f, "demand_units.csv", "name,technology,bidding_EOM,max_power,min_power,unit_operator,node\n"
           "dn,inflex_demand,demand_energy_naive,1000,0,op,n2\nds,inflex_demand,demand_energy_naive,1000,0,op,s1")
    _write(f, "demand_df.csv", "datetime,dn,ds\n" + "\n".join(f"2020-01-01 0{h}:00,{20 + h},{70 + 10 * h}" for h in range(4)))
    _write(f, "fuel_prices_df.csv", "fuel,coal,gas,co2\nprice,0,0,0")
    return f


def test_zonal_scenario_through_the_env(tmp_path):
    import envs

    sc = load_scenario(str(_tiny(tmp_path, "complex_clearing")))
    net = sc.network
    assert net.kind == "zonal" and net.nodes == ("Z1", "Z2")
    assert np.allclose(net.line_capacity, [20.0, 20.0])  # s_nom x s_max_pu; l1 lies inside Z1
    # every unit at cost: Z1 (10) exports 40 MW, Z2 covers the rest with 'dear' at 60
    P = marginal_cost_prices(sc)
    assert np.allclose(P[:, 0], 10.0) and np.allclose(P[:, 1], 60.0)
    env = envs.parallel_env(sc)
    obs, infos = env.reset(seed=0)
    assert set(infos[env.agents[0]]) >= {"node_price", "clearing_price"}
    core = env.core
    # cheap at 10 and dear at 60 (actions x max_bid_price 100): marginal cost
    a = {ag: np.array([0.1, 0.1]) if "cheap" in ag else np.array([0.6, 0.6]) for ag in env.agents}
    _, rew, _, _, info = env.step(a)
    assert np.isclose(info["plant_cheap"]["node_price"], 10.0) and np.isclose(info["plant_dear"]["node_price"], 60.0)
    # dear sells 70 - 40 = 30 MW at its own price: profit 0; cheap sells 20 + 40 = 60 MW at 10: 0
    assert np.isclose(info["plant_dear"]["accepted_volume"], 30.0)
    assert np.isclose(info["plant_cheap"]["accepted_volume"], 60.0)
    # dear bids 90: Z2 price 90, dear earns 30 MW x 30
    _, _, _, _, info = env.step({"plant_cheap": np.array([0.1, 0.1]), "plant_dear": np.array([0.9, 0.9])})
    assert np.isclose(info["plant_dear"]["node_price"], 90.0) and np.isclose(info["plant_dear"]["profit"], 40 * 30.0)
    # each agent observes its own zone's price history: the last entry is its zone's price
    o = core.observe()[0]
    F = core.foresight
    assert np.isclose(o[0, 3 * F - 1] * core.max_bid_price, 10.0) and np.isclose(o[1, 3 * F - 1] * core.max_bid_price, 90.0)


def test_vector_env_batches_the_network(tmp_path):
    import envs

    sc = load_scenario(str(_tiny(tmp_path, "nodal_clearing", zones=False)))
    assert sc.network.kind == "nodal" and sc.network.nodes == ("n1", "n2", "s1")
    venv = envs.VectorMarketEnv(sc, num_envs=3)
    penv = envs.parallel_env(sc)
    venv.reset(seed=0)
    penv.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(4):
        a = rng.uniform(-1, 1, (3, venv.n_agents, venv.core.max_act))
        _, _, _, _, vinfo = venv.step(a)
        _, _, _, _, pinfo = penv.step({ag: a[0, i] for i, ag in enumerate(penv.possible_agents)})
        for i, ag in enumerate(penv.possible_agents):
            assert np.isclose(vinfo["agent_price"][0, i], pinfo[ag]["node_price"])
            assert np.isclose(vinfo["profit"][0, i], pinfo[ag]["profit"])


@pytest.mark.parametrize("change, msg", [
    (lambda f: (f / "lines.csv").write_text("name,bus0,bus1,s_nom\nl1,n1,xx,10\n"), "unknown bus 'xx'"),
    (lambda f: (f / "buses.csv").unlink(), "buses.csv: missing file"),
])
def test_bad_network_input_is_one_clear_error(tmp_path, change, msg):
    f = _tiny(tmp_path, "complex_clearing")
    change(f)
    with pytest.raises(ScenarioError, match=msg):
        load_scenario(str(f))


def test_nodal_needs_reactances(tmp_path):
    with pytest.raises(ScenarioError, match="missing column 'x'"):
        load_scenario(str(_tiny(tmp_path, "nodal", x=False)))


# --------------------------------------------------------------------------- parity with ASSUME


def _reference(example: str, case: str) -> list[tuple[str, str, float]]:
    path = DATA / f"assume_prices_{example}_{case}.csv"
    with open(path, newline="") as fh:
        return [(r["datetime"], r["node"], float(r["price"])) for r in csv.DictReader(fh)]


@needs_shared
@pytest.mark.parametrize("example, case", [("example_01d", "zonal_case"), ("example_04a", "zonal_case"),
                                           ("example_04a", "nodal_case")])
def test_network_prices_match_assume(example, case):
    with _no_check():
        sc = load_scenario(str(ASSUME_DIR / example), case)
    ref = _reference(example, case)
    times = [str(np.datetime_as_string(t, unit="s")) for t in sc.times]
    P = marginal_cost_prices(sc)
    nodes = list(sc.network.nodes)
    assert len(ref) == 96 * len(nodes)  # ASSUME's day-ahead products: days 2 to 5
    diff = [abs(P[times.index(t), nodes.index(n)] - p) for t, n, p in ref]
    assert max(diff) < 1e-6
    # the prices are not trivial: the network splits them in some hours
    by_hour = {}
    for t, n, p in ref:
        by_hour.setdefault(t, []).append(p)
    assert any(max(v) - min(v) > 1.0 for v in by_hour.values())


def _no_check():
    import contextlib
    import warnings

    cm = contextlib.ExitStack()
    cm.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return cm


@needs_shared
@pytest.mark.parametrize("example, case", [("example_04a", "nodal_case"), ("example_01d", "zonal_case")])
def test_env_steps_at_marginal_cost_reproduce_assume_prices(example, case):
    # one hour per LP here (the parity test above solves all hours in one LP): 01d has 48
    # zone-hours where supply steps exactly at demand, so this also checks the tie rule
    import envs

    with _no_check():
        sc = load_scenario(str(ASSUME_DIR / example), case)
    learn = np.zeros(len(sc.plants), bool)
    learn[[1, len(learn) - 2]] = True
    sc = dataclasses.replace(sc, plants=dataclasses.replace(sc.plants, learning=learn))
    env = envs.parallel_env(sc)
    core = env.core
    env.reset(seed=0)
    got = {}
    while not core.done:
        t = core.hour
        a = sc.plants.marginal_cost[t, core.lp] / core.max_bid_price
        out = core.step(np.repeat(a[None, :, None], 2, axis=2))
        got[str(np.datetime_as_string(sc.times[t], unit="s"))] = out.node_price[0]
    nodes = list(sc.network.nodes)
    diff = [abs(got[t][nodes.index(n)] - p) for t, n, p in _reference(example, case)]
    assert max(diff) < 1e-6


@needs_shared
@pytest.mark.parametrize("example", ["example_02a", "example_02b"])
def test_copper_plate_prices_match_stored_assume_prices(example):
    spec = importlib.util.spec_from_file_location("_bench_vs_assume", ROOT / "benchmarks" / "vs_assume.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sc = load_scenario(str(ASSUME_DIR / example))
    times, prices = bench.mz_prices(sc)
    ours = dict(zip(times, prices))
    ref = _reference(example, "base")
    assert len(ref) == sc.n_hours - 1 and {t for t, _, _ in ref} <= set(ours)  # ASSUME's first product delivers at 01:00
    assert max(abs(ours[t] - p) for t, _, p in ref) < 1e-6


@needs_shared
def test_scipy_fallback_gives_the_same_prices(monkeypatch):
    pytest.importorskip("scipy")
    import envs.network as network

    with _no_check():
        sc = load_scenario(str(ASSUME_DIR / "example_04a"), "nodal_case")
    monkeypatch.setattr(network, "SOLVER", "highspy")
    a = marginal_cost_prices(sc)
    monkeypatch.setattr(network, "SOLVER", "scipy")
    b = marginal_cost_prices(sc)
    assert np.abs(a - b).max() < 1e-9


def test_network_exploitability_on_a_recorded_episode(tmp_path):
    import envs
    from envs.network import network_exploitability

    sc = load_scenario(str(_tiny(tmp_path, "complex_clearing")))
    env = envs.parallel_env(sc, record=True)
    env.reset(seed=0)
    while env.agents:  # both learners at marginal cost (cheap 10, dear 60; max_bid_price 100)
        env.step({"plant_cheap": np.array([0.1, 0.1]), "plant_dear": np.array([0.6, 0.6])})
    rec = env.episode_record()
    assert np.allclose(rec.supply_accepted.sum(axis=1), sc.demands.volume.sum(axis=1))
    ex = network_exploitability(rec, sc, grid=[60.0, 1000.0])
    k = ex.agents.index("plant_dear")
    # dear is alone behind the 40 MW import limit of zone Z2 (demand 70, 80, 90, 100):
    # offering at 1000 it sells the residual 30..60 MW at 1000
    assert np.isclose(ex.recorded_profit[k], 0.0, atol=1e-6)
    assert np.isclose(ex.best_response_profit[k], (30 + 40 + 50 + 60) * (1000.0 - 60.0))
    # cheap cannot gain on this grid: above 30 the rival in its zone takes its place
    j = ex.agents.index("plant_cheap")
    assert np.isclose(ex.best_response_profit[j], ex.recorded_profit[j])
    assert ex.joint == float("inf")  # all recorded profits are zero, and dear can gain


def test_default_grid_is_within_tick_of_a_fine_search():
    # the agent (50 MW, cost 10) undercuts the rival's 30 in its zone (at 30 they would
    # share pro rata)
    net = _net("zonal", ["A", "B"], [(0, 1, 1e4)])
    args = (net, [10.0, 30.0], [50.0, 100.0], [1, 1], [3000.0], [40.0], [1])
    best, _, q = best_response_on_grid(*args, [0], 10.0)
    assert np.isclose(q, 29.99) and np.isclose(best, 40.0 * 19.99)
    fine = np.arange(10.0, 40.0, 0.001)
    brute, _, _ = best_response_on_grid(*args, [0], 10.0, grid=fine)
    assert brute - 0.01 * 40.0 - 1e-6 <= best <= brute + 1e-6


def test_complex_clearing_without_a_network_is_refused(tmp_path):
    f = _tiny(tmp_path, "complex_clearing")
    cfg = (f / "config.yaml").read_text()
    (f / "config.yaml").write_text(cfg.replace("        network_path: .", "        solver: highs"))
    with pytest.raises(ScenarioError, match="without a network.*block and linked orders"):
        load_scenario(str(f))


def test_storage_on_a_network(tmp_path):
    import envs

    f = _tiny(tmp_path, "nodal_clearing", zones=False)
    _write(f, "storage_units.csv", """
name,technology,bidding_EOM,max_power_charge,max_power_discharge,efficiency_charge,efficiency_discharge,min_soc,max_soc,capacity,initial_soc,unit_operator,node
bat_rule,battery,storage_energy_heuristic_flexable,10,10,1,1,0,1,40,0.5,op,s1
bat_learn,battery,storage_energy_learning,10,10,1,1,0,1,40,0.5,op,n1
""")
    sc = load_scenario(str(f))
    assert list(sc.network.storage_node) == [2, 0]
    env = envs.parallel_env(sc)
    core = env.core
    env.reset(seed=0)
    for t in range(2):  # 20 MWh stored: two hours at 10 MW
        # the learning battery offers to discharge at 5 EUR/MWh: it sells its 10 MW at bus n1
        acts = {a: (np.array([0.05]) if a.startswith("storage") else np.array([0.1, 0.1]) if "cheap" in a
                    else np.array([0.6, 0.6])) for a in env.agents}
        out_before = core.soc.copy()
        _, _, _, _, info = env.step(acts)
        out = env._last["outcome"]
        r = out.clearing
        assert np.isclose(info["storage_bat-learn"]["accepted_volume"], 10.0)
        assert np.isclose(info["storage_bat-learn"]["node_price"], out.node_price[0, 0])
        assert core.soc[0, 1] == pytest.approx(out_before[0, 1] - 10.0)
        assert r.supply_accepted.shape[1] == core.K
        assert not out.scarcity[0]  # the 1e-6 MW demand cut (DEMAND_EPS) is not unserved demand


def test_observation_scaling_uses_each_agents_own_zone(tmp_path):
    """obs_normalization on a network: every agent's forecast and price columns are
    standardised with the series of its own zone (cheap sits in Z1 at 10 EUR/MWh, dear
    in Z2 at 60)."""
    from envs import MarketCore

    core = MarketCore(load_scenario(str(_tiny(tmp_path, "complex_clearing"))))
    shift, scale = core.observation_scaling()
    F = core.foresight
    i_cheap, i_dear = core.agents.index("plant_cheap"), core.agents.index("plant_dear")
    fc = core._fc_nodes  # (zones, T+1, 2F)
    for i in (i_cheap, i_dear):
        z = core.agent_node[i]
        assert np.allclose(shift[i, : 2 * F], fc[z].mean(axis=0), atol=1e-6)
        assert np.allclose(shift[i, 2 * F: 3 * F], fc[z, :, F:].mean(), atol=1e-6)
    assert np.isclose(shift[i_cheap, 2 * F] * core.max_bid_price, 10.0, atol=1e-4)
    assert np.isclose(shift[i_dear, 2 * F] * core.max_bid_price, 60.0, atol=1e-4)
    assert (scale > 0).all()
