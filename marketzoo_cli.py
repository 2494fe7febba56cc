"""Console-script entry point ``marketzoo`` (same as ``python train.py``)."""

from __future__ import annotations


def main() -> int:
    from train import main as _main

    return _main()
