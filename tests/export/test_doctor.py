"""``edgecnn doctor`` and ``edgecnn export --remedy``: the crafted model's int8 loss named
and fixed, a model that needs nothing left alone, bad input answered in one line."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_helpers import assert_one_line_error, invoke
from own_data import write_folder

from edgecnn.export.doctor.diagnosis import Diagnosis
from edgecnn.export.doctor.show import format_diagnosis
from edgecnn.export.records import ExportReport
from edgecnn.records import Fields


@pytest.fixture(scope="module")
def crafted_plain(crafted_run, fashion_dir):
    """The crafted run exported with plain int8: both int8 files rejected."""
    done = invoke("export", crafted_run.out_dir, "--int8", "--data-dir", fashion_dir)
    assert done.exit_code == 1, done.stdout + done.stderr
    return crafted_run.out_dir


@pytest.fixture(scope="module")
def diagnosis(crafted_plain, fashion_dir):
    rejected = crafted_plain / "exports" / "model_int8.tflite.rejected"
    options = ("--images", 300, "--sweep", "100,2000", "--json")
    done = invoke("doctor", rejected, "--data-dir", fashion_dir, *options)
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


def test_plain_int8_fails_the_crafted_model(crafted_plain):
    exports = crafted_plain / "exports"
    assert (exports / "model_int8.tflite.rejected").is_file()
    assert (exports / "model_int8.onnx.rejected").is_file()


def test_the_doctor_names_the_scaled_layer(diagnosis):
    d = Diagnosis.from_fields(Fields(diagnosis))
    assert d.culprit == "conv1", d.finding
    assert d.agreement < 0.99
    first = d.test[0]
    assert first.layer == "conv1" and first.channel_range_ratio > 20
    assert first.median_channel_sqnr_db < 15 < first.sqnr_db
    by_layer = {t.layer: t for t in d.sensitivity}
    assert by_layer["conv1"].agreement >= 0.99  # its output in float: the loss is gone
    assert by_layer["conv1"].agreement > max(t.agreement for t in d.sensitivity[1:])
    assert [p.images for p in d.sweep] == [100, 2000]
    assert all(t.images == 300 for t in d.test + d.calibration + d.onnx)
    assert all(p.agreement < 0.99 for p in d.sweep)  # more images cannot fix it
    assert [t.layer for t in d.onnx][:2] == ["image", "conv1"]
    assert "conv1" in d.finding and "--remedy auto" in d.finding
    assert Diagnosis.from_fields(Fields(d.to_dict())) == d


def test_the_diagnosis_reads_as_tables(diagnosis):
    text = format_diagnosis(Diagnosis.from_fields(Fields(diagnosis)))
    for heading in ("SQNR dB", "median ch", "Sensitivity", "Calibration sweep", "int8 ONNX"):
        assert heading in text
    assert "The first tensor to lose its signal is conv1's output" in text


def test_auto_ends_with_files_that_pass_and_names_the_remedy(crafted_run, fashion_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(crafted_run.out_dir, run, ignore=shutil.ignore_patterns("exports"))
    done = invoke("export", run, "--remedy", "auto", "--formats", "tflite,onnx,c",
                  "--data-dir", fashion_dir)  # fmt: skip
    assert done.exit_code == 0, done.stdout + done.stderr
    report = ExportReport.from_dict(json.loads((run / "exports/export_report.json").read_text()))
    for name in ("model_int8.tflite", "model_int8.onnx"):
        record = next(f for f in report.files if f.file == name)
        assert record.passed and record.remedy is not None
        trials = record.remedy.trials
        assert trials[0].remedy == "none" and not trials[0].passed
        assert record.remedy.chosen == trials[-1].remedy != "none"
        assert trials[-1].passed and trials[-1].agreement >= 0.99
        assert record.remedy.chosen == "equalize"  # more calibration cannot fix it
        assert [t.remedy for t in trials] == ["none", "calibration", "equalize"]
    library = next(f for f in report.files if f.file == "c/")
    assert library.passed  # made from the remedied model's full-integer form
    for name in ("model_int8.tflite", "model_int8.onnx", "c/libedgecnn_model.so"):
        meta = json.loads((run / "exports" / f"{name}.json").read_text())
        assert meta["quantization"]["remedy"] == "equalize", name
    assert "remedy equalize: " in done.stdout
    # The doctor on the remedied file compares it with the equalized model it came from.
    looked = invoke("doctor", run, "--data-dir", fashion_dir, "--images", 200, "--sweep", "none",
                    "--json")  # fmt: skip
    assert looked.exit_code == 0, looked.stderr
    d = Diagnosis.from_fields(Fields(json.loads(looked.stdout)))
    assert d.remedy == "equalize" and d.culprit is None and d.agreement >= 0.99
    assert min(t.median_channel_sqnr_db for t in d.test + d.onnx if t.layer != "image") > 20
    assert "--remedy equalize" in d.finding


def test_a_named_remedy_the_onnx_file_cannot_take_leaves_it_plain(trained_run, tmp_path,
                                                                 fashion_dir):  # fmt: skip
    """``--remedy int16``: the .tflite gets 16-bit activations, measured against plain int8;
    ONNX, whose quantizer has no such remedy, stays plain int8 and says so."""
    out = tmp_path / "exports"
    done = invoke("export", trained_run.out_dir, "--remedy", "int16", "--out", out,
                  "--data-dir", fashion_dir)  # fmt: skip
    assert done.exit_code == 0, done.stdout + done.stderr
    report = ExportReport.from_dict(json.loads((out / "export_report.json").read_text()))
    tflite = next(f for f in report.files if f.file == "model_int8.tflite")
    assert tflite.remedy is not None and tflite.remedy.chosen == "int16"
    assert [t.remedy for t in tflite.remedy.trials] == ["none", "int16"]
    assert "integer-only" in tflite.remedy.trials[-1].note
    meta = json.loads((out / "model_int8.tflite.json").read_text())
    assert meta["quantization"]["remedy"] == "int16" and "16-bit" in meta["quantization"]["scheme"]
    onnx = next(f for f in report.files if f.file == "model_int8.onnx")
    assert onnx.remedy is not None and onnx.remedy.chosen == "none"
    assert [t.remedy for t in onnx.remedy.trials] == ["none"]
    assert "int16 applies to the .tflite only" in onnx.remedy.trials[0].note
    assert sorted(p.name for p in out.iterdir() if ".tmp" in p.name or "partial" in p.name) == []


@pytest.mark.slow
def test_auto_is_a_no_op_when_plain_int8_passes(tmp_path, test_images):
    root = tmp_path / "own"
    write_folder(root, test_images.x[:3000], test_images.y[:3000])
    run = tmp_path / "run"
    trained = invoke("train", "--data", root, "--image-size", 28, "--epochs", 4,
                     "--batch-size", 32, "--out", run)  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    done = invoke("export", run, "--remedy", "auto", "--formats", "tflite")
    assert done.exit_code == 0, done.stdout + done.stderr
    report = ExportReport.from_dict(json.loads((run / "exports/export_report.json").read_text()))
    record = next(f for f in report.files if f.file == "model_int8.tflite")
    assert record.remedy is not None and record.remedy.chosen == "none"
    assert [t.remedy for t in record.remedy.trials] == ["none"]


# -- bad input: one line, before TensorFlow --------------------------------------------


def test_doctor_bad_targets_are_one_line(tmp_path, tiny):
    assert_one_line_error(invoke("doctor", tmp_path / "nothing"), "does not exist")
    run = tmp_path / "run"
    (run / "exports").mkdir(parents=True)
    (run / "model.keras").write_bytes(b"not read")
    shutil.copy(tiny / "model_float32.tflite", run / "exports")
    assert_one_line_error(invoke("doctor", run), "has no int8 files")
    assert_one_line_error(invoke("doctor", run / "exports" / "model_float32.tflite"),
                          "not an int8 .tflite")  # fmt: skip
    (run / "exports" / "model_int8.tflite").write_bytes(b"TFL3" + bytes(200))
    assert_one_line_error(invoke("doctor", run), "not a TFLite model LiteRT can run")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tiny / "model_int8.tflite", lone)
    assert_one_line_error(invoke("doctor", lone / "model_int8.tflite"), "no model.keras")
    assert_one_line_error(invoke("doctor", run, "--images", 0), "--images")
    assert_one_line_error(invoke("doctor", run, "--sweep", "100,lots"), "--sweep")


def test_export_refuses_an_unknown_remedy_or_one_full_integer_forbids(tmp_path):
    result = invoke("export", tmp_path, "--remedy", "magic")
    assert_one_line_error(result, "--remedy must be one of")
    for remedy in ("float-layer", "int16"):
        result = invoke("export", tmp_path, "--remedy", remedy, "--full-integer")
        assert_one_line_error(result, "which --full-integer forbids")
