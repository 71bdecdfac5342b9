"""Turn what users pass (arrays of images) into the model's input, refusing what cannot be right."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.metadata import Quantization

IMAGE_SIDE = 28
_RANGE_SLACK = 1e-3  # float inputs a rounding error outside [0, 1] are clipped, not refused


def to_batch(images: Any, side: int = IMAGE_SIDE) -> np.ndarray:
    """Validate an image array and return float32 ``(N, side, side, 1)`` in [0, 1].

    Accepts uint8 in [0, 255] or float in [0, 1], shaped ``(28, 28)``, ``(28, 28, 1)``,
    ``(N, 28, 28)`` or ``(N, 28, 28, 1)``.

    Raises:
        InputError: wrong type, rank, size or range; NaN or infinity; an empty batch.
    """
    try:
        arr = np.asarray(images)
    except (ValueError, TypeError) as e:
        raise InputError(f"cannot read input as an array: {e}") from None
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"images must be uint8 or float arrays, got dtype {arr.dtype}")
    shape = arr.shape
    if shape in ((side, side), (side, side, 1)):
        arr = arr.reshape(1, side, side, 1)
    elif arr.ndim == 3 and shape[1:] == (side, side):
        arr = arr[..., np.newaxis]
    elif not (arr.ndim == 4 and shape[1:] == (side, side, 1)):
        raise InputError(
            f"images must have shape ({side}, {side}), (N, {side}, {side}) or "
            f"(N, {side}, {side}, 1); got {shape}"
        )
    if arr.shape[0] == 0:
        raise InputError("empty batch: no images to classify")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype != np.uint8:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi > 255:
                raise InputError(f"integer images must be in [0, 255], got values in [{lo}, {hi}]")
        return arr.astype(np.float32) * np.float32(1 / 255)
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputError("images contain NaN or infinity")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        hint = "; divide by 255 or pass uint8" if hi <= 255 and lo >= 0 else ""
        raise InputError(f"float images must be in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")
    return np.clip(arr, 0.0, 1.0)


def quantize(x: np.ndarray, q: Quantization, dtype: type = np.int8) -> np.ndarray:
    """Float -> integer with the tensor's own scale and zero-point, rounded and saturated."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / q.scale) + q.zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, q: Quantization) -> np.ndarray:
    """Integer -> float32 with the tensor's own scale and zero-point."""
    return (values.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=-1, keepdims=True)
