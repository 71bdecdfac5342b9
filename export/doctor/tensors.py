"""How far one quantized tensor is from the float model's: the numbers the doctor shows.

Every int8 (or int16) activation of a file is compared with the same tensor of the float
model on the same images: the signal-to-quantization-noise ratio of the whole tensor and
of its typical channel, the error in quantization steps, and the share of float values
outside what the tensor's scale and zero-point can hold (clipped). One function computes
them for every format, so the TFLite and ONNX tables mean the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecnn.records import Fields, JSONObject

#: Reported in place of an infinite SQNR (no error at all) so that JSON stays strict.
SQNR_CEILING_DB = 200.0


@dataclass(frozen=True)
class TensorError:
    """One quantized activation tensor against the float model's."""

    tensor: str  # its name in the file
    layer: str  # the model's layer whose output it holds (the last, when ops were fused)
    shape: tuple[int, ...]  # one image's
    dtype: str  # int8 or int16
    scale: float
    zero_point: int
    sqnr_db: float  # 10 log10(sum f^2 / sum (q - f)^2) over every value on every image
    #: The same over the median channel (last axis): a tensor whose one wide channel sets
    #: the scale has a fine SQNR as a whole and drowns its other channels.
    median_channel_sqnr_db: float
    #: The widest channel's range over the median channel's (1 for a single channel).
    channel_range_ratio: float
    mean_error_steps: float  # mean |q - f| / scale
    max_error_steps: float
    clipped: float  # share of float values outside the representable range
    images: int

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {
            "tensor": self.tensor,
            "layer": self.layer,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "sqnr_db": self.sqnr_db,
            "median_channel_sqnr_db": self.median_channel_sqnr_db,
            "channel_range_ratio": self.channel_range_ratio,
            "mean_error_steps": self.mean_error_steps,
            "max_error_steps": self.max_error_steps,
            "clipped": self.clipped,
            "images": self.images,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> TensorError:
        """The record :meth:`to_dict` wrote."""
        return cls(
            tensor=f.text("tensor"),
            layer=f.text("layer"),
            shape=tuple(int(d) for d in f.numbers("shape")),
            dtype=f.text("dtype"),
            scale=f.number("scale"),
            zero_point=f.integer("zero_point", least=-(1 << 31)),
            sqnr_db=f.number("sqnr_db"),
            median_channel_sqnr_db=f.number("median_channel_sqnr_db"),
            channel_range_ratio=f.number("channel_range_ratio"),
            mean_error_steps=f.number("mean_error_steps"),
            max_error_steps=f.number("max_error_steps"),
            clipped=f.number("clipped"),
            images=f.integer("images"),
        )


_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def sqnr_db(reference: np.ndarray, noisy: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (noisy - ref)^2)``, capped at :data:`SQNR_CEILING_DB`."""
    reference = reference.astype(np.float64)
    noise = float(np.sum((noisy.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return SQNR_CEILING_DB
    if signal == 0.0:
        return -SQNR_CEILING_DB
    return max(-SQNR_CEILING_DB, min(SQNR_CEILING_DB, 10.0 * math.log10(signal / noise)))


def tensor_error(
    tensor: str,
    layer: str,
    float_values: np.ndarray,
    dequantized: np.ndarray,
    scale: float,
    zero_point: int,
    dtype: str = "int8",
) -> TensorError:
    """Compare ``dequantized`` (the file's tensor, ``(q - zero_point) * scale``) with the float one.

    Both are ``(images, ...)`` arrays of the same shape, channels last.

    Raises:
        ValueError: the shapes differ, or the scale is not a positive number.
    """
    if float_values.shape != dequantized.shape:
        raise ValueError(
            f"{tensor}: the float tensor is {float_values.shape}, the quantized one "
            f"{dequantized.shape}"
        )
    if not scale > 0:
        raise ValueError(f"{tensor}: scale {scale} is not positive")
    f = float_values.astype(np.float64)
    q = dequantized.astype(np.float64)
    steps = np.abs(q - f) / scale
    low, high = _RANGES[dtype]
    representable = ((low - zero_point) * scale, (high - zero_point) * scale)
    clipped = np.mean((f < representable[0] - scale / 2) | (f > representable[1] + scale / 2))
    channels = f.reshape(-1, f.shape[-1]) if f.ndim > 1 else f.reshape(-1, 1)
    noisy = q.reshape(channels.shape)
    per_channel = [sqnr_db(channels[:, c], noisy[:, c]) for c in range(channels.shape[1])]
    spans = channels.max(axis=0) - channels.min(axis=0)
    median_span = float(np.median(spans))
    ratio = float(spans.max() / median_span) if median_span > 0 else 1.0
    return TensorError(
        tensor=tensor,
        layer=layer,
        shape=tuple(int(d) for d in f.shape[1:]),
        dtype=dtype,
        scale=float(scale),
        zero_point=int(zero_point),
        sqnr_db=sqnr_db(f, q),
        median_channel_sqnr_db=float(np.median(per_channel)),
        channel_range_ratio=ratio,
        mean_error_steps=float(steps.mean()),
        max_error_steps=float(steps.max()),
        clipped=float(clipped),
        images=int(f.shape[0]),
    )


def layer_of(tensor: str, layers: list[str]) -> str | None:
    """The model's layer a converted tensor belongs to, from the tensor's name.

    Converters name tensors after the Keras layers they came from
    (``edgecnn_1/relu1_1/Relu;edgecnn_1/pool1_1/MaxPool2d``: scopes get a ``_N``
    suffix, fused operators join their names with ``;``). ``layers`` are the model's
    layer names in order; the last one named wins (a fused pool and ReLU hold the
    ReLU's output). None when no layer is named.
    """
    parts = {p for piece in tensor.replace(";", "/").split("/") for p in _unsuffixed(piece)}
    named = [layer for layer in layers if layer in parts]
    return named[-1] if named else None


def _unsuffixed(piece: str) -> tuple[str, ...]:
    """``piece`` and, when it ends in ``_<digits>``, ``piece`` without that suffix."""
    head, _, tail = piece.rpartition("_")
    return (piece, head) if head and tail.isdigit() else (piece,)
