"""The MATD3 trainer package; re-exports the documented ASSUME-style names."""

from agents.buffer import ReplayBuffer, ReplayBufferSamples
from agents.learning_utils import (
    Actor,
    CriticTD3,
    NormalActionNoise,
    ObsActRew,
    OUNoise,
    polyak_update,
)

__all__ = [
    "Actor", "CriticTD3", "NormalActionNoise", "OUNoise", "ObsActRew", "ReplayBuffer", "ReplayBufferSamples",
    "polyak_update",
]
