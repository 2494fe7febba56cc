"""Every message type of the mango runtime survives the codec used over TCP."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch
from mango.messages.codecs import SerializationError
from mango.messages.message import MangoMessage

from agents.learning_utils import Actor
from agents.mango.protocol import HOST, MARKET, POLICY, TRAINING, UnitSpec, make_codec

UTC = dt.timezone.utc
T = dt.datetime(2023, 1, 2, 5, tzinfo=UTC)


def roundtrip(content):
    """As a TCP container sends it: wrapped in a MangoMessage, encoded, decoded."""
    codec = make_codec()
    msg = codec.decode(codec.encode(MangoMessage(content, {"sender_id": "a", "sender_addr": ["127.0.0.1", 1]})))
    return msg.content


def same(a, b) -> bool:
    """Deep equality with exact dtype, shape and bits for arrays and tensors."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.detach().view(torch.uint8) if a.dim() else a.detach(), b.view(torch.uint8) if b.dim() else b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return type(a) is type(b) and a == b


rng = np.random.default_rng(0)
B, n, od, m = 2, 3, 38, 2
MESSAGES = {
    "episode_start": {"context": TRAINING, "type": "episode_start", "episode": 3, "mode": "train",
                      "learning_rate": 1e-3, "time": T},
    "transition": {"context": TRAINING, "type": "transition", "episode": 3, "hour": 7, "time": T,
                   "obs": rng.standard_normal((B, n, od)).astype(np.float32),
                   "actions": rng.uniform(-1, 1, (B, n, m)), "reward": rng.standard_normal((B, n))},
    "episode_end": {"context": TRAINING, "type": "episode_end", "episode": 3,
                    "final_obs": rng.standard_normal((B, n, od)).astype(np.float32)},
    "actor_ack": {"context": TRAINING, "type": "actor_ack", "unit": "plant_a", "version": 4},
    "observation": {"context": MARKET, "type": "observation", "episode": 3, "hour": 7, "time": T, "mode": "eval",
                    "noise_scale": 0.5, "obs": rng.standard_normal((B, od)).astype(np.float32)},
    "bid": {"context": MARKET, "type": "bid", "unit": "plant_a", "episode": 3, "hour": 7, "version": 2,
            "action": rng.uniform(-1, 1, (B, m))},
    "actor_weights": {"context": POLICY, "type": "actor_weights", "unit": "plant_a", "version": 2,
                      "state_dict": Actor(od, m, torch.float32, hidden_sizes=(8, 4)).state_dict()},
    "create_units": {"context": HOST, "type": "create_units",
                     "units": [UnitSpec("plant_a", 0, 3, od, 2, 2, 1, [8, 4], [8, 4], 0.1, 7).to_dict()]},
    "units_created": {"context": HOST, "type": "units_created", "units": ["plant_a", "storage_b"]},
    "error": {"context": HOST, "type": "error", "error": "ValueError: bad"},
}


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_message_roundtrip(kind):
    msg = MESSAGES[kind]
    assert same(msg, roundtrip(msg))


def test_actor_weights_load_after_roundtrip():
    sd = MESSAGES["actor_weights"]["state_dict"]
    back = roundtrip(MESSAGES["actor_weights"])["state_dict"]
    actor = Actor(od, m, torch.float32, hidden_sizes=(8, 4))
    actor.load_state_dict(back)
    for k, v in actor.state_dict().items():
        assert torch.equal(v, sd[k])


@pytest.mark.parametrize("value", [
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.array([[1.5, np.inf], [-0.0, np.nan]], dtype=np.float64),
    np.zeros((0, 3), dtype=np.float32),
    np.asfortranarray(rng.standard_normal((3, 5)).astype(np.float32)),
    rng.standard_normal((4, 6))[::2, ::3],  # non-contiguous view
    np.array(True),
    torch.randn(3, 4),
    torch.randn(5, dtype=torch.float64),
    torch.tensor(2.5),
    torch.randn(2, 3).to(torch.bfloat16),
    torch.arange(6).reshape(2, 3),
    torch.nn.Parameter(torch.randn(3)),
    np.float32(1.25), np.int64(-3), np.int32(7), np.uint8(200), np.bool_(True), np.float16(0.5),
    np.datetime64("2023-01-02T05:00:00"),
    dt.datetime(2023, 3, 26, 1, 30, tzinfo=UTC),
    dt.datetime(2023, 3, 26, 3, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
])
def test_value_roundtrip(value):
    back = roundtrip({"v": value})["v"]
    if isinstance(value, torch.nn.Parameter):
        assert type(back) is torch.Tensor and torch.equal(back, value.detach())
    elif isinstance(value, torch.Tensor):
        assert back.dtype == value.dtype and back.shape == value.shape and torch.equal(back, value)
    elif isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        assert np.array_equal(back, value, equal_nan=value.dtype.kind == "f")
        assert back.flags.writeable
    elif isinstance(value, dt.datetime):
        assert back == value and back.utcoffset() == value.utcoffset()
    else:
        assert type(back) is type(value) and back == value


def test_naive_datetime_refused():
    with pytest.raises(SerializationError, match="naive"):
        make_codec().encode({"time": dt.datetime(2023, 1, 1)})


def test_float64_and_lists():
    """np.float64 is a float (plain JSON); tuples come back as lists: messages use lists."""
    back = roundtrip({"x": np.float64(0.1), "t": (1, 2)})
    assert back == {"x": 0.1, "t": [1, 2]}
