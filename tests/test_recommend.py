"""One recommended file per target, loadable there, with its reasons in numbers."""

import dataclasses

from shared import export_record

from edgecnn.export.formats.c import CortexM4
from edgecnn.pipeline.recommend import best_file, recommend


def _row(file, fmt, precision, size, agreement=0.995, passed=True, **changes):
    record = export_record(file, fmt, passed, size_bytes=size, size_ratio=size / 1000,
                           **changes)  # fmt: skip
    scores = dataclasses.replace(record.scores, agreement=agreement)
    return dataclasses.replace(record, precision=precision, scores=scores)


def _c_library(size):
    row = _row("c/", "c", "int8", size)
    mcu = CortexM4(stack_bytes=272, library_flash=246_828)
    return dataclasses.replace(row, details=dataclasses.replace(row.details, work_bytes=4900,
                                                                mcu=mcu))  # fmt: skip


def _passed(files, passed):
    return [dataclasses.replace(f, passed=passed(f)) for f in files]


FILES = [
    _row("model_float32.tflite", "tflite", "float32", 1000, 1.0),
    _row("model_dynamic.tflite", "tflite", "dynamic", 260, 0.999),
    _row("model_int8.tflite", "tflite", "int8", 250, 0.994),
    _row("model_int8.onnx", "onnx", "int8", 255, 0.995),
    _row("weights.npz", "numpy", "float32", 1001, 1.0),
    _c_library(247),
    _row("tflm/", "tflm", "int8", 253),
]


def test_each_target_gets_a_file_it_can_load():
    picks = {r.key: r.file for r in recommend(FILES, {})}
    assert picks["pi32"] == "model_int8.tflite"  # no onnxruntime wheel for 32-bit ARM
    assert picks["mobile"] == "model_int8.tflite"  # LiteRT only
    assert picks["pi64"] == "model_int8.tflite"  # tflite before onnx at equal footing
    assert picks["mcu"] == "c/"


#: Single-image p50 (us) as a bench stage records it; each test changes a copy.
LATENCY = {
    "model_float32.tflite": 40.0,
    "model_dynamic.tflite": 45.0,
    "model_int8.tflite": 20.0,
    "model_int8.onnx": 50.0,
    "weights.npz": 190.0,
}


def test_this_machine_gets_the_int8_file_when_it_is_the_fastest():
    here = recommend(FILES, LATENCY)[0]
    assert here.file == "model_int8.tflite"
    assert here.reason.startswith("20 us per image here (fastest)")


def test_a_file_within_the_margin_of_int8_does_not_replace_it():
    """300 calls' p50 moves by several per cent between runs: a near tie goes to int8."""
    latency = {**LATENCY, "model_dynamic.tflite": 19.5, "model_float32.tflite": 19.0}
    assert best_file(FILES, latency).file == "model_int8.tflite"  # 20 us < 19 us + 10%
    here = recommend(FILES, latency)[0]
    assert here.reason.startswith(
        "20 us per image here, within 10% of the fastest (model_float32.tflite, 19 us): "
        "ties go to int8"
    )
    # int8's own figure moving by a few per cent, as between runs, changes nothing.
    for noise in (0.95, 1.0, 1.04):
        shaken = {**latency, "model_int8.tflite": 20.0 * noise}
        assert best_file(FILES, shaken).file == "model_int8.tflite"


def test_a_file_clearly_faster_than_int8_replaces_it():
    latency = {**LATENCY, "model_int8.tflite": 30.0, "model_float32.tflite": 20.0}
    here = recommend(FILES, latency)[0]
    assert here.file == "model_float32.tflite"
    assert here.reason.startswith(
        "20 us per image here, more than 10% faster than model_int8.tflite (30 us)"
    )
    # Two files both clearly faster and within 10% of each other: the smaller one.
    latency["model_dynamic.tflite"] = 21.0
    assert best_file(FILES, latency).file == "model_dynamic.tflite"


def test_int8_onnx_stands_for_int8_when_the_tflite_was_not_measured():
    latency = {k: v for k, v in LATENCY.items() if k != "model_int8.tflite"}
    latency["model_int8.onnx"] = 42.0  # float32 TFLite at 40 us is within 10%
    assert best_file(FILES, latency).file == "model_int8.onnx"


def test_without_int8_files_the_fastest_wins_ties_to_the_smaller():
    files = [f for f in FILES if f.precision != "int8"]
    latency = {**LATENCY, "model_dynamic.tflite": 42.0}
    here = recommend(files, latency)[0]
    assert here.file == "model_dynamic.tflite"  # 42 us is within 10% of 40, and smaller
    assert "within 10% of the fastest, and smaller" in here.reason
    latency["model_dynamic.tflite"] = 60.0
    assert best_file(files, latency).file == "model_float32.tflite"


def test_without_measurements_this_machine_gets_the_int8_tflite():
    assert best_file(FILES).file == "model_int8.tflite"


def test_a_rejected_file_is_recommended_nowhere():
    files = _passed(FILES, lambda f: f.file != "model_int8.tflite")
    picks = {r.key: r.file for r in recommend(files, {})}
    assert "model_int8.tflite" not in picks.values()
    assert picks["pi32"] == "model_dynamic.tflite" and picks["pi64"] == "model_int8.onnx"


def test_the_microcontroller_reason_is_flash_and_ram():
    mcu = next(r for r in recommend(FILES, {}) if r.key == "mcu")
    assert "241.0 KiB flash, 5,172 B RAM" in mcu.reason


def test_nothing_passed_means_no_recommendation():
    assert recommend(_passed(FILES, lambda f: False), {}) == []
    assert best_file(_passed(FILES, lambda f: False)) is None
