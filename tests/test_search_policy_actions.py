"""``benchmarks/search_policy_actions.py``: a local search over a kept policy's own env
actions for the worst learner's share of its exact best response.

What would be wrong if it broke: a start that is not the policy's episode (the replay of
its recorded bids must reproduce clearing prices and profits), a kept step that makes the
objective worse, saved actions that do not replay to the figures printed with them, a
one-sided storage market accepted although its actions cannot be rebuilt."""

from __future__ import annotations

import json

import numpy as np
import pytest

import envs
from _runs import H, TINY
from agents.config import LearningConfig
from agents.trainer import Trainer
from _examples import load_benchmark



def _script():
    return load_benchmark("search_policy_actions")


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A tiny run of `default` (48 hours; two CCGTs on the offer grid, a two-sided storage)."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY)
    run = tmp_path_factory.mktemp("search") / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    tr.train()
    tr.close()
    return run / "policies" / "best"


def _lines(capsys):
    return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]


def test_the_search_starts_at_the_policy_and_keeps_only_better_steps(policy, tmp_path, capsys):
    from agents.trainer import evaluate_policy

    mod = _script()
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config)
    res, core = evaluate_policy(sc, cfg, policy, env_options={"max_cycles": H})
    out = tmp_path / "best.npz"
    assert mod.main(["--policy", str(policy), "--hours", str(H), "--iterations", "40", "--seed", "1",
                     "--out", str(out)]) == 0
    rows = _lines(capsys)
    start, final = rows[0], rows[-1]
    # the start is the policy's own episode, scored as its evaluation scores it
    assert start["exploitability"] == pytest.approx(res.exploitability, abs=1e-4)
    shares = dict(zip(core.agents, np.asarray(res.br_share, dtype=float)))
    for a, s in start["shares"].items():
        assert (s is None and not np.isfinite(shares[a])) or s == pytest.approx(shares[a], abs=1e-4)
    # every kept step lowers the worst share of gain (or keeps it and lowers the total)
    kept = [r for r in rows if "change" in r]

    def key(r):
        return (r["worst_gain_share"], r["total_gain"])
    seq = [start] + kept
    assert kept  # the tiny policy is far from its best responses: some steps are kept
    for a, b in zip(seq, seq[1:]):
        assert key(b) < key(a)
    assert final["kept"] == len(kept) and key(final) == key(seq[-1])
    # the saved actions replay to the figures printed with them
    saved = np.load(out)
    replay = mod.Replay(core, sc, 0).run(saved["actions"])
    np.testing.assert_allclose(replay["profit"], saved["profit"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(replay["br"], saved["best_response_profit"], rtol=1e-9, atol=1e-6)
    assert mod.row(replay, list(core.agents))["shares"] == final["shares"]


def test_actions_rebuilt_from_bids_replay_the_episode(policy):
    from agents.trainer import evaluate_policy

    mod = _script()
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config)
    res, core = evaluate_policy(sc, cfg, policy, env_options={"max_cycles": H})
    acts = mod.actions_from_record(core, res.record)
    rep = mod.Replay(core, sc, 0).run(acts)
    np.testing.assert_allclose(rep["record"].clearing_price, res.record.clearing_price, atol=1e-9)
    np.testing.assert_allclose(rep["profit"], res.agent_profit, atol=1e-6)
    # a wrong rebuild (the storage's prices read as a plant's) does not replay it
    bad = acts.copy()
    k = list(core.agent_kind).index("storage")
    bad[:, k, :2] = 0.5 * (acts[:, k, :2] + 1.0)
    rep_bad = mod.Replay(core, sc, 0).run(bad)
    assert not np.allclose(rep_bad["profit"], res.agent_profit, atol=1e-6)


def test_bad_input_gets_one_clear_error(tmp_path, policy):
    from agents.trainer import evaluate_policy

    mod = _script()
    sc = envs.load_scenario("default")
    res, _ = evaluate_policy(sc, LearningConfig.from_dict(sc.learning_config), policy, env_options={"max_cycles": H})
    with pytest.raises(SystemExit):
        mod.main(["--policy", str(tmp_path), "--iterations", "1"])  # no manifest there
    core = envs.MarketCore(envs.load_scenario("default"), storage_bids="signed")
    with pytest.raises(ValueError, match="two-sided"):
        mod.actions_from_record(core, res.record)


def test_the_total_objective_lowers_the_total_gain(policy, capsys):
    mod = _script()
    assert mod.main(["--policy", str(policy), "--hours", str(H), "--iterations", "20", "--seed", "2",
                     "--objective", "total"]) == 0
    rows = _lines(capsys)
    seq = [rows[0]] + [r for r in rows if "change" in r]
    assert len(seq) > 1
    for a, b in zip(seq, seq[1:]):
        assert (b["total_gain"], b["worst_gain_share"]) < (a["total_gain"], a["worst_gain_share"])


def test_a_price_at_a_grid_point_is_rebuilt_from_at_or_below_it():
    rng = np.random.default_rng(0)
    price = np.concatenate([[51.875, 66.46296296296296, 57.5, 0.1], rng.uniform(-100, 100, 1000)])
    from agents.profile_search import _below

    a = _below(price / 100.0, price, lambda x: x * 100.0)
    assert (a * 100.0 <= price).all()
    assert np.abs(a * 100.0 - price).max() < 1e-12
    assert (a * 100.0 != price / 100.0 * 100.0).any()  # some plain quotients land above their price


def test_start_continues_from_saved_actions(policy, tmp_path, capsys):
    mod = _script()
    first = tmp_path / "first.npz"
    assert mod.main(["--policy", str(policy), "--hours", str(H), "--iterations", "10", "--seed", "3",
                     "--out", str(first)]) == 0
    end = _lines(capsys)[-1]
    assert mod.main(["--policy", str(policy), "--hours", str(H), "--iterations", "0", "--start", str(first)]) == 0
    again = _lines(capsys)
    assert again[0]["shares"] == end["shares"] and again[0]["total_gain"] == end["total_gain"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, actions=np.zeros((3, 2, 2)))
    with pytest.raises(SystemExit, match="shape"):
        mod.main(["--policy", str(policy), "--hours", str(H), "--iterations", "0", "--start", str(bad)])
