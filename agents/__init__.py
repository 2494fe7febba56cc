"""The MATD3 trainer package; re-exports the documented ASSUME-style names.

The names are imported on first use (they need torch), so that torch-free parts of the
package (e.g. :mod:`agents.profile_search`, which the profile search's helper process
imports) load without it."""

from importlib import import_module

_EXPORTS = {
    "ReplayBuffer": "agents.buffer", "ReplayBufferSamples": "agents.buffer",
    "Actor": "agents.learning_utils", "CriticTD3": "agents.learning_utils",
    "NormalActionNoise": "agents.learning_utils", "ObsActRew": "agents.learning_utils",
    "OUNoise": "agents.learning_utils", "polyak_update": "agents.learning_utils",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
