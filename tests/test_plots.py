"""The learning-curve figure marks the policy the run keeps and summarises.

What would be wrong if it broke: after the fallbacks and the profile search the kept
policy is none of the evaluations plotted, so a curve without it shows a lower share than
the summary prints."""

from __future__ import annotations

from agents.plots import _learning_figure, learning_curves

HISTORY = [{"episode": e, "train/reward": 0.1 * e} for e in range(3)] + [
    {"episode": 3, "train/reward": 0.3, "eval/reward": 0.2, "eval/br_share": 0.85},
    {"episode": 4, "train/reward": 0.4, "eval/reward": 0.25, "eval/br_share": 0.88},
]


def _marks(fig):
    ax2 = fig.axes[1]
    return [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in ax2.get_lines()
            if line.get_label().startswith("kept policy")]


def test_the_kept_policy_is_marked_after_the_last_evaluation(tmp_path):
    (label, x, y), = _marks(_learning_figure(HISTORY, final=0.9096))
    assert x == [5] and y == [0.9096] and "0.910" in label
    assert _marks(_learning_figure(HISTORY)) == []  # no final figure: nothing marked
    assert _marks(_learning_figure(HISTORY, final=float("nan"))) == []
    path = learning_curves(HISTORY, tmp_path / "curves.png", final=0.9)
    assert path.is_file() and path.stat().st_size > 0 and not list(tmp_path.glob("*.tmp.png"))
