"""Keras -> ONNX (float32) with tf2onnx, and float32 -> int8 QDQ with onnxruntime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from edgecnn.export.formats import Job, placeholder_metadata, sealed
from edgecnn.export.serving import input_spec, serving_function
from edgecnn.runtime.contract import INPUT_NAME
from edgecnn.runtime.metadata import METADATA_KEY, ModelMetadata
from edgecnn.trainer._tf import import_tensorflow

OPSET = 17
#: The int8 recipe; each choice measured, see docs/export-design.md.
INT8_OPTIONS: dict[str, Any] = {
    # 7-bit weights: on x86 CPUs without VNNI, onnxruntime's u8*s8 kernels otherwise
    # saturate 16-bit intermediate sums.
    "reduce_range": True,
    # Keep the dense layers' outputs (the logits) unquantized: their int8 rounding decides
    # near-ties between classes. Weights and inputs stay int8.
    "extra_options": {"OpTypesToExcludeOutputQuantization": ["Gemm"]},
}
INT8_SCHEME = (
    "static QDQ: int8 activations, per-channel int8 weights (7-bit range), float softmax "
    "and dense outputs"
)


def convert(precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
    """The ``precision`` ONNX graph of ``job.model``, with its metadata embedded and sealed."""
    if "onnx_float32" not in job.cache:  # the int8 graph is quantized from the float one
        job.cache["onnx_float32"] = convert_float(job.model)
    data, quantization = job.cache["onnx_float32"], {}
    if precision == "int8":
        method = job.config.calib_method
        data = quantize_int8(data, job.calibration, method, **INT8_OPTIONS)
        quantization = {
            "scheme": INT8_SCHEME,
            "input": {"dtype": "float32", "note": "quantized inside the graph"},
            "calibration": job.calibration_summary(method),
        }
        if job.remedy != "none":
            quantization["remedy"] = job.remedy
    meta = placeholder_metadata(job.base, precision, quantization)
    return sealed(set_metadata(data, METADATA_KEY, meta.to_json()), meta)


def with_metadata(data: bytes, meta: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """``data`` with ``meta`` in place of its metadata, sealed again."""
    meta = placeholder_metadata(meta, meta.precision, meta.quantization)
    return sealed(set_metadata(data, METADATA_KEY, meta.to_json()), meta)


def convert_float(model: Any) -> bytes:
    """The float32 ONNX graph of the serving function, with a dynamic batch dimension.

    ``tf2onnx.convert.from_keras`` fails on Keras 3 models (it looks up output names
    Keras 3 no longer exposes); converting the ``tf.function`` works and names the input
    ``image`` and the output ``probabilities``.
    """
    import_tensorflow()
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(
        serving_function(model), input_signature=[input_spec(model)], opset=OPSET
    )
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return cast(bytes, proto.SerializeToString())  # onnx's protos are untyped here


class _Reader:
    """Feeds calibration images to onnxruntime's calibrator in batches."""

    def __init__(self, images: np.ndarray, batch: int = 100) -> None:
        self._batches = iter([images[i : i + batch] for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(
    float_model: bytes, calibration: np.ndarray, method: str = "minmax", **options: Any
) -> bytes:
    """Static int8 quantization in QDQ format: per-channel int8 weights, int8 activations.

    Softmax stays in float: quantized, its output would come in steps of 1/255, and near
    ties between two classes would be decided by rounding.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calibration)
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as tmp:
        src, pre, out = Path(tmp, "float.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(float_model)
        quant_pre_process(str(src), str(pre))
        softmax = [n.name for n in onnx.load(pre).graph.node if n.op_type == "Softmax"]
        settings = {
            "quant_format": QuantFormat.QDQ,
            "activation_type": QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
            "calibrate_method": methods[method],
            "nodes_to_exclude": softmax,
            **options,
        }
        quantize_static(str(pre), str(out), reader, **settings)
        return out.read_bytes()


def set_metadata(model_bytes: bytes, key: str, value: str) -> bytes:
    """Set one ``metadata_props`` entry, keeping the others."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    props = {p.key: p.value for p in proto.metadata_props}
    props[key] = value
    onnx.helper.set_model_props(proto, props)
    return cast(bytes, proto.SerializeToString())  # onnx's protos are untyped here
