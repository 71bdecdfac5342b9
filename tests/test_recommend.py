"""One recommended file per target, loadable there, with its reasons in numbers."""

from edgecnn.pipeline.recommend import best_file, recommend


def _row(file, fmt, precision, size, agreement=0.995, passed=True):
    return {"file": file, "format": fmt, "precision": precision, "size_bytes": size,
            "size_ratio": size / 1000, "agreement": agreement, "passed": passed}  # fmt: skip


FILES = [
    _row("model_float32.tflite", "tflite", "float32", 1000, 1.0),
    _row("model_dynamic.tflite", "tflite", "dynamic", 260, 0.999),
    _row("model_int8.tflite", "tflite", "int8", 250, 0.994),
    _row("model_int8.onnx", "onnx", "int8", 255, 0.995),
    _row("weights.npz", "numpy", "float32", 1001, 1.0),
    {
        **_row("c/", "c", "int8", 247),
        "c": {"work_bytes": 4900},
        "mcu": {"stack_bytes": 272, "library_flash": 246_828},
    },  # fmt: skip
    _row("tflm/", "tflm", "int8", 253),
]


def test_each_target_gets_a_file_it_can_load():
    picks = {r["key"]: r["file"] for r in recommend(FILES, {})}
    assert picks["pi32"] == "model_int8.tflite"  # no onnxruntime wheel for 32-bit ARM
    assert picks["mobile"] == "model_int8.tflite"  # LiteRT only
    assert picks["pi64"] == "model_int8.tflite"  # tflite before onnx at equal footing
    assert picks["mcu"] == "c/"


def test_this_machine_gets_the_fastest_measured_file_ties_go_to_the_smaller():
    latency = {
        "model_float32.tflite": 40.0,
        "model_dynamic.tflite": 19.0,
        "model_int8.tflite": 20.0,
        "model_int8.onnx": 50.0,
        "weights.npz": 190.0,
    }
    assert best_file(FILES, latency)["file"] == "model_int8.tflite"  # 20 us is within 10%
    latency["model_int8.tflite"] = 30.0
    assert best_file(FILES, latency)["file"] == "model_dynamic.tflite"
    here = recommend(FILES, latency)[0]
    assert here["reason"].startswith("19 us per image here (fastest)")


def test_a_rejected_file_is_recommended_nowhere():
    files = [dict(f, passed=f["file"] != "model_int8.tflite") for f in FILES]
    picks = {r["key"]: r["file"] for r in recommend(files, {})}
    assert "model_int8.tflite" not in picks.values()
    assert picks["pi32"] == "model_dynamic.tflite" and picks["pi64"] == "model_int8.onnx"


def test_the_microcontroller_reason_is_flash_and_ram():
    mcu = next(r for r in recommend(FILES, {}) if r["key"] == "mcu")
    assert "241.0 KiB flash, 5,172 B RAM" in mcu["reason"]


def test_nothing_passed_means_no_recommendation():
    assert recommend([dict(f, passed=False) for f in FILES], {}) == []
    assert best_file([dict(f, passed=False) for f in FILES]) is None
