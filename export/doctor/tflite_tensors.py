"""Every quantized activation of an int8 ``.tflite`` against the Keras model's same tensor.

LiteRT keeps every intermediate tensor when asked (``experimental_preserve_all_tensors``);
the Keras model gives the float twin of each from a probe that outputs the layer the
tensor's name points to (:func:`~edgecnn.export.doctor.tensors.layer_of`). Tensors with
no layer in their name (the logits' dequantized copy, shape arithmetic) have no twin and
are left out, as are float and int32 ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.export.doctor.tensors import TensorError, layer_of, tensor_error

_QUANTIZED = {np.dtype(np.int8): "int8", np.dtype(np.int16): "int16"}
_BATCH = 250


def tflite_tensor_errors(model: Any, flatbuffer: bytes, images: np.ndarray) -> list[TensorError]:
    """The error of each quantized activation of ``flatbuffer`` on ``images``, in run order.

    ``images`` are float32 ``(N, H, W, C)`` in [0, 1], as Keras takes them; the file's
    input is fed as it asks (quantized with its own scale and zero-point, or float).
    """
    from ai_edge_litert.interpreter import Interpreter

    names = [layer.name for layer in model.layers]
    interpreter = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    picked = _activations(interpreter, details, names)
    if not picked:
        return []
    probe = _probe(model, [layer for _, layer in picked])
    quantized: dict[int, list[np.ndarray]] = {index: [] for index, _ in picked}
    floats: dict[str, list[np.ndarray]] = {layer: [] for _, layer in picked}
    for start in range(0, len(images), _BATCH):
        batch = images[start : start + _BATCH]
        feed(interpreter, batch)
        for index, _ in picked:
            quantized[index].append(interpreter.get_tensor(index).copy())
        outputs = probe(batch)
        for layer, values in outputs.items():
            floats[layer].append(values)
    result = []
    for index, layer in picked:
        detail = details[index]
        scale, zero_point = detail["quantization"]
        q = np.concatenate(quantized[index]).astype(np.float64)
        f = np.concatenate(floats[layer]).reshape(q.shape)
        dtype = _QUANTIZED[np.dtype(detail["dtype"])]
        dequantized = (q - zero_point) * scale
        result.append(tensor_error(detail["name"], layer, f, dequantized, scale, zero_point, dtype))
    return result


def _activations(
    interpreter: Any, details: dict[int, Any], names: list[str]
) -> list[tuple[int, str]]:
    """``(tensor index, layer)`` of the operators' quantized outputs, in run order."""
    picked = []
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            detail = details[int(index)]
            if np.dtype(detail["dtype"]) not in _QUANTIZED or not detail["quantization"][0]:
                continue
            layer = layer_of(detail["name"], names)
            if layer is not None:
                picked.append((int(index), layer))
    return picked


def feed(interpreter: Any, batch: np.ndarray) -> None:
    """Feed ``batch`` (float [0, 1]) to the file's input, quantized if it is, and run."""
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != batch.shape:
        interpreter.resize_tensor_input(detail["index"], batch.shape)
        interpreter.allocate_tensors()
    dtype = np.dtype(detail["dtype"])
    if dtype in _QUANTIZED:
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
    interpreter.set_tensor(detail["index"], batch)
    interpreter.invoke()


def _probe(model: Any, layers: list[str]) -> Any:
    """A function from images to ``{layer: its output}`` for ``layers`` of ``model``."""
    import keras

    wanted = list(dict.fromkeys(layers))
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in wanted])

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = probe(batch, training=False)
        if len(wanted) == 1:
            outputs = [outputs]
        return {name: np.asarray(out) for name, out in zip(wanted, outputs, strict=True)}

    return run
