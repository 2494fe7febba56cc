"""Gymnasium + Stable-Baselines3: TD3 on the single-agent view of ``tiny`` learns a markup."""

from pathlib import Path

import pytest
from _examples import load_example

pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parents[1]




def test_td3_beats_its_initial_policy_on_tiny():
    """2400 TD3 steps (50 episodes of 48 hours; ~15 s on one core): the deterministic
    evaluation profit rises from a loss (the untrained actor bids ~0 EUR/MWh, below the
    learner's 40 EUR/MWh cost) to a solid share of the exact best-response profit (bid just
    under 70 EUR/MWh; seeds 0-2 reach 0.68-0.74)."""
    ex = load_example("sb3_example")
    out = ex.main(steps=2400, scenario="tiny", seed=0)
    before, after = out["before"], out["after"]
    assert before["profit"] < 0
    assert after["profit"] > before["profit"] + 1e6
    assert after["share"] > 0.4
    assert 40.0 < after["bid"] < 70.0  # a markup over cost, still under the next offer
