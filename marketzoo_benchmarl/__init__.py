"""marketzoo as a BenchMARL task (BenchMARL's custom-task route: a task class plus YAML).

Use it from Python::

    from benchmarl.algorithms import MappoConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig
    from marketzoo_benchmarl import MarketzooTask

    task = MarketzooTask.DEFAULT.get_from_yaml()   # marketzoo_benchmarl/conf/task/marketzoo/default.yaml
    experiment = Experiment(task=task, algorithm_config=MappoConfig.get_from_yaml(),
                            model_config=MlpConfig.get_from_yaml(), seed=0,
                            config=ExperimentConfig.get_from_yaml())
    experiment.run()

or from the command line with BenchMARL's Hydra configuration::

    python -m marketzoo_benchmarl.run algorithm=mappo task=marketzoo/default

Needs ``pip install "marketzoo[interop-benchmarl]"`` (BenchMARL pins an older TorchRL than
the ``interop`` extra, so give it a virtual environment of its own).
"""

from .task import CONF_DIR, MarketzooTask, MarketzooTaskClass, TaskConfig, make_env, register

__all__ = ["CONF_DIR", "MarketzooTask", "MarketzooTaskClass", "TaskConfig", "make_env", "register"]
