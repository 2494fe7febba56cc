"""PettingZoo registry ids (PettingZoo >= 1.27) and the Gymnasium single-agent id."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import envs
from _examples import ASSUME_DIR
from envs import registry

ROOT = Path(__file__).resolve().parents[1]
needs_registry = pytest.mark.skipif(not registry.has_registry(), reason="this PettingZoo has no registry (< 1.27)")


@needs_registry
def test_make_default_and_tiny():
    import pettingzoo

    env = pettingzoo.make("parallel", "marketzoo/Default-v0")
    assert isinstance(env, envs.MarketParallelEnv)
    assert env.possible_agents == envs.parallel_env("default").possible_agents
    tiny = pettingzoo.make("parallel", "marketzoo/Tiny-v0", uniform_spaces=True, max_cycles=5)
    assert tiny.core.scenario.name == envs.parallel_env("tiny").core.scenario.name
    assert tiny.uniform_spaces and tiny.core.max_cycles == 5
    obs, _ = tiny.reset(seed=0)
    steps = 0
    while tiny.agents:
        tiny.step({a: tiny.action_space(a).sample() for a in tiny.agents})
        steps += 1
    assert steps == 5


@needs_registry
def test_make_any_scenario_through_kwargs():
    import pettingzoo

    env = pettingzoo.make("parallel", "marketzoo/Market-v0", scenario="tiny", episode_hours=24, random_start=True)
    assert env.core.max_cycles == 24 and env.core.start_mode == "random"
    path = ASSUME_DIR / "example_02a"
    if (path / "config.yaml").is_file():
        env = pettingzoo.make("parallel", "marketzoo/Market-v0", scenario=str(path))
        assert env.possible_agents == ["plant_pp-6"]
    with pytest.raises(TypeError, match="needs a scenario"):
        pettingzoo.make("parallel", "marketzoo/Market-v0")


@needs_registry
def test_make_aec_form():
    import pettingzoo
    from pettingzoo.test import api_test

    aec = pettingzoo.make("aec", "marketzoo/Default-v0", max_cycles=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(aec, num_cycles=30)


@needs_registry
def test_registering_again_is_a_quiet_no_op():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry.register_envs() == []


def test_registration_with_a_registry_module():
    """The calls made on a PettingZoo that has a registry (a stand-in module)."""
    calls = []
    fake = types.SimpleNamespace(
        register=lambda env_type, env_id, entry_point=None, kwargs=None, **kw: calls.append((env_type, env_id, kwargs)),
        make=lambda *a, **k: None, parallel_registry={}, aec_registry={},
    )
    done = registry.register_envs(fake)
    assert sorted(done) == sorted(f"{t}:{i}" for i in registry.IDS for t in ("parallel", "aec"))
    assert ("parallel", "marketzoo/Default-v0", {"scenario": "default"}) in calls
    assert ("parallel", "marketzoo/Tiny-v0", {"scenario": "tiny"}) in calls
    assert ("aec", "marketzoo/Market-v0", {}) in calls
    fake.parallel_registry.update({i: object() for i in registry.IDS})
    assert all(d.startswith("aec:") for d in registry.register_envs(fake))  # only what is missing


def test_older_pettingzoo_without_registry_registers_nothing_and_imports():
    old = types.SimpleNamespace(ParallelEnv=object)  # PettingZoo < 1.27: no register/make
    assert not registry.has_registry(old)
    assert registry.register_envs(old) == []
    # and `import envs` works in a process whose PettingZoo lacks them
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import pettingzoo\n"
        "for name in ('register', 'make'):\n"
        "    if hasattr(pettingzoo, name):\n"
        "        delattr(pettingzoo, name)\n"
        "import envs\n"
        "env = envs.parallel_env('tiny'); env.reset(seed=0)\n"
        "print('ok', len(env.possible_agents))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok 1"


def test_gymnasium_single_agent_id_still_works():
    env = gymnasium.make("marketzoo/SingleAgentMarket-v0", scenario="tiny")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, rew, term, trunc, info = env.step(env.action_space.sample())
    assert np.isfinite(rew) and "clearing_price" in info
