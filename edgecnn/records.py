"""What crosses from one stage to the next: typed records, read strictly.

Every record a stage writes for another (the export report, the bench record, the run
state, the split) is a frozen dataclass with ``to_dict`` and ``from_dict``, a schema
version, and a reader that names the field it rejects. The files are plain JSON that
any hand may have edited, so :func:`read_record` reads them bounded and strict, and
:class:`Fields` checks each value's type as it is taken out, so that no record holds a
value of another type than it says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from edgecnn import _json
from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import DataError

T = TypeVar("T")

#: What a JSON document holds once parsed.
JSONValue = object
#: What a record's ``to_dict`` returns.
JSONObject = dict[str, object]

#: The largest record file read back (they are a few KiB; a report lists a few files).
MAX_RECORD_BYTES = 16 * MiB


class RecordError(DataError, ValueError):
    """A record file is unreadable, or holds a field no edgecnn writes (named)."""


class Fields:
    """One JSON object of a record, its values taken out checked.

    ``where`` names the object in messages (``files[2]``); every getter raises
    :class:`RecordError` naming the field when the value is missing or of another type.
    A getter with ``default`` returns it when the key is absent (or null).
    """

    def __init__(self, data: JSONValue, where: str = "the record") -> None:
        if not isinstance(data, dict):
            raise RecordError(f"{where} is {_shown(data)}, not an object")
        self.data: Mapping[str, JSONValue] = data
        self.where = where

    def __contains__(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _name(self, key: str) -> str:
        # A whole document is named in words ("the report"); its fields by their keys.
        return key if self.where.startswith("the ") else f"{self.where}.{key}"

    def _get(self, key: str, default: object) -> object:
        value = self.data.get(key)
        if value is None:
            if default is _REQUIRED:
                raise RecordError(f"{self._name(key)} is missing")
            return default
        return value

    def _wrong(self, key: str, value: object, kind: str) -> RecordError:
        return RecordError(f"{self._name(key)} is {_shown(value)}, not {kind}")

    def text(self, key: str, default: str | None = None) -> str:
        """A string."""
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise self._wrong(key, value, "text")
        return value

    def optional_text(self, key: str) -> str | None:
        """A string, or None when absent."""
        return None if key not in self else self.text(key)

    def flag(self, key: str, default: bool | None = None) -> bool:
        """``true`` or ``false``."""
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, bool):
            raise self._wrong(key, value, "true or false")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        """A finite number (a JSON integer too; never true or false)."""
        value = self._get(key, _REQUIRED if default is None else default)
        if not _is_number(value):
            raise self._wrong(key, value, "a finite number")
        return float(value)  # type: ignore[arg-type]

    def optional_number(self, key: str) -> float | None:
        """A finite number, or None when absent."""
        return None if key not in self else self.number(key)

    def integer(self, key: str, default: int | None = None, least: int = 0) -> int:
        """A whole number of at least ``least``."""
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self._wrong(key, value, f"a whole number >= {least}")
        return value

    def texts(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """A list of strings."""
        value = self._get(key, _REQUIRED if default is None else list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, value, "a list of text")
        return tuple(value)

    def numbers(self, key: str, default: tuple[float, ...] | None = None) -> tuple[float, ...]:
        """A list of finite numbers."""
        value = self._get(key, _REQUIRED if default is None else list(default))
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            raise self._wrong(key, value, "a list of finite numbers")
        return tuple(float(v) for v in value)

    def object(self, key: str, default: JSONObject | None = None) -> Fields:
        """A nested object, as :class:`Fields`."""
        value = self._get(key, _REQUIRED if default is None else default)
        return Fields(value, self._name(key))

    def objects(self, key: str, required: bool = True) -> Iterator[Fields]:
        """A list of objects, each as :class:`Fields` named ``key[i]``; none if not required."""
        value = self._get(key, _REQUIRED if required else [])
        if not isinstance(value, list):
            raise self._wrong(key, value, "a list")
        for i, item in enumerate(value):
            yield Fields(item, f"{self._name(key)}[{i}]")

    def raw(self, key: str) -> JSONValue:
        """The value as parsed, unchecked: for a part another record's reader checks."""
        return self.data.get(key)


_REQUIRED = object()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_schema(fields: Fields, current: int, what: str) -> int:
    """The record's ``schema``: 1 when absent (what edgecnn wrote before it had one).

    Raises:
        RecordError: a schema newer than this edgecnn reads.
    """
    schema = fields.integer("schema", default=1, least=1)
    if schema > current:
        raise RecordError(
            f"{what} has schema {schema}, written by a newer edgecnn than this one "
            f"(which reads up to {current}); upgrade edgecnn"
        )
    return schema


def read_record(
    path: Path,
    parse: Callable[[Fields], T],
    what: str,
    max_bytes: int = MAX_RECORD_BYTES,
    error: type[DataError] = RecordError,
) -> T:
    """Read ``path`` bounded and strict, then ``parse`` it; errors name the file and field.

    Raises:
        error: the file is missing, not a regular file, too large, not strict JSON, or
            ``parse`` rejects a field (its :class:`RecordError` or other ``ValueError``
            message, after the path).
    """
    raw = read_regular_file(path, max_bytes, error, what)
    try:
        document = _json.loads(raw)
    except ValueError as e:
        raise error(f"{path}: not readable JSON ({str(e)[:200]})") from None
    try:
        return parse(Fields(document))
    except ValueError as e:  # RecordError, or a value its record refuses (a ConfigError)
        raise error(f"{path}: {e}") from None
