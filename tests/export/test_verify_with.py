"""``--verify-with``: the export gate proving each file on further runtimes."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from shared import TINY

from edgecnn.errors import ConfigError
from edgecnn.export.config import ExportConfig, backend_names
from edgecnn.export.exporter import verify_elsewhere
from edgecnn.export.table import runtime_notes
from edgecnn.runtime import load_classifier


def test_names_are_parsed_and_checked_before_any_work():
    assert backend_names(" openvino, litert-builtin,,openvino ") == ("openvino", "litert-builtin")
    assert ExportConfig(verify_with=("openvino",)).to_dict()["verify_with"] == ["openvino"]
    with pytest.raises(ConfigError, match="backend names from"):
        ExportConfig(verify_with=("tensorrt",))
    with pytest.raises(ConfigError, match="runs .so, .dylib, .dll files"):
        ExportConfig(verify_with=("c",))
    with pytest.raises(ConfigError, match="runs .tflite files"):
        ExportConfig(formats=("onnx",), verify_with=("litert-builtin",))


def test_the_cli_refuses_unknown_and_missing_backends_in_one_line(tmp_path):
    # The run folder does not exist: the backend names are answered first.
    result = invoke("export", tmp_path / "no-run", "--verify-with", "tensorrt")
    assert_one_line_error(result, "--verify-with takes backend names")
    result = invoke("run", "--out", tmp_path / "run", "--verify-with", "tensorrt")
    assert_one_line_error(result, "--verify-with takes backend names")
    assert not (tmp_path / "run").exists()
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        result = invoke("export", tmp_path / "no-run", "--verify-with", "tflite")
        assert_one_line_error(result, "pip install tflite-runtime")


@pytest.fixture(scope="module")
def prepared(test_images):
    """What ``verify_elsewhere`` reads of an export, the float32 .tflite standing for Keras."""
    images = test_images.x[:1000]
    reference = load_classifier(TINY / "model_float32.tflite").predict(images)

    def with_config(**options):
        return SimpleNamespace(
            job=SimpleNamespace(config=ExportConfig(**options)),
            images=images,
            data=SimpleNamespace(y_test=test_images.y[:1000]),
            reference=reference,
        )

    return with_config


def test_each_named_backend_that_runs_the_file_verifies_it(prepared):
    pytest.importorskip("openvino")
    # The tiny models passed a gate of 97% (tools/make_test_models.py): so here.
    config = prepared(
        verify_with=("openvino", "litert-builtin", "onnxruntime"),
        min_agreement=0.97,
        max_accuracy_drop=1.0,
    )
    row = {"file": "model_int8.onnx", "backend": "onnxruntime"}
    assert verify_elsewhere(config, TINY / "model_int8.onnx", "int8", row) == []
    # litert-builtin runs no .onnx, and onnxruntime already verified it.
    assert list(row["runtimes"]) == ["openvino"]
    measured = row["runtimes"]["openvino"]
    assert measured["agreement"] >= 0.97 and measured["failures"] == []
    assert measured["latency_us"] > 0 and np.isfinite(measured["max_prob_diff"])
    (note,) = runtime_notes({"files": [row]})
    assert note.startswith("model_int8.onnx on openvino: accuracy") and note.endswith("pass")

    row = {"file": "model_float32.tflite", "backend": "litert"}
    assert verify_elsewhere(config, TINY / "model_float32.tflite", "float32", row) == []
    assert list(row["runtimes"]) == ["openvino", "litert-builtin"]
    assert row["runtimes"]["openvino"]["max_prob_diff"] < 1e-4  # the float32 gate's limit


def test_a_file_failing_on_a_named_backend_fails_the_gate(prepared, tmp_path):
    pytest.importorskip("openvino")
    config = prepared(verify_with=("openvino",), min_agreement=1.01)
    row = {"file": "model_int8.onnx", "backend": "onnxruntime"}
    failures = verify_elsewhere(config, TINY / "model_int8.onnx", "int8", row)
    assert failures and failures[0].startswith("on openvino: top-1 agreement")
    # A file the backend cannot load fails too, named by its final name.
    damaged = tmp_path / ".model_int8.tmp.onnx"
    damaged.write_bytes(b"\x08\x07" + bytes(range(256)) * 4)
    row = {"file": "model_int8.onnx", "backend": "onnxruntime"}
    failures = verify_elsewhere(prepared(verify_with=("openvino",)), damaged, "int8", row)
    assert failures and failures[0].startswith("on openvino: model_int8.onnx: ")
    assert str(damaged) not in failures[0] and "FAIL" in runtime_notes({"files": [row]})[0]


def test_export_verifies_on_openvino_and_reports_it(trained_run, tmp_path, fashion_dir):
    pytest.importorskip("openvino")
    out = tmp_path / "exports"
    result = invoke(
        "export", trained_run.out_dir, "--formats", "onnx", "--int8", "--out", out,
        "--data-dir", fashion_dir, "--verify-with", "openvino",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "export_report.json").read_text())
    assert report["config"]["verify_with"] == ["openvino"]
    onnx_rows = [r for r in report["files"] if r["file"].endswith(".onnx")]
    assert len(onnx_rows) == 2
    for row in onnx_rows:
        assert row["passed"] and row["runtimes"]["openvino"]["agreement"] >= 0.99, row
    assert "weights.npz" not in {r["file"] for r in report["files"] if "runtimes" in r}
    assert "model_int8.onnx on openvino: accuracy" in result.stdout
