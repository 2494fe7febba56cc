"""Shared test helpers: the example scripts and the ASSUME example scenarios.

* :func:`load_example` loads a script from ``examples/`` as a module (interop tests),
  :func:`load_benchmark` one from ``benchmarks/`` (tests of the benchmark scripts).
* :data:`ASSUME_DIR` is the folder of ASSUME's example scenarios, used by path and never
  copied into the repository: ``$MARKETZOO_ASSUME_DIR`` when set, else
  ``../shared/scenarios/assume`` next to the checkout. :func:`assume_example` returns one
  example's folder or skips the test when it is absent.
"""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSUME_DIR = Path(os.environ.get("MARKETZOO_ASSUME_DIR") or ROOT.parent / "shared" / "scenarios" / "assume")


def assume_example(name: str) -> Path:
    """The folder of ASSUME example ``name`` (e.g. ``"example_02a"``); skips the test
    when it is not available."""
    path = ASSUME_DIR / name
    if not path.is_dir():
        pytest.skip(f"ASSUME example {name} not available at {path} (set MARKETZOO_ASSUME_DIR)")
    return path


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (its ``main(argv)`` and helpers)."""
    spec = importlib.util.spec_from_file_location(f"_benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
