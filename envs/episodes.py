"""Episode options from a ``learning_config``: the bridge between config.yaml and the env.

The env options that make episodes depend on the reset seed (see
:class:`~envs.core.MarketCore`): ``episode_hours``, ``random_start``,
``demand_noise``, ``availability_noise``, ``holdout_hours`` and ``eval_window``. A
training run reads the first five from its ``learning_config`` (all optional; the
defaults change nothing) and builds two envs:

* the **training** env: ``episode_options(cfg)`` -- episodes of ``episode_hours`` hours,
  started at random within the hours before the held-out window, with noise;
* the **evaluation** env: ``episode_options(cfg, evaluation=True)`` -- one fixed,
  noise-free episode over the held-out window (``eval_window=True``) when
  ``holdout_hours`` is set, else over the whole horizon as before.

=====================  ==========  ==================================================
learning_config key    default     env option
=====================  ==========  ==================================================
``episode_hours``      ``None``    ``episode_hours`` (training only; ``None``: the
                                   whole horizon / window)
``random_start``       ``False``   ``random_start`` (training only)
``demand_noise``       ``0.0``     ``demand_noise`` (training only)
``availability_noise`` ``0.0``     ``availability_noise`` (training only)
``holdout_hours``      ``None``    ``holdout_hours`` (both); evaluation adds
                                   ``eval_window=True``
=====================  ==========  ==================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EPISODE_CONFIG_KEYS: dict[str, Any] = {
    "episode_hours": None,
    "random_start": False,
    "demand_noise": 0.0,
    "availability_noise": 0.0,
    "holdout_hours": None,
}
"""The ``learning_config`` keys read by :func:`episode_options`, with their defaults."""


def _check(key: str, value: Any) -> Any:
    if value is None:
        if key in ("episode_hours", "holdout_hours"):
            return None
        raise ValueError(f"learning_config key {key!r} must not be null; use {EPISODE_CONFIG_KEYS[key]!r} to switch it off")
    if key == "random_start":
        if not isinstance(value, bool):
            raise ValueError(f"learning_config key 'random_start' must be true or false, got {value!r}")
        return value
    if key in ("episode_hours", "holdout_hours"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"learning_config key {key!r} must be a whole number of hours >= 1 (or null), got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"learning_config key {key!r} must be a standard deviation in [0, 1] (e.g. 0.05), got {value!r}")
    return float(value)


def episode_options(config: Mapping[str, Any] | Any, *, evaluation: bool = False) -> dict[str, Any]:
    """Env keyword arguments for the training (or, with ``evaluation=True``, the
    evaluation) env from a ``learning_config`` mapping or an object with these
    attributes. Keys left out take the defaults, which add no option at all (so
    ``MarketCore(scenario, **episode_options({}))`` is today's env)."""
    values = {}
    for key, default in EPISODE_CONFIG_KEYS.items():
        v = config.get(key, default) if isinstance(config, Mapping) else getattr(config, key, default)
        values[key] = _check(key, v)
    out: dict[str, Any] = {}
    if values["holdout_hours"] is not None:
        out["holdout_hours"] = values["holdout_hours"]
    if evaluation:
        if "holdout_hours" in out:
            out["eval_window"] = True
        return out
    for key in ("episode_hours", "random_start", "demand_noise", "availability_noise"):
        if values[key] != EPISODE_CONFIG_KEYS[key]:
            out[key] = values[key]
    return out
