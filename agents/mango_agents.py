"""Compatibility alias: the module moved to :mod:`agents.mango.agents`."""

import sys as _sys

from agents.mango import agents as _module

_sys.modules[__name__] = _module
