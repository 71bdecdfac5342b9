import json
import shutil
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


@pytest.mark.slow
def test_not_a_keras_model(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"\x00" * 100)
    assert_one_line_error(invoke("export", bad, "--out", tmp_path / "o"), match="not a Keras model")


@pytest.mark.slow
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


def test_an_out_folder_holding_other_files_is_refused_before_any_work(tmp_path):
    """An export replaces its folder whole: a run folder or one's own folder is refused."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"never read")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = invoke("export", model, "--out", out)
    assert_one_line_error(result, match="holds files an export does not write (notes.txt)")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _digests(folder):
    """Every file under ``folder`` and its SHA-256."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _assert_one_model(out, source_sha256):
    """The report and every file it keeps, sidecar and reference name one source model."""
    from edgecnn.export.report_file import load_report
    from edgecnn.runtime.verify import read_reference, reference_path

    report = load_report(out)  # refuses a kept file whose sidecar names another model
    assert report.source_sha256 == source_sha256
    for record in report.kept:
        path = out / record.file
        assert load_classifier(path).metadata.source_sha256 == source_sha256, record.file
        meta = read_reference(reference_path(path))["meta"]
        assert meta["source_sha256"] == source_sha256, record.file


@pytest.mark.slow
def test_a_killed_export_leaves_the_earlier_export_whole(exported, tmp_path, fashion_dir):
    """SIGKILL while a new model's files are being written over an export of another."""
    import hashlib
    import zipfile

    out = tmp_path / "exports"
    shutil.copytree(exported.out, out)
    before = _digests(out)
    old_source = exported.report.source_sha256
    # Another model: the same network, its file changed (a zip comment), so every new
    # file records another source SHA-256 and a mix would show.
    run = tmp_path / "other-run"
    shutil.copytree(exported.model_path.parent, run, ignore=shutil.ignore_patterns("exports"))
    with zipfile.ZipFile(run / "model.keras", "a") as archive:
        archive.comment = b"another model"
    new_source = hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    assert new_source != old_source
    args = ["export", str(run), "--int8", "--out", str(out), "--data-dir", str(fashion_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    # Killed once the new float32 file has passed its gate and sits under its final name
    # (in the new folder), while the int8 files are still to come.
    ready = f".exports.partial-{proc.pid}-*/model_float32.tflite.reference.npz"
    try:
        deadline = time.monotonic() + 600
        while not list(tmp_path.glob(ready)):
            assert proc.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL, or no export left running behind a failed assert
        proc.wait()
    (partial,) = tmp_path.glob(f".exports.partial-{proc.pid}-*")
    assert (partial / "model_float32.tflite").is_file()
    # The folder is exactly the earlier export, byte for byte, and agrees with its report.
    assert _digests(out) == before
    _assert_one_model(out, old_source)
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    for record in exported.report.files:
        assert load_classifier(out / record.file).predict(images).shape == (2, 10)
    # The next export removes what the killed one left and replaces the folder whole.
    result = invoke("export", run, "--formats", "onnx", "--out", out, "--data-dir", fashion_dir)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert not partial.exists()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name] == []
    _assert_one_model(out, new_source)
    assert not (out / "model_int8.tflite").exists()  # nothing of the old export is left
