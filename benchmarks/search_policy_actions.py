"""Local search over a kept policy's own env actions, for the worst learner's share of its
exact best response; optionally distilled into the policy's actors.

    PYTHONPATH=$PWD python benchmarks/search_policy_actions.py --policy RUN/policies/best
        [--scenario default] [--iterations 1500] [--seed 0] [--objective worst|both|total|smooth]
        [--focus gain|uniform] [--hours N] [--out actions.npz] [--start actions.npz]
        [--distil NEW_POLICY_FOLDER]

It answers one question about a goal such as "every learner earns at least 0.90 of its
exact best-response profit": is there a profile that the env's *own actions* can bid
(the plants' offer grid, the storage's two-sided bids, the readings the checkpoint
records) and that meets it, near what training found? ``search_low_gain.py`` asks the
same with exact prices, which the env's grid cannot always bid. The search is a heuristic
(a local search over one episode's open-loop actions, :mod:`agents.profile_search`), not a
solver: it can show that such a profile exists near the policy, not that none does. With
``--distil`` the profile becomes a policy again (:mod:`agents.distil`).

1. Start: the actions of ``--policy`` in its deterministic evaluation episode
   (``agents.trainer.load_policy``), rebuilt from the bids its record holds and replayed on
   the same market; the script stops with an error where the replay does not reproduce
   the episode's clearing prices and profits. ``--start`` continues from the actions of an
   earlier ``--out`` instead (the same policy's market and readings).
2. Each step proposes one change and keeps it only where the objective falls:
   ``--objective worst`` (default) the largest gain from deviating alone as a share of that
   learner's best-response profit, ties broken by the total gain; ``both`` the larger of
   that and the exploitability; ``smooth`` a smooth maximum (10-norm) of each learner's gain
   share and the exploitability (what the trainer's ``profile_search`` lowers); ``total``
   the total gain, ties broken by the largest
   share. Gains are scored as training scores its evaluations
   (``envs.analysis.exploitability``; a best response whose opponents bid as before is
   reused). A learner is drawn with weight (its gain share)^2, a window of 1–48 hours
   (``--focus gain``, the default: around an hour drawn by that learner's gain in it, the
   change made by it or, half the time, another learner; ``uniform``: anywhere, by it),
   and one of:

   * a plant adopts its best response within the env's offer grid in the window (the
     best-response teacher's plant targets); a storage unit the two-sided bids of its
     exact best response (the teacher's storage targets);
   * its prices (both, the lower or the higher) move by 0.5, 2 or 5 EUR/MWh, either way;
   * a plant stays out (both offers at the bid cap) or stays on (its inflexible part at the
     bid floor) in the window.
3. Output: one JSON line per kept step and every 100 steps, a final line, and with
   ``--out`` the best actions ``(H, n, max_act)`` with their profits and best-response
   profits (``.npz``, written atomically after every kept step and at the end).
4. ``--distil DIR``: the policy's actors fitted to the best profile (each bid at the
   middle of the range of actions the env reads as its price), evaluated in closed loop
   and saved as the checkpoint ``DIR`` (its manifest says where it comes from); the final
   line adds their figures and whether they bid the profile exactly (``reproduced``).
   The training script does the same after training with the config key
   ``profile_search``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from agents.jsonio import write_atomic  # noqa: E402
from agents.profile_search import (Replay, actions_from_record, propose, row, score, search,  # noqa: E402,F401
                                   start_profile, start_search_helper)
from envs import load_scenario  # noqa: E402
from bench_quality import resolve_scenario  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", type=Path, required=True, help="a checkpoint folder, e.g. RUN/policies/best")
    ap.add_argument("--scenario", default="default",
                    help="a built-in, a folder, or a name under ../shared/scenarios/assume")
    ap.add_argument("--study-case", default=None)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="seed of the proposals")
    ap.add_argument("--objective", choices=("worst", "both", "total", "smooth"), default="worst")
    ap.add_argument("--focus", choices=("gain", "uniform"), default="gain",
                    help="where windows go: around the hours where the drawn learner gains, or anywhere")
    ap.add_argument("--hours", type=int, default=None, help="episode length (the env's max_cycles), as the policy ran")
    ap.add_argument("--out", type=Path, default=None, help="where to write the best actions (.npz)")
    ap.add_argument("--start", type=Path, default=None, help="continue from the actions of an earlier --out")
    ap.add_argument("--stop-at", type=float, default=None,
                    help="stop once the objective's first figure is at most this (the trainer's "
                         "profile_search_tolerance, with --objective both)")
    ap.add_argument("--distil", type=Path, default=None,
                    help="fit the policy's actors to the best profile and save them as this checkpoint folder")
    a = ap.parse_args(argv)
    if a.iterations < 0:
        ap.error(f"--iterations must be >= 0, got {a.iterations}")
    if a.stop_at is not None and not (a.stop_at >= 0):
        ap.error(f"--stop-at must be >= 0, got {a.stop_at}")
    if not (a.policy / "manifest.json").is_file():
        ap.error(f"--policy {a.policy}: no manifest.json there; pass a checkpoint folder such as RUN/policies/best")
    if a.distil is not None and a.distil.resolve() == a.policy.resolve():
        ap.error("--distil must name a new folder, not --policy itself")
    from agents.config import LearningConfig
    from agents.trainer import load_policy

    name = resolve_scenario(a.scenario)
    if name is None:
        ap.error(f"--scenario {a.scenario}: neither a built-in, a folder, nor an example under ../shared/scenarios/assume")
    sc = load_scenario(name, study_case=a.study_case) if a.study_case else load_scenario(name)
    cfg = LearningConfig.from_dict(sc.learning_config or {}, source="learning_config")
    opts = {"max_cycles": a.hours} if a.hours else None
    t0 = time.perf_counter()
    learner, core = load_policy(sc, cfg, a.policy, env_options=opts)
    res = learner.evaluate(core, sc, analysis=True, refresh=False)
    agents = list(core.agents)
    # the evaluation episode's hours do not depend on the reset's seed
    replay = Replay(core, sc, learner.generators.evaluation)
    try:
        best = start_profile(replay, res.record, res.agent_profit)
    except ValueError as e:
        raise SystemExit(f"search_policy_actions: {e}") from None
    if a.start is not None:
        start = np.load(a.start)["actions"]
        if start.shape != best["actions"].shape:
            raise SystemExit(f"search_policy_actions: --start {a.start} holds actions of shape {start.shape}, "
                             f"this policy's episode needs {best['actions'].shape}; pass the same --policy and --hours")
        best = replay.run(start)
    print(json.dumps({"it": 0, "start": str(a.start or a.policy), **row(best, agents),
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)

    def save(b: dict) -> None:
        if a.out is not None:
            write_atomic(a.out, lambda f: np.savez(f, actions=b["actions"], profit=b["profit"],
                                                   best_response_profit=b["br"], agents=np.array(agents)), binary=True)

    kept = made = 0

    def step(it: int, new: dict | None, what: str, k: int) -> None:
        nonlocal kept, made
        made = it
        if new is not None:
            kept += 1
            save(new)  # after every kept step: a stopped search keeps its best so far
            print(json.dumps({"it": it, "kept": kept, "agent": agents[k], "change": what, **row(new, agents)}),
                  flush=True)
        elif it % 100 == 0:
            print(json.dumps({"it": it, "kept": kept, "seconds": round(time.perf_counter() - t0)}), flush=True)

    helper = start_search_helper(replay, best, a.iterations)  # a second core scores proposals ahead
    try:
        best, kept = search(replay, best, a.iterations, np.random.default_rng(a.seed), objective=a.objective,
                            focus=a.focus, on_step=step, helper=helper, stop_at=a.stop_at)
    finally:
        if helper is not None:
            helper.close()
    save(best)  # also when no step improved on the start
    final = {"final": True, "policy": str(a.policy), "scenario": a.scenario, "objective": a.objective,
             "focus": a.focus, "iterations": a.iterations, "proposals": made, "kept": kept,
             "seconds": round(time.perf_counter() - t0), **row(best, agents)}
    if a.distil is not None:
        final["distilled"] = distil_into(learner, core, sc, best, a.policy, a.distil)
    print(json.dumps(final), flush=True)
    return 0


def distil_into(learner, core, scenario, profile: dict, policy: Path, out: Path) -> dict:
    """Fit the policy's actors to ``profile`` (:mod:`agents.distil`), evaluate them and
    save them as the checkpoint ``out`` (the policy's manifest, with what was done);
    returns the evaluation's figures and whether it reproduced the profile."""
    from agents.checkpoint import read_manifest
    from agents.distil import distil_profile

    ev, loss, same = distil_profile(learner, core, scenario, profile)
    info = {"exploitability": round(float(ev.exploitability), 4), "reproduced": same,
            "imitation_loss": float(loss),
            "shares": {a: round(float(s), 4) for a, s in zip(core.agents, np.asarray(ev.br_share, dtype=float))}}
    manifest = read_manifest(policy)
    trainer = {**(manifest.get("trainer") or {}), "distilled_from": str(policy), "distilled": info}
    learner.save(out, episode=manifest.get("episode"), metrics=ev.metrics(), agent_kind=manifest.get("agent_kind"),
                 scenario=manifest.get("scenario"), extra={"trainer": trainer})
    return {**info, "policy": str(out)}


if __name__ == "__main__":
    raise SystemExit(main())
