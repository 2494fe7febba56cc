"""PettingZoo registry ids, registered on ``import envs`` when PettingZoo has a registry.

PettingZoo 1.27 added ``pettingzoo.register`` / ``pettingzoo.make``. With it::

    import envs, pettingzoo
    env = pettingzoo.make("parallel", "marketzoo/Default-v0")            # the built-in default
    env = pettingzoo.make("parallel", "marketzoo/Tiny-v0", uniform_spaces=True)
    env = pettingzoo.make("parallel", "marketzoo/Market-v0", scenario="path/to/assume/folder")
    aec = pettingzoo.make("aec", "marketzoo/Default-v0")                 # the AEC form

Every keyword of :func:`envs.parallel_env` can be given to ``make`` (``max_cycles``
too, which is the env's own option). With an older PettingZoo nothing is registered and
nothing fails; :func:`envs.parallel_env` is the way in there. The single-agent
Gymnasium id ``marketzoo/SingleAgentMarket-v0`` is registered with Gymnasium by
:mod:`envs.single_agent` either way.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "marketzoo"

#: id -> default keyword arguments of :func:`envs.parallel_env`
IDS: dict[str, dict[str, Any]] = {
    f"{NAMESPACE}/Default-v0": {"scenario": "default"},
    f"{NAMESPACE}/Tiny-v0": {"scenario": "tiny"},
    f"{NAMESPACE}/Market-v0": {},
}


def market_parallel_env(scenario=None, **kwargs):
    """Entry point of ``marketzoo/Market-v0``: any scenario, given as ``scenario=``."""
    if scenario is None:
        raise TypeError(
            "marketzoo/Market-v0 needs a scenario: pettingzoo.make('parallel', 'marketzoo/Market-v0', "
            "scenario='path/to/assume/folder' or a built-in name); or use 'marketzoo/Default-v0'"
        )
    from .parallel import parallel_env

    return parallel_env(scenario, **kwargs)


def market_aec_env(scenario=None, **kwargs):
    """AEC form of :func:`market_parallel_env`."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(market_parallel_env(scenario, **kwargs))


def has_registry(pettingzoo_module=None) -> bool:
    """Whether the installed PettingZoo has ``register``/``make`` (PettingZoo >= 1.27)."""
    if pettingzoo_module is None:
        try:
            import pettingzoo as pettingzoo_module
        except ImportError:
            return False
    return callable(getattr(pettingzoo_module, "register", None)) and callable(getattr(pettingzoo_module, "make", None))


def _registered(pz, env_type: str, env_id: str) -> bool:
    reg = getattr(pz, f"{env_type}_registry", None)
    if isinstance(reg, dict):
        return env_id in reg
    try:
        pz.spec(env_type, env_id)
        return True
    except Exception:
        return False


def register_envs(pettingzoo_module=None) -> list[str]:
    """Register the ids above for ``"parallel"`` and ``"aec"``; returns the ids newly
    registered (empty when this PettingZoo has no registry or they are there already)."""
    if pettingzoo_module is None:
        try:
            import pettingzoo as pettingzoo_module
        except ImportError:
            return []
    pz = pettingzoo_module
    if not has_registry(pz):
        return []
    done = []
    for env_id, kwargs in IDS.items():
        for env_type, entry in (("parallel", market_parallel_env), ("aec", market_aec_env)):
            if _registered(pz, env_type, env_id):
                continue
            pz.register(env_type, env_id, entry_point=entry, kwargs=dict(kwargs))
            done.append(f"{env_type}:{env_id}")
    return done
