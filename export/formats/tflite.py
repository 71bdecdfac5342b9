"""Keras -> TFLite: float32, float16, dynamic-range and full-integer int8 flatbuffers."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
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
    "int8": "full integer int8, per-channel weights",
}


def convert(precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
    """The ``precision`` flatbuffer of ``job.model``, with its metadata embedded and sealed."""
    calibration = job.calibration if precision == "int8" else None
    data = convert_model(job.model, precision, calibration)
    quantization: dict[str, Any] = {}
    if SCHEMES[precision]:
        quantization["scheme"] = SCHEMES[precision]
    if precision == "int8":
        quantization.update(io_quantization(data))
        quantization["calibration"] = job.calibration_summary("minmax (TFLite converter)")
    meta = placeholder_metadata(job.base, precision, quantization)
    return sealed(embed_metadata(data, METADATA_KEY, meta.to_json().encode()), meta)


def io_quantization(flatbuffer: bytes) -> dict[str, Any]:
    """The int8 input and output tensors' dtype, scale and zero-point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    result = {}
    for name, detail in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        scale, zero_point = detail["quantization"]
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


def convert_model(model: Any, mode: str, calibration: np.ndarray | None = None) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer in ``mode`` (one of :data:`MODES`).

    ``int8`` is full integer: int8 weights, activations, input and output, and only
    int8 builtin ops (conversion fails rather than fall back to float kernels). It needs
    ``calibration``, float32 ``(N, H, W, C)`` images from the training split.
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
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return bytes(converter.convert())


def embed_metadata(flatbuffer: bytes, name: str, payload: bytes) -> bytes:
    """Append a ``name`` entry holding ``payload`` to the model's metadata list.

    Interpreters ignore metadata they do not know; the runtime reads it back with a
    dependency-free parser (:mod:`edgecnn.runtime.tflite_metadata`).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
