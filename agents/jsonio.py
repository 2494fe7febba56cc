"""Standard JSON out: no ``NaN``/``Infinity`` tokens, numpy and torch values converted.

Python's :func:`json.dump` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default;
those are not JSON, and strict parsers (JavaScript's ``JSON.parse``, ``jq``, many
databases) reject the whole file. :func:`dump_json_strict` converts every non-finite
float to ``null`` (or, with ``nonfinite="error"``, refuses with the key path of the
first one) and then writes with ``allow_nan=False``, so the output is always standard
JSON. :func:`write_json_strict` does the same to a file atomically (temporary file,
fsync, rename).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["to_json_safe", "dump_json_strict", "write_json_strict"]


def to_json_safe(obj: Any, *, nonfinite: str = "null", _path: str = "$") -> Any:
    """A copy of ``obj`` made of dicts, lists, str, int, finite float, bool and None.

    numpy/torch scalars and arrays become numbers and lists, tuples and sets become
    lists, paths and other objects their ``str``. Non-finite floats become ``None``
    (``nonfinite="null"``) or raise :class:`ValueError` naming their key path
    (``nonfinite="error"``).
    """
    if nonfinite not in ("null", "error"):
        raise ValueError(f"nonfinite must be 'null' or 'error', got {nonfinite!r}")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if nonfinite == "error":
            raise ValueError(f"{_path} is {obj}, which standard JSON cannot hold; write a finite number or null")
        return None
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v, nonfinite=nonfinite, _path=f"{_path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json_safe(v, nonfinite=nonfinite, _path=f"{_path}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch scalars and arrays
        return to_json_safe(obj.tolist(), nonfinite=nonfinite, _path=_path)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    try:
        f = float(obj)  # e.g. decimal.Decimal, fractions.Fraction
    except (TypeError, ValueError):
        return str(obj)
    return to_json_safe(f, nonfinite=nonfinite, _path=_path)


def dump_json_strict(obj: Any, fp=None, *, nonfinite: str = "null", indent: int | None = 2) -> str:
    """``obj`` as standard JSON text (see :func:`to_json_safe`); also written to the
    open text file ``fp`` when given. Returns the text."""
    text = json.dumps(to_json_safe(obj, nonfinite=nonfinite), indent=indent, allow_nan=False)
    if fp is not None:
        fp.write(text)
    return text


def write_json_strict(path: str | os.PathLike, obj: Any, *, nonfinite: str = "null") -> Path:
    """Write ``obj`` as standard JSON to ``path`` atomically (a crash leaves the old file
    or the new one, never a mix)."""
    path = Path(path)
    text = dump_json_strict(obj, nonfinite=nonfinite) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
