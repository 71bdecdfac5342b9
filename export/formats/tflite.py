"""Keras -> TFLite: float32, float16, dynamic-range and full-integer int8 flatbuffers."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.export.formats import Job, placeholder_metadata, sealed
from edgecnn.export.serving import SIGNATURE_KEY, input_spec, serving_function
from edgecnn.runtime.metadata import METADATA_KEY, ModelMetadata
from edgecnn.trainer._tf import import_tensorflow

tf = import_tensorflow()

#: TFLite precisions the exporter writes, by name.
MODES = ("float32", "float16", "dynamic", "int8")
SCHEMES = {
    "float32": None,
    "float16": "float16 weights, float32 computation",
    "dynamic": "dynamic range: int8 weights, float activations",
    "int8": "int8, per-channel weights; the last layer and softmax in float32",
}
FULL_INTEGER_SCHEME = "full integer int8, per-channel weights"
INT16_SCHEME = "16-bit activations, 8-bit per-channel weights (16x8), float input and output"


def convert(precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
    """The ``precision`` flatbuffer of ``job.model``, with its metadata embedded and sealed."""
    calibration = job.calibration if precision == "int8" else None
    full_integer = job.config.full_integer
    quantization: dict[str, Any] = {}
    if SCHEMES[precision]:
        quantization["scheme"] = SCHEMES[precision]
    if precision == "int8" and full_integer:
        quantization["scheme"] = FULL_INTEGER_SCHEME
    if precision == "int8" and job.float_layers:
        data = _with_float_layers(job)
        quantization["scheme"] += f"; {', '.join(job.float_layers)} in float32"
    elif precision == "int8" and job.remedy == "int16":
        data = convert_int16(job.model, job.calibration)
        quantization["scheme"] = INT16_SCHEME
    else:
        data = convert_model(job.model, precision, calibration, full_integer=full_integer)
    if precision == "int8" and job.remedy != "none":
        quantization["remedy"] = job.remedy
    if precision == "int8":
        quantization.update(io_quantization(data))
        quantization["calibration"] = job.calibration_summary("minmax (TFLite converter)")
    meta = placeholder_metadata(job.base, precision, quantization)
    return sealed(embed_metadata(data, METADATA_KEY, meta.to_json().encode()), meta)


def with_metadata(data: bytes, meta: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """``data`` with ``meta`` embedded in place of its metadata, sealed again."""
    meta = placeholder_metadata(meta, meta.precision, meta.quantization)
    return sealed(embed_metadata(data, METADATA_KEY, meta.to_json().encode()), meta)


def io_quantization(flatbuffer: bytes) -> dict[str, Any]:
    """The quantized input and output tensors' dtype, scale and zero-point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    result = {}
    for name, detail in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        scale, zero_point = detail["quantization"]
        if not scale:  # a float tensor
            continue
        result[name] = {
            "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }
    return result


def _saved_model(model: Any, folder: str) -> None:
    """Save ``model`` with a ``serving_default`` signature: ``image`` -> ``probabilities``.

    Those are the names Android and iOS code calls the signature runner with.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE_KEY, serving_function(model), input_signature=[input_spec(model)]
    )
    archive.write_out(folder, verbose=False)


def _representative(calibration: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        for i in range(len(calibration)):
            yield [calibration[i : i + 1]]

    return generate


def convert_model(
    model: Any, mode: str, calibration: np.ndarray | None = None, full_integer: bool = False
) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer in ``mode`` (one of :data:`MODES`).

    ``int8`` needs ``calibration``, float32 ``(N, H, W, C)`` images from the training
    split. It has int8 weights (per channel), int8 activations and an int8 input; the
    last layer and the softmax run in float32 and the output is float32 probabilities
    (see :func:`_float_tail`). ``full_integer`` makes every operator int8, the output
    too, as integer-only accelerators and microcontrollers need.
    """
    if mode not in MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}")
    with tempfile.TemporaryDirectory(prefix="edgecnn-savedmodel-") as folder:
        _saved_model(model, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [SIGNATURE_KEY])
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif mode == "int8":
            if calibration is None or not len(calibration):
                raise ValueError("int8 conversion needs calibration images")
            converter.representative_dataset = _representative(calibration)
            if not full_integer:
                return _float_tail(converter)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return bytes(converter.convert())


def _float_tail(converter: Any) -> bytes:
    """Calibrate, then quantize every operator but the logits layer and the softmax.

    Why: quantized, the logits layer gives its outputs in one int8 step of the whole
    logit range, so some images tie for the top class, and the int8 softmax (steps of
    1/256) turns the runners-up into zero-valued ties listed in label order. In float,
    that one 128x10 layer costs nothing measurable and lifts top-1 agreement with Keras
    and, far more, the order of the runners-up (docs/benchmarks.md, "int8 logits layer";
    docs/export-design.md has the options measured).

    This is the calibrate-then-quantize path of ``tf.lite.experimental.QuantizationDebugger``
    (its ``denylisted_nodes``), with the int8 input the usual full-int8 file has.
    """
    converter._experimental_calibrate_only = True
    return quantize_calibrated(converter.convert())


def calibrate(model: Any, calibration: np.ndarray) -> bytes:
    """The float flatbuffer with every tensor's range on ``calibration`` recorded in it.

    What :func:`quantize_calibrated` makes int8 files from: one calibration, any number
    of quantizations (the doctor's per-layer trials).
    """
    with tempfile.TemporaryDirectory(prefix="edgecnn-savedmodel-") as folder:
        _saved_model(model, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [SIGNATURE_KEY])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration)
        converter._experimental_calibrate_only = True
        return bytes(converter.convert())


def quantize_calibrated(calibrated: bytes, float_nodes: tuple[str, ...] = ()) -> bytes:
    """The int8 file (float logits and softmax) from a calibrated flatbuffer.

    ``float_nodes``: more operators to keep in float, by output tensor name
    (:func:`operator_outputs`).
    """
    from tensorflow.lite.python import convert

    softmax_inputs = _softmax_inputs(calibrated)
    if not softmax_inputs:
        raise ValueError("the model has no softmax to keep in float")
    return bytes(
        convert.mlir_quantize(
            calibrated,
            fully_quantize=False,
            input_data_type=tf.int8,
            output_data_type=tf.float32,
            denylisted_ops=["SOFTMAX"],
            denylisted_nodes=[*softmax_inputs, *float_nodes],
        )
    )


def operator_outputs(flatbuffer: bytes) -> list[str]:
    """The names of every operator's output tensors, in the order they run."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    return [
        graph.tensors[i].name.decode()
        for graph in model.subgraphs
        for op in graph.operators
        for i in op.outputs
    ]


def _softmax_inputs(flatbuffer: bytes) -> list[str]:
    """Names of the tensors the model's SOFTMAX operators read (the logits)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    names = []
    for graph in model.subgraphs:
        for op in graph.operators:
            if codes[op.opcodeIndex] == schema.BuiltinOperator.SOFTMAX:
                names.append(graph.tensors[op.inputs[0]].name.decode())
    return names


def _with_float_layers(job: Job) -> bytes:
    """The int8 file with ``job.float_layers``' operators (and the logits) in float."""
    calibrated = calibrate(job.model, job.calibration)
    nodes = layer_operators(calibrated, job.model, job.float_layers)
    return quantize_calibrated(calibrated, nodes)


def layer_operators(flatbuffer: bytes, model: Any, layers: tuple[str, ...]) -> tuple[str, ...]:
    """The outputs of ``flatbuffer``'s operators that belong to ``model``'s ``layers``.

    Converted tensors are named after the Keras layers they came from
    (:func:`~edgecnn.export.doctor.tensors.layer_of`).
    """
    from edgecnn.export.doctor.tensors import layer_of

    names = [layer.name for layer in model.layers]
    return tuple(n for n in operator_outputs(flatbuffer) if layer_of(n, names) in layers)


def convert_int16(model: Any, calibration: np.ndarray) -> bytes:
    """16-bit activations and 8-bit weights throughout (TFLite's 16x8 mode), float I/O.

    TFLite's quantizer sets the activation width for a whole model, not for one layer;
    its 16x8 kernels need every activation symmetric, which its own 16x8 path gives (the
    MLIR quantizer asked for int16 directly leaves zero-points a kernel refuses).
    """
    with tempfile.TemporaryDirectory(prefix="edgecnn-savedmodel-") as folder:
        _saved_model(model, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [SIGNATURE_KEY])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        return bytes(converter.convert())


def full_integer_flatbuffer(job: Job, source: Path, memo: dict[str, Any]) -> bytes:
    """The full-integer int8 flatbuffer the microcontroller formats are generated from.

    ``source`` (the accepted int8 ``.tflite``) itself when it was written with
    ``--full-integer``; otherwise the same model and calibration converted once more with
    every operator in int8, kept in ``memo`` for the next format.
    """
    if job.config.full_integer:
        return source.read_bytes()
    if "full_integer" not in memo:
        memo["full_integer"] = convert_model(job.model, "int8", job.calibration, full_integer=True)
    data: bytes = memo["full_integer"]
    return data


def embed_metadata(flatbuffer: bytes, name: str, payload: bytes) -> bytes:
    """Set the model's ``name`` metadata entry to ``payload`` (appended if it has none).

    An entry of that name already there keeps its buffer, whose bytes are replaced: the
    old payload leaves the file. Interpreters ignore metadata they do not know; the
    runtime reads it back with a dependency-free parser
    (:mod:`edgecnn.runtime.tflite_metadata`).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    data = np.frombuffer(payload, dtype=np.uint8)
    for entry in model.metadata or []:
        if entry.name.decode() == name:
            model.buffers[entry.buffer].data = data
            break
    else:
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
