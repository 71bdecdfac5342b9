"""An int8 ``.tflite`` file as a chain of layers the C generator can write out.

Read straight from the flatbuffer (the schema ships with LiteRT), so that what the C code
computes is what that exact file holds: its int8 weights, int32 biases, every tensor's
scale and zero point, and each operator's options. Only what edgecnn's networks are made
of is understood: ``CONV_2D`` (optionally followed by ``MAX_POOL_2D``, which the C code
fuses into it), ``RESHAPE`` (with the ``SHAPE``/``STRIDED_SLICE``/``PACK`` that compute
its dynamic batch size), ``FULLY_CONNECTED`` and a final ``SOFTMAX``, in one chain from
the int8 input to the int8 output. Anything else is an :class:`UnsupportedModel` naming
the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError


class UnsupportedModel(EdgecnnError):
    """The file is not an int8 network the C generator can write (exit code 2)."""

    exit_code = 2


#: Operators that only compute a reshape's target shape from the batch size.
SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")
ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}


@dataclass(frozen=True)
class Quant:
    """A tensor's quantization: float32 scales (one per channel, or one) and zero points."""

    scales: np.ndarray  # float32
    zero_points: np.ndarray  # int64

    @property
    def scale(self) -> float:
        """The per-tensor scale, as the float32 TFLite stores."""
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        """The per-tensor zero point."""
        return int(self.zero_points[0])


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph: its shape (batch first), type and quantization."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quant | None
    data: np.ndarray | None  # constant tensors only


@dataclass
class Layer:
    """One step of the chain, with everything its C code needs."""

    kind: str  # "conv", "fc" or "softmax"
    input: TensorInfo
    output: TensorInfo
    weights: TensorInfo | None = None
    bias: TensorInfo | None = None
    activation: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    #: A max-pool fused into this convolution: its options and its output tensor.
    pool: dict[str, Any] | None = None

    @property
    def result(self) -> TensorInfo:
        """The tensor this step leaves behind (the pool's output when fused)."""
        return self.pool["output"] if self.pool else self.output


@dataclass
class Graph:
    """The chain of layers, from the int8 input to the int8 probabilities."""

    input: TensorInfo
    output: TensorInfo
    layers: list[Layer]
    #: Operator names in the file, in order, for the TFLM resolver.
    operators: list[str]


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - LiteRT is part of the export extra
        raise UnsupportedModel(
            'reading .tflite files needs LiteRT: pip install "edgecnn[litert]"'
        ) from None
    return schema


def _names(cls: Any) -> dict[int, str]:
    return {value: name for name, value in vars(cls).items() if not name.startswith("_")}


def _zero_bias(weights: TensorInfo) -> TensorInfo:
    """The bias a layer without one adds: int32 zeros, one per output channel."""
    channels = weights.shape[0]
    zeros = np.zeros(channels, dtype=np.int32)
    quant = Quant(np.ones(1, dtype=np.float32), np.zeros(1, dtype=np.int64))
    return TensorInfo(-1, "zero bias", (channels,), "INT32", quant, zeros)


def read(data: bytes) -> Graph:
    """Parse an int8 ``.tflite`` file into its chain of layers.

    Raises:
        UnsupportedModel: not int8 throughout, an operator the generator does not know,
            or a graph that is not one chain.
    """
    schema = _schema()
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() != 1:
            raise UnsupportedModel(f"the model has {model.SubgraphsLength()} subgraphs; one")
        graph = model.Subgraphs(0)
        op_names = _names(schema.BuiltinOperator)
        codes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            codes.append(op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?"))
        tensors = [
            _tensor(model, i, graph.Tensors(i), schema) for i in range(graph.TensorsLength())
        ]
        ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
        names = [codes[op.OpcodeIndex()] for op in ops]
        graph_in, graph_out = graph.InputsAsNumpy().tolist(), graph.OutputsAsNumpy().tolist()
    except UnsupportedModel:
        raise
    except Exception as e:  # the flatbuffer library raises anything on damaged bytes
        raise UnsupportedModel(f"the .tflite file cannot be read ({type(e).__name__})") from None
    if len(graph_in) != 1 or len(graph_out) != 1:
        raise UnsupportedModel("the model must have one input and one output")
    first, last = tensors[graph_in[0]], tensors[graph_out[0]]
    for end in (first, last):
        if end.dtype != "INT8" or end.quant is None:
            raise UnsupportedModel(
                f"the model's {'input' if end is first else 'output'} is {end.dtype.lower()}, "
                "not int8: export it with --int8 (full-integer quantization)"
            )
    layers = _chain(ops, names, tensors, graph_in[0], graph_out[0], schema)
    return Graph(first, last, layers, list(dict.fromkeys(names)))


def _tensor(model: Any, index: int, tensor: Any, schema: Any) -> TensorInfo:
    types = _names(schema.TensorType)
    dtype = types.get(tensor.Type(), "?")
    quant = None
    q = tensor.Quantization()
    if q is not None and q.ScaleLength():
        quant = Quant(q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64))
    data = None
    buffer = model.Buffers(tensor.Buffer())
    if buffer is not None and buffer.DataLength():
        kind = {"INT8": np.int8, "INT32": np.int32}.get(dtype)
        if kind is not None:
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
            data = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=kind).reshape(shape)
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    name = tensor.Name().decode("utf-8", "replace")
    return TensorInfo(index, name, shape, dtype, quant, data)


def _options(op: Any, cls: Any) -> Any:
    table = op.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


#: The layer each operator the generator writes makes (MAX_POOL_2D fuses into a CONV_2D).
KINDS = {"CONV_2D": "conv", "FULLY_CONNECTED": "fc", "SOFTMAX": "softmax"}


def _chain(
    ops: list[Any], names: list[str], tensors: list[TensorInfo], first: int, last: int,
    schema: Any,
) -> list[Layer]:  # fmt: skip
    """Walk the operators from the input tensor to the output tensor, one chain."""
    _check_known(names)
    layers: list[Layer] = []
    current = first
    for op, name in zip(ops, names, strict=True):
        inputs, outputs = op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()
        if name in SHAPE_OPS:
            continue
        if inputs[0] != current:
            raise UnsupportedModel(f"{name} does not follow the previous layer: not one chain")
        current = outputs[0]
        if name == "MAX_POOL_2D":
            pool = _pool(op, schema, tensors[outputs[0]])
            _fuse_pool(layers, tensors[inputs[0]], pool)
        elif name != "RESHAPE":  # RESHAPE: NHWC data flattened in place, the same bytes
            layers.append(_layer(op, name, inputs, outputs, tensors, schema))
    if current != last or not layers or layers[-1].kind != "softmax":
        raise UnsupportedModel("the model must end in SOFTMAX, in one chain from its input")
    if any(layer.kind == "softmax" for layer in layers[:-1]):
        raise UnsupportedModel("SOFTMAX may only end the model")
    return layers


def _check_known(names: list[str]) -> None:
    """Every operator is one the generator writes, or one that computes a reshape's shape."""
    unknown = [n for n in names if n not in (*KINDS, "MAX_POOL_2D", "RESHAPE", *SHAPE_OPS)]
    if unknown:
        raise UnsupportedModel(
            f"the model uses {unknown[0]}, which the C generator does not know (it writes "
            "CONV_2D, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED and SOFTMAX)"
        )


def _pool(op: Any, schema: Any, output: TensorInfo) -> dict[str, Any]:
    """A MAX_POOL_2D's options and its output tensor."""
    opts = _options(op, schema.Pool2DOptions)
    return {
        "filter": (opts.FilterHeight(), opts.FilterWidth()),
        "stride": (opts.StrideH(), opts.StrideW()),
        "padding": "same" if opts.Padding() == schema.Padding.SAME else "valid",
        "activation": _activation(opts.FusedActivationFunction(), "MAX_POOL_2D"),
        "output": output,
    }


def _fuse_pool(layers: list[Layer], x: TensorInfo, pool: dict[str, Any]) -> None:
    """Fuse a max-pool, whose input is ``x``, into the convolution before it."""
    if not layers or layers[-1].kind != "conv" or layers[-1].pool is not None:
        raise UnsupportedModel("MAX_POOL_2D must follow a CONV_2D here")
    if pool["padding"] != "valid":
        raise UnsupportedModel("MAX_POOL_2D with 'same' padding is not supported")
    if _qp(x) != _qp(pool["output"]):
        raise UnsupportedModel("MAX_POOL_2D changes the quantization")
    layers[-1].pool = pool


def _layer(
    op: Any, name: str, inputs: list[int], outputs: list[int], tensors: list[TensorInfo],
    schema: Any,
) -> Layer:  # fmt: skip
    """One CONV_2D, FULLY_CONNECTED or SOFTMAX, int8 in and out, with its options."""
    x, y = tensors[inputs[0]], tensors[outputs[0]]
    layer = Layer(kind=KINDS[name], input=x, output=y)
    if name in ("CONV_2D", "FULLY_CONNECTED"):
        _constants(layer, name, inputs, tensors)
    if name == "CONV_2D":
        _conv_options(layer, _options(op, schema.Conv2DOptions), schema)
    elif name == "FULLY_CONNECTED":
        opts = _options(op, schema.FullyConnectedOptions)
        layer.activation = _activation(opts.FusedActivationFunction(), name)
    elif name == "SOFTMAX":
        beta = _options(op, schema.SoftmaxOptions).Beta()
        layer.options = {"beta": float(np.float32(beta))}
    for t in (x, y):
        if t.dtype != "INT8" or t.quant is None:
            raise UnsupportedModel(f"{name} has a {t.dtype.lower()} tensor; all must be int8")
    return layer


def _constants(layer: Layer, name: str, inputs: list[int], tensors: list[TensorInfo]) -> None:
    """A layer's weights (int8, symmetric) and bias (int32; zeros when the file has none)."""
    if len(inputs) < 3 or inputs[1] < 0:
        raise UnsupportedModel(f"{name} has no weights")
    weights = layer.weights = tensors[inputs[1]]
    # -1: no bias (the converter drops an all-zero one): an int32 zero per channel.
    bias = layer.bias = tensors[inputs[2]] if inputs[2] >= 0 else _zero_bias(weights)
    for part, what in ((weights, "weights"), (bias, "bias")):
        if part.data is None or part.quant is None:
            raise UnsupportedModel(f"{name} has no constant quantized {what}")
    if weights.dtype != "INT8" or bias.dtype != "INT32":
        raise UnsupportedModel(f"{name} is not int8 with int32 biases")
    if np.any(weights.quant.zero_points != 0):  # type: ignore[union-attr]
        raise UnsupportedModel(f"{name} has asymmetric weights")


def _conv_options(layer: Layer, opts: Any, schema: Any) -> None:
    """A convolution's activation, strides and padding; neither dilated nor grouped."""
    layer.activation = _activation(opts.FusedActivationFunction(), "CONV_2D")
    layer.options = {
        "stride": (opts.StrideH(), opts.StrideW()),
        "dilation": (opts.DilationHFactor(), opts.DilationWFactor()),
        "padding": "same" if opts.Padding() == schema.Padding.SAME else "valid",
    }
    if layer.options["dilation"] != (1, 1):
        raise UnsupportedModel("dilated CONV_2D is not supported")
    if layer.weights.shape[3] != layer.input.shape[3]:  # type: ignore[union-attr]
        raise UnsupportedModel("grouped CONV_2D is not supported")


def _activation(code: int, op: str) -> str:
    if code not in ACTIVATIONS:
        raise UnsupportedModel(f"{op} has a fused activation the C generator does not know")
    return ACTIVATIONS[code]


def _qp(t: TensorInfo) -> tuple[float, int] | None:
    return None if t.quant is None else (t.quant.scale, t.quant.zero_point)
