"""Read the ``metadata`` entries of a ``.tflite`` flatbuffer with nothing but ``struct``.

Devices that run the legacy ``tflite-runtime`` (32-bit Raspberry Pi OS) have no schema
module to parse the file with, so this walks the few tables it needs by hand:
``Model.buffers`` (field 4), ``Model.metadata`` (field 6), ``Metadata{name, buffer}`` and
``Buffer{data, offset, size}``, following the TFLite schema.
"""

from __future__ import annotations

import struct

_MODEL_BUFFERS, _MODEL_METADATA = 4, 6


_MAX_ENTRIES = 1000  # a model has a handful of metadata entries; a damaged count is not looped


def _in_bounds(buf: bytes, pos: int, size: int) -> int:
    if not 0 <= pos <= len(buf) - size:
        raise IndexError(f"offset {pos} outside the {len(buf)}-byte file")
    return pos


class _Table:
    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, _in_bounds(buf, pos, 4)
        vtable = _in_bounds(buf, pos - struct.unpack_from("<i", buf, pos)[0], 4)
        self.vt_len = struct.unpack_from("<H", buf, vtable)[0]
        self.vtable = vtable

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vt_len:
            return None
        off = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return _in_bounds(self.buf, self.pos + off, 1) if off else None

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at is not None else default

    def _indirect(self, at: int) -> int:
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def vector(self, index: int) -> tuple[int, int] | None:
        """(start, length) of a vector field."""
        at = self._field(index)
        if at is None:
            return None
        start = _in_bounds(self.buf, self._indirect(at), 4)
        length = struct.unpack_from("<I", self.buf, start)[0]
        _in_bounds(self.buf, start + 4, length)
        return start + 4, length

    def string(self, index: int) -> str | None:
        vec = self.vector(index)
        return None if vec is None else self.buf[vec[0] : vec[0] + vec[1]].decode("utf-8")

    def table_at(self, vector_start: int, i: int) -> _Table:
        return _Table(self.buf, self._indirect(vector_start + 4 * i))


def read_tflite_metadata(data: bytes) -> dict[str, bytes]:
    """Map each metadata name of a TFLite model to its buffer's bytes.

    Raises:
        ValueError: the bytes are not a TFLite flatbuffer.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        meta = model.vector(_MODEL_METADATA)
        buffers = model.vector(_MODEL_BUFFERS)
        out: dict[str, bytes] = {}
        if meta is None or buffers is None:
            return out
        if meta[1] > _MAX_ENTRIES:
            raise ValueError(f"corrupt TFLite flatbuffer: {meta[1]} metadata entries")
        for i in range(meta[1]):
            entry = model.table_at(meta[0], i)
            name = entry.string(0) or ""
            index = entry.scalar(1, "I")
            if index >= buffers[1]:
                continue
            buffer = model.table_at(buffers[0], index)
            offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")
            if offset > 1:  # large models keep buffers after the flatbuffer
                out[name] = data[_in_bounds(data, offset, size) : offset + size]
            else:
                vec = buffer.vector(0)
                out[name] = b"" if vec is None else data[vec[0] : vec[0] + vec[1]]
        return out
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt TFLite flatbuffer: {e}") from None
