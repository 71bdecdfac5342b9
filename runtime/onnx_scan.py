"""Find tensors an ONNX file keeps outside itself, without the ``onnx`` package.

An ONNX tensor may name a file as its "external data"; onnxruntime then reads that
file, relative to the working directory when the model was loaded from bytes. A model
naming ``secret.txt`` would return that file's bytes as its "probabilities" (and
``edgecnn serve`` would send them to clients). edgecnn never writes such files, so the
runtime refuses them. This walks the protobuf wire format along the schema's paths to
every ``TensorProto`` (initializers, attributes, sparse tensors, subgraphs, functions)
and looks at its ``external_data`` (field 13) and ``data_location`` (field 14).

It also reads the model's ``metadata_props`` (field 14 of ``ModelProto``), where edgecnn
keeps its metadata document, for interpreters that do not report them (OpenVINO).
"""

from __future__ import annotations

from collections.abc import Iterator

#: message -> {field number: message type} for every path that can lead to a tensor.
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 13, 14, 1
_MODEL_METADATA_PROPS, _ENTRY_KEY, _ENTRY_VALUE = 14, 1, 2
_MAX_DEPTH = 64
#: A field's value: a varint, ``(start, end)`` of a length-delimited field, or None.
_Value = int | tuple[int, int] | None


class MalformedProtobuf(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise MalformedProtobuf("varint runs past the message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, _Value]]:
    """``(field, wire_type, value)``; ``value`` is an int, or ``(start, end)`` for bytes."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value
        elif wire == 1:
            pos += 8
            yield field, wire, None
        elif wire == 5:
            pos += 4
            yield field, wire, None
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise MalformedProtobuf("a field runs past the message")
            yield field, wire, (pos, pos + length)
            pos += length
        else:
            raise MalformedProtobuf(f"wire type {wire} does not occur in ONNX files")
        if pos > end:
            raise MalformedProtobuf("a field runs past the message")


def _walk(buf: memoryview, start: int, end: int, kind: str, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        raise MalformedProtobuf("subgraphs nested too deeply")
    children = _SCHEMA[kind]
    for field, wire, value in _fields(buf, start, end):
        if kind == "tensor":
            if field == _EXTERNAL_DATA and wire == 2:
                return True
            if field == _DATA_LOCATION and wire == 0 and value == _EXTERNAL:
                return True
        elif field in children and isinstance(value, tuple):  # wire type 2
            inner_start, inner_end = value
            if _walk(buf, inner_start, inner_end, children[field], depth + 1):
                return True
    return False


def uses_external_data(data: bytes) -> bool:
    """Whether any tensor of the ONNX model in ``data`` keeps its values in another file.

    Raises:
        MalformedProtobuf: ``data`` is not a protobuf message.
    """
    return _walk(memoryview(data), 0, len(data), "model", 0)


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    try:
        return str(buf[span[0] : span[1]], "utf-8")
    except UnicodeDecodeError as e:
        raise MalformedProtobuf(f"metadata that is not UTF-8 text ({e.reason})") from None


def read_onnx_metadata(data: bytes) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model in ``data``, key to value.

    Raises:
        MalformedProtobuf: ``data`` is not a protobuf message, or a key or value is not
            UTF-8 text.
    """
    buf = memoryview(data)
    found: dict[str, str] = {}
    for field, _wire, value in _fields(buf, 0, len(buf)):
        if field != _MODEL_METADATA_PROPS or not isinstance(value, tuple):  # wire type 2
            continue
        entry = {_ENTRY_KEY: "", _ENTRY_VALUE: ""}  # proto3: an absent string is ""
        for inner, _inner_wire, span in _fields(buf, *value):
            if inner in entry and isinstance(span, tuple):  # wire type 2
                entry[inner] = _text(buf, span)
        found[entry[_ENTRY_KEY]] = entry[_ENTRY_VALUE]
    return found
