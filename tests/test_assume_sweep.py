"""Every study case of every shared ASSUME example either loads and runs a few steps, or
is refused with one line naming the unsupported feature (issue 11)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import envs
from envs.data import ScenarioError

from _examples import ASSUME_DIR

# study cases refused today, with a fragment of the message naming the feature. Cases
# marked "network" may also run once zonal/nodal clearing exists.
REFUSED = {
    ("example_01a", "dam_with_complex_clearing"): "complex_clearing",
    ("example_01i", "dam_with_complex_clearing"): "complex_clearing",
    ("example_01c", "eom_only"): "complex_clearing",
    ("example_01c", "eom_and_crm"): "complex_clearing",
    ("example_01c", "dam_with_complex_opt_clearing"): "complex_clearing",
    ("example_01d", "base"): "network",
    ("example_01d", "zonal_case"): "network",
    ("example_01d", "nodal_case"): "network",
    ("example_01f", "ltm_case"): "2 markets",
    ("example_01g", "sho_case"): "block and linked orders",
    ("example_01g", "bo_case"): "block and linked orders",
    ("example_01g", "lo_case"): "block and linked orders",
    ("example_03", "dam_case_2019"): "complex_clearing",
    ("example_03", "eom_crm_case_2019"): "reserve/capacity markets",
    ("example_04a", "base"): "redispatch",
    ("example_04a", "nodal_case"): "network",
    ("example_04a", "zonal_case"): "network",
}


def _cases() -> list:
    if not ASSUME_DIR.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"{ASSUME_DIR} not available"))]
    out = []
    for ex in sorted(p for p in ASSUME_DIR.iterdir() if (p / "config.yaml").is_file()):
        cfg = yaml.safe_load((ex / "config.yaml").read_text())
        for case in [k for k, v in cfg.items() if isinstance(v, dict)]:
            out.append(pytest.param(ex.name, case, id=f"{ex.name}/{case}"))  # all together take ~5 s
    return out


@pytest.mark.parametrize("example, case", _cases())
def test_study_case_runs_or_is_refused_clearly(example, case):
    folder = ASSUME_DIR / example
    expected = REFUSED.get((example, case))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ignored columns / DSM units are announced by warnings
        try:
            sc = envs.load_scenario(folder, case)
            learners = None if sc.learning_units else [(sc.plants.names + sc.renewables.names + sc.storages.names)[0]]
            env = envs.parallel_env(sc, learning_units=learners)
        except ScenarioError as err:
            msg = str(err)
            assert "\n" not in msg, "the refusal is one line"
            assert str(folder) in msg and "not supported" in msg, msg
            if expected == "network":
                assert "zonal" in msg or "nodal" in msg or "redispatch" in msg, msg
            else:
                assert expected is not None, f"{example}/{case} was expected to run: {msg}"
                assert expected in msg, msg
            return
    assert expected in (None, "network"), f"{example}/{case} should be refused ({expected}) but loaded"
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(env.possible_agents) and len(obs) >= 1
    rng = np.random.default_rng(0)
    for _ in range(3):
        acts = {a: rng.uniform(-1, 1, env.action_space(a).shape).astype(np.float32) for a in env.agents}
        obs, rew, term, trunc, info = env.step(acts)
        assert all(np.isfinite(v) for v in rew.values())
        price = next(iter(info.values()))["clearing_price"]
        assert sc.market.price_floor <= price <= sc.market.price_cap
