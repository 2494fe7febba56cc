"""Diagnostic (dev): does a kept policy, and the start-up markup its run chose, hold on
hours it did not train on?

Training replays one fixed episode (the scenario's study case) and both fallbacks choose
on that episode's evaluation. This script evaluates a saved policy, with the exact
analysis, twice: on the hours it trained on (``--study-case``, default ``base``) and on
the last ``--holdout`` hours of a longer study case of the same market (``--other-case``,
default ``month``, evaluated with ``holdout_hours``), each with every
``start_up_markup_hours`` of ``--markups``. With ``--variant V`` both study cases are
turned into seeded variant ``V`` (``envs.perturb_scenario``: the factors are drawn per
unit, so the variant is the same market on both). Prints a table and one JSON line.
RESULTS.md, thirtieth round, has the figures for ``default`` and its variants.

    PYTHONPATH=$PWD python benchmarks/eval_other_hours.py RUN/policies/best [--scenario default]
        [--variant V] [--other-case month] [--holdout 336] [--markups 0 12 24 48]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evaluate_on(scenario, policy: str, overrides: list[str], markups: list[float]) -> dict:
    """Exploitability, Σ gain and each agent's share of its best response of ``policy``
    (``agents.trainer.evaluate_policy``: network sizes, grids and seed from its manifest)
    in the evaluation env of ``scenario`` (its learning_config with ``overrides``), per
    ``start_up_markup_hours`` of ``markups``."""
    import torch

    from agents.config import LearningConfig
    from agents.trainer import evaluate_policy

    torch.set_num_threads(1)
    cfg = LearningConfig.from_dict(scenario.learning_config or {}).with_overrides(["torch_threads=1", *overrides])
    out: dict = {"by_markup": {}}
    for h in markups:
        ev, core = evaluate_policy(scenario, cfg, policy, env_options={"start_up_markup_hours": h})
        m = ev.metrics()
        out["hours"] = [int(core.window[0]), int(core.window[1])]
        out["by_markup"][f"{h:g}"] = {"exploitability": float(m["exploitability"]), "gain": float(m["gain"]),
                                      "shares": {a: float(x) for a, x in zip(core.agents, ev.br_share)}}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("policy", help="a saved policy folder, e.g. RUN/policies/best")
    p.add_argument("--scenario", default="default")
    p.add_argument("--study-case", default="base", help="the study case the policy trained on")
    p.add_argument("--other-case", default="month", help="a longer study case of the same market")
    p.add_argument("--holdout", type=int, default=336, help="evaluate the other case's last so many hours")
    p.add_argument("--variant", type=int, default=None, help="seeded variant (strength 1) of both study cases")
    p.add_argument("--markups", type=float, nargs="+", default=[0.0, 12.0, 24.0, 48.0])
    a = p.parse_args(argv)
    from envs import load_scenario, perturb_scenario

    if not (Path(a.policy) / "manifest.json").exists():
        p.error(f"{a.policy}: no manifest.json there; pass a saved policy folder such as RUN/policies/best")
    rows = {}
    for label, case, over in (("trained hours", a.study_case, []),
                              ("other hours", a.other_case, [f"holdout_hours={a.holdout}"])):
        sc = load_scenario(a.scenario, study_case=case)
        if a.variant is not None:
            sc = perturb_scenario(sc, a.variant, 1.0)
        rows[label] = evaluate_on(sc, a.policy, over, a.markups)
    print(f"{'exploitability':<16s} {'hours':>12s} " + " ".join(f"{f'{h:g} h':>8s}" for h in a.markups))
    for label, r in rows.items():
        print(f"{label:<16s} {str(tuple(r['hours'])):>12s} "
              + " ".join(f"{r['by_markup'][f'{h:g}']['exploitability']:8.3f}" for h in a.markups))
    print(json.dumps({"policy": a.policy, "scenario": a.scenario, "variant": a.variant, **rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
