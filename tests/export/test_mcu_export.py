"""The microcontroller formats end to end: ``edgecnn export --formats c,tflm`` on a trained
model, and the generated library cross-compiled for a Cortex-M4 and run under QEMU.

The QEMU tests need Debian's ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi`` and
``qemu-system-arm`` (``tools/bootstrap.sh test`` installs them); like the Raspberry Pi
tests they are marked and still run in CI.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from mcu_helpers import TINY_INT8

from edgecnn.export.mcu import cgen, graph, reference, toolchain
from edgecnn.export.report_file import load_report
from edgecnn.runtime import load_classifier

#: Test images the emulated Cortex-M4 classifies and compares with this machine's scores.
QEMU_IMAGES = 200


@pytest.fixture(scope="module")
def mcu_export(trained_run, tmp_path_factory, fashion_dir):
    """``edgecnn export --formats c,tflm`` of the trained fixture, as a user runs it."""
    out = tmp_path_factory.mktemp("mcu") / "exports"
    result = invoke("export", trained_run.out_dir, "--formats", "c,tflm", "--out", out,
                    "--data-dir", fashion_dir)  # fmt: skip
    report = load_report(out)
    rows = {r.format: r for r in report.files}
    return out, result, report, rows


@pytest.mark.mcu
def test_export_writes_verified_c_and_tflm_folders(mcu_export):
    out, result, report, rows = mcu_export
    assert result.exit_code == 0, result.stdout + result.stderr
    assert set(rows) == {"tflite", "numpy", "c", "tflm"}  # c, tflm: from the int8 .tflite
    assert rows["c"].passed and rows["tflm"].passed
    c, tflm = rows["c"].details, rows["tflm"].details
    assert c.reference_identical == 1.0 and c.reference_images == 10_000
    assert tflm.reference_top1 == 1.0
    assert sorted(p.name for p in (out / "c").iterdir()) == [
        "README.md", "check", "edgecnn_model.c", "edgecnn_model.h", "libedgecnn_model.so",
        "libedgecnn_model.so.json",
    ]  # fmt: skip
    assert sorted(p.name for p in (out / "tflm").iterdir()) == [
        "README.md", "model_data.cc", "model_data.h", "model_info.h", "model_ops.h",
    ]  # fmt: skip
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    # The measured sizes, as the targets read them (the default network's shape).
    # The first fused output with the second growing into it from 308 bytes below (the
    # least distance, tests/export/test_arena.py), two int16 patches of 5x5x16, the
    # running max of 36 sums and 3 bytes to align them: 5,191 bytes, not 3136 + 1764.
    assert c.work_bytes == 3136 + 308 + 2 * 2 * 400 + 4 * 36 + 3
    assert c.mcu.library_flash <= 250 * 1024
    assert c.mcu.library_ram == 0
    assert c.mcu.stack_bytes > 0 and c.work_bytes + c.mcu.stack_bytes <= 8192
    # QEMU's instruction count is deterministic: the bound for -Os.
    assert c.mcu.check_returncode == 0 and 1_000_000 < c.mcu.instructions <= 8_000_000
    assert c.int8_file_agreement is not None and c.int8_file_agreement > 0.97
    assert 15_000 < tflm.arena_bytes < 40_000
    assert "c/: int8 scores bit-identical" in result.stdout
    assert "tflm/: TFLM's kernels give the reference kernels' top-1" in result.stdout


@pytest.mark.mcu
def _model_data(out: Path) -> bytes:
    text = (out / "tflm" / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_edgecnn_model_data[]" in text
    body = text[text.index("{") + 1 : text.rindex("}")]
    values = bytes(int(v, 16) for v in body.replace("\n", "").split(",") if v.strip())
    assert f"g_edgecnn_model_data_len = {len(values)};" in text
    return values


def test_the_tflm_bundle_and_the_c_library_share_the_full_integer_flatbuffer(mcu_export):
    """model_int8.tflite keeps its logits layer in float; the MCU formats are all int8."""
    from ai_edge_litert.interpreter import Interpreter

    out, _, _, _ = mcu_export
    data = _model_data(out)
    assert data != (out / "model_int8.tflite").read_bytes()
    g = graph.read(data)  # the C generator's reader takes int8 graphs only
    assert g.output.quant is not None
    interpreter = Interpreter(model_content=data)
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    header = (out / "c" / "edgecnn_model.h").read_text()
    assert f'#define EDGECNN_MODEL_SHA256 "{cgen.sha256(data)}"' in header
    ops = (out / "tflm" / "model_ops.h").read_text()
    assert "MicroMutableOpResolver<8>" in ops and "AddFullyConnected()" in ops
    assert "AddDequantize" not in ops


@pytest.mark.mcu
def test_the_c_folder_loads_through_the_runtime(mcu_export, test_images):
    from ai_edge_litert.interpreter import Interpreter

    out, _, _, _ = mcu_export
    clf = load_classifier(out / "c", backend="c")
    assert clf.backend_name == "c"
    ours = clf.predict(test_images.x)
    interpreter = Interpreter(model_content=_model_data(out))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [len(test_images.x), 28, 28, 1])
    interpreter.allocate_tensors()
    scale, zero_point = detail["quantization"]
    codes = np.round(test_images.x.reshape(-1, 28, 28, 1) / 255 / scale) + zero_point
    interpreter.set_tensor(detail["index"], codes.astype(np.int8))
    interpreter.invoke()
    theirs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    agree = np.mean(ours.argmax(1) == theirs.argmax(1))
    assert agree > 0.995  # XNNPACK rounds a few values otherwise; the reference kernels do not
    # Probabilities from the int8 logits: runners-up ordered, not zero-valued ties.
    top = np.sort(ours, axis=1)
    assert np.mean(top[:, -2] > 0) > 0.9


def test_without_a_c_compiler_the_c_format_is_skipped_in_one_line(
    trained_run, tmp_path, fashion_dir, monkeypatch
):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CC", raising=False)
    out = tmp_path / "exports"
    result = invoke("export", trained_run.out_dir, "--formats", "c", "--out", out,
                    "--data-dir", fashion_dir)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "c: skipped (no C compiler found (install gcc, or set CC))" in result.stdout
    assert not (out / "c").exists()
    assert (out / "model_int8.tflite").is_file()


def test_a_c_folder_that_fails_its_gate_is_moved_aside(trained_run, tmp_path, fashion_dir,
                                                        monkeypatch):  # fmt: skip
    """One reference score off by one (injected): the folder is kept as c.rejected, exit 1."""
    real = reference.run

    def off_by_one(*args, **kwargs):
        result = real(*args, **kwargs)
        result.scores[5, 0] += 1
        return result

    monkeypatch.setattr(reference, "run", off_by_one)
    out = tmp_path / "exports"
    result = invoke("export", trained_run.out_dir, "--formats", "c", "--out", out,
                    "--data-dir", fashion_dir)  # fmt: skip
    assert result.exit_code == 1
    assert "1 of 10000 images differ from TFLite's reference kernels" in result.stdout
    assert (out / "c.rejected" / "edgecnn_model.c").is_file()
    assert not (out / "c").exists()


def test_an_unwritable_output_folder_is_one_line(trained_run, tmp_path, fashion_dir):
    if os.geteuid() == 0:
        target = Path("/proc/edgecnn-exports")  # root may write anywhere else
    else:
        target = tmp_path / "locked" / "exports"
        target.parent.mkdir()
        target.parent.chmod(0o500)
    result = invoke("export", trained_run.out_dir, "--formats", "c", "--out", target,
                    "--data-dir", fashion_dir)  # fmt: skip
    assert_one_line_error(result)


# ---- the generated library on an emulated Cortex-M4 ------------------------------------------


@pytest.mark.mcu
def test_cortex_m4_build_gives_the_hosts_scores_byte_for_byte(tmp_path, test_images):
    """200 test images: every int8 score under QEMU equals the host build's."""
    from edgecnn.export.formats.c import build_host_library

    data = TINY_INT8.read_bytes()
    g = graph.read(data)
    document = json.loads(TINY_INT8.with_name(TINY_INT8.name + ".json").read_text())
    document.pop("file")
    from edgecnn.runtime.metadata import ModelMetadata

    meta = ModelMetadata.from_dict(document)
    library = cgen.generate(g, cgen.sha256(data), "test", meta.labels, meta.light_on_dark)
    folder = tmp_path / "c"
    (folder / "check").mkdir(parents=True)
    for name, text in library.files.items():
        (folder / name).write_text(text)
    host, _ = build_host_library(folder, meta)
    images = test_images.x[:QEMU_IMAGES]
    scores = load_classifier(host, backend="c").backend.scores(images)
    (folder / "check" / "test_vectors.h").write_text(
        cgen.test_vectors(images, scores, test_images.y[:QEMU_IMAGES])
    )
    (folder / "check" / "main.c").write_text(cgen.CHECK_PROGRAM)
    elf = tmp_path / "check.elf"
    sizes = toolchain.cortex_m4_check(folder, folder / "check", elf)
    ran = toolchain.run_on_qemu(elf)
    assert ran["returncode"] == 0, ran["output"]
    assert f"{QEMU_IMAGES} of {QEMU_IMAGES} test images give the expected scores" in str(
        ran["output"]
    )
    assert sizes["flash"] > library.weight_bytes and ran["stack_bytes"] > 0

    # And the comparison on the device can fail: one expected score changed.
    scores[123, 4] += 1
    (folder / "check" / "test_vectors.h").write_text(
        cgen.test_vectors(images, scores, test_images.y[:QEMU_IMAGES])
    )
    toolchain.cortex_m4_check(folder, folder / "check", elf)
    ran = toolchain.run_on_qemu(elf)
    assert ran["returncode"] != 0
    assert "image 123: scores differ" in str(ran["output"])


@pytest.mark.mcu
def test_floats_only_in_the_probabilities(tmp_path):
    """Built for a Cortex-M without an FPU: only edgecnn_probabilities and
    edgecnn_calibrated call float helpers (and nothing calls expf: the generator did)."""
    import subprocess

    folder = tmp_path / "c"
    folder.mkdir()
    data = TINY_INT8.read_bytes()
    library = cgen.generate(graph.read(data), cgen.sha256(data), "test", tuple("abcdefghij"),
                            True)  # fmt: skip
    for name, text in library.files.items():
        (folder / name).write_text(text)
    obj = tmp_path / "model.o"
    toolchain.run([toolchain.ARM_GCC, *toolchain.WARNINGS, "-mcpu=cortex-m4", "-mthumb",
                   "-mfloat-abi=soft", "-Os", "-ffunction-sections", "-c",
                   str(folder / cgen.SOURCE), "-o", str(obj)], "compiling")  # fmt: skip
    relocations = subprocess.run(["arm-none-eabi-objdump", "-r", str(obj)], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
    section, calls = "", {}
    for line in relocations.splitlines():
        if line.startswith("RELOCATION RECORDS FOR"):
            section = line.split("[")[1].rstrip("]:")
        elif "__aeabi_" in line or "expf" in line:
            calls.setdefault(section, []).append(line.split()[-1])
    assert set(calls) == {".text.edgecnn_probabilities", ".text.edgecnn_calibrated"}, calls
    assert "expf" not in relocations


def test_a_model_the_generator_cannot_write_is_one_line_and_no_stale_folder(
    trained_run, tmp_path, fashion_dir, monkeypatch
):
    """An operator the generator lacks (injected): exit 2 naming it; the rest is written,
    and a c/ folder from an earlier export (another model) does not stay beside it."""

    def unknown_op(data):
        raise graph.UnsupportedModel("AVERAGE_POOL_2D is not an operator the C generator knows")

    out = tmp_path / "exports"
    (out / "c").mkdir(parents=True)
    (out / "c" / "edgecnn_model.c").write_text("/* from another model */")
    monkeypatch.setattr(graph, "read", unknown_op)
    result = invoke("export", trained_run.out_dir, "--formats", "c", "--out", out,
                    "--data-dir", fashion_dir)  # fmt: skip
    assert_one_line_error(result, match="c: AVERAGE_POOL_2D")
    assert not (out / "c").exists()
    assert (out / "model_int8.tflite").is_file() and (out / "export_report.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ---- calibrated confidence and "unknown" in C ------------------------------------------------

#: Pictures on which C and Python must agree (the issue's count).
CONFIDENCE_IMAGES = 1000


def _macro(text: str, name: str) -> float:
    found = re.search(rf"^#define {name} ([-0-9.e]+)f$", text, re.MULTILINE)
    assert found, f"no {name} in the header"
    return float(found.group(1))


@pytest.mark.mcu
def test_the_c_library_calibrates_and_answers_unknown_as_the_runtime_does(
    mcu_export, test_images, tmp_path
):
    """1,000 pictures: edgecnn_answer's probabilities equal the runtime's to 1e-6, and
    edgecnn_answer and edgecnn_classify (-DEDGECNN_REJECT=1) answer unknown for exactly
    the pictures the runtime does."""
    import ctypes
    import shutil

    from edgecnn.export.formats.c import build_host_library
    from edgecnn.runtime.metadata import ModelMetadata

    out, _, _, _ = mcu_export
    images = test_images.x[:CONFIDENCE_IMAGES]
    clf = load_classifier(out / "c", backend="c")
    confidence = clf.metadata.confidence
    # Fitted on the library's own logits and compiled in: the header and the metadata agree.
    assert confidence is not None and confidence.fitted_on == "validation"
    assert confidence.temperature != 1.0 and confidence.reject_below is not None
    assert confidence.ece_after < confidence.ece_before
    header = (out / "c" / "edgecnn_model.h").read_text()
    assert _macro(header, "EDGECNN_TEMPERATURE") == pytest.approx(confidence.temperature, rel=1e-6)
    assert np.float32(_macro(header, "EDGECNN_REJECT_BELOW")) == np.float32(confidence.reject_below)
    ours = clf.predict(images)
    unknown = clf.unknown(ours)
    assert 0 < unknown.sum() < len(images) // 4
    theirs, answers = clf.backend.answers(images)
    assert np.abs(ours - theirs).max() <= 1e-6
    assert np.array_equal(answers == cgen.UNKNOWN, unknown)
    assert np.array_equal(answers[~unknown], ours[~unknown].argmax(1))
    raw = load_classifier(out / "c", backend="c", calibrated=False).predict(images)
    assert np.array_equal(raw.argmax(1), ours.argmax(1))  # calibration never changes a rank

    # The same library compiled with -DEDGECNN_REJECT=1: edgecnn_classify says unknown too.
    folder = tmp_path / "c"
    folder.mkdir()
    for name in (cgen.HEADER, cgen.SOURCE):
        shutil.copy(out / "c" / name, folder / name)
    document = json.loads((out / "c" / "libedgecnn_model.so.json").read_text())
    document.pop("file")
    host, _ = build_host_library(folder, ModelMetadata.from_dict(document),
                                 ("-DEDGECNN_REJECT=1",))  # fmt: skip
    library = ctypes.CDLL(str(host))
    library.edgecnn_classify.argtypes = [ctypes.c_void_p] * 3
    work = ctypes.create_string_buffer(clf.backend.work_bytes)
    scores = np.empty(10, dtype=np.int8)
    pixels = np.ascontiguousarray(images)
    classified = np.array([
        library.edgecnn_classify(pixels[i].ctypes.data, work, scores.ctypes.data)
        for i in range(len(pixels))
    ])  # fmt: skip
    assert np.array_equal(classified == cgen.UNKNOWN, unknown)
    plain = clf.backend.scores(images).argmax(1)
    assert np.array_equal(classified[~unknown], plain[~unknown])


@pytest.mark.mcu
def test_the_tflm_bundle_calibrates_its_scores_as_the_runtime_does(mcu_export, test_images,
                                                                   tmp_path):  # fmt: skip
    """model_info.h's EdgecnnCalibrated, compiled together with the C library's header
    (their macros must not clash), against the runtime's calibrate on the same int8
    scores (the flatbuffer's, which the C library gives bit for bit)."""
    import ctypes

    from edgecnn.export.formats import tflm
    from edgecnn.runtime.confidence import calibrate, expected_calibration_error, rejected

    out, _, _, _ = mcu_export
    info = (out / "tflm" / "model_info.h").read_text()
    temperature = _macro(info, "EDGECNN_TFLM_TEMPERATURE")
    reject_below = _macro(info, "EDGECNN_TFLM_REJECT_BELOW")
    assert temperature != 1.0 and 0 < reject_below < 1
    # Fitted on the logits, as the C library's is (on int8 scores, whose true class is
    # often 0, a likelihood fit runs to far too high a temperature).
    library = load_classifier(out / "c", backend="c").metadata.confidence
    assert temperature == pytest.approx(library.temperature, rel=1e-6)
    wrapper = tmp_path / "wrapper.c"
    wrapper.write_text(
        '#include "edgecnn_model.h"\n#include "model_info.h"\n'
        "int calibrated(const int8_t *s, float *p) { return EdgecnnCalibrated(s, p); }\n"
    )
    library = ctypes.CDLL(str(toolchain.build_shared(
        [wrapper], tmp_path / "libinfo.so", (f"-I{out / 'tflm'}", f"-I{out / 'c'}", "-std=c99"),
    )))  # fmt: skip
    library.calibrated.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    scores = load_classifier(out / "c", backend="c").backend.scores(
        test_images.x[:CONFIDENCE_IMAGES]
    )
    theirs = np.empty(scores.shape, dtype=np.float32)
    answers = np.array([library.calibrated(scores[i].ctypes.data, theirs[i].ctypes.data)
                        for i in range(len(scores))])  # fmt: skip
    g = graph.read(_model_data(out))
    assert g.output.quant is not None
    raw = tflm.probabilities(scores, g.output.quant)
    ours = calibrate(raw, temperature)
    assert np.abs(ours - theirs).max() <= 1e-6
    # And calibrated they are: the test split's calibration error falls.
    labels = test_images.y[:CONFIDENCE_IMAGES]
    assert expected_calibration_error(ours, labels) < expected_calibration_error(raw, labels)
    unknown = rejected(ours, reject_below)
    assert unknown.sum() > 0 and np.array_equal(answers == cgen.UNKNOWN, unknown)
