"""Helpers shared by the tests of the env readings that a run records in its checkpoints
(``tie_below_cost``, ``grid_learner_costs``, the start-up markup)."""

from __future__ import annotations

import torch

import envs
from agents.checkpoint import read_manifest
from agents.config import LearningConfig
from agents.trainer import Trainer, evaluate_policy

H = 48
"""Hours of the tiny runs below."""

TINY = ["training_episodes=2", "episodes_collecting_initial_experience=1", "gradient_steps=2", "batch_size=16",
        "actor_hidden_sizes=[16]", "critic_hidden_sizes=[16]", "torch_threads=1", "best_policy_interval=null",
        "validation_episodes_interval=10", "equilibrium_reference=false", "stay_out_fallback=false",
        "start_up_markup_fallback=[]", "tie_below_cost_fallback=false", "actor_mix_fallback=0",
        "profile_search=0"]
"""A run of two 48-hour episodes on small networks, every fallback and the profile search
off (`default`'s config turns the search on)."""


def plant_constant(tr: Trainer, name: str, pre: float) -> None:
    """Set agent ``name``'s actor to a constant: zero weights into its output layer and
    ``pre`` as the output's pre-activation (tanh(pre) x max_bid_price EUR/MWh)."""
    i = tr.agents.index(name)
    W, b = tr.learner.algo.actor_params[-2], tr.learner.algo.actor_params[-1]
    with torch.no_grad():
        W[i].zero_()
        b[i, : int(tr.learner.act_dims[i])] = pre


def trained_with(tmp_path, key: str):
    """Train a tiny run of `default` with the boolean config ``key`` true and check that
    both of its envs read with it, that ``policies/best`` records it in its manifest and
    that ``evaluate_policy`` reads the checkpoint's value over the config's. Returns
    (scenario, config, the ``policies/best`` folder, its manifest)."""
    sc = envs.load_scenario("default")
    cfg = LearningConfig.from_dict(sc.learning_config).with_overrides(TINY + [f"{key}=true"])
    run = tmp_path / "run"
    tr = Trainer(sc, cfg, run_dir=run, seed=0, progress=False, tensorboard=False, env_options={"max_cycles": H})
    assert getattr(tr.core, key) is True and getattr(tr.eval_core, key) is True
    assert tr.core.plant_bids == "undercut"  # `default`: its learning plants have start-up costs
    tr.train()
    tr.close()
    best = run / "policies" / "best"
    manifest = read_manifest(best)
    assert manifest["trainer"][key] is True
    _, core = evaluate_policy(sc, cfg.with_overrides([f"{key}=false"]), best, seed=0, env_options={"max_cycles": H})
    assert getattr(core, key) is True  # the checkpoint's reading, not the config's
    return sc, cfg, best, manifest
