"""The evaluations' best-response analysis split between two processes
(agents.analysis_pool): the same numbers as in one process, a fallback when the worker
dies, no worker where it does not pay, and no second run of the caller's script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import agents.analysis_pool as P
from agents.analysis_pool import AnalysisPool
from agents.config import LearningConfig
from agents.trainer import Trainer
from envs import load_scenario
from envs.analysis import exploitability

REPO = Path(__file__).resolve().parents[1]
SMALL = ["actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1"]
OPTS = {"max_cycles": 96}


@pytest.fixture(scope="module")
def default_record():
    """The built-in default scenario (two CCGTs with start-up costs and a pumped storage
    as learners) and one deterministic episode of untrained actors (four days)."""
    sc = load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL)
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False, analysis=False, env_options=OPTS)
    rec = tr.evaluate(analysis=False).record
    tr.close()
    return sc, rec, exploitability(rec, scenario=sc)


def _assert_same(ex, want):
    assert ex.agents == want.agents
    assert ex.joint == want.joint
    np.testing.assert_array_equal(ex.best_response_profit, want.best_response_profit)
    np.testing.assert_array_equal(ex.share, want.share)
    for a in want.agents:
        r, w = ex.responses[a], want.responses[a]
        np.testing.assert_array_equal(r.best_profit_per_hour, w.best_profit_per_hour)
        np.testing.assert_array_equal(r.best_price, w.best_price)  # NaN where unused, in the same places
        if w.soc is not None:
            np.testing.assert_array_equal(r.soc, w.soc)


def test_split_analysis_equals_the_one_in_one_process(default_record, monkeypatch):
    monkeypatch.setattr(P, "_usable_cores", lambda: 2)  # also on a one-core machine
    sc, rec, want = default_record
    pool = AnalysisPool(min_seconds=0.0)
    try:
        _assert_same(pool.exploitability(rec, sc), want)  # in this process; starts the worker
        assert pool.running and pool.used == 0
        mine, theirs = pool._split(list(rec.agents), rec)
        assert mine and theirs and sorted(mine + theirs) == sorted(rec.agents)
        # by the measured times (not the kinds' defaults): the slowest agent alone on one
        # side (usually the storage; which one is slowest depends on the machine's load)
        assert set(pool._seconds) == set(rec.agents)
        slowest = max(rec.agents, key=lambda a: pool._seconds[a])
        assert [slowest] in (mine, theirs)
        for _ in range(2):
            _assert_same(pool.exploitability(rec, sc), want)  # split with the worker
        assert pool.used == 2 and pool.failure is None
    finally:
        pool.close()
    assert not pool.running
    _assert_same(pool.exploitability(rec, sc), want)  # closed: here again


def test_storage_parts_join_to_the_best_response(default_record):
    """A storage unit's best response from its two parts (the grid's programme and the
    off-grid ones, which two processes compute) is the one computed in one go, field by
    field; also without the off-grid search and on a coarse grid."""
    from envs import analysis as A

    sc, rec, want = default_record
    st = next(a for a, k in zip(rec.agents, rec.agent_kind) if k == "storage")
    assert A.storage_parts_apply(rec, st, scenario=sc) and not A.storage_parts_apply(rec, st)  # needs the unit data
    assert not A.storage_parts_apply(rec, rec.agents[0], scenario=sc)  # a plant
    for kw in ({}, {"storage_off_grid": False}, {"soc_points": 5}):
        whole = A.best_response(rec, st, scenario=sc, **kw)
        grid = A.storage_response_part(rec, st, "grid", scenario=sc, **kw)
        off = A.storage_response_part(rec, st, "off_grid", scenario=sc, **kw)
        assert (off is None) == (kw.get("storage_off_grid") is False)
        joined = A.storage_response_join(rec, st, grid, off, scenario=sc, **kw)
        for f in ("best_profit_per_hour", "best_price", "best_action", "best_volume", "bid_volume", "soc",
                  "offer_threshold", "bid_threshold", "soc_levels"):
            np.testing.assert_array_equal(getattr(joined, f), getattr(whole, f), err_msg=f"{kw} {f}")
        assert (joined.off_grid, joined.n_candidates, joined.soc_points) == (whole.off_grid, whole.n_candidates,
                                                                               whole.soc_points)
    assert A.best_response(rec, st, scenario=sc).off_grid  # the off-grid part decides on this record
    with pytest.raises(ValueError, match="no exact storage best response"):
        A.storage_response_part(rec, st, "grid")
    with pytest.raises(ValueError, match="part must be"):
        A.storage_response_part(rec, st, "both", scenario=sc)


def test_the_workers_storage_unit_is_split_with_this_process(default_record, monkeypatch):
    """With the storage unit on the worker's side, this process computes its grid
    programme while the worker computes the off-grid ones: the same numbers."""
    from envs import analysis as A

    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    sc, rec, want = default_record
    here: list = []
    part = A.storage_response_part

    def counting(record, agent, which, **kw):
        here.append((agent, which))
        return part(record, agent, which, **kw)

    monkeypatch.setattr(A, "storage_response_part", counting)
    pool = AnalysisPool(min_seconds=0.0)
    try:
        pool.exploitability(rec, sc)  # starts the worker
        st = next(a for a, k in zip(rec.agents, rec.agent_kind) if k == "storage")
        monkeypatch.setattr(pool, "_split", lambda agents, record: ([a for a in agents if a != st], [st]))
        ex = pool.exploitability(rec, sc)
        assert here == [(st, "grid")] and pool.used == 1
        _assert_same(ex, want)
        np.testing.assert_array_equal(ex.responses[st].offer_threshold, want.responses[st].offer_threshold)
        assert pool._seconds[st] > 0
    finally:
        pool.close()


def test_a_dead_worker_falls_back_to_this_process(default_record, monkeypatch):
    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    sc, rec, want = default_record
    pool = AnalysisPool(min_seconds=0.0)
    pool.exploitability(rec, sc)
    assert pool.running
    pool._proc.kill()
    pool._proc.join()
    _assert_same(pool.exploitability(rec, sc), want)
    assert not pool.running and pool.used == 0
    assert "ended without an answer" in pool.failure or "Error" in pool.failure
    _assert_same(pool.exploitability(rec, sc), want)
    assert not pool.running  # not started again


def test_no_worker_where_it_does_not_pay(default_record, monkeypatch):
    sc, rec, want = default_record
    monkeypatch.setattr(P, "_usable_cores", lambda: 1)
    one_core = AnalysisPool(min_seconds=0.0)
    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    for pool in (one_core, AnalysisPool(min_seconds=1e9), AnalysisPool(enabled=False, min_seconds=0.0)):
        for _ in range(2):
            _assert_same(pool.exploitability(rec, sc), want)
        assert not pool.running and pool.used == 0


def test_trainer_uses_the_pool_and_stops_it(default_record, monkeypatch):
    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    monkeypatch.setattr(P, "MIN_ANALYSIS_SECONDS", 0.0)
    sc, rec, want = default_record
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL)
    tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False, env_options=OPTS)
    pool = tr.learner.analysis_pool
    assert isinstance(pool, AnalysisPool)
    try:
        for _ in range(2):
            ev = tr.evaluate()
            _assert_same(ev.analysis_result, want)  # the same untrained actors, the same episode
        assert pool.used == 1
    finally:
        tr.close()
    assert not pool.running
    # one learner: nothing to split
    tiny = load_scenario("tiny")
    t1 = Trainer(tiny, LearningConfig.from_dict(tiny.learning_config).with_overrides(SMALL), run_dir=None, seed=3,
                 progress=False, tensorboard=False)
    assert t1.learner.analysis_pool is None
    t1.close()


def test_the_worker_does_not_run_the_callers_script_again(tmp_path):
    """A user's script that trains at its top level (no ``if __name__ == "__main__":``)
    is not run again in the spawned worker."""
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        print("top level ran", flush=True)
        import agents.analysis_pool as P
        from agents.config import LearningConfig
        from agents.trainer import Trainer
        from envs import load_scenario

        P._usable_cores = lambda: 2
        sc = load_scenario("default")
        cfg = LearningConfig.from_dict(sc.learning_config).with_overrides({SMALL!r})
        tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False, analysis=False,
                     env_options={OPTS!r})
        rec = tr.evaluate(analysis=False).record
        pool = P.AnalysisPool(min_seconds=0.0)
        a = pool.exploitability(rec, sc)
        b = pool.exploitability(rec, sc)
        print("used", pool.used, a.joint == b.joint, flush=True)
        pool.close()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("top level ran") == 1, out.stdout
    assert "used 1 True" in out.stdout


def test_ctrl_c_is_left_to_the_trainer(default_record, monkeypatch):
    """Ctrl-C reaches the whole process group; the worker ignores it (no traceback of its
    own) and stays usable until the trainer stops it."""
    import os
    import signal

    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    sc, rec, want = default_record
    pool = AnalysisPool(min_seconds=0.0)
    try:
        pool.exploitability(rec, sc)
        os.kill(pool._proc.pid, signal.SIGINT)  # still starting up
        _assert_same(pool.exploitability(rec, sc), want)
        os.kill(pool._proc.pid, signal.SIGINT)  # waiting for work
        _assert_same(pool.exploitability(rec, sc), want)
        assert pool.running and pool.used == 2 and pool.failure is None
    finally:
        pool.close()
    assert not pool.running


def test_a_call_runs_in_the_worker_and_gives_the_same_value(default_record, monkeypatch):
    """``AnalysisPool.call``: the storage teacher's response bids computed in the worker
    equal those computed here; an answer left uncollected does not reach the next
    analysis; a call pending when the pool closes, or made without a worker, is computed
    here; the worker's error falls back to this process."""
    from envs.analysis import storage_response_bids

    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    sc, rec, want = default_record
    agent = next(a for a, k in zip(rec.agents, rec.agent_kind) if k == "storage")
    local = storage_response_bids(rec, agent, 40, scenario=sc)
    assert local.shape == (40, 2) and np.isfinite(local).all()
    pool = AnalysisPool(min_seconds=0.0)
    try:
        before = pool.call("storage_response_bids", rec, agent, 40, scenario=sc)
        assert not before.sent  # no worker yet
        np.testing.assert_array_equal(before.result(), local)
        pool.exploitability(rec, sc)  # starts the worker
        job = pool.call("storage_response_bids", rec, agent, 40, scenario=sc)
        assert job.sent
        np.testing.assert_array_equal(job.result(), local)
        np.testing.assert_array_equal(job.result(), local)  # collected once
        left = pool.call("storage_response_bids", rec, agent, 40, scenario=sc)
        _assert_same(pool.exploitability(rec, sc), want)  # the uncollected answer is not taken for it
        assert pool.used == 1 and pool.failure is None
        np.testing.assert_array_equal(left.result(), local)
        bad = pool.call("storage_response_bids", rec, "no_such_agent", 40, scenario=sc)
        with pytest.raises(KeyError):
            bad.result()  # the worker's error; then computed here, where it raises too
        assert not pool.running and "KeyError" in pool.failure
        pool.failure = None
        pool.exploitability(rec, sc)
        assert pool.running
        pending = pool.call("storage_response_bids", rec, agent, 40, scenario=sc)
        pool.close()
        assert not pending.sent
        np.testing.assert_array_equal(pending.result(), local)
    finally:
        pool.close()


def test_teacher_targets_computed_beside_the_worker_are_the_same(monkeypatch):
    """With the worker running, the plants' grid best responses for the teacher are
    computed while it works (and not again by refresh_teacher), the storage targets in the
    worker; the teacher's targets equal those of a run without the worker."""
    from agents.learner import Learner

    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    monkeypatch.setattr(P, "MIN_ANALYSIS_SECONDS", 0.0)
    sc = load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(SMALL)

    def targets(pool_on: bool):
        tr = Trainer(sc, cfg, run_dir=None, seed=3, progress=False, tensorboard=False, env_options=OPTS)
        try:
            if not pool_on:
                tr.learner.analysis_pool.close()
                tr.learner.analysis_pool = None
            assert tr.learner.plant_prices is not None and tr.learner.best_response_teaching
            calls = {"prefetch": 0, "grid": 0}
            pre, grid = Learner._prefetch_grid_responses, Learner._grid_response

            def spy_pre(self, *a, **k):
                calls["prefetch"] += 1
                return pre(self, *a, **k)

            def spy_grid(self, *a, **k):
                calls["grid"] += 1
                return grid(self, *a, **k)

            monkeypatch.setattr(Learner, "_prefetch_grid_responses", spy_pre)
            monkeypatch.setattr(Learner, "_grid_response", spy_grid)
            for _ in range(2):
                tr.evaluate()
            return [t.copy() for _, t in tr.learner.teacher_data], calls, tr.learner._grid_responses
        finally:
            tr.close()

    with_pool, calls, left = targets(True)
    plants = 2  # the two CCGTs of `default`
    # first evaluation: no worker yet (computed in refresh_teacher); second: during the wait
    assert calls == {"prefetch": 1, "grid": 2 * plants}
    assert left is None  # used and dropped
    without, calls0, _ = targets(False)
    assert calls0 == {"prefetch": 0, "grid": 2 * plants}
    assert len(with_pool) == len(without) == 2
    for a, b in zip(with_pool, without):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(with_pool[1][:, :3]).any()  # plants and storage taught


def test_the_worker_reuses_the_storage_programme_of_its_best_response(default_record, monkeypatch):
    """In the worker (cache on), the storage response bids of a record reuse the
    whole-volume programme its best response built for the same record object; the same
    bids as without the cache; elsewhere (cache off) nothing is kept."""
    import envs.analysis as A

    sc, rec, want = default_record
    agent = next(a for a, k in zip(rec.agents, rec.agent_kind) if k == "storage")
    plain = A.storage_response_bids(rec, agent, 30, scenario=sc)
    monkeypatch.setattr(A, "_DP_CACHE", [])
    A.best_response(rec, agent, scenario=sc)
    assert A._DP_CACHE == []  # off outside the worker
    monkeypatch.setattr(A, "_DP_CACHE_ON", True)
    br = A.best_response(rec, agent, scenario=sc)
    assert br.best_profit == want.responses[agent].best_profit
    (entry,) = A._DP_CACHE
    assert entry[0] is rec
    policy = A.StorageResponsePolicy(rec, agent, scenario=sc)
    assert policy._dp is entry[-1]  # reused
    np.testing.assert_array_equal(A.storage_response_bids(rec, agent, 30, scenario=sc), plain)
    from dataclasses import replace

    other = replace(rec)  # an equal record, another object: built anew
    assert A.StorageResponsePolicy(other, agent, scenario=sc)._dp is not entry[-1]


def test_work_beside_the_worker_that_fails_leaves_the_pipe_in_step(default_record, monkeypatch):
    monkeypatch.setattr(P, "_usable_cores", lambda: 2)
    sc, rec, want = default_record
    pool = AnalysisPool(min_seconds=0.0)
    try:
        pool.exploitability(rec, sc)
        seen = []

        def fails(r):
            seen.append(r)
            raise RuntimeError("beside the worker")

        with pytest.raises(RuntimeError, match="beside the worker"):
            pool.exploitability(rec, sc, while_waiting=fails)
        assert seen == [rec] and pool.running
        from dataclasses import replace

        other = replace(rec, fixed_demand=rec.fixed_demand * 1.05)  # another market: other answers
        _assert_same(pool.exploitability(other, sc), exploitability(other, scenario=sc))  # not the stale answer
        assert pool.failure is None
    finally:
        pool.close()
