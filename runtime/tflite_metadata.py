"""Read the ``metadata`` entries of a ``.tflite`` flatbuffer with nothing but ``struct``.

Devices that run the legacy ``tflite-runtime`` (32-bit Raspberry Pi OS) have no schema
module to parse the file with, so this walks the few tables it needs by hand:
``Model.buffers`` (field 4), ``Model.metadata`` (field 6), ``Metadata{name, buffer}`` and
``Buffer{data, offset, size}``, following the TFLite schema. It also reads the int8
scale and zero-point of the model's input and output (``Model.subgraphs``,
``SubGraph{tensors, inputs, outputs}``, ``Tensor.quantization``), for interpreters that
do not report them (OpenVINO).
"""

from __future__ import annotations

import struct
from typing import Any

_MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 2, 4, 6
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 0, 1, 2
_TENSOR_QUANTIZATION = 4
_QUANTIZATION_SCALE, _QUANTIZATION_ZERO_POINT = 2, 3

#: An int8 tensor's ``(scale, zero_point)``.
Affine = tuple[float, int]


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
        if at is None:
            return default
        value: int = struct.unpack_from("<" + fmt, self.buf, at)[0]  # fmt is an integer code
        return value

    def _indirect(self, at: int) -> int:
        offset: int = struct.unpack_from("<I", self.buf, at)[0]
        return at + offset

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

    def table(self, index: int) -> _Table | None:
        at = self._field(index)
        return None if at is None else _Table(self.buf, self._indirect(at))

    def numbers(self, index: int, fmt: str) -> tuple[Any, ...]:  # struct's: ints or floats by fmt
        """The elements of a vector of scalars (``fmt`` is a ``struct`` code)."""
        vec = self.vector(index)
        if vec is None:
            return ()
        size = struct.calcsize(fmt)
        _in_bounds(self.buf, vec[0], vec[1] * size)
        return struct.unpack_from(f"<{vec[1]}{fmt}", self.buf, vec[0])


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


def _affine(graph: _Table, tensors: tuple[int, int], index: int) -> Affine | None:
    """The one scale and zero-point of tensor ``index``; None for a float tensor."""
    if not 0 <= index < tensors[1]:
        raise IndexError(f"tensor {index} of {tensors[1]}")
    quantization = graph.table_at(tensors[0], index).table(_TENSOR_QUANTIZATION)
    if quantization is None:
        return None
    scales = quantization.numbers(_QUANTIZATION_SCALE, "f")
    zero_points = quantization.numbers(_QUANTIZATION_ZERO_POINT, "q")
    if len(scales) != 1:  # none: a float tensor; several: per-channel, never an input
        return None
    return float(scales[0]), int(zero_points[0]) if zero_points else 0


def read_tflite_io_quantization(data: bytes) -> tuple[Affine | None, Affine | None]:
    """``(scale, zero_point)`` of the first input and first output of the main subgraph.

    None for a tensor that is not quantized (a float input or output).

    Raises:
        ValueError: the bytes are not a TFLite flatbuffer, or it has no such tensors.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        subgraphs = model.vector(_MODEL_SUBGRAPHS)
        if subgraphs is None or subgraphs[1] < 1:
            raise ValueError("corrupt TFLite flatbuffer: no subgraph")
        graph = model.table_at(subgraphs[0], 0)
        tensors = graph.vector(_SUBGRAPH_TENSORS)
        inputs = graph.numbers(_SUBGRAPH_INPUTS, "i")
        outputs = graph.numbers(_SUBGRAPH_OUTPUTS, "i")
        if tensors is None or not inputs or not outputs:
            raise ValueError("corrupt TFLite flatbuffer: a subgraph without inputs or outputs")
        return _affine(graph, tensors, inputs[0]), _affine(graph, tensors, outputs[0])
    except (struct.error, IndexError) as e:
        raise ValueError(f"corrupt TFLite flatbuffer: {e}") from None
