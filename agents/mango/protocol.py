"""Messages of the mango runtime and the codec that carries them over TCP.

Every message is a ``dict`` with string keys and a ``"context"`` and ``"type"`` entry.
Arrays, tensors and timestamps travel through serializers registered with mango's
:class:`mango.JSON` codec (:func:`make_codec`), so a message decodes to the same values
on the other side of a TCP connection as it had in the sender's process (messages
between agents of one container are handed over as the same Python object, without
the codec; the tests therefore round-trip every message type through the codec).

Contexts and types (``B`` = market copies, ``n`` = learning units, ``m`` = largest
action size, ``od`` = observation size):

=================  ====================  ===========================================================
context            type                  fields
=================  ====================  ===========================================================
``rl_training``    ``episode_start``     episode, mode (explore/train/eval), learning_rate, time
(market, units ->  ``transition``        episode, hour, time, obs ``(B,n,od)`` f32,
learner)                                 actions ``(B,n,m)`` f64, reward ``(B,n)`` f64
                   ``episode_end``       episode, final_obs ``(B,n,od)`` f32
                   ``actor_ack``         unit, version
``rl_market``      ``observation``       episode, hour, time, mode, noise_scale, obs ``(B,od)`` f32
(market <-> unit)  ``bid``               unit, episode, hour, version, action ``(B,m)`` f64
``rl_policy``      ``actor_weights``     unit, version, state_dict ``{key: Tensor}``
(learner -> unit)
``rl_host``        ``create_units``      units: list of :class:`UnitSpec` dicts
(runtime <->       ``units_created``     units: list of names
worker host)       ``error``             error: text
=================  ====================  ===========================================================

``time`` is a timezone-aware :class:`datetime.datetime` in UTC (naive datetimes are
refused by the codec: their meaning depends on the machine's ``TZ``).
"""

from __future__ import annotations

import base64
import bisect
import datetime as _dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from dateutil import rrule
from mango import JSON

logger = logging.getLogger("agents.mango")

# contexts
TRAINING = "rl_training"
MARKET = "rl_market"
POLICY = "rl_policy"
HOST = "rl_host"

MODES = ("explore", "train", "eval")

# fixed type ids (32-bit): independent of the numpy/torch version on either end
_TYPE_IDS = {
    "ndarray": 0x6D7A0001,
    "tensor": 0x6D7A0002,
    "parameter": 0x6D7A0003,
    "datetime": 0x6D7A0004,
    "datetime64": 0x6D7A0005,
    "npscalar": 0x6D7A0100,  # + index into _NP_SCALARS
}
_NP_SCALARS = (np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
               np.uint64, np.uint32, np.uint16, np.uint8, np.bool_)


class MessageError(ValueError):
    """A message that does not have the expected fields or shapes."""


# --------------------------------------------------------------------------- codec


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _array_to_json(a: np.ndarray) -> dict[str, Any]:
    if a.dtype.hasobject:
        raise TypeError("arrays of Python objects cannot be sent")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": _b64(a.tobytes(order="C"))}


def _array_from_json(d: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(d["data"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(tuple(d["shape"])).copy()


_TORCH_VIEW = {torch.bfloat16: torch.int16}  # dtypes numpy has no equivalent for


def _tensor_to_json(t: torch.Tensor) -> dict[str, Any]:
    t = t.detach().cpu().contiguous()
    dtype = str(t.dtype).removeprefix("torch.")
    view = _TORCH_VIEW.get(t.dtype)
    arr = (t.view(view) if view is not None else t).numpy()
    return {"dtype": dtype, "array": _array_to_json(arr)}


def _tensor_from_json(d: dict[str, Any]) -> torch.Tensor:
    dtype = getattr(torch, d["dtype"])
    t = torch.from_numpy(_array_from_json(d["array"]))
    return t.view(dtype) if dtype in _TORCH_VIEW else t


def _datetime_to_json(t: _dt.datetime) -> str:
    if t.tzinfo is None or t.utcoffset() is None:
        raise TypeError(f"naive datetime {t.isoformat()} refused: send timezone-aware datetimes (UTC)")
    return t.isoformat()


def make_codec() -> JSON:
    """mango's JSON codec with serializers for ``np.ndarray``, numpy scalars,
    ``torch.Tensor`` / ``torch.nn.Parameter`` (arriving as a CPU tensor),
    timezone-aware ``datetime`` and ``np.datetime64``. Arrays and tensors keep dtype,
    shape and every bit of their data."""
    codec = JSON()
    codec.add_serializer(np.ndarray, _array_to_json, _array_from_json, type_id=_TYPE_IDS["ndarray"])
    codec.add_serializer(torch.Tensor, _tensor_to_json, _tensor_from_json, type_id=_TYPE_IDS["tensor"])
    codec.add_serializer(torch.nn.Parameter, _tensor_to_json, _tensor_from_json, type_id=_TYPE_IDS["parameter"])
    codec.add_serializer(_dt.datetime, _datetime_to_json, _dt.datetime.fromisoformat, type_id=_TYPE_IDS["datetime"])
    codec.add_serializer(np.datetime64, str, np.datetime64, type_id=_TYPE_IDS["datetime64"])
    for k, scalar in enumerate(_NP_SCALARS):
        codec.add_serializer(scalar, lambda x: x.item(), scalar, type_id=_TYPE_IDS["npscalar"] + k)
    return codec


# --------------------------------------------------------------------------- time


def to_utc(t: _dt.datetime, name: str = "time") -> _dt.datetime:
    """``t`` as an aware UTC datetime; naive datetimes are refused (their meaning depends
    on the machine's ``TZ``, and mango 2.4 reads naive rrules as local time)."""
    if not isinstance(t, _dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} = {t.isoformat()} is naive; pass a timezone-aware datetime, e.g. "
                         f"datetime(..., tzinfo=timezone.utc)")
    return t.astimezone(_dt.timezone.utc)


def timestamp(t: _dt.datetime) -> float:
    """mango clock seconds (POSIX) of an aware datetime."""
    return to_utc(t).timestamp()


def from_timestamp(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


class Recurrence(rrule.rrule):
    """A finite ``dateutil.rrule.rrule`` (``count`` or ``until``) whose ``after()`` bisects
    its occurrences. mango's recurrent tasks call ``after()`` once per occurrence and
    dateutil scans from the first occurrence every time, which makes an episode of ``H``
    hourly steps cost O(H^2); this makes it O(H log H). ``dtstart`` must be
    timezone-aware (mango 2.4 then reads its clock as UTC)."""

    def __init__(self, freq, *, dtstart: _dt.datetime, **kwargs) -> None:
        if kwargs.get("count") is None and kwargs.get("until") is None:
            raise ValueError("Recurrence needs count or until")
        super().__init__(freq, dtstart=to_utc(dtstart, "Recurrence: dtstart"), cache=True, **kwargs)
        self._occurrences: list[_dt.datetime] | None = None

    def after(self, dt, inc=False):
        if self._occurrences is None:
            self._occurrences = list(self)
        times = self._occurrences
        i = bisect.bisect_left(times, dt) if inc else bisect.bisect_right(times, dt)
        return times[i] if i < len(times) else None


# --------------------------------------------------------------------------- validation


def field_of(content: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``content[key]`` checked to be of type ``kind`` (ints are accepted for floats)."""
    if key not in content:
        raise MessageError(f"{content.get('type', '?')!r} message lacks {key!r}")
    value = content[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise MessageError(f"{content.get('type', '?')!r} message: {key!r} must be {want}, got {type(value).__name__}")
    return value


def array_of(content: dict[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``content[key]`` as a finite numpy array of exactly ``shape``."""
    value = field_of(content, key, np.ndarray)
    if value.shape != tuple(shape):
        raise MessageError(f"{content.get('type', '?')!r} message: {key!r} must have shape {tuple(shape)}, got {value.shape}")
    if value.dtype.kind not in "fiu" or not np.isfinite(value).all():
        raise MessageError(f"{content.get('type', '?')!r} message: {key!r} must be finite numbers")
    return value


def is_message(content: Any, context: str) -> bool:
    """Total message condition: a dict whose ``context`` is ``context`` (never raises,
    since an exception in a mango message condition stops the agent's inbox)."""
    return isinstance(content, dict) and content.get("context") == context


def describe(content: Any) -> str:
    """Short description of a message for log lines."""
    if isinstance(content, dict):
        return f"{{context={content.get('context')!r}, type={content.get('type')!r}, keys={sorted(map(str, content))[:8]}}}"
    text = repr(content)
    return f"{type(content).__name__} {text[:80]}"


# --------------------------------------------------------------------------- units


@dataclass
class UnitSpec:
    """What a unit agent needs to act: its place among the learners, sizes, noise and seed.

    Sent to worker processes inside ``create_units`` messages (as a plain dict)."""

    name: str
    index: int  # position among the learning units (agent order of the learner)
    n_agents: int
    obs_dim: int
    act_dim: int
    max_act: int
    num_envs: int
    actor_hidden_sizes: list[int]
    critic_hidden_sizes: list[int]
    noise_sigma: float
    seed: int
    exact: bool = True
    unique_obs_len: int = 2
    # the learner's observation standardisation of this unit (obs_normalization): the
    # unit agent bids with (obs - obs_shift) / obs_scale and the unfolded actor weights
    obs_shift: list[float] | None = None
    obs_scale: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitSpec:
        if not isinstance(d, dict):
            raise MessageError(f"unit spec must be a dict, got {type(d).__name__}")
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names
        if unknown:
            raise MessageError(f"unit spec has unknown keys {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise MessageError(f"bad unit spec: {exc}") from exc


# --------------------------------------------------------------------------- hostile messages

# Meta keys that mango 2.4 uses as dict keys in an agent's inbox loop before any handler of
# ours runs (tracked replies, gather collectors, conversations): an unhashable value there
# (e.g. a list) raises inside mango and ends that agent's inbox loop for good.
GUARDED_META_KEYS = ("tracking_id", "conversation_id")


def meta_problem(meta: Any) -> str | None:
    """Why mango 2.4 could not dispatch a message with this ``meta`` (``None``: it can):
    ``meta`` must be a dict, and :data:`GUARDED_META_KEYS` must hold a string, a number
    or nothing."""
    if not isinstance(meta, dict):
        return f"meta is a {type(meta).__name__}, not a dict"
    for key in GUARDED_META_KEYS:
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
            return f"meta {key!r} is a {type(v).__name__} ({str(v)[:40]}), not a string"
    return None


def guard_agent(agent: Any) -> Any:
    """Keep ``agent``'s inbox loop alive against hostile messages: messages whose meta
    fails :func:`meta_problem` are dropped with a warning before mango touches them, and
    any exception raised while mango dispatches a message is logged instead of ending the
    loop. Counts the dropped messages in ``agent.hostile_messages``. Idempotent."""
    if getattr(agent, "_mz_guarded", False):
        return agent
    inner = agent._dispatch_message  # mango 2.4: called once per message by Agent._check_inbox

    def dispatch(content: Any, meta: Any) -> None:
        problem = meta_problem(meta)
        if problem is None:
            try:
                inner(content, meta)
                return
            except Exception as exc:  # noqa: BLE001 - the inbox loop must survive
                problem = f"dispatch raised {type(exc).__name__}: {exc}"
        agent.hostile_messages = getattr(agent, "hostile_messages", 0) + 1
        sender = meta.get("sender_id") if isinstance(meta, dict) else None
        logger.warning("%s %s: dropped a message from %r: %s", type(agent).__name__, getattr(agent, "aid", "?"),
                       sender, problem)

    agent._dispatch_message = dispatch
    agent._mz_guarded = True
    agent.hostile_messages = getattr(agent, "hostile_messages", 0)
    return agent


def guard_container(container: Any) -> Any:
    """Guard every agent registered in ``container`` (:func:`guard_agent`, also for agents
    registered later, e.g. units created in a worker), and screen messages arriving from
    outside (TCP) with :func:`meta_problem` before they reach an agent's inbox.
    Idempotent."""
    if getattr(container, "_mz_guarded", False):
        return container
    register = container.register

    def guarded_register(agent, suggested_aid=None, **kw):
        out = register(agent, suggested_aid, **kw)
        guard_agent(agent)
        return out

    container.register = guarded_register
    for agent in list(getattr(container, "_agents", {}).values()):
        guard_agent(agent)
    handle = getattr(container, "_handle_message", None)
    if handle is not None:
        async def screened(*, priority, content, meta):
            problem = meta_problem(meta)
            if problem is not None:
                container.hostile_messages = getattr(container, "hostile_messages", 0) + 1
                logger.warning("container %s: dropped a message: %s", getattr(container, "addr", "?"), problem)
                return None
            return await handle(priority=priority, content=content, meta=meta)

        container._handle_message = screened
    container._mz_guarded = True
    container.hostile_messages = 0
    return container


def dead_inbox_loops(container: Any) -> list[str]:
    """The aids of ``container``'s agents whose inbox loop has ended (it never ends while
    an agent runs; when it has, that agent will never handle another message)."""
    dead = []
    for aid, agent in list(getattr(container, "_agents", {}).items()):
        task = getattr(agent, "_check_inbox_task", None)
        if task is not None and task.done() and not task.cancelled():
            dead.append(aid)
    return dead
