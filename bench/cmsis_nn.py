"""Arm's CMSIS-NN running the network of an int8 ``.tflite`` file, for ``bench/mcu.py``.

:func:`driver` writes the C a careful CMSIS-NN user would write for the file:
``arm_convolve_wrapper_s8``, ``arm_max_pool_s8``, ``arm_fully_connected_per_channel_s8``
and ``arm_softmax_s8`` called in order on one arena, with the file's weights and biases
and the multipliers, shifts and clamps TFLite computes when it prepares the file (the
numbers edgecnn's generated library holds, from :mod:`edgecnn.export.mcu.quant`).
:func:`build_check` compiles it with CMSIS-NN's kernels and ``bench/cmsis_nn/main.c`` for
QEMU's Cortex-M4 board; :func:`check_program` and :func:`test_vectors` write the same
program for edgecnn's library. The C lives in ``bench/cmsis_nn/`` as templates.

CMSIS-NN itself is never copied into this repository: :func:`source_dir` takes a
checkout the user names, or fetches the pinned commit into the user's cache.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import numpy as np

from edgecnn.export.mcu import cgen, quant, toolchain
from edgecnn.export.mcu.graph import Graph, Layer

REPOSITORY = "https://github.com/ARM-software/CMSIS-NN"
#: The commit measured beside edgecnn (docs/benchmarks.md, "Against CMSIS-NN").
COMMIT = "99f736a63036613032f9b70de36b493bcd7802d4"
CACHE = Path.home() / ".cache" / "edgecnn" / "cmsis-nn"
TEMPLATES = Path(__file__).resolve().parent / "cmsis_nn"
#: Makes the board's measure.h time each layer (edgecnn) or step (the driver).
MEASURE_LAYERS = "-DEDGECNN_MEASURE_LAYERS"
#: The kernel folders the driver draws on; float and 4-bit variants are left out.
FOLDERS = ("ConvolutionFunctions", "PoolingFunctions", "FullyConnectedFunctions",
           "SoftmaxFunctions", "NNSupportFunctions")  # fmt: skip
SKIPPED = re.compile(r"_(f16|f32|flt)\b|_s4")
DRIVER = "cmsis_nn_model"


class SourceMissing(Exception):
    """No CMSIS-NN checkout, and none could be fetched."""


def source_dir(given: str | None) -> Path:
    """CMSIS-NN's source: ``given``, else ``$CMSIS_NN_DIR``, else the pinned commit, cached.

    Raises:
        SourceMissing: the folder named holds no CMSIS-NN, or fetching it failed.
    """
    named = given or os.environ.get("CMSIS_NN_DIR")
    folder = Path(named).expanduser() if named else CACHE
    if (folder / "Include" / "arm_nnfunctions.h").is_file():
        return folder
    if named:
        raise SourceMissing(f"{folder} holds no CMSIS-NN (no Include/arm_nnfunctions.h)")
    if shutil.which("git") is None:
        raise SourceMissing("git is not installed: pass --cmsis-nn DIR, a CMSIS-NN checkout")
    print(f"fetching {REPOSITORY} at {COMMIT[:8]} into {folder} ...", flush=True)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:  # the one commit, not the history
        toolchain.run(["git", "init", "--quiet", str(partial)], "git init")
        toolchain.run(["git", "-C", str(partial), "fetch", "--quiet", "--depth", "1", REPOSITORY,
                       COMMIT], f"fetching {REPOSITORY}", timeout=900)  # fmt: skip
        toolchain.run(["git", "-C", str(partial), "checkout", "--quiet", "FETCH_HEAD"],
                      "git checkout")  # fmt: skip
    except toolchain.ToolchainError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise SourceMissing(f"{e} (pass --cmsis-nn DIR, a CMSIS-NN checkout)") from None
    shutil.rmtree(folder, ignore_errors=True)  # a damaged earlier copy
    partial.rename(folder)
    return folder


def library_sources(source: Path) -> list[Path]:
    """The C files of CMSIS-NN's int8 kernels and what they call."""
    return sorted(
        path
        for folder in FOLDERS
        for path in (source / "Source" / folder).glob("*.c")
        if not SKIPPED.search(path.stem)
    )


# ---- the driver ------------------------------------------------------------------------


@dataclass
class Step:
    """One kernel call: what it computes, the graph layer it belongs to, its buffers."""

    kind: str  # "input", "conv", "pool", "fc" or "softmax"
    layer: int  # index into graph.layers; -1 for the input's quantization
    out_bytes: int  # its int8 output (0: the caller's scores)
    scratch: int = 0  # the extra buffer CMSIS-NN asks for
    #: Filled by :func:`_plan`: where its output and its extra buffer go in the arena.
    out_at: int = 0
    scratch_at: int = 0


@dataclass
class Driver:
    """The generated driver, and where each step's output lives in its arena."""

    files: dict[str, str]
    steps: list[Step]
    arena_bytes: int
    #: (graph layer, arena offset, bytes) of the layer outputs still in the arena after
    #: an inference, to compare with the reference kernels'.
    kept: list[tuple[int, int, int]] = field(default_factory=list)


def _align(n: int) -> int:
    return (n + 3) // 4 * 4


def _conv_scratch(layer: Layer) -> int:
    """``arm_convolve_s8_get_buffer_size`` without Helium: two int16 im2col columns."""
    assert layer.weights is not None
    _, k_h, k_w, in_c = layer.weights.shape
    return 2 * _align(k_h * k_w * in_c) * 2


def steps_of(g: Graph) -> list[Step]:
    """The kernel calls that run ``g``: the input's quantization, then one or two per layer."""
    steps = [Step("input", -1, _bytes(g.input.shape))]
    for i, layer in enumerate(g.layers):
        if layer.kind == "conv":
            steps.append(Step("conv", i, _bytes(layer.output.shape), _conv_scratch(layer)))
            if layer.pool:
                steps.append(Step("pool", i, _bytes(layer.pool["output"].shape)))
        else:
            size = 0 if layer.kind == "softmax" else _bytes(layer.output.shape)
            steps.append(Step(layer.kind, i, size))
    return steps


def _bytes(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[1:]))


def _plan(steps: list[Step]) -> int:
    """Place every output and extra buffer in a two-region arena; its size in bytes.

    Step i writes into region i % 2 and reads region (i - 1) % 2, so a region is as large
    as the largest output it ever holds. An extra buffer goes into the free tail of either
    region when it fits there, else into a third area after both.
    """
    regions = [max((s.out_bytes for s in steps[r::2]), default=0) for r in (0, 1)]
    starts = [0, _align(regions[0])]
    end = starts[1] + regions[1]
    extra = 0
    for i, step in enumerate(steps):
        step.out_at = starts[i % 2]
        if not step.scratch:
            continue
        used = {i % 2: step.out_bytes, (i - 1) % 2: steps[i - 1].out_bytes if i else 0}
        for r, taken in used.items():
            at = starts[r] + _align(taken)
            if at + step.scratch <= starts[r] + regions[r]:
                step.scratch_at = at
                break
        else:
            step.scratch_at = -1
            extra = max(extra, step.scratch)
    for step in steps:
        if step.scratch_at == -1:
            step.scratch_at = _align(end)
    return _align(end) + extra if extra else end


def driver(g: Graph, model_sha256: str) -> Driver:
    """``cmsis_nn_model.c`` and ``.h``: ``g`` on CMSIS-NN, arena planned by :func:`_plan`."""
    steps = steps_of(g)
    arena = _plan(steps)
    constants, prepare, calls = [], [], []
    for i, step in enumerate(steps):
        source = steps[i - 1].out_at if i else 0
        c, p, call = _STEP_CODE[step.kind](i, step, g, source)
        constants.append(c)
        prepare.append(p)
        calls.append(f"{call}    CMSIS_NN_STEP_DONE({i});\n")
    x = g.input
    assert x.quant is not None
    codes = cgen.c_array("int8_t", "cmsis_nn_pixel_codes",
                         quant.quantize_pixels(x.quant.scale, x.quant.zero_point),
                         "the int8 input of each pixel value, as edgecnn.runtime "
                         "quantizes it")  # fmt: skip
    values = {
        "model_sha256": model_sha256, "input_size": _bytes(x.shape),
        "classes": _bytes(g.output.shape), "arena_bytes": arena, "plan": _plan_comment(steps, g),
        "pixel_codes": codes, "constants": "".join(constants),
        "prepare": "".join(prepare), "steps": "".join(calls),
    }  # fmt: skip
    files = {f"{DRIVER}{suffix}": _template(f"{DRIVER}{suffix}").substitute(values)
             for suffix in (".c", ".h")}  # fmt: skip
    return Driver(files, steps, arena, _kept(steps, g))


def _kept(steps: list[Step], g: Graph) -> list[tuple[int, int, int]]:
    """The layer outputs the arena still holds after an inference: each region's last."""
    kept = []
    for r in (0, 1):
        writers = [s for s in steps[r::2] if s.out_bytes]
        last = writers[-1] if writers else None
        if last and last.layer >= 0 and not (last.kind == "conv" and g.layers[last.layer].pool):
            kept.append((last.layer, last.out_at, last.out_bytes))
    return sorted(kept)


def _plan_comment(steps: list[Step], g: Graph) -> str:
    lines = []
    for i, s in enumerate(steps):
        what = f" * step {i}: {describe_step(s, g)} -> "
        what += f"arena[{s.out_at}..+{s.out_bytes}]" if s.out_bytes else "the caller's scores"
        if s.scratch:
            what += f", buffer arena[{s.scratch_at}..+{s.scratch}]"
        lines.append(what)
    return "\n".join(lines)


def describe_step(step: Step, g: Graph) -> str:
    """A step in a few words: ``conv 5x5x1 -> 16``, ``max-pool 2x2``, ``dense 392 -> 32``."""
    if step.kind == "input":
        return "input pixels -> int8"
    layer = g.layers[step.layer]
    if step.kind == "conv":
        assert layer.weights is not None
        out_c, k_h, k_w, in_c = layer.weights.shape
        return f"conv {k_h}x{k_w}x{in_c} -> {out_c}"
    if step.kind == "pool":
        assert layer.pool is not None
        return "max-pool {}x{}".format(*layer.pool["filter"])
    if step.kind == "fc":
        assert layer.weights is not None
        return f"dense {layer.weights.shape[1]} -> {layer.weights.shape[0]}"
    return "softmax"


def _dims(name: str, n: int, h: int, w: int, c: int) -> str:
    return f"static const cmsis_nn_dims {name} = {{{n}, {h}, {w}, {c}}};\n"


def _input_code(i: int, step: Step, g: Graph, source: int) -> tuple[str, str, str]:
    call = (
        f"    for (i = 0; i < CMSIS_NN_MODEL_INPUT_SIZE; ++i) {{\n"
        f"        base[{step.out_at} + i] = cmsis_nn_pixel_codes[pixels[i]];\n"
        f"    }}\n"
    )
    return "", "", call


def _conv_code(i: int, step: Step, g: Graph, source: int) -> tuple[str, str, str]:
    """``arm_convolve_wrapper_s8`` with per-channel multipliers, TFLite's 'same' padding."""
    layer = g.layers[step.layer]
    x, y, w, b = layer.input, layer.output, layer.weights, layer.bias
    assert w is not None and b is not None and w.data is not None and b.data is not None
    assert x.quant is not None and y.quant is not None and w.quant is not None
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = y.shape
    k_h, k_w = w.shape[1], w.shape[2]
    stride_h, stride_w = layer.options["stride"]
    geometry = cgen.conv_geometry(layer)  # TFLite's 'same' padding, as the C library's
    pad_h, pad_w = geometry.pad_h, geometry.pad_w
    multipliers, shifts = quant.per_channel_multipliers(
        x.quant.scale, np.broadcast_to(w.quant.scales, (out_c,)), y.quant.scale
    )
    low, high = quant.activation_range(layer.activation, y.quant.scale, y.quant.zero_point)
    p = f"s{i}"
    constants = "".join([
        cgen.c_array("int8_t", f"{p}_filter", w.data,
                     f"step {i}: conv {k_h}x{k_w}x{in_c} -> {out_c}, OHWI int8 weights"),
        cgen.c_array("int32_t", f"{p}_bias", b.data),
        cgen.c_array("int32_t", f"{p}_multiplier", multipliers),
        cgen.c_array("int32_t", f"{p}_shift", shifts),
        f"static const cmsis_nn_conv_params {p}_params = {{{-x.quant.zero_point}, "
        f"{y.quant.zero_point}, {{{stride_w}, {stride_h}}}, {{{pad_w}, {pad_h}}}, {{1, 1}}, "
        f"{{{low}, {high}}}}};\n",
        f"static const cmsis_nn_per_channel_quant_params {p}_quant = {{\n"
        f"    (int32_t *){p}_multiplier, (int32_t *){p}_shift}};\n",
        _dims(f"{p}_in", 1, in_h, in_w, in_c), _dims(f"{p}_filter_dims", out_c, k_h, k_w, in_c),
        _dims(f"{p}_bias_dims", 1, 1, 1, out_c), _dims(f"{p}_out", 1, out_h, out_w, out_c),
    ])  # fmt: skip
    prepare = (
        f"    if (arm_convolve_wrapper_s8_get_buffer_size(&{p}_params, &{p}_in, "
        f"&{p}_filter_dims,\n                                                &{p}_out) > "
        f"{step.scratch}) {{\n        return -{i};\n    }}\n"
    )
    call = (
        f"    {{\n        const cmsis_nn_context ctx = "
        f"{{base + {step.scratch_at}, {step.scratch}}};\n"
        f"        if (arm_convolve_wrapper_s8(&ctx, &{p}_params, &{p}_quant, &{p}_in, "
        f"base + {source},\n                                    &{p}_filter_dims, {p}_filter, "
        f"&{p}_bias_dims, {p}_bias, &{p}_out,\n"
        f"                                    base + {step.out_at}) != ARM_CMSIS_NN_SUCCESS) {{\n"
        f"            return -{i + 1};\n        }}\n    }}\n"
    )
    return constants, prepare, call


def _pool_code(i: int, step: Step, g: Graph, source: int) -> tuple[str, str, str]:
    """``arm_max_pool_s8`` with the pool's fused activation (ReLU, as the file has it)."""
    layer = g.layers[step.layer]
    pool = layer.pool
    assert pool is not None
    (f_h, f_w), (s_h, s_w) = pool["filter"], pool["stride"]
    out = pool["output"]
    assert out.quant is not None
    _, in_h, in_w, c = layer.output.shape
    _, out_h, out_w, _ = out.shape
    low, high = quant.activation_range(pool["activation"], out.quant.scale, out.quant.zero_point)
    p = f"s{i}"
    constants = "".join([
        f"/* step {i}: max-pool {f_h}x{f_w}, stride {s_h}x{s_w} */\n",
        f"static const cmsis_nn_pool_params {p}_params = {{{{{s_w}, {s_h}}}, {{0, 0}}, "
        f"{{{low}, {high}}}}};\n",
        _dims(f"{p}_in", 1, in_h, in_w, c), _dims(f"{p}_filter_dims", 1, f_h, f_w, 1),
        _dims(f"{p}_out", 1, out_h, out_w, c),
    ])  # fmt: skip
    call = (
        f"    {{\n        const cmsis_nn_context ctx = {{NULL, 0}};\n"
        f"        if (arm_max_pool_s8(&ctx, &{p}_params, &{p}_in, base + {source}, "
        f"&{p}_filter_dims, &{p}_out,\n"
        f"                            base + {step.out_at}) != ARM_CMSIS_NN_SUCCESS) {{\n"
        f"            return -{i + 1};\n        }}\n    }}\n"
    )
    return constants, "", call


def _fc_code(i: int, step: Step, g: Graph, source: int) -> tuple[str, str, str]:
    """``arm_fully_connected_per_channel_s8``: per-channel Q31 multipliers, as TFLM's."""
    layer = g.layers[step.layer]
    x, y, w, b = layer.input, layer.output, layer.weights, layer.bias
    assert w is not None and b is not None and w.data is not None and b.data is not None
    assert x.quant is not None and y.quant is not None and w.quant is not None
    out_n, in_n = w.shape
    multipliers, shifts = quant.per_channel_multipliers(
        x.quant.scale, np.broadcast_to(w.quant.scales, (out_n,)), y.quant.scale
    )
    low, high = quant.activation_range(layer.activation, y.quant.scale, y.quant.zero_point)
    p = f"s{i}"
    constants = "".join([
        cgen.c_array("int8_t", f"{p}_weights", w.data,
                     f"step {i}: fully connected {in_n} -> {out_n}, [out][in] int8 weights"),
        cgen.c_array("int32_t", f"{p}_bias", b.data),
        cgen.c_array("int32_t", f"{p}_multiplier", multipliers),
        cgen.c_array("int32_t", f"{p}_shift", shifts),
        f"static const cmsis_nn_fc_params {p}_params = {{{-x.quant.zero_point}, 0, "
        f"{y.quant.zero_point}, {{{low}, {high}}}}};\n",
        f"static const cmsis_nn_per_channel_quant_params {p}_quant = {{\n"
        f"    (int32_t *){p}_multiplier, (int32_t *){p}_shift}};\n",
        _dims(f"{p}_in", 1, 1, 1, in_n), _dims(f"{p}_filter_dims", in_n, 1, 1, out_n),
        _dims(f"{p}_bias_dims", 1, 1, 1, out_n), _dims(f"{p}_out", 1, 1, 1, out_n),
    ])  # fmt: skip
    prepare = (
        f"    if (arm_fully_connected_s8_get_buffer_size(&{p}_filter_dims) > 0) {{\n"
        f"        return -{i};\n    }}\n"
    )
    call = (
        f"    {{\n        const cmsis_nn_context ctx = {{NULL, 0}};\n"
        f"        if (arm_fully_connected_per_channel_s8(&ctx, &{p}_params, &{p}_quant, &{p}_in, "
        f"base + {source},\n                                               &{p}_filter_dims, "
        f"{p}_weights, &{p}_bias_dims, {p}_bias,\n"
        f"                                               &{p}_out, base + {step.out_at}) != "
        f"ARM_CMSIS_NN_SUCCESS) {{\n            return -{i + 1};\n        }}\n    }}\n"
    )
    return constants, prepare, call


def _softmax_code(i: int, step: Step, g: Graph, source: int) -> tuple[str, str, str]:
    """``arm_softmax_s8`` with the reference kernel's input multiplier, shift and diff_min."""
    layer = g.layers[step.layer]
    assert layer.input.quant is not None
    multiplier, shift, diff_min = quant.softmax_params(
        layer.options["beta"], layer.input.quant.scale
    )
    call = (
        f"    arm_softmax_s8(base + {source}, 1, CMSIS_NN_MODEL_CLASSES, {multiplier}, {shift}, "
        f"{diff_min}, scores);\n"
    )
    return "", "", call


_STEP_CODE = {"input": _input_code, "conv": _conv_code, "pool": _pool_code, "fc": _fc_code,
              "softmax": _softmax_code}  # fmt: skip


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


# ---- the check program and its vectors -------------------------------------------------


def _rows(name: str, ctype: str, values: np.ndarray) -> str:
    flat = values.reshape(len(values), -1)
    body = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in flat)
    return f"static const {ctype} {name}[{len(flat)}][{flat.shape[1]}] = {{\n{body}\n}};\n"


def test_vectors(images: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                 kept: dict[int, np.ndarray] | None = None) -> str:  # fmt: skip
    """``vectors.h``: uint8 images, the reference kernels' int8 scores, the true classes.

    ``kept`` adds the reference's output of those graph layers (``bench_kept_<layer>``).
    """
    parts = [
        "/* vectors.h: test images, TFLite's reference kernels' outputs for them, and their\n"
        " * classes. Written by edgecnn's bench/cmsis_nn.py for main.c. */\n"
        "#include <stdint.h>\n\n",
        f"#define BENCH_TEST_COUNT {len(images)}\n#define BENCH_CLASSES {scores.shape[1]}\n\n",
        _rows("bench_images", "uint8_t", images),
        _rows("bench_scores", "int8_t", scores),
        "static const uint8_t bench_labels[BENCH_TEST_COUNT] = {"
        + ", ".join(str(int(v)) for v in labels) + "};\n",
    ]  # fmt: skip
    for layer, values in (kept or {}).items():
        parts.append(_rows(f"bench_kept_{layer}", "int8_t", values))
    return "".join(parts)


def check_program(engine: str, kept: Sequence[tuple[int, int, int]] = ()) -> str:
    """``main.c`` for ``engine`` ("edgecnn" or "cmsis-nn"), from ``bench/cmsis_nn/main.c``.

    For CMSIS-NN, ``kept`` (from :class:`Driver`) names the layer outputs to compare.
    """
    if engine == "edgecnn":
        values = {
            "header": "edgecnn_model.h",
            "setup": "static int32_t bench_work[(EDGECNN_WORK_BYTES + 3) / 4];",
            "prepare": "",
            "classify": "edgecnn_classify(bench_images[i], bench_work, scores)",
        }
    else:
        values = {
            "header": f"{DRIVER}.h",
            "setup": "static int32_t bench_arena[(CMSIS_NN_MODEL_ARENA_BYTES + 3) / 4];",
            "prepare": '    if (cmsis_nn_model_prepare() != 0) {\n        printf("bench error: '
            'CMSIS-NN asks for more buffer than planned\\n");\n        return 2;\n    }',
            "classify": "cmsis_nn_model_classify(bench_images[i], bench_arena, scores)",
        }
    declarations, checks, report = [], [], []
    for layer, at, size in kept:
        declarations.append(f"    long kept_differ_{layer} = 0;\n    int kept_worst_{layer} = 0;")
        checks.append(
            f"        bench_compare((const int8_t *)bench_arena + {at}, bench_kept_{layer}[i], "
            f"{size}, &kept_differ_{layer},\n                      &kept_worst_{layer});"
        )
        report.append(
            f'    printf("bench layer {layer}: %ld of %d values differ, by at most %d\\n", '
            f"kept_differ_{layer},\n           BENCH_TEST_COUNT * {size}, kept_worst_{layer});"
        )
    values.update(kept_declarations="\n".join(declarations), kept_checks="\n".join(checks),
                  kept_report="\n".join(report))  # fmt: skip
    return _template("main.c").substitute(values)


# ---- building and measuring --------------------------------------------------------------


def build_library(source: Path, work: Path, optimize: str) -> Path:
    """CMSIS-NN's int8 kernels for the Cortex-M4 as a static library, as its CMake build makes.

    Raises:
        ToolchainError: a file does not compile.
    """
    objects = work / f"cmsis-nn{optimize}"
    objects.mkdir(parents=True, exist_ok=True)
    files = []
    for path in library_sources(source):
        obj = objects / f"{path.stem}.o"
        toolchain.run([toolchain.ARM_GCC, *toolchain.CORTEX_M4, optimize, "-ffunction-sections",
                       "-fdata-sections", f"-I{source / 'Include'}", "-c", str(path),
                       "-o", str(obj)], f"compiling CMSIS-NN's {path.name}")  # fmt: skip
        files.append(str(obj))
    archive = work / f"libcmsis-nn{optimize}.a"
    archive.unlink(missing_ok=True)
    toolchain.run(["arm-none-eabi-ar", "rcs", str(archive), *files], "archiving CMSIS-NN")
    return archive


def _flags(source: Path | None, optimize: str, hooks: bool) -> list[str]:
    """Flags for the bench's own C: edgecnn's warnings, CMSIS-NN's headers exempt from them."""
    board = toolchain.board_dir()
    headers = ["-isystem", str(source / "Include")] if source else []
    hook = [MEASURE_LAYERS] if hooks else []
    return [*toolchain.WARNINGS, *toolchain.CORTEX_M4, optimize, "-ffunction-sections",
            "-fdata-sections", *headers, *hook, "-include", str(board / "measure.h")]  # fmt: skip


def link(objects: list[Path], includes: list[Path], main: Path, elf: Path, optimize: str,
         source: Path | None = None) -> Path:  # fmt: skip
    """Link ``main`` and ``objects`` for QEMU's Cortex-M4 board; the linker map's path.

    Raises:
        ToolchainError: it does not compile or link.
    """
    board = toolchain.board_dir()
    map_file = elf.with_suffix(".map")
    toolchain.run([toolchain.ARM_GCC, *_flags(source, optimize, hooks=True),
                   *(f"-I{d}" for d in includes), "--specs=rdimon.specs",
                   "-T", str(board / "link.ld"), "-Wl,--gc-sections", f"-Wl,-Map={map_file}",
                   str(board / "startup.c"), str(main), *map(str, objects), "-o", str(elf)],
                  f"linking {elf.name}")  # fmt: skip
    return map_file


def build_check(source: Path, archive: Path, folder: Path, elf: Path, optimize: str,
                hooks: bool = True) -> Path:  # fmt: skip
    """Link the driver in ``folder`` (with its main.c and vectors.h) and CMSIS-NN for QEMU.

    ``hooks``: the driver reads the timer after each step (left out to measure its
    flash). Returns the linker's map, for :func:`linked_sizes`.

    Raises:
        ToolchainError: it does not compile or link.
    """
    driver_object = folder / f"{DRIVER}.o"
    toolchain.run([toolchain.ARM_GCC, *_flags(source, optimize, hooks), f"-I{folder}", "-c",
                   str(folder / f"{DRIVER}.c"), "-o", str(driver_object)],
                  "compiling the CMSIS-NN driver")  # fmt: skip
    return link([driver_object, archive], [folder], folder / "main.c", elf, optimize, source)


#: Output sections that a program's flash holds (.data: its initial values).
FLASH_SECTIONS = (".text", ".ARM.exidx", ".init_array", ".data")
_INPUT = re.compile(r"^ (\.\S+)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S.*)$")
_OUTPUT = re.compile(r"^(\.\S+)")


def linked_sizes(map_file: Path, pattern: str) -> tuple[int, int]:
    """Flash and RAM bytes that the linked program holds from files matching ``pattern``.

    Read from GNU ld's map of a ``--gc-sections`` link, so only what was kept counts:
    the input sections of those files (code, constants, initial data) in the program's
    flash, and their ``.data`` and ``.bss`` in its RAM.
    """
    text = map_file.read_text()
    text = text[text.index("Linker script and memory map") :]
    flash = ram = 0
    output, pending = "", None
    for line in text.splitlines():
        head = _OUTPUT.match(line)
        if head:
            output = head.group(1)
            continue
        if re.fullmatch(r" \.\S+", line):
            pending = line.strip()
            continue
        match = _INPUT.match(line)
        if match is None:
            pending = None
            continue
        name = match.group(1) or pending
        pending = None
        if name is None or not re.search(pattern, match.group(3)):
            continue
        size = int(match.group(2), 16)
        if output in FLASH_SECTIONS:
            flash += size
        if output in (".data", ".bss"):
            ram += size
    return flash, ram


@dataclass
class Run:
    """What one build printed under QEMU, parsed."""

    returncode: int
    instructions: int | None
    stack_bytes: int | None
    #: Instructions of each layer (edgecnn) or step (CMSIS-NN), in order, when timed.
    layers: list[int]
    scores_line: str
    #: Graph layer -> (values that differ, values compared, largest gap).
    kept: dict[int, tuple[int, int, int]]
    output: str


def parse_run(result: dict[str, object]) -> Run:
    """The measurements in ``toolchain.run_check``'s result and in what main.c printed."""
    output = str(result["output"])
    scores, kept = "", {}
    for line in output.splitlines():
        if line.startswith("bench scores:"):
            scores = line.removeprefix("bench scores: ")
        elif line.startswith("bench layer "):
            numbers = [int(n) for n in re.findall(r"\d+", line)]
            kept[numbers[0]] = (numbers[1], numbers[2], numbers[3])
    instructions, stack = result.get("instructions"), result.get("stack_bytes")
    return Run(
        returncode=int(result["returncode"]),  # type: ignore[call-overload]
        instructions=None if instructions is None else int(instructions),  # type: ignore[call-overload]
        stack_bytes=None if stack is None else int(stack),  # type: ignore[call-overload]
        layers=list(result.get("layer_instructions", [])),  # type: ignore[call-overload]
        scores_line=scores, kept=kept, output=output,
    )  # fmt: skip
