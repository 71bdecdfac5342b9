import json
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli_without
from shared import source_copy

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TINY = DATA / "tiny"


def test_predict_images_and_arrays(test_images, tmp_path):
    np.save(tmp_path / "three.npy", test_images.x[:3])
    result = invoke(
        "predict",
        TINY / "model_int8.tflite",
        DATA / "ankle_boot.png",
        DATA / "ankle_boot.npy",
        tmp_path / "three.npy",
        "--top-k",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    assert lines[0].split()[1:3] == ["Ankle", "boot"]
    assert f"{tmp_path / 'three.npy'}[2]" in lines[4]


def test_predict_json():
    result = invoke(
        "predict",
        TINY / "model_float32.onnx",
        DATA / "ankle_boot.npy",
        "--json",
        "--top-k",
        "4",
        "--backend",
        "onnxruntime",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    (row,) = doc["results"]
    assert doc["backend"] == "onnxruntime" and len(row["top_k"]) == 4
    assert row["label"] == row["top_k"][0]["label"]
    assert row["confidence"] == pytest.approx(row["top_k"][0]["probability"])


def test_predict_bad_input(tmp_path):
    model = TINY / "model_int8.tflite"
    assert_one_line_error(
        invoke("predict", tmp_path / "nope.tflite", DATA / "ankle_boot.png"), "does not exist"
    )
    assert_one_line_error(invoke("predict", model, tmp_path / "missing.png"), "does not exist")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_one_line_error(invoke("predict", model, tmp_path / "empty.png"), "empty")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 32, 32), np.uint8))
    assert_one_line_error(invoke("predict", model, tmp_path / "wrong.npy"), "shape")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    assert_one_line_error(invoke("predict", model, tmp_path / "junk.npy"), "not a readable .npy")
    assert_one_line_error(
        invoke("predict", model, DATA / "ankle_boot.png", "--backend", "numpy"),
        "cannot run .tflite",
    )
    assert_one_line_error(
        invoke("predict", model, DATA / "ankle_boot.png", "--backend", "tensorrt")
    )
    assert_one_line_error(invoke("predict", model, DATA / "ankle_boot.png", "--threads", "0"))
    assert_one_line_error(invoke("predict", model, DATA / "ankle_boot.png", "--top-k", "11"))
    (tmp_path / "bad.onnx").write_bytes((TINY / "model_int8.tflite").read_bytes())
    assert_one_line_error(
        invoke("predict", tmp_path / "bad.onnx", DATA / "ankle_boot.png"), "rename"
    )


def test_bench_json_and_table():
    model = TINY / "model_int8.tflite"
    result = invoke("bench", model, "--batch-sizes", "1,4", "--runs", "20", "--json")
    assert result.exit_code == 0, result.stderr
    (doc,) = json.loads(result.stdout)
    assert set(doc["latency_us"]) == {"p50", "p95", "p99"}
    assert set(doc["throughput"]) == {"1", "4"} and doc["latency_ratio"] > 0
    assert doc["peak_rss_mb"] > 10 and doc["cold_start_s"] > 0 and doc["size_bytes"] > 0
    table = invoke("bench", model, TINY / "weights.npz", "--batch-sizes", "2", "--runs", "10")
    assert table.exit_code == 0 and "raw" in table.stdout and "weights.npz" in table.stdout
    assert_one_line_error(invoke("bench", model, "--batch-sizes", "a,b"), "--batch-sizes")
    assert_one_line_error(invoke("bench", model, "--batch-sizes", "0"), "--batch-sizes")


def test_predict_command_never_imports_tensorflow():
    heavy = ("tensorflow", "keras", "edgecnn.trainer.train", "edgecnn.export.exporter")
    done = run_cli_without(["predict", TINY / "model_int8.tflite", DATA / "ankle_boot.png"], heavy)
    assert "Ankle boot" in done.stdout


@pytest.mark.slow
def test_fresh_environment_with_only_the_litert_extra(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    src = source_copy(tmp_path)  # a clean copy: no build leftovers from this checkout
    done = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "-q", f"{src}[litert]"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check = subprocess.run([bin_dir / "python", "-c", "import tensorflow"], capture_output=True)
    assert check.returncode != 0, "tensorflow must not be installed by the litert extra"
    result = subprocess.run(
        [bin_dir / "edgecnn", "predict", TINY / "model_float32.tflite", DATA / "ankle_boot.npy"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Ankle boot" in result.stdout
    # Without Pillow a picture gets one sentence naming the extra to install.
    result = subprocess.run(
        [bin_dir / "edgecnn", "predict", TINY / "model_float32.tflite", DATA / "ankle_boot.png"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and 'pip install "edgecnn[images]"' in result.stderr
    # And an .onnx model names the onnx extra.
    onnx_like = tmp_path / "m.onnx"
    onnx_like.write_bytes(b"\x08\x07" + b"\x00" * 64)
    result = subprocess.run(
        [bin_dir / "edgecnn", "predict", onnx_like, DATA / "ankle_boot.npy"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and 'pip install "edgecnn[onnx]"' in result.stderr


@pytest.mark.parametrize("model", ["model_int8.tflite", "model_float32.onnx"])
def test_interpreters_print_nothing_on_stderr_and_errors_are_one_line(model, tmp_path):
    """In a real process: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" and
    onnxruntime's warnings go to file descriptor 2 straight from C++, not through Python."""
    import sys

    command = [sys.executable, "-m", "edgecnn", "predict", str(TINY / model)]
    done = subprocess.run([*command, str(DATA / "ankle_boot.npy")], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0 and "Ankle boot" in done.stdout
    assert done.stderr == ""
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 27, 28), np.uint8))
    done = subprocess.run([*command, str(wrong)], capture_output=True, text=True)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: ")
