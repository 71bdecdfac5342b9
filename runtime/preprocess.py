"""Turn what users pass (arrays of images) into the model's input, refusing what cannot be right."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.runtime.contract import DEFAULT_INPUT_SHAPE
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.metadata import Quantization

#: A function of one array, as the benchmarks' bare loops apply around the call.
ArrayFunction = Callable[[np.ndarray], np.ndarray]
_RANGE_SLACK = 1e-3  # float inputs a rounding error outside [0, 1] are clipped, not refused
#: uint8 pixel -> model input, computed as the trainer does (float32 division by 255).
PIXEL_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255)


def single_image_shapes(shape: tuple[int, int, int]) -> tuple[tuple[int, ...], ...]:
    """The shapes one image may come in: ``(H, W, C)``, and ``(H, W)`` for greyscale."""
    return (shape, shape[:2]) if shape[2] == 1 else (shape,)


def shape_hint(shape: tuple[int, int, int]) -> str:
    """The array shapes accepted for ``shape`` images, for error messages."""
    h, w, c = shape
    if c == 1:
        return f"({h}, {w}), (N, {h}, {w}) or (N, {h}, {w}, 1)"
    return f"({h}, {w}, {c}) or (N, {h}, {w}, {c})"


def to_batch(images: Any, shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE) -> np.ndarray:
    """Validate an image array and return it as a ``(N, H, W, C)`` batch of ``shape`` images.

    Accepts uint8 in [0, 255] or float in [0, 1]: one image ``(H, W, C)`` or a batch
    ``(N, H, W, C)``; greyscale images may leave out the channel axis. Integers (in
    [0, 255]) become uint8, which backends map through lookup tables, exactly as the
    trainer scales pixels; floats become float32 in [0, 1].

    Raises:
        InputError: wrong type, rank, size or range; NaN or infinity; an empty batch.
    """
    if type(images) is np.ndarray and images.dtype == np.uint8:
        # The common case, kept to a few attribute reads: it sits on every request's path.
        got = images.shape
        if images.ndim == 4 and got[1:] == shape and got[0]:
            return images
        if images.ndim == 3 and shape[2] == 1 and got[1:] == shape[:2] and got[0]:
            return images.reshape(got[0], *shape)
        if got in single_image_shapes(shape):
            return images.reshape(1, *shape)
    try:
        arr = np.asarray(images)
    except (ValueError, TypeError) as e:
        raise InputError(f"cannot read input as an array: {e}") from None
    # By kind, not issubdtype: timedelta64 counts as an integer there.
    if arr.dtype.kind not in "uif":
        raise InputError(f"images must be uint8 or float arrays, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"empty batch: no images to classify (got shape {arr.shape})")
    got = arr.shape
    if got in single_image_shapes(shape):
        arr = arr.reshape(1, *shape)
    elif arr.ndim == 3 and shape[2] == 1 and got[1:] == shape[:2]:
        arr = arr[..., np.newaxis]
    elif not (arr.ndim == 4 and got[1:] == shape):
        raise InputError(f"images must have shape {shape_hint(shape)}; got {got}")
    if arr.dtype == np.uint8:
        return arr  # a uint8 subclass or list (a memory-mapped .npy): the backends map it
    if arr.dtype.kind in "ui":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(f"integer images must be in [0, 255], got values in [{lo}, {hi}]")
        return arr.astype(np.uint8)  # pixels, scaled exactly as the trainer does by the backend
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError("images contain NaN or infinity")
    low, high = float(arr.min()), float(arr.max())
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        hint = "; divide by 255 or pass uint8" if high <= 255 and low >= 0 else ""
        raise InputError(f"float images must be in [0, 1], got values in [{low:g}, {high:g}]{hint}")
    clipped: np.ndarray = np.clip(arr, 0.0, 1.0)
    return clipped


def as_float(x: np.ndarray) -> np.ndarray:
    """A batch from :func:`to_batch` as float32 in [0, 1] (for uint8, exactly the trainer's)."""
    return x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x


def quantize(x: np.ndarray, q: Quantization, dtype: type = np.int8) -> np.ndarray:
    """Float -> integer with the tensor's own scale and zero-point, rounded and saturated."""
    info = np.iinfo(dtype)
    codes: np.ndarray = np.clip(np.round(x / q.scale) + q.zero_point, info.min, info.max)
    return codes.astype(dtype)


def pixel_table(q: Quantization, dtype: type = np.int8) -> np.ndarray:
    """The quantized input value of each uint8 pixel: ``table[pixel]`` replaces five ops."""
    return quantize(PIXEL_TO_FLOAT, q, dtype)


def dequantize_table(q: Quantization, dtype: type = np.int8) -> np.ndarray:
    """Float value of every integer code, indexed by the code's bits read as uint8."""
    codes: np.ndarray = np.arange(256, dtype=np.uint8).view(dtype)
    return dequantize(codes, q)


def dequantize(values: np.ndarray, q: Quantization) -> np.ndarray:
    """Integer -> float32 with the tensor's own scale and zero-point."""
    zero, scale = np.float32(q.zero_point), np.float32(q.scale)
    floats: np.ndarray = (values.astype(np.float32) - zero) * scale
    return floats


def bare_conversions(
    input_q: Quantization | None,
    output_q: Quantization | None,
    xor_128: bool,
    pixel_codes: np.ndarray | None,
) -> tuple[ArrayFunction, ArrayFunction]:
    """What a bare interpreter loop does around the call, as two functions.

    ``convert`` takes uint8 pixels to the input tensor's type with one numpy expression
    (float in [0, 1], or int8 codes: an XOR for the usual scale 1/255 and zero-point
    -128, else ``pixel_codes``); ``dequantize`` takes an int8 output to float32. The
    benchmarks' baselines use them, so every backend's does the same work.
    """
    convert: ArrayFunction
    if input_q is None:
        convert = as_float
    elif xor_128:
        convert = lambda x: np.bitwise_xor(x, 128).view(np.int8)  # noqa: E731
    else:
        assert pixel_codes is not None
        convert = pixel_codes.__getitem__
    dequantize: ArrayFunction
    if output_q is None:
        dequantize = lambda y: y  # noqa: E731
    else:
        scale, zero = np.float32(output_q.scale), np.float32(output_q.zero_point)
        dequantize = lambda y: (y.astype(np.float32) - zero) * scale  # noqa: E731
    return convert, dequantize


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    probs: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return probs
