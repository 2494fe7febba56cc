"""Compatibility alias: the module moved to :mod:`agents.mango.runtime`."""

import sys as _sys

from agents.mango import runtime as _module

_sys.modules[__name__] = _module

if __name__ == "__main__":  # python -m agents.mango_runtime worker ... (old spelling)
    _sys.exit(_module.main())
