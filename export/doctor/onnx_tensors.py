"""Per-tensor int8 error of a QDQ ONNX file against its float twin, without TensorFlow.

The int8 file edgecnn exports is onnxruntime's static QDQ quantization of the float file:
every quantized activation ``X`` is followed by ``QuantizeLinear(X) -> DequantizeLinear``,
and the dequantized tensor is what the next operator reads. Both files are run on the same
images with those tensors added as graph outputs, and each post-QDQ tensor is compared
with the float file's tensor of the same name by :func:`tensors.tensor_error`.

``onnxruntime.quantization.qdq_loss_debug`` does much the same, but it flattens every
tensor to one axis (the per-channel numbers need the image and channel axes), keeps every
float tensor of every batch, and pairs tensors by name suffix; this module adds only the
tensors it compares and finds them from the graph's Q/DQ nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.export.doctor.tensors import TensorError, layer_of, tensor_error
from edgecnn.runtime.contract import INPUT_NAME, LAYOUT

#: Enough images for stable numbers; the float64 copies tensor_error makes of a large
#: activation over many more would take gigabytes.
DEFAULT_MAX_IMAGES = 1000
DEFAULT_BATCH = 100
#: Zero-point types tensor_error knows the range of.
_DTYPES = {"INT8": "int8", "UINT8": "uint8", "INT16": "int16"}
#: ONNX operators whose data input and output are channels-first (NCHW).
_CHANNELS_FIRST = {
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "BatchNormalization",
    "InstanceNormalization",
}
#: Operators that only move a tensor's values around: their output holds the same
#: layer's values as their input.
_LAYOUT_OPS = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
#: Operators whose output keeps the layout of their first input.
_SAME_LAYOUT = {
    "QuantizeLinear",
    "DequantizeLinear",
    "Identity",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "HardSwish",
    "Add",
    "Sub",
    "Mul",
    "Div",
}


@dataclass(frozen=True)
class _Quantized:
    """One quantized activation of the int8 graph."""

    tensor: str  # the float tensor QuantizeLinear reads; its float twin has this name
    post_qdq: str  # the DequantizeLinear output the next operator reads
    scale: float
    zero_point: int
    dtype: str
    layer: str
    layout: str | None  # e.g. NCHW for a 4-D tensor; None when unknown


def onnx_tensor_errors(
    float_path: Path,
    int8_path: Path,
    images: np.ndarray,
    layers: list[str],
    *,
    max_images: int = DEFAULT_MAX_IMAGES,
    batch_size: int = DEFAULT_BATCH,
) -> list[TensorError]:
    """Every quantized activation of ``int8_path`` against ``float_path``'s, in graph order.

    ``images`` are float32 NHWC in [0, 1]; the first ``max_images`` are used, run in
    batches of ``batch_size``. ``layers`` are the Keras model's layer names in order, to
    name each tensor's layer. 4-D tensors are compared channels last, whatever layout
    the graph holds them in. Skipped: a QuantizeLinear of a constant (a weight), one with
    no DequantizeLinear after it, one whose scale is per-channel or whose zero-point type
    is not int8, uint8 or int16, and a tensor the float file has no tensor of that name
    for (one the quantizer's pre-processing renamed or fused away).
    """
    import onnx

    int8_model, float_model = onnx.load(str(int8_path)), onnx.load(str(float_path))
    float_names = _tensor_names(float_model.graph)
    found = [q for q in _quantized(int8_model.graph, layers) if q.tensor in float_names]
    if not found:
        return []
    chosen = np.asarray(images[:max_images], dtype=np.float32)
    post = _collect(int8_model, [q.post_qdq for q in found], chosen, batch_size)
    twin = _collect(float_model, [q.tensor for q in found], chosen, batch_size)
    return [
        tensor_error(
            q.tensor,
            q.layer,
            _channels_last(twin[q.tensor], q.layout),
            _channels_last(post[q.post_qdq], q.layout),
            q.scale,
            q.zero_point,
            q.dtype,
        )
        for q in found
    ]


def _quantized(graph: Any, layers: list[str]) -> Iterator[_Quantized]:
    """The graph's quantized activations, in node order."""
    from onnx import TensorProto, numpy_helper

    constants = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inputs = {i.name for i in graph.input} - set(constants)
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        dq = [n for n in consumers.get(node.output[0], []) if n.op_type == "DequantizeLinear"]
        scale = numpy_helper.to_array(constants[node.input[1]])
        point = constants.get(node.input[2]) if len(node.input) > 2 else None
        # ONNX: no zero-point means uint8 and zero.
        dtype = TensorProto.DataType.Name(point.data_type) if point else "UINT8"
        if not dq or scale.size != 1 or dtype not in _DTYPES:
            continue
        tensor = node.input[0]
        yield _Quantized(
            tensor=tensor,
            post_qdq=dq[0].output[0],
            scale=float(scale.reshape(())),
            zero_point=int(numpy_helper.to_array(point).reshape(())) if point else 0,
            dtype=_DTYPES[dtype],
            layer=_layer(tensor, producers, inputs, layers),
            layout=_layout(tensor, producers, consumers, inputs),
        )


def _layer(tensor: str, producers: dict[str, Any], inputs: set[str], layers: list[str]) -> str:
    """The layer whose output ``tensor`` holds.

    Named by the tensor, else by its node, else by the nearest one upstream through
    operators that only move values (tf2onnx's transposes). The graph's input, only
    moved, is the input (:data:`INPUT_NAME`): tf2onnx names its reshape of the image to
    NCHW after the first convolution, which has not run yet.
    """
    moves = _LAYOUT_OPS | {"QuantizeLinear", "DequantizeLinear"}
    if any(name in inputs for name in _upstream(tensor, producers, moves)):
        return INPUT_NAME
    for name in _upstream(tensor, producers, _LAYOUT_OPS | _SAME_LAYOUT):
        node = producers.get(name)
        found = layer_of(name, layers) or layer_of(node.name if node else "", layers)
        if found:
            return found
    node = producers.get(tensor)
    return node.name if node is not None and node.name else tensor


def _upstream(tensor: str, producers: dict[str, Any], through: set[str]) -> Iterator[str]:
    """``tensor``, then its producer's first input, on while the producer is ``through``."""
    name, seen = tensor, set()
    while name not in seen:
        seen.add(name)
        yield name
        node = producers.get(name)
        if node is None or node.op_type not in through or not node.input:
            return
        name = node.input[0]


def _layout(
    tensor: str, producers: dict[str, Any], consumers: dict[str, list[Any]], inputs: set[str]
) -> str | None:
    """The axes ``tensor`` holds (``NCHW``...), None when unknown.

    From the operator that made it or, failing that, the one that reads it: tf2onnx's
    reshape of a one-channel image feeding a Conv is NCHW.
    """
    if tensor in inputs:
        return LAYOUT
    node = producers.get(tensor)
    found: str | None = None
    if node is not None and node.op_type in _CHANNELS_FIRST:
        found = "NCHW"
    elif node is not None and node.op_type == "Transpose":
        source = _layout(node.input[0], producers, consumers, inputs)
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if source and perm and sorted(perm) == list(range(len(source))):
            found = "".join(source[p] for p in perm)
    elif node is not None and node.op_type in _SAME_LAYOUT:
        found = _layout(node.input[0], producers, consumers, inputs)
    return found or _read_as(tensor, consumers)


def _read_as(tensor: str, consumers: dict[str, list[Any]]) -> str | None:
    """NCHW when ``tensor`` (through Q/DQ) is the data input of a channels-first operator."""
    for node in consumers.get(tensor, []):
        if node.op_type in _CHANNELS_FIRST and node.input[0] == tensor:
            return "NCHW"
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found = _read_as(node.output[0], consumers)
            if found:
                return found
    return None


def _channels_last(values: np.ndarray, layout: str | None) -> np.ndarray:
    """``values`` with their channel axis last, for a 4-D tensor of known layout."""
    if values.ndim != 4 or layout is None or sorted(layout) != sorted(LAYOUT):
        return values
    return np.transpose(values, [layout.index(axis) for axis in LAYOUT])


def _tensor_names(graph: Any) -> set[str]:
    """Every tensor a run of ``graph`` can give: its inputs and its nodes' outputs."""
    return {i.name for i in graph.input} | {o for node in graph.node for o in node.output}


def _collect(
    model: Any, names: list[str], images: np.ndarray, batch_size: int
) -> dict[str, np.ndarray]:
    """The values of the tensors ``names`` on ``images``, run batch by batch.

    The tensors are added to a copy of ``model`` as outputs and it is run in memory with
    graph optimizations off, so that onnxruntime computes exactly the graph the file holds
    (no fused QDQ kernels) and no augmented file is written anywhere.
    """
    import onnx
    import onnxruntime as ort

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    del augmented.graph.output[:]
    augmented.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        augmented.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    batches: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(images), batch_size):
        outputs = session.run(names, {INPUT_NAME: images[start : start + batch_size]})
        for name, value in zip(names, outputs, strict=True):
            batches[name].append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(values) for name, values in batches.items()}
