"""``--verify-with``: the export gate proving each file on further runtimes."""

from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from shared import TINY

from edgecnn.errors import ConfigError
from edgecnn.export.config import ExportConfig, backend_names
from edgecnn.export.exporter import verify_elsewhere
from edgecnn.export.records import ExportedFile
from edgecnn.export.report_file import load_report
from edgecnn.export.table import runtime_notes
from edgecnn.runtime import load_classifier
from edgecnn.runtime.gate import Scores


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
    int8, float32 = config.job.config.gate("int8"), config.job.config.gate("float32")
    checks = verify_elsewhere(config, TINY / "model_int8.onnx", "model_int8.onnx", int8,
                              "onnxruntime")  # fmt: skip
    # litert-builtin runs no .onnx, and onnxruntime already verified it.
    assert list(checks) == ["openvino"]
    measured = checks["openvino"]
    assert measured.scores.agreement >= 0.97 and measured.failures == ()
    assert measured.latency_us > 0 and np.isfinite(measured.scores.max_prob_diff)
    (note,) = runtime_notes(_report("model_int8.onnx", checks))
    assert note.startswith("model_int8.onnx on openvino: accuracy") and note.endswith("pass")

    checks = verify_elsewhere(config, TINY / "model_float32.tflite", "model_float32.tflite",
                              float32, "litert")  # fmt: skip
    assert list(checks) == ["openvino", "litert-builtin"]
    assert checks["openvino"].scores.max_prob_diff < 1e-4  # the float32 gate's limit


def test_a_file_failing_on_a_named_backend_fails_the_gate(prepared, tmp_path):
    pytest.importorskip("openvino")
    config = prepared(verify_with=("openvino",), min_agreement=1.01)
    gate = config.job.config.gate("int8")
    checks = verify_elsewhere(config, TINY / "model_int8.onnx", "model_int8.onnx", gate,
                              "onnxruntime")  # fmt: skip
    assert checks["openvino"].failures[0].startswith("top-1 agreement")
    # A file the backend cannot load fails too, named by its final name.
    damaged = tmp_path / ".model_int8.tmp.onnx"
    damaged.write_bytes(b"\x08\x07" + bytes(range(256)) * 4)
    config = prepared(verify_with=("openvino",))
    checks = verify_elsewhere(config, damaged, "model_int8.onnx", gate, "onnxruntime")
    failure = checks["openvino"].failures[0]
    assert failure.startswith("model_int8.onnx: ") and str(damaged) not in failure
    assert "FAIL" in runtime_notes(_report("model_int8.onnx", checks))[0]


def _report(name, checks):
    """A report holding one file whose ``--verify-with`` checks are ``checks``."""
    record = ExportedFile(
        format="onnx", precision="int8", file=name, size_bytes=1,
        scores=Scores(1.0, 1.0, 1.0, 1, 0.0), backend="onnxruntime", passed=True,
        failures=(), runtimes=checks,
    )  # fmt: skip
    return SimpleNamespace(files=(record,))


def test_export_verifies_on_openvino_and_reports_it(trained_run, tmp_path, fashion_dir):
    pytest.importorskip("openvino")
    out = tmp_path / "exports"
    result = invoke(
        "export", trained_run.out_dir, "--formats", "onnx", "--int8", "--out", out,
        "--data-dir", fashion_dir, "--verify-with", "openvino",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = load_report(out)
    assert report.config.verify_with == ("openvino",)
    onnx_files = [r for r in report.files if r.file.endswith(".onnx")]
    assert len(onnx_files) == 2
    for record in onnx_files:
        assert record.passed and record.runtimes["openvino"].scores.agreement >= 0.99, record
    assert "weights.npz" not in {r.file for r in report.files if r.runtimes}
    assert "model_int8.onnx on openvino: accuracy" in result.stdout
