"""The mango-agents runtime of the trainer (``train.py --runtime mango``).

* :mod:`agents.mango.runtime` -- the run: containers, worker processes, the clock,
  :func:`train_mango`, :func:`run_mango_training`, the worker CLI
  (``python -m agents.mango worker --bind HOST:PORT``);
* :mod:`agents.mango.agents` -- the market, unit and unit-host agents;
* :mod:`agents.mango.protocol` -- message types and the TCP codec.

The ``Learning`` role stays at :mod:`agents.learning_role` (ASSUME's name). Names are
imported lazily, so importing the subpackage does not import mango.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_mango": "runtime", "run_mango_training": "runtime", "Timeouts": "runtime", "Timeline": "runtime",
    "MangoRunResult": "runtime", "serve_units": "runtime",
    "MarketAgent": "agents", "UnitAgent": "agents", "UnitHostAgent": "agents", "EpisodeOutcome": "agents",
    "UnitSpec": "protocol", "make_codec": "protocol",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
