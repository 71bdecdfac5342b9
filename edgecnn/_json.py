"""JSON as edgecnn writes it: strict, so that no file or reply ever holds NaN or Infinity."""

from __future__ import annotations

import json
from typing import Any, NoReturn


def dumps(obj: object, indent: int | None = 2) -> str:
    """``obj`` as standard JSON text.

    Raises:
        ValueError: ``obj`` holds NaN or infinity, which JSON cannot express (Python's
            default would write the non-standard ``NaN`` that other parsers reject).
    """
    return json.dumps(obj, indent=indent, allow_nan=False)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:  # as json.loads: callers check the shape
    """Standard JSON text as Python objects: ``NaN`` and ``Infinity`` are refused.

    Raises:
        ValueError: the text is not standard JSON, or nests too deeply to read.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
