"""Keras -> ONNX (float32) with tf2onnx, and float32 -> int8 QDQ with onnxruntime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.export.serving import input_spec, serving_function
from edgecnn.trainer._tf import import_tensorflow

OPSET = 17


def convert_float(model: Any) -> bytes:
    """The float32 ONNX graph of the serving function, with a dynamic batch dimension.

    ``tf2onnx.convert.from_keras`` fails on Keras 3 models (it looks up output names
    Keras 3 no longer exposes); converting the ``tf.function`` works and names the input
    ``image`` and the output ``probabilities``.
    """
    import_tensorflow()
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(
        serving_function(model), input_signature=[input_spec()], opset=OPSET
    )
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto.SerializeToString()


class _Reader:
    """Feeds calibration images to onnxruntime's calibrator in batches."""

    def __init__(self, images: np.ndarray, batch: int = 100) -> None:
        self._batches = iter([images[i : i + batch] for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch}


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
    return proto.SerializeToString()
