"""marketzoo + BenchMARL: MAPPO or MADDPG on the `default` scenario for a few iterations.

The task comes from the package ``marketzoo_benchmarl`` (BenchMARL's custom-task route:
``MarketzooTask`` enum + ``MarketzooTaskClass`` + ``conf/task/marketzoo/default.yaml``).
With ``uniform_spaces: true`` (the YAML's default) the two CCGTs and the storage unit form
one group ``agents``, so ``share_policy_params=True`` trains one policy for all three and
a centralised critic on the env's global state.

Run::

    pip install -e ".[interop-benchmarl]"      # its own virtual environment, see docs/INTEROP.md
    python examples/benchmarl_example.py --algorithm mappo --iters 5
    python -m marketzoo_benchmarl.run algorithm=maddpg task=marketzoo/default   # Hydra CLI
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarl.algorithms import MaddpgConfig, MappoConfig  # noqa: E402
from benchmarl.experiment import Experiment, ExperimentConfig  # noqa: E402
from benchmarl.models.mlp import MlpConfig  # noqa: E402

from marketzoo_benchmarl import MarketzooTask  # noqa: E402

ALGORITHMS = {"mappo": MappoConfig, "maddpg": MaddpgConfig}


def make_experiment(algorithm: str = "mappo", iters: int = 3, frames_per_iter: int = 384, n_envs: int = 2,
                    max_cycles: int = 48, seed: int = 0, save_folder: str | None = None,
                    task: str = "default") -> Experiment:
    """A small BenchMARL experiment on a marketzoo task (CPU, CSV logs only)."""
    task_obj = MarketzooTask[task.upper()].get_from_yaml()
    task_obj.config["max_cycles"] = max_cycles
    cfg = ExperimentConfig.get_from_yaml()
    cfg.max_n_iters, cfg.max_n_frames = iters, None
    cfg.sampling_device = cfg.train_device = cfg.buffer_device = "cpu"
    cfg.gamma, cfg.lr = 0.9, 3e-4
    # on-policy (MAPPO): frames_per_iter per iteration in n_envs copies, 4 minibatch passes
    cfg.on_policy_collected_frames_per_batch = frames_per_iter
    cfg.on_policy_n_envs_per_worker = n_envs
    cfg.on_policy_n_minibatch_iters = 4
    cfg.on_policy_minibatch_size = min(128, frames_per_iter)
    # off-policy (MADDPG): the same collection, 32 gradient steps per iteration
    cfg.off_policy_collected_frames_per_batch = frames_per_iter
    cfg.off_policy_n_envs_per_worker = n_envs
    cfg.off_policy_n_optimizer_steps = 32
    cfg.off_policy_train_batch_size = 128
    cfg.off_policy_memory_size = 50_000
    # evaluate one episode after every iteration, no rendering, no wandb
    cfg.evaluation = True
    cfg.evaluation_interval = frames_per_iter
    cfg.evaluation_episodes = 1
    cfg.render = False
    cfg.loggers = ["csv"]
    cfg.create_json = False
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = False
    cfg.save_folder = save_folder or tempfile.mkdtemp(prefix="marketzoo-benchmarl-")
    model = MlpConfig.get_from_yaml()
    model.num_cells = [64, 64]
    return Experiment(task=task_obj, algorithm_config=ALGORITHMS[algorithm].get_from_yaml(), model_config=model,
                      critic_model_config=model, seed=seed, config=cfg)


def main(algorithm: str = "mappo", iters: int = 3, seed: int = 0, **kwargs) -> dict:
    """Run the experiment; returns it with the evaluation returns logged per iteration."""
    experiment = make_experiment(algorithm, iters, seed=seed, **kwargs)
    experiment.run()
    return {"experiment": experiment, "iters": experiment.n_iters_performed,
            "frames": experiment.total_frames, "folder": str(experiment.folder_name)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="mappo")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = main(a.algorithm, a.iters, a.seed)
    print(f"{out['iters']} iterations, {out['frames']} frames; logs in {out['folder']}")
