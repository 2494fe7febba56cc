"""AgileRL: its MATD3 trains on the default scenario and the evaluation return rises."""

from pathlib import Path

import pytest
from _examples import load_example

pytest.importorskip("agilerl")
try:  # AgileRL 2.50-2.58 imports peft at start-up (only its llm extra installs it)
    import agilerl.algorithms  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the installed versions
    pytest.skip(f"agilerl is installed but does not import: {err}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]




def test_matd3_evaluation_return_rises_on_default():
    """3 episodes (1008 hours; the first only fills the buffer) of AgileRL's MATD3, about
    10 s: the deterministic evaluation return (sum over the three agents) rises from the
    untrained policies' large loss (they bid ~0 EUR/MWh and run below cost) to about break-even
    (seeds 0-3: from -736..-713 to -16..+28)."""
    ex = load_example("agilerl_example")
    out = ex.main("default", steps=3 * 336, seed=0)
    assert out["agents"] == ["plant_ccgt-1", "plant_ccgt-2", "storage_pumped-storage-1"]
    ev = out["evaluation_returns"]
    assert len(ev) == 4
    assert ev[0] < 0
    assert ev[-1] > ev[0] + 500
