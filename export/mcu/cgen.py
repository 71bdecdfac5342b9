"""The C99 library: an int8 ``.tflite`` file written out as code, weights and constants.

:func:`generate` turns a :class:`~edgecnn.export.mcu.graph.Graph` into
``edgecnn_model.h`` and ``edgecnn_model.c``: the weights as ``static const`` arrays (in
flash on a microcontroller), every multiplier and shift TFLite would compute when it
prepares the model, and one function per entry point that runs the layers in order
through a caller-provided work buffer. Each convolution is fused with the max-pool after
it, so its full-size output never exists: the work buffer holds two int16 patches, a
running max and each layer's output where :mod:`~edgecnn.export.mcu.arena` places it (a
convolution's output may grow into its input).

The arithmetic is ``templates/kernels.c``: TFLite's reference kernels, bit for bit.
The rest of both files is ``templates/edgecnn_model.h`` and ``templates/edgecnn_model.c``
with a ``$name`` (:class:`string.Template`) for each value computed here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

import numpy as np

from edgecnn.export.mcu import arena, quant
from edgecnn.export.mcu.graph import Graph, Layer, UnsupportedModel
from edgecnn.runtime.confidence import Confidence

HEADER = "edgecnn_model.h"
SOURCE = "edgecnn_model.c"
#: Values per line in the generated arrays.
PER_LINE = 24
#: What edgecnn_answer and edgecnn_calibrated return for a picture of none of the classes.
UNKNOWN = -1


@dataclass
class Library:
    """The generated sources and what they need at run time."""

    files: dict[str, str]
    work_bytes: int
    weight_bytes: int  # int8 weights
    bias_bytes: int  # int32 biases
    input_shape: tuple[int, int, int]
    classes: int
    #: Tensor indices of the softmax's input (logits) and output, for the gate.
    logits_tensor: int
    output_tensor: int
    details: dict[str, Any] = field(default_factory=dict)
    #: The temperature and "unknown" threshold compiled in.
    confidence: Confidence = field(default_factory=Confidence)


def c_string(text: str) -> str:
    """A C string literal of ``text``'s UTF-8 bytes, with every non-ASCII byte escaped.

    Octal escapes (never hex, which would swallow following digits); ``?`` escaped so
    that no trigraph can form.
    """
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_array(ctype: str, name: str, values: Any, comment: str = "") -> str:
    """``static const ctype name[n] = {...};`` with a comment line."""
    flat = np.asarray(values).ravel().tolist()
    suffix = "u" if ctype == "uint64_t" else ""
    lines = []
    for i in range(0, len(flat), PER_LINE):
        lines.append("    " + ", ".join(f"{int(v)}{suffix}" for v in flat[i : i + PER_LINE]))
    head = f"/* {comment} */\n" if comment else ""
    return f"{head}static const {ctype} {name}[{len(flat)}] = {{\n" + ",\n".join(lines) + "\n};\n"


def float_array(name: str, values: Any) -> str:
    """``static const float name[n] = {...};``, each value read back as the same float32."""
    flat = np.asarray(values, dtype=np.float32).ravel().tolist()
    per_line = PER_LINE // 3
    lines = [
        "    " + ", ".join(c_float(v) for v in flat[i : i + per_line])
        for i in range(0, len(flat), per_line)
    ]
    return f"static const float {name}[{len(flat)}] = {{\n" + ",\n".join(lines) + "\n};\n"


def calibration_table(logits_scale: float, temperature: float) -> np.ndarray:
    """``exp(-scale * d / T)`` for a logit ``d`` = 0..255 steps below the largest, float32.

    Calibrated probabilities are these terms over their sum: the library needs no
    ``expf`` (nor libm), and every platform computes the same numbers.
    """
    steps = np.arange(256, dtype=np.float64)
    scale = float(np.float32(logits_scale))  # as EDGECNN_LOGITS_SCALE holds it
    table: np.ndarray = np.exp(-scale * steps / temperature).astype(np.float32)
    return table


def _pad(in_size: int, out_size: int, stride: int, kernel: int) -> int:
    """TFLite's ComputePaddingHeightWidth for 'same': the padding before the first pixel."""
    return max(0, (out_size - 1) * stride + kernel - in_size) // 2


def _conv(index: int, layer: Layer, first: bool) -> tuple[str, int, int]:
    """One (convolution, max-pool) step's constants; its filter row and channel count.

    The filter is laid out for the kernels' pairs of channels (templates/kernels.c,
    ``ec_conv``): rows padded with zeros to a multiple of 4, channels to an even count,
    then for each group of 4 values the group of channel c and that of channel c + 1.
    """
    x, y, w, b = layer.input, layer.output, layer.weights, layer.bias
    assert w is not None and b is not None and w.data is not None and b.data is not None
    assert x.quant is not None and y.quant is not None and w.quant is not None
    geo = conv_geometry(layer)
    in_c, out_c, k_h, k_w = geo.in_c, geo.out_c, geo.k_h, geo.k_w
    scales = np.broadcast_to(w.quant.scales, (out_c,))
    multipliers, shifts = quant.per_channel_multipliers(x.quant.scale, scales, y.quant.scale)
    conv_range = quant.activation_range(layer.activation, y.quant.scale, y.quant.zero_point)
    pool_range = (quant.INT8_MIN, quant.INT8_MAX)
    if layer.pool:
        out = layer.pool["output"]
        assert out.quant is not None
        pool_range = quant.activation_range(
            layer.pool["activation"], out.quant.scale, out.quant.zero_point
        )
    low, high = nested_clamp(conv_range, pool_range)
    row = -(-(k_h * k_w * in_c) // 4) * 4
    p = f"l{index}"
    # Filled value by value (the pixel table, or channels that are not groups of 4).
    by_value = first or in_c % 4 != 0
    values = {
        "filter": f"{p}_filter", "bias": f"{p}_bias", "multiplier": f"{p}_multiplier",
        "shift": f"{p}_shift", "taps": f"{p}_taps" if by_value else "NULL",
        "slots": f"{p}_slots" if by_value else "NULL", "in_h": geo.in_h, "in_w": geo.in_w,
        "in_c": in_c, "out_c": out_c, "k_h": k_h, "k_w": k_w, "stride_h": geo.stride_h,
        "stride_w": geo.stride_w, "pad_h": geo.pad_h, "pad_w": geo.pad_w,
        "pool_h": geo.pool_h, "pool_w": geo.pool_w, "pool_stride_h": geo.pool_stride_h,
        "pool_stride_w": geo.pool_stride_w, "out_h": geo.out_h, "out_w": geo.out_w,
        "row": row, "in_offset": -x.quant.zero_point, "out_offset": y.quant.zero_point,
        "low": low, "high": high,
    }  # fmt: skip
    consts = "".join([
        c_array("int8_t", f"{p}_filter", paired_filter(w.data, row),
                f"layer {index}: conv {k_h}x{k_w}x{in_c} -> {out_c}, int8 weights in "
                "pairs of channels"),
        c_array("int32_t", f"{p}_bias", np.pad(b.data, (0, out_c % 2))),
        c_array("int32_t", f"{p}_multiplier", multipliers),
        c_array("int8_t", f"{p}_shift", shifts),
        _taps(p, geo.in_w, in_c, k_h, k_w, row) if by_value else "",
        c_struct("ec_conv", p, values),
    ])  # fmt: skip
    return consts, row, out_c


def _taps(p: str, in_w: int, in_c: int, k_h: int, k_w: int, row: int) -> str:
    """The taps and slots of a patch filled value by value.

    A tap is where a value of a filter row is in the input, from the patch's top-left
    value; a slot where it goes in the patch (``EC_SLOT``: the DSP path orders each group
    of 4 as SXTB16 unpacks the weights).
    """
    ky, kx, c = np.meshgrid(np.arange(k_h), np.arange(k_w), np.arange(in_c), indexing="ij")
    taps = ((ky * in_w + kx) * in_c + c).ravel()
    if taps.max(initial=0) >= 2**15 or 2 * row >= 2**16:
        raise UnsupportedModel("a convolution's filter spans more input than the C code reads")
    slots = ",\n".join(
        "    " + ", ".join(f"EC_SLOT({i})" for i in range(start, min(start + 8, row)))
        for start in range(0, row, 8)
    )
    return c_array("int16_t", f"{p}_taps", taps) + (
        f"static const uint16_t {p}_slots[{row}] = {{\n{slots}\n}};\n"
    )


def paired_filter(weights: np.ndarray, row: int) -> np.ndarray:
    """OHWI int8 weights in the layout of ``ec_conv``'s filter (see :func:`_conv`)."""
    out_c = weights.shape[0]
    rows = np.zeros((out_c + out_c % 2, row), dtype=np.int8)
    rows[:out_c, : weights[0].size] = weights.reshape(out_c, -1)
    # (pairs, 2, groups, 4) -> (pairs, groups, 2, 4): each group of channel c, then c + 1.
    pairs: np.ndarray = rows.reshape(-1, 2, row // 4, 4).transpose(0, 2, 1, 3)
    return pairs.reshape(-1)


def nested_clamp(first: tuple[int, int], second: tuple[int, int]) -> tuple[int, int]:
    """One range that clamps as clamping into ``first`` and then into ``second`` does."""
    low, high = max(first[0], second[0]), min(first[1], second[1])
    if low <= high:
        return low, high
    # Disjoint: every value ends at the bound of second nearest to first.
    end = second[0] if first[1] < second[0] else second[1]
    return end, end


def c_struct(ctype: str, name: str, values: dict[str, Any]) -> str:
    """``static const ctype name = {.field = value, ...};`` (C99 designated initializers)."""
    fields = ",\n".join(f"    .{field} = {value}" for field, value in values.items())
    return f"static const {ctype} {name} = {{\n{fields}\n}};\n"


def _dense(index: int, layer: Layer) -> str:
    """A fully connected layer's constants; its bias holds the input offset's part."""
    x, y, w, b = layer.input, layer.output, layer.weights, layer.bias
    assert w is not None and b is not None and w.data is not None and b.data is not None
    assert x.quant is not None and y.quant is not None and w.quant is not None
    out_n, in_n = w.shape
    scales = np.broadcast_to(w.quant.scales, (out_n,))
    parts = [quant.double_parts(s) for s in quant.effective_scales(x.quant.scale, scales,
                                                                    y.quant.scale)]  # fmt: skip
    low, high = quant.activation_range(layer.activation, y.quant.scale, y.quant.zero_point)
    p = f"l{index}"
    values = {
        "weights": f"{p}_weights", "bias": f"{p}_bias", "mantissa": f"{p}_mantissa",
        "exponent": f"{p}_exponent", "in_n": in_n, "out_n": out_n,
        "out_offset": y.quant.zero_point, "low": low, "high": high,
    }  # fmt: skip
    bias = folded_bias(b.data, w.data, -x.quant.zero_point)
    return "".join([
        c_array("int8_t", f"{p}_weights", blocked_weights(w.data),
                f"layer {index}: fully connected {in_n} -> {out_n}, int8 weights in "
                "blocks of 4 rows"),
        c_array("int32_t", f"{p}_bias", np.pad(bias, (0, -out_n % 4)),
                "the bias plus the input offset times each row's sum of weights"),
        c_array("uint64_t", f"{p}_mantissa", [m for m, _ in parts]),
        c_array("int16_t", f"{p}_exponent", [e for _, e in parts]),
        c_struct("ec_fc", p, values),
    ])  # fmt: skip


def blocked_weights(weights: np.ndarray) -> np.ndarray:
    """[out][in] int8 weights in the layout of ``ec_fc`` (templates/kernels.c).

    Rows padded with zeros to a multiple of 4 inputs, their count to a multiple of 4;
    then for each block of 4 rows and each group of 4 inputs, the group of each row.
    """
    out_n, in_n = weights.shape
    padded = np.zeros((out_n + -out_n % 4, in_n + -in_n % 4), dtype=np.int8)
    padded[:out_n, :in_n] = weights
    blocks: np.ndarray = padded.reshape(-1, 4, padded.shape[1] // 4, 4).transpose(0, 2, 1, 3)
    return blocks.reshape(-1)


def folded_bias(bias: np.ndarray, weights: np.ndarray, offset: int) -> np.ndarray:
    """``bias + offset * sum(row)`` per output: the part of each sum the input offset adds.

    Raises:
        UnsupportedModel: a value outside int32 (no int8 network of ours comes near).
    """
    folded: np.ndarray = bias.astype(np.int64) + offset * weights.astype(np.int64).sum(axis=1)
    if np.abs(folded).max(initial=0) >= 2**31 - 2**24:
        raise UnsupportedModel("a fully connected layer's sums would overflow int32")
    return folded.astype(np.int32)


def _size(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape[1:]))


def generate(graph: Graph, model_sha256: str, version: str, labels: tuple[str, ...],
             light_on_dark: bool, confidence: Confidence | None = None) -> Library:  # fmt: skip
    """``edgecnn_model.h`` and ``edgecnn_model.c`` for ``graph``.

    Both are ``templates/`` files of the same names, with ``$name`` for each value
    computed here. ``confidence`` is the library's own temperature and "unknown"
    threshold (None: temperature 1, nothing rejected).

    Raises:
        UnsupportedModel: a network this generator cannot write.
    """
    classes = _check(graph, labels)
    layers = graph.layers
    steps = _arena_steps(graph)
    offsets, arena_bytes = arena.place(steps)
    constants, calls, row, channels, twin = _steps(graph, classes, offsets)
    # Two patches of int16 and the running max of one pooled output's channels (of two
    # when a pool window holds an odd number of positions: a pair of positions then
    # spans two), aligned to 4 inside the caller's buffer (3 bytes of slack); then the
    # layers' outputs, each where arena.place put it.
    best_values = channels * (2 if twin else 1)
    scratch = 4 * row + 4 * best_values
    work = 3 + scratch + arena_bytes
    ids = {"version": version, "model_sha256": model_sha256}
    confidence = confidence or Confidence()
    header = _template(HEADER).substitute(
        ids,
        **_header_values(graph, work, light_on_dark),
        temperature=c_float(confidence.temperature),
        reject_below=c_float(confidence.reject_below or 0.0),
        unknown=UNKNOWN,
    )
    q_logits = graph.layers[-1].input.quant
    assert q_logits is not None
    source = _template(SOURCE).substitute(
        ids,
        calibration=float_array(
            "ec_calibration", calibration_table(q_logits.scale, confidence.temperature)
        ),
        kernels=_text("kernels.c"),
        preprocess=_text("preprocess.c"),
        labels=",\n".join(f"    {c_string(label)}" for label in labels),
        pixel_codes=_pixel_codes(graph),
        layers=constants,
        patch_values=2 * row,
        best_values=best_values,
        calls=calls,
        logits=f"arena + {offsets[-1]}",
    )
    _, height, width, channels = graph.input.shape
    return Library(
        files={HEADER: header, SOURCE: source},
        work_bytes=work,
        weight_bytes=sum(int(layer.weights.data.size) for layer in layers
                         if layer.weights is not None and layer.weights.data is not None),
        bias_bytes=sum(4 * int(layer.bias.data.size) for layer in layers
                       if layer.bias is not None and layer.bias.data is not None),
        input_shape=(height, width, channels),
        classes=classes,
        logits_tensor=layers[-1].input.index,
        output_tensor=graph.output.index,
        details={"offsets": offsets, "arena": arena_bytes, "scratch": scratch,
                 "layers": len(layers)},
        confidence=confidence,
    )  # fmt: skip


def _check(graph: Graph, labels: tuple[str, ...]) -> int:
    """The number of classes, once ``graph`` is known to be a network this generator writes.

    Raises:
        UnsupportedModel: it is not, or ``labels`` are not one per class.
    """
    layers = graph.layers
    if layers[0].kind != "conv":
        raise UnsupportedModel("the C generator needs a network that starts with CONV_2D")
    x, out = graph.input, graph.output
    assert x.quant is not None and out.quant is not None
    if len(x.shape) != 4:
        raise UnsupportedModel(f"the model's input has shape {x.shape}; expected (N, H, W, C)")
    if _size(layers[-1].input.shape) != layers[-1].input.shape[-1]:
        raise UnsupportedModel("the softmax must take one row of scores per image")
    classes = _size(out.shape)
    if len(labels) != classes:
        raise UnsupportedModel(f"{len(labels)} labels for a model of {classes} classes")
    assert layers[-1].input.quant is not None
    if abs(out.quant.scale - 1 / 256) > 1e-3 / 256 or out.quant.zero_point != -128:
        raise UnsupportedModel("the softmax output is not int8 with scale 1/256, zero point -128")
    return classes


def _arena_steps(graph: Graph) -> list[arena.Step]:
    """Each layer's output (softmax's aside, which goes to the caller) for arena.place."""
    steps = []
    for i, layer in enumerate(graph.layers[:-1]):
        below = None
        if layer.kind == "conv" and i > 0:
            below = arena.in_place_distance(conv_geometry(layer))
        steps.append(arena.Step(_size(layer.result.shape), below))
    return steps


def conv_geometry(layer: Layer) -> arena.Conv:
    """A convolution's and its pool's geometry (a pool of 1 when there is none).

    The padding is what TFLite computes for 'same'.
    """
    _, in_h, in_w, in_c = layer.input.shape
    _, conv_h, conv_w, _ = layer.output.shape
    _, out_h, out_w, out_c = layer.result.shape
    assert layer.weights is not None
    k_h, k_w = layer.weights.shape[1], layer.weights.shape[2]
    stride_h, stride_w = layer.options["stride"]
    pad_h = pad_w = 0
    if layer.options["padding"] == "same":
        pad_h, pad_w = _pad(in_h, conv_h, stride_h, k_h), _pad(in_w, conv_w, stride_w, k_w)
    (pool_h, pool_w), (pool_sh, pool_sw) = (1, 1), (1, 1)
    if layer.pool:
        (pool_h, pool_w), (pool_sh, pool_sw) = layer.pool["filter"], layer.pool["stride"]
    return arena.Conv(in_h, in_w, in_c, k_h, k_w, stride_h, stride_w, pad_h, pad_w, pool_h,
                      pool_w, pool_sh, pool_sw, out_h, out_w, out_c)  # fmt: skip


def _steps(graph: Graph, classes: int, offsets: list[int]) -> tuple[str, str, int, int, bool]:
    """Every layer's constants and calls, and the scratch sizes.

    The scratch sizes: the longest filter row and the most channels (even) of any
    convolution, and whether a pool window holds an odd number of positions. Layer i
    writes ``arena + offsets[i]`` and reads the previous layer's output (the first, the
    input, through the pixel table when it is given). After each layer comes
    ``EC_LAYER_DONE(i)``, the includer's ``EDGECNN_LAYER_DONE`` hook.
    """
    constants, calls = [], []
    source, lut = "input", "table"
    row = channels = 0
    twin = False
    for i, layer in enumerate(graph.layers[:-1]):
        dest = f"arena + {offsets[i]}"
        if layer.kind == "conv":
            c, conv_row, out_c = _conv(i, layer, first=i == 0)
            row, channels = max(row, conv_row), max(channels, out_c + out_c % 2)
            window = layer.pool["filter"][0] * layer.pool["filter"][1] if layer.pool else 1
            twin = twin or window % 2 == 1
            calls.append(f"    ec_conv_pool(&l{i}, {source}, {lut}, patch, best, {dest});\n")
        else:
            c = _dense(i, layer)
            calls.append(f"    ec_dense(&l{i}, {source}, {dest});\n")
        calls.append(f"    EC_LAYER_DONE({i});\n")
        constants.append(c)
        source, lut = dest, "NULL"
    softmax = graph.layers[-1]
    assert softmax.input.quant is not None
    multiplier, left_shift, diff_min = quant.softmax_params(
        softmax.options["beta"], softmax.input.quant.scale
    )
    calls.append(
        f"    ec_softmax({source}, {classes}, {multiplier}, {left_shift}, {diff_min}, scores);\n"
        f"    EC_LAYER_DONE({len(graph.layers) - 1});"
    )
    return "".join(constants), "".join(calls), row, channels, twin


def _pixel_codes(graph: Graph) -> str:
    """The table from a uint8 pixel to the model's int8 input."""
    x = graph.input
    assert x.quant is not None
    codes = quant.quantize_pixels(x.quant.scale, x.quant.zero_point)
    comment = "the int8 input of each pixel value, as edgecnn.runtime quantizes it"
    return c_array("int8_t", "ec_pixel_codes", codes, comment)


def _header_values(graph: Graph, work: int, light_on_dark: bool) -> dict[str, Any]:
    """The header's macros: the input's shape, the classes, the work buffer, the quantization."""
    _, height, width, channels = graph.input.shape
    q_in, q_out, q_logits = graph.input.quant, graph.output.quant, graph.layers[-1].input.quant
    assert q_in is not None and q_out is not None and q_logits is not None
    return {
        "height": height,
        "width": width,
        "channels": channels,
        "input_size": height * width * channels,
        "classes": _size(graph.output.shape),
        "light_on_dark": 1 if light_on_dark else 0,
        "work_bytes": work,
        "input_scale": c_float(q_in.scale),
        "input_zero_point": q_in.zero_point,
        "output_scale": c_float(q_out.scale),
        "output_zero_point": q_out.zero_point,
        "logits_scale": c_float(q_logits.scale),
        "logits_zero_point": q_logits.zero_point,
    }


def c_float(value: float) -> str:
    """A float32 as a C float literal that reads back to the same float32."""
    digits = f"{float(np.float32(value)):.9g}"
    # "1f" is not C: a literal with neither a point nor an exponent needs its point.
    return f"{digits}{'' if '.' in digits or 'e' in digits else '.0'}f"


def _text(name: str) -> str:
    """A file of ``templates/``."""
    return resources.files("edgecnn.export.mcu").joinpath(f"templates/{name}").read_text()


def _template(name: str) -> Template:
    """A ``templates/`` file with ``$name`` where each computed value goes."""
    return Template(_text(name))


def sha256(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


CHECK_PROGRAM = """/* check/main.c: does the library give, on this target, the scores it gave
 * where it was exported? Build it with the library and run it on the device (or an emulator):
 *
 *     cc -std=c99 -O2 -I.. ../edgecnn_model.c main.c -o check && ./check
 *
 * It classifies the images in test_vectors.h and compares every int8 score, byte for
 * byte, with the exporting machine's; it prints one line and returns 0 when all match.
 * printf is the only thing it needs from the C library.
 */
#include <stdio.h>
#include <string.h>

#include "edgecnn_model.h"
#include "test_vectors.h"

#ifndef EDGECNN_CHECK_BEGIN /* hooks for a board's own measurements, around image 0 */
#define EDGECNN_CHECK_BEGIN()
#define EDGECNN_CHECK_END()
#endif

static uint8_t work[EDGECNN_WORK_BYTES];

int main(void)
{
    int8_t scores[EDGECNN_NUM_CLASSES];
    int i, best, mismatches = 0, correct = 0;
    for (i = 0; i < EDGECNN_TEST_COUNT; ++i) {
        if (i == 0) {
            EDGECNN_CHECK_BEGIN();
        }
        best = edgecnn_classify(edgecnn_test_images[i], work, scores);
        if (i == 0) {
            EDGECNN_CHECK_END();
        }
        if (memcmp(scores, edgecnn_test_scores[i], sizeof scores) != 0) {
            if (mismatches < 5) {
                printf("image %d: scores differ from the exporting machine's\\n", i);
            }
            ++mismatches;
        }
        correct += best == edgecnn_test_labels[i];
    }
    printf("edgecnn check: %d of %d test images give the expected scores; %d classified "
           "correctly\\n", EDGECNN_TEST_COUNT - mismatches, EDGECNN_TEST_COUNT, correct);
    return mismatches != 0;
}
"""


def test_vectors(images: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> str:
    """``test_vectors.h``: uint8 images, the int8 scores expected for them, true classes."""
    count = len(images)
    flat = images.reshape(count, -1)
    rows_images = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in flat)
    rows_scores = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in scores)
    return f"""/* test_vectors.h: {count} test images, the int8 scores the exporting
 * machine's build of the library gave for them (identical to TFLite's reference
 * kernels), and their classes. Generated by edgecnn; included by main.c only. */
#ifndef EDGECNN_TEST_VECTORS_H
#define EDGECNN_TEST_VECTORS_H

#include <stdint.h>

#include "edgecnn_model.h"

#define EDGECNN_TEST_COUNT {count}

static const uint8_t edgecnn_test_images[EDGECNN_TEST_COUNT][EDGECNN_INPUT_SIZE] = {{
{rows_images}
}};

static const int8_t edgecnn_test_scores[EDGECNN_TEST_COUNT][EDGECNN_NUM_CLASSES] = {{
{rows_scores}
}};

static const uint8_t edgecnn_test_labels[EDGECNN_TEST_COUNT] = {{
    {", ".join(str(int(v)) for v in labels)}
}};

#endif
"""


def metadata_source(metadata_json: str) -> str:
    """``edgecnn_metadata.c``: the model's metadata, compiled into the host library only.

    A byte array rather than a string literal: C99 compilers need only accept 4,095
    characters in a literal, and the metadata of a model of many classes is longer.
    """
    data = metadata_json.encode("utf-8") + b"\0"
    return (
        "/* The model's edgecnn metadata (JSON), for edgecnn.runtime's C backend. */\n"
        + c_array("unsigned char", "edgecnn_metadata_bytes", list(data)).replace(
            "static const", "const"
        )
        + "const char *const edgecnn_metadata_json = (const char *)edgecnn_metadata_bytes;\n"
    )
