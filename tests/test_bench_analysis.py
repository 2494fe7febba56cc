"""``benchmarks/bench_analysis.py``: one evaluation's analysis timed on the residual path
and with every candidate market cleared in full.

What would be wrong if it broke: a row whose best-response profits differ between the two
paths (the script must stop, not print a speed-up), the full-clearing path not forced
(both timings of the same code), a scenario with demand bids not recorded as such."""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs import analysis as an
from _examples import load_benchmark



def _script():
    return load_benchmark("bench_analysis")


def test_rows_agree_and_the_full_path_is_forced(capsys, monkeypatch):
    mod = _script()
    calls = {"full": 0, "fast": 0}
    plain = an._evaluate

    def counting(*a, **k):
        calls["full" if k.get("via_clearing") else "fast"] += 1
        return plain(*a, **k)

    monkeypatch.setattr(an, "_evaluate", counting)
    mod.main(["--scenario", "tiny", "default", "--repeat", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["scenario"] for r in rows] == ["tiny", "default"]
    assert rows[0]["demand_bids"] == 0 and rows[1]["demand_bids"] >= 1  # default's storage charges
    assert rows[1]["learners"] == 3 and np.isfinite(rows[1]["exploitability"])
    assert calls["full"] > 0 and calls["fast"] > 0
    assert an._evaluate is counting  # restored after the forced path


def test_a_disagreement_stops_the_script(monkeypatch):
    mod = _script()
    plain = an._evaluate_residual

    def off_by_one(*a, **k):
        profit, on = plain(*a, **k)
        return profit + 1.0, on

    monkeypatch.setattr(an, "_evaluate_residual", off_by_one)
    with pytest.raises(SystemExit, match="differs between the paths"):
        mod.main(["--scenario", "tiny", "--repeat", "1"])
