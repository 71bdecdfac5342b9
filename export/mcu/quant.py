"""TFLite's integer parameters, computed here as TFLite computes them when it prepares a model.

The C library is bit-identical to TFLite's reference kernels only if every multiplier,
shift and clamp is the same number TFLite derives from the file's float scales. So each
function below follows one TFLite function step for step (named in its docstring), in
IEEE double arithmetic as there (Python floats are doubles, numpy float32 stands in for
C++ ``float``).
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> float:
    """C's ``round()``: halves away from zero (Python's ``round`` goes to even)."""
    floor = math.floor(abs(x))
    magnitude = floor + 1 if abs(x) - floor >= 0.5 else floor
    return math.copysign(magnitude, x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier``: ``real`` as a Q31 multiplier and a power-of-two shift.

    ``real ~= multiplier * 2**(shift - 31)``, multiplier in [2**30, 2**31).
    """
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    q = int(round_half_away(fraction * (1 << 31)))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def per_channel_multipliers(
    input_scale: float, filter_scales: np.ndarray, output_scale: float
) -> tuple[list[int], list[int]]:
    """``PopulateConvolutionQuantizationParams``: one (multiplier, shift) per channel."""
    pairs = [
        quantize_multiplier(float(input_scale) * float(s) / float(output_scale))
        for s in np.asarray(filter_scales, dtype=np.float32)
    ]
    return [m for m, _ in pairs], [s for _, s in pairs]


def effective_scales(
    input_scale: float, filter_scales: np.ndarray, output_scale: float
) -> list[float]:
    """The double scale the reference fully-connected kernel multiplies each sum by.

    ``reference_integer_ops::FullyConnectedPerChannel`` rescales in double precision,
    ``round(acc * (input_scale * filter_scale / output_scale))``, not with a Q31
    multiplier; the C code reproduces that product exactly in integers (see
    :func:`double_parts`).
    """
    return [
        float(input_scale) * float(s) / float(output_scale)
        for s in np.asarray(filter_scales, dtype=np.float32)
    ]


def double_parts(value: float) -> tuple[int, int]:
    """A positive double as ``mantissa * 2**exponent`` with an integer mantissa < 2**53."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"a scale must be positive and finite, got {value}")
    fraction, exponent = math.frexp(value)  # value = fraction * 2**exponent, 0.5 <= f < 1
    mantissa = int(fraction * (1 << 53))  # exact: a double has 53 significant bits
    return mantissa, exponent - 53


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized`` for an int8 output."""
    low, high = INT8_MIN, INT8_MAX
    if activation in ("relu", "relu6"):
        low = max(low, zero_point + _quantized_float(0.0, scale))
    if activation == "relu6":
        high = min(high, zero_point + _quantized_float(6.0, scale))
    return low, high


def _quantized_float(value: float, scale: float) -> int:
    """``Quantize`` in kernel_util: ``round(value / scale)`` in float32."""
    return int(round_half_away(float(np.float32(value) / np.float32(scale))))


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """The reference int8 softmax's ``input_multiplier``, ``input_left_shift``, ``diff_min``.

    ``PreprocessSoftmaxScaling`` and ``CalculateInputRadius`` with 5 integer bits, as
    ``SoftmaxPrepare`` calls them for the reference kernel.
    """
    integer_bits = 5
    real = min(float(beta) * float(input_scale) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise ValueError("softmax input scale too small for the reference kernel")
    radius = math.floor(
        1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)
    )
    return multiplier, left_shift, -radius


def quantize_pixels(scale: float, zero_point: int) -> list[int]:
    """The int8 input for each pixel value 0..255, exactly as the runtime quantizes.

    A table of these 256 codes gives the C library's uint8 entry point the same int8
    input that ``edgecnn.runtime`` feeds a ``.tflite`` file for the same pixels.
    """
    from edgecnn.runtime.preprocess import Quantization, pixel_table

    return [int(v) for v in pixel_table(Quantization(scale, zero_point))]
