"""What TFLite's reference kernels compute for an int8 file: the standard the C code meets.

LiteRT runs a ``.tflite`` file on its reference kernels with
``OpResolverType.BUILTIN_REF`` (plain C++ loops, the semantics every optimized kernel
approximates), and keeps every intermediate tensor with
``experimental_preserve_all_tensors``, so the softmax's input (the int8 logits) can be
read as well as its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.runtime.preprocess import Quantization, pixel_table

#: Images per interpreter call: preserving every tensor costs memory per image, so a call
#: is bounded (docs/benchmarks.md, "reference kernels memory").
CHUNK = 1000


@dataclass(frozen=True)
class ReferenceOutputs:
    """The int8 logits (softmax input) and scores (softmax output), one row per image."""

    logits: np.ndarray
    scores: np.ndarray


def int8_inputs(images: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """uint8 pictures as the model's int8 input, exactly as ``edgecnn.runtime`` makes it."""
    codes: np.ndarray = pixel_table(Quantization(scale, zero_point))[images]
    return codes


def run(
    model: bytes, inputs: np.ndarray, logits_tensor: int, output_tensor: int
) -> ReferenceOutputs:
    """Run ``inputs`` (int8, ``(N, H, W, C)``) through the reference kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    logits, scores = invoke_in_chunks(interpreter, inputs, (logits_tensor, output_tensor))
    return ReferenceOutputs(logits, scores)


def invoke_in_chunks(
    interpreter: Any, inputs: np.ndarray, tensors: tuple[int, ...]
) -> list[np.ndarray]:
    """Each of ``tensors`` after running ``inputs``, one row per image.

    :data:`CHUNK` images at a time, so memory stays bounded for large inputs.
    """
    index = interpreter.get_input_details()[0]["index"]
    parts: list[list[np.ndarray]] = [[] for _ in tensors]
    for start in range(0, len(inputs), CHUNK):
        batch = inputs[start : start + CHUNK]
        interpreter.resize_tensor_input(index, list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, batch)
        interpreter.invoke()
        for part, tensor in zip(parts, tensors, strict=True):
            part.append(interpreter.get_tensor(tensor).reshape(len(batch), -1).copy())
    return [np.concatenate(part) for part in parts]


def shared(
    model: bytes, library: Any, g: Any, images: np.ndarray, memo: dict[str, Any]
) -> ReferenceOutputs:
    """The reference kernels' outputs on ``images``, computed once per export.

    ``library`` is the generated :class:`~edgecnn.export.mcu.cgen.Library` (which tensors
    to read), ``g`` its graph; ``memo`` keeps the result for the next format.
    """
    if "reference" not in memo:
        scale, zero_point = g.input.quant.scale, g.input.quant.zero_point
        batch = int8_inputs(images, scale, zero_point).reshape(len(images), *library.input_shape)
        memo["reference"] = run(model, batch, library.logits_tensor, library.output_tensor)
    result: ReferenceOutputs = memo["reference"]
    return result
