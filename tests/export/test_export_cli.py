import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke

from edgecnn.runtime import load_classifier


def test_gate_failure_rejects_the_file_and_exits_1(trained_run, tmp_path, fashion_dir):
    out = tmp_path / "exports"
    result = invoke(
        "export",
        trained_run.out_dir,
        "--formats",
        "tflite",
        "--out",
        out,
        "--data-dir",
        fashion_dir,
        "--min-agreement",
        "1.01",
    )
    assert result.exit_code == 1, result.stderr
    assert not (out / "model_float32.tflite").exists()
    assert not (out / "model_float32.tflite.json").exists()
    assert (out / "model_float32.tflite.rejected").is_file()
    report = json.loads((out / "export_report.json").read_text())
    (row,) = [r for r in report["files"] if r["file"] == "model_float32.tflite"]
    assert row["passed"] is False and "agreement" in row["failures"][0]
    assert report["passed"] is False
    assert "FAIL: top-1 agreement" in result.stdout
    # The other files were still made and judged: at 101% every one of them is rejected.
    assert (out / "weights.npz.rejected").is_file() and not (out / "weights.npz").exists()
    assert [r["passed"] for r in report["files"]] == [False, False]


def test_json_report(trained_run, tmp_path, fashion_dir):
    out = tmp_path / "exports"
    result = invoke(
        "export",
        trained_run.out_dir,
        "--int8",
        "--formats",
        "onnx",
        "--calib-samples",
        "50",
        "--out",
        out,
        "--data-dir",
        fashion_dir,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["file"] for r in report["files"]] == [
        "model_float32.onnx",
        "model_int8.onnx",
        "weights.npz",
    ]
    assert report["passed"] and report == json.loads((out / "export_report.json").read_text())
    assert json.loads((out / "calibration.json").read_text())["samples"] == 50


def test_default_out_is_exports_in_the_run_directory(trained_run, fashion_dir):
    result = invoke("export", trained_run.out_dir, "--formats", "onnx", "--data-dir", fashion_dir)
    assert result.exit_code == 0, result.stderr
    assert (trained_run.out_dir / "exports" / "model_float32.onnx").is_file()
    assert "model_float32.onnx" in result.stdout and "pass" in result.stdout


@pytest.mark.parametrize(
    "args,match",
    [
        (["--formats", "tflite,coreml"], "--formats"),
        (["--formats", ""], "--formats"),
        (["--fp16", "--formats", "onnx"], "--fp16"),
        (["--calib-samples", "0"], "--calib-samples"),
        (["--calib-method", "magic"], "--calib-method"),
        (["--min-agreement", "99.5"], "--min-agreement"),
        (["--max-accuracy-drop", "-1"], "--max-accuracy-drop"),
    ],
)
def test_impossible_options(trained_run, args, match):
    assert_one_line_error(invoke("export", trained_run.out_dir, *args), match=match)


def test_missing_model(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "nope.keras"), match="does not exist")


def test_not_a_keras_model(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"\x00" * 100)
    assert_one_line_error(invoke("export", bad, "--out", tmp_path / "o"), match="not a Keras model")


def test_model_whose_input_the_runtime_cannot_take(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((28, 28, 2)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.save(tmp_path / "other.keras")
    result = invoke("export", tmp_path / "other.keras")
    assert_one_line_error(result, match="input has 2 channels; expected 1 (greyscale) or 3")
    assert not (tmp_path / "exports").exists()


def test_unwritable_out_dir(trained_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(
        invoke("export", trained_run.out_dir, "--out", blocker / "x"), match="cannot write"
    )


@pytest.mark.slow
def test_killed_mid_export_never_leaves_a_broken_model(exported, tmp_path, fashion_dir):
    out = tmp_path / "exports"
    shutil.copytree(exported.out, out)
    before = [p.name for p in out.iterdir() if p.suffix in (".tflite", ".onnx", ".npz")
              and not p.name.endswith(".reference.npz")]  # fmt: skip
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecnn",
            "export",
            str(exported.model_path.parent),
            "--int8",
            "--fp16",
            "--dynamic",
            "--out",
            str(out),
            "--data-dir",
            str(fashion_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it while it is writing files: after the first temporary file appears.
    deadline = time.monotonic() + 120
    while not any(".tmp" in p.name for p in out.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    for name in before:
        # Whatever sits under a final name is a complete model: the old or the new one.
        assert load_classifier(out / name).predict(images).shape == (2, 10)
        # ... and its reference, if there, reads whole (old or new; verify says which).
        if (out / f"{name}.reference.npz").is_file():
            from edgecnn.runtime.verify import read_reference

            assert len(read_reference(out / f"{name}.reference.npz")["images"]) == 500
