"""Compatibility alias: the module moved to :mod:`agents.mango.protocol`."""

import sys as _sys

from agents.mango import protocol as _module

_sys.modules[__name__] = _module
