"""``python -m agents.mango worker --bind HOST:PORT`` (see :func:`agents.mango.runtime.main`)."""

import sys

from agents.mango.runtime import main

if __name__ == "__main__":
    sys.exit(main())
