"""marketzoo's market: scenarios, clearing, the PettingZoo env and the vector env.

Imports neither torch nor the trainer package (``agents``).
"""

from .core import MarketCore, agent_name
from .episodes import EPISODE_CONFIG_KEYS, episode_options
from .data import Demands, MarketConfig, Plants, Renewables, Scenario, ScenarioError, Storages
from .market import ClearingResult, clear_market, reference_clear
from .parallel import MarketParallelEnv, env, parallel_env, raw_env
from .record import EpisodeRecord
from .scenario import list_builtin_scenarios, load_scenario, perturb_scenario
from .single_agent import SingleAgentMarketEnv, single_agent_env
from .vector import VectorMarketEnv

__version__ = "0.1.0"

__all__ = [
    "ClearingResult", "Demands", "EPISODE_CONFIG_KEYS", "EpisodeRecord", "MarketConfig", "MarketCore", "MarketParallelEnv", "Plants",
    "Renewables", "Scenario", "ScenarioError", "SingleAgentMarketEnv", "Storages", "VectorMarketEnv", "agent_name", "clear_market",
    "env", "episode_options", "list_builtin_scenarios", "load_scenario", "parallel_env", "perturb_scenario", "raw_env",
    "reference_clear",
    "single_agent_env",
]


def _register_ids() -> None:
    """PettingZoo registry ids (PettingZoo >= 1.27; see :mod:`envs.registry`)."""
    try:
        from .registry import register_envs

        register_envs()
    except Exception as e:  # a registry we do not know must not break `import envs`
        import warnings

        warnings.warn(f"marketzoo: could not register the PettingZoo ids ({e!r}); use envs.parallel_env(...)")


_register_ids()
