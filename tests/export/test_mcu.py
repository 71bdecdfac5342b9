"""The C library generated from an int8 ``.tflite`` file, without TensorFlow.

The code is generated from ``tests/data/tiny/model_int8.tflite``, compiled by the system C
compiler and held against LiteRT's reference kernels (``BUILTIN_REF``) on the 10,000 real
test images: the same standard the exporter holds it to. The arithmetic under it
(TFLite's requantization, the fully-connected kernel's double rescale) is checked value by
value against Python written from TFLite's definitions.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli_without
from hypothesis import given, settings
from hypothesis import strategies as st
from mcu_helpers import TINY_INT8, generate_tiny, tiny_metadata
from shared import TINY, export_record, export_report_document

from edgecnn.export.formats import c as c_format
from edgecnn.export.mcu import cgen, graph, quant, reference, toolchain
from edgecnn.export.mcu.graph import UnsupportedModel
from edgecnn.runtime import load_classifier

ANKLE_BOOT = TINY.parent / "ankle_boot.png"


@pytest.fixture(scope="module")
def tiny_c(tmp_path_factory, test_images):
    """The tiny model as C, built for this machine, and the reference kernels' outputs."""
    folder = tmp_path_factory.mktemp("tiny") / "c"
    library = generate_tiny(folder)
    host, _ = c_format.build_host_library(folder, tiny_metadata())
    data = TINY_INT8.read_bytes()
    g = graph.read(data)
    assert g.input.quant is not None
    inputs = reference.int8_inputs(test_images.x, g.input.quant.scale, g.input.quant.zero_point)
    ref = reference.run(data, inputs.reshape(len(inputs), *library.input_shape),
                        library.logits_tensor, library.output_tensor)  # fmt: skip
    return SimpleNamespace(folder=folder, library=library, host=host, inputs=inputs, ref=ref)


# ---- the generated library against TFLite's reference kernels ----------------------------


def test_scores_and_logits_are_bit_identical_to_the_reference_kernels(tiny_c, test_images):
    backend = load_classifier(tiny_c.folder, backend="c").backend
    assert backend.name == "c"
    scores = backend.scores(test_images.x)
    logits = backend.logits(tiny_c.inputs)
    assert scores.shape == (10_000, 10) and scores.dtype == np.int8
    np.testing.assert_array_equal(logits, tiny_c.ref.logits)
    np.testing.assert_array_equal(scores, tiny_c.ref.scores)


def test_the_dsp_path_gives_the_same_bytes_on_every_test_image(tiny_c, test_images, tmp_path):
    """The SXTB16/SMLAD path, its intrinsics written in C, equals the reference kernels.

    It lays out its patches otherwise (each group of 4 as SXTB16 unpacks weights), so it
    is a second implementation; tests/export/test_mcu_cores.py runs it on a Cortex-M4.
    """
    folder = tmp_path / "c"
    shutil.copytree(tiny_c.folder, folder)
    host, _ = c_format.build_host_library(folder, tiny_metadata(), ("-DEDGECNN_DSP_IN_C",))
    backend = load_classifier(host, backend="c").backend
    np.testing.assert_array_equal(backend.logits(tiny_c.inputs), tiny_c.ref.logits)
    np.testing.assert_array_equal(backend.scores(test_images.x), tiny_c.ref.scores)


def test_the_runtime_gives_the_same_probabilities_as_the_tflite_file(tiny_c, test_images):
    """Through ``edgecnn.runtime``: the same top-1 as the .tflite on the reference kernels."""
    probs = load_classifier(tiny_c.host, backend="c").predict(test_images.x[:2000])
    assert probs.shape == (2000, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1), tiny_c.ref.scores[:2000].argmax(1))


def test_threads_share_one_library_without_interfering(tiny_c, test_images):
    """No global mutable state: concurrent calls, each with its own work buffer, agree."""
    backend = load_classifier(tiny_c.host, backend="c").backend
    chunks = np.array_split(test_images.x[:4000], 8)
    results: dict[int, np.ndarray] = {}

    def classify(i: int) -> None:
        results[i] = backend.scores(chunks[i])

    threads = [threading.Thread(target=classify, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = np.concatenate([results[i] for i in range(len(chunks))])
    np.testing.assert_array_equal(together, tiny_c.ref.scores[:4000])


def test_work_buffer_is_the_largest_pair_of_fused_outputs_and_two_patches(tiny_c):
    """Conv, ReLU and pool are fused: the work buffer holds pool outputs, never a conv's,
    plus two int16 patches and the running max of two pooled outputs."""
    g = graph.read(TINY_INT8.read_bytes())
    shapes = [(layer.pool["output"] if layer.pool else layer.output).shape for layer in g.layers]
    sizes = [int(np.prod(s[1:])) for s in shapes]
    pairs = [sizes[0]] + [a + b for a, b in zip(sizes, sizes[1:], strict=False)]
    convs = [layer for layer in g.layers if layer.kind == "conv"]
    row = max(-(-int(np.prod(layer.weights.shape[1:])) // 4) * 4 for layer in convs)
    channels = max(layer.output.shape[-1] for layer in convs)
    scratch = 2 * 2 * row + 2 * 4 * channels
    assert tiny_c.library.work_bytes <= max(pairs) + scratch + 3  # 3: alignment slack
    conv_output = int(np.prod(g.layers[0].output.shape[1:]))
    pool_output = sizes[0]
    assert tiny_c.library.work_bytes < conv_output + pool_output
    header = (tiny_c.folder / cgen.HEADER).read_text()
    assert f"#define EDGECNN_WORK_BYTES {tiny_c.library.work_bytes}" in header


def test_the_library_needs_nothing_from_the_c_library(tiny_c, tmp_path):
    """No malloc, no libm, no stdio; no writable globals (reentrant)."""
    obj = tmp_path / "model.o"
    cc = toolchain.host_compiler()
    assert cc is not None
    # Position-dependent, as on a microcontroller: constant pointer tables are read-only.
    toolchain.run([cc, *toolchain.WARNINGS, "-O2", "-fno-pic", "-c",
                   str(tiny_c.folder / cgen.SOURCE), "-o", str(obj)], "compiling")  # fmt: skip
    symbols = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
    undefined = [name for kind, name in _symbols(symbols) if kind == "U"]
    writable = [name for kind, name in _symbols(symbols) if kind in "BbDdCc"]
    assert undefined == [], undefined
    assert writable == [], writable
    assert ("T", "edgecnn_classify") in _symbols(symbols)


def _symbols(nm_output: str) -> list[tuple[str, str]]:
    out = []
    for line in nm_output.splitlines():
        words = line.split()
        if len(words) >= 2:
            out.append((words[-2], words[-1]))
    return out


@pytest.mark.parametrize("path", ["portable", "dsp"])
def test_sanitizers_find_nothing_on_300_images(tiny_c, test_images, tmp_path, path):
    """AddressSanitizer and UndefinedBehaviorSanitizer over the check program, both paths."""
    cc = toolchain.host_compiler()
    assert cc is not None
    check = tmp_path / "check"
    check.mkdir()
    count = 300
    (check / "test_vectors.h").write_text(
        cgen.test_vectors(test_images.x[:count], tiny_c.ref.scores[:count], test_images.y[:count])
    )
    (check / "main.c").write_text(cgen.CHECK_PROGRAM)
    program = tmp_path / "check_asan"
    toolchain.run(
        [cc, *toolchain.WARNINGS, "-O1", "-g", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         *(["-DEDGECNN_DSP_IN_C"] if path == "dsp" else []), f"-I{tiny_c.folder}",
         str(tiny_c.folder / cgen.SOURCE), str(check / "main.c"),
         "-o", str(program)], "compiling with sanitizers",
    )  # fmt: skip
    env = {"ASAN_OPTIONS": "detect_leaks=1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(program)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr
    assert f"{count} of {count} test images give the expected scores" in done.stdout


def test_the_check_program_notices_a_wrong_score(tiny_c, test_images, tmp_path):
    """The on-device check is not a formality: one changed expected score fails it."""
    scores = tiny_c.ref.scores[:20].copy()
    scores[7, 3] += 1
    check = tmp_path / "check"
    check.mkdir()
    (check / "test_vectors.h").write_text(
        cgen.test_vectors(test_images.x[:20], scores, test_images.y[:20])
    )
    (check / "main.c").write_text(cgen.CHECK_PROGRAM)
    cc = toolchain.host_compiler()
    assert cc is not None
    program = tmp_path / "check_bin"
    toolchain.run([cc, *toolchain.WARNINGS, "-O2", f"-I{tiny_c.folder}",
                   str(tiny_c.folder / cgen.SOURCE), str(check / "main.c"), "-o",
                   str(program)], "compiling")  # fmt: skip
    done = subprocess.run([str(program)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "image 7: scores differ" in done.stdout
    assert "19 of 20 test images" in done.stdout


# ---- labels, bad models ---------------------------------------------------------------------


def test_hostile_labels_come_out_of_the_library_byte_for_byte(tmp_path):
    """Quotes, backslashes, trigraphs, digits after escapes, non-ASCII: exact strings in C."""
    labels = ('say "hi"', "back\\slash", "??=trigraph", "é7 café", "日本", "\t tab", "?", "a",
              "percent %s %n", "0")  # fmt: skip
    folder = tmp_path / "c"
    generate_tiny(folder, labels)
    program = tmp_path / "labels.c"
    program.write_text(
        '#include <stdio.h>\n#include "edgecnn_model.h"\n'
        "int main(void) { int i; for (i = 0; i < EDGECNN_NUM_CLASSES; ++i) "
        'printf("%s\\n", edgecnn_labels[i]); return 0; }\n'
    )
    cc = toolchain.host_compiler()
    assert cc is not None
    binary = tmp_path / "labels"
    toolchain.run([cc, *toolchain.WARNINGS, f"-I{folder}", str(folder / cgen.SOURCE),
                   str(program), "-o", str(binary)], "compiling")  # fmt: skip
    out = subprocess.run([str(binary)], capture_output=True, check=True).stdout
    assert out.decode("utf-8").split("\n")[:-1] == list(labels)


def test_a_float_model_is_refused_in_one_sentence():
    with pytest.raises(UnsupportedModel, match="int8"):
        graph.read((TINY / "model_float32.tflite").read_bytes())


def test_an_unknown_operator_is_named(tmp_path):
    """A max-pool changed into an average pool: the generator says which op it lacks."""
    from ai_edge_litert import schema_py_generated as schema

    data = TINY_INT8.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for code in model.operatorCodes:
        if code.builtinCode == schema.BuiltinOperator.MAX_POOL_2D:
            code.builtinCode = schema.BuiltinOperator.AVERAGE_POOL_2D
            code.deprecatedBuiltinCode = schema.BuiltinOperator.AVERAGE_POOL_2D
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(UnsupportedModel, match="AVERAGE_POOL_2D"):
        graph.read(bytes(builder.Output()))


@pytest.mark.parametrize("data", [b"", b"TFL3", b"\x00" * 64, b"not a model at all" * 10])
def test_garbage_is_not_a_model(data):
    with pytest.raises(UnsupportedModel):
        graph.read(data)


def test_a_library_that_is_not_ours_is_refused_in_one_line(tmp_path):
    cc = toolchain.host_compiler()
    assert cc is not None
    source = tmp_path / "other.c"
    source.write_text("int answer(void) { return 42; }\n")
    lib = tmp_path / "libedgecnn_model.so"
    toolchain.run([cc, "-shared", "-fPIC", str(source), "-o", str(lib)], "compiling")
    assert_one_line_error(invoke("predict", lib, ANKLE_BOOT))


def test_a_damaged_library_is_refused_before_it_is_loaded(tiny_c, tmp_path):
    import shutil

    folder = tmp_path / "c"
    shutil.copytree(tiny_c.folder, folder)
    lib = folder / tiny_c.host.name
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    assert_one_line_error(invoke("predict", folder, ANKLE_BOOT, "--backend", "c"))


def test_predict_with_the_c_library_never_imports_tensorflow(tiny_c):
    done = run_cli_without(
        ["predict", tiny_c.folder, ANKLE_BOOT, "--backend", "c"], ("tensorflow", "keras")
    )
    assert "Ankle boot" in done.stdout


# ---- the arithmetic, value by value --------------------------------------------------------


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """templates/kernels.c built as a library, with its helpers exported for ctypes."""
    folder = tmp_path_factory.mktemp("kernels")
    template = Path(cgen.__file__).with_name("templates") / "kernels.c"
    (folder / "harness.c").write_text(
        "#include <stdint.h>\n#include <string.h>\n"
        f'#include "{template}"\n'
        "int32_t t_requantize(int32_t x, int32_t m, int s) { return ec_requantize(x, m, s); }\n"
        "int32_t t_rescale(int32_t a, uint64_t m, int e) { return ec_rescale(a, m, e); }\n"
    )
    cc = toolchain.host_compiler()
    assert cc is not None
    lib = folder / "libharness.so"
    toolchain.run([cc, "-std=c99", "-O2", "-fPIC", "-shared", "-w", str(folder / "harness.c"),
                   "-o", str(lib)], "compiling the kernels")  # fmt: skip
    handle = ctypes.CDLL(str(lib))
    handle.t_requantize.restype = ctypes.c_int32
    handle.t_requantize.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_int]
    handle.t_rescale.restype = ctypes.c_int32
    handle.t_rescale.argtypes = [ctypes.c_int32, ctypes.c_uint64, ctypes.c_int]
    return handle


def _srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, from its definition."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    n = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(n) // (1 << 31)  # C's integer division truncates toward zero
    return q if n >= 0 else -q


def _rounding_divide(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: to nearest, halves away from zero."""
    mask = (1 << exponent) - 1
    remainder, threshold = x & mask, (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _wrap32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


@settings(max_examples=3000, deadline=None)
@given(
    x=st.integers(-(2**31), 2**31 - 1),
    m=st.integers(2**30, 2**31 - 1),
    shift=st.integers(-31, 8),
)
def test_requantize_is_tflites_multiply_by_quantized_multiplier(kernels, x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    high = _srdhm(_wrap32(x << left), m)
    expected = _rounding_divide(high, right)
    assert kernels.t_requantize(x, m, shift) == expected


@settings(max_examples=3000, deadline=None)
@given(
    acc=st.integers(-(2**31) + 1, 2**31 - 1),
    mantissa=st.integers(2**52, 2**53 - 1),
    exponent=st.integers(-100, -40),
)
def test_rescale_is_round_of_a_double_product(kernels, acc, mantissa, exponent):
    """The reference FC kernel's ``round(acc * scale)`` in double, emulated in integers."""
    value = float(acc) * math.ldexp(float(mantissa), exponent)  # one IEEE double rounding
    expected = quant.round_half_away(value)
    if abs(expected) > 2**31 - 1:
        expected = math.copysign(2**31 - 1 + (acc < 0), expected)
    assert kernels.t_rescale(acc, mantissa, exponent) == int(expected)


@settings(max_examples=500, deadline=None)
@given(real=st.floats(min_value=1e-9, max_value=1e3, allow_nan=False))
def test_quantize_multiplier_reconstructs_the_scale(real):
    multiplier, shift = quant.quantize_multiplier(real)
    assert 2**30 <= multiplier < 2**31
    assert math.isclose(multiplier * 2.0 ** (shift - 31), real, rel_tol=2**-30)


def test_resume_trusts_an_mcu_folder_only_while_it_is_whole(tmp_path):
    """``edgecnn run --resume`` redoes the export when a file of c/ or tflm/ is gone."""
    from edgecnn.pipeline.state import RunOptions, RunState, StageRecord, is_done

    exports = tmp_path / "exports"
    rows = []
    for fmt in ("c", "tflm"):
        from edgecnn.export.formats import FORMATS

        for name in FORMATS[fmt].contents:
            (exports / fmt / name).parent.mkdir(parents=True, exist_ok=True)
            (exports / fmt / name).write_text("x")
        rows.append(export_record(f"{fmt}/", fmt))
    (exports / "export_report.json").write_text(json.dumps(export_report_document(rows)))
    state = RunState(RunOptions(), {"export": StageRecord("done")})
    assert is_done(state, "export", tmp_path)
    (exports / "tflm" / "model_data.cc").unlink()
    assert not is_done(state, "export", tmp_path)


def _patched(edit) -> bytes:
    """The tiny int8 model with ``edit(model, schema)`` applied to its flatbuffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(TINY_INT8.read_bytes(), 0))
    edit(model, schema)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_dense_layer_without_bias_is_exact(tmp_path, test_images):
    """The converter drops an all-zero bias (input -1): it is zero, not another tensor."""

    def drop_last_bias(model, schema):
        codes = [c.builtinCode for c in model.operatorCodes]
        dense = [op for op in model.subgraphs[0].operators
                 if codes[op.opcodeIndex] == schema.BuiltinOperator.FULLY_CONNECTED]  # fmt: skip
        inputs = [int(i) for i in dense[-1].inputs]
        dense[-1].inputs = [*inputs[:2], -1]

    data = _patched(drop_last_bias)
    g = graph.read(data)
    meta = tiny_metadata()
    library = cgen.generate(g, cgen.sha256(data), "test", meta.labels, meta.light_on_dark)
    folder = tmp_path / "c"
    folder.mkdir()
    for name, text in library.files.items():
        (folder / name).write_text(text)
    host, _ = c_format.build_host_library(folder, meta)
    images = test_images.x[:500]
    assert g.input.quant is not None
    inputs = reference.int8_inputs(images, g.input.quant.scale, g.input.quant.zero_point)
    ref = reference.run(data, inputs.reshape(len(inputs), *library.input_shape),
                        library.logits_tensor, library.output_tensor)  # fmt: skip
    np.testing.assert_array_equal(
        load_classifier(host, backend="c").backend.scores(images), ref.scores
    )


def test_the_backend_checks_shapes_before_c_reads_them(tiny_c):
    from edgecnn.runtime.errors import InputError

    backend = load_classifier(tiny_c.host, backend="c").backend
    for wrong in (np.zeros((2, 4, 4, 1), np.uint8), np.zeros((1, 3), np.int8), np.zeros(5)):
        with pytest.raises(InputError, match="28x28x1"):
            backend.scores(wrong)
    with pytest.raises(InputError):
        backend.logits(np.zeros((1, 3), np.int8))
    with pytest.raises(InputError):
        backend.raw_runner(np.zeros((1, 27, 28), np.uint8))
    assert backend.scores(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_a_replaced_library_is_loaded_anew(tiny_c, tmp_path):
    """The loader caches libraries by path: a new export at the same path must still win."""
    import os

    from edgecnn.runtime.backends.c import CBackend

    other = tmp_path / "other"
    labels = tuple(f"class {i}" for i in range(10))
    generate_tiny(other, labels)
    meta = dataclasses.replace(tiny_metadata(), labels=labels)
    other_lib, _ = c_format.build_host_library(other, meta)
    path = tmp_path / tiny_c.host.name
    path.write_bytes(tiny_c.host.read_bytes())
    first = CBackend(path)
    os.replace(other_lib, path)
    second = CBackend(path)
    assert "class 7" in (second.embedded_metadata or "")
    assert "class 7" not in (first.embedded_metadata or "")


def test_a_tie_for_the_top_score_is_no_tflm_disagreement():
    from edgecnn.export.formats.tflm import _same_top1

    reference = np.array([[5, 9, 9, 0], [1, 2, 3, 4], [7, 7, 0, 0]], np.int8)
    tflm = np.array([[5, 8, 9, 0], [1, 2, 4, 3], [6, 7, 0, 0]], np.int8)
    # Image 0: TFLM's 2 ties the reference's top; 1: a real flip; 2: the reference tied.
    assert _same_top1(tflm, reference).tolist() == [True, False, True]


def test_float_pictures_give_the_uint8_answers(tiny_c, test_images):
    clf = load_classifier(tiny_c.host, backend="c")
    images = test_images.x[:100]
    np.testing.assert_array_equal(clf.predict(images.astype(np.float64) / 255),
                                  clf.predict(images))  # fmt: skip


@pytest.mark.parametrize("value", [1.0, 100.0, 0.5, 1.3170000314712524, 3.4e-20, 0.0])
def test_c_float_literals_read_back_as_the_same_float32(value):
    literal = cgen.c_float(value)
    assert literal.endswith("f") and ("." in literal or "e" in literal)  # "1f" is not C
    assert np.float32(float(literal[:-1])) == np.float32(value)


def test_the_calibration_tables_are_the_exponentials_and_powers():
    table = cgen.calibration_table(0.125, 2.0)
    assert table.dtype == np.float32 and len(table) == 256 and table[0] == 1.0
    np.testing.assert_allclose(table[8], np.exp(-0.5), rtol=1e-7)
    assert np.all(np.diff(table) <= 0)
    # The TFLM bundle's: a score's probability raised to 1 / T, from score -128.
    from edgecnn.export.formats.tflm import calibration_table
    from edgecnn.export.mcu.graph import Quant

    powers = calibration_table(Quant(np.float32([1 / 256]), np.array([-128])), 2.0)
    assert powers[0] == 0.0 and powers[255] == np.float32(np.sqrt(255 / 256))
