"""BenchMARL's Hydra command line with the marketzoo tasks added::

    python -m marketzoo_benchmarl.run algorithm=mappo task=marketzoo/default
    python -m marketzoo_benchmarl.run algorithm=maddpg task=marketzoo/tiny experiment.max_n_iters=3

Any BenchMARL override works (``experiment.*``, ``algorithm.*``, ``task.max_cycles=24`` ...).
"""

from __future__ import annotations

import sys

from .task import CONF_DIR, register


def main(argv: list[str] | None = None) -> None:
    register()
    args = list(sys.argv[1:] if argv is None else argv)
    # BenchMARL's own conf folder stays first; ours adds the task group "marketzoo"
    args.append(f"hydra.searchpath=[file://{CONF_DIR}]")
    from benchmarl.run import hydra_experiment

    saved, sys.argv = sys.argv, [sys.argv[0], *args]
    try:
        hydra_experiment()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
