import contextlib
import fcntl
import hashlib
import json
import os

import numpy as np
import pytest
from shared import EXPORTED_FILES, export_record, export_report_document

from edgecnn.errors import DataError
from edgecnn.export.records import ExportReport
from edgecnn.runtime import load_classifier
from edgecnn.runtime.labels import FASHION_MNIST_LABELS

FILES = list(EXPORTED_FILES)
MISSING = (FileNotFoundError, DataError)  # what load_report says of a folder with no report


def test_every_file_is_written_verified_and_reported(exported):
    names = sorted(p.name for p in exported.out.iterdir())
    for name in FILES:
        assert name in names, name
        assert f"{name}.json" in names
        assert f"{name}.reference.npz" in names  # for edgecnn verify on a device
    assert not [n for n in names if n.endswith(".rejected") or ".tmp" in n], names
    report = json.loads((exported.out / "export_report.json").read_text())
    assert report["passed"] is True
    assert [r["file"] for r in report["files"]] == FILES
    for row in report["files"]:
        for key in (
            "size_bytes",
            "size_ratio",
            "accuracy",
            "delta_pp",
            "agreement",
            "max_prob_diff",
            "latency_us",
            "passed",
        ):
            assert key in row, key
        assert row["size_bytes"] == (exported.out / row["file"]).stat().st_size
    # The file is the typed record the export returned, read back field for field.
    assert ExportReport.from_dict(report) == exported.report
    assert "Ankle boot" not in exported.log  # a table of files, not labels
    assert "model_int8.tflite" in exported.log and "pass" in exported.log


@pytest.mark.parametrize(
    "name,atol",
    [("model_float32.tflite", 1e-5), ("model_float32.onnx", 1e-5), ("weights.npz", 1e-5)],
)
def test_float32_files_match_keras(exported, keras_reference, name, atol):
    probs = load_classifier(exported.out / name, calibrated=False).predict(keras_reference.x)
    np.testing.assert_allclose(probs, keras_reference.probs, atol=atol)
    assert np.mean(probs.argmax(1) == keras_reference.probs.argmax(1)) >= 0.999


@pytest.mark.parametrize(
    "name,min_agreement,max_drop_pp",
    [
        ("model_float16.tflite", 0.999, 0.1),
        ("model_dynamic.tflite", 0.99, 0.5),
        ("model_int8.tflite", 0.99, 0.5),
        ("model_int8.onnx", 0.99, 0.5),
    ],
)
def test_reduced_precision_files_agree_with_keras(
    exported, keras_reference, name, min_agreement, max_drop_pp
):
    probs = load_classifier(exported.out / name).predict(keras_reference.x)
    pred, ref = probs.argmax(1), keras_reference.probs.argmax(1)
    assert np.mean(pred == ref) >= min_agreement
    drop = 100 * (np.mean(ref == keras_reference.y) - np.mean(pred == keras_reference.y))
    assert drop <= max_drop_pp
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-3)


def test_int8_files_are_about_a_quarter_of_float32(exported):
    f32 = (exported.out / "model_float32.tflite").stat().st_size
    assert (exported.out / "model_int8.tflite").stat().st_size <= 0.27 * f32
    assert (exported.out / "model_int8.onnx").stat().st_size <= 0.27 * f32


def _ops_and_dtypes(interpreter):
    tensors = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return [
        (op["op_name"], {tensors[i] for i in op["outputs"]})
        for op in interpreter._get_ops_details()
    ]


def test_int8_tflite_is_int8_but_its_last_layer_and_softmax(exported):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(exported.out / "model_int8.tflite"),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    ops = _ops_and_dtypes(interpreter)
    # The logits layer reads the dequantized int8 output of the layer before it.
    assert [(name, dtypes) for name, dtypes in ops[-3:]] == [
        ("DEQUANTIZE", {"float32"}),
        ("FULLY_CONNECTED", {"float32"}),
        ("SOFTMAX", {"float32"}),
    ]
    compute = {"CONV_2D", "MAX_POOL_2D", "RELU", "RESHAPE", "FULLY_CONNECTED"}
    shape_math = {"SHAPE", "STRIDED_SLICE", "PACK"}  # int32 flatten shape for a dynamic batch
    for name, dtypes in ops[:-3]:
        assert name in compute | shape_math, name
        assert dtypes <= {"int8", "int32"}, (name, dtypes)
    meta = load_classifier(exported.out / "model_int8.tflite").metadata.quantization
    assert "float32" in meta["scheme"] and "output" not in meta
    assert meta["input"]["dtype"] == "int8"


def test_full_integer_conversion_has_no_float_tensor(trained_run):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgecnn.export.formats.tflite import convert_model
    from edgecnn.trainer.evaluate import load_keras_model

    model = load_keras_model(trained_run.out_dir / "model.keras")
    calibration = np.random.default_rng(0).random((20, *model.input_shape[1:]), np.float32)
    data = convert_model(model, "int8", calibration, full_integer=True)
    interpreter = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    ops = _ops_and_dtypes(interpreter)
    assert all(dtypes <= {"int8", "int32"} for _, dtypes in ops), ops
    assert not {"DEQUANTIZE", "QUANTIZE"} & {name for name, _ in ops}


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx"])
def test_int8_runners_up_are_in_the_float_models_order(exported, keras_reference, name):
    """Top-2 in Keras's order on most images; int8 scores alone managed about half.

    On the default 10-epoch model: 98.0% for both files (50.3% with an int8 softmax).
    """
    probs = load_classifier(exported.out / name).predict(keras_reference.x)
    ours = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    theirs = np.argsort(-keras_reference.probs, axis=1, kind="stable")[:, :2]
    assert np.mean(np.all(ours == theirs, axis=1)) >= 0.9
    top = np.sort(probs, axis=1)
    assert np.mean(top[:, -1] == top[:, -2]) < 0.001  # no ties listed in label order


def test_int8_onnx_is_qdq_with_int8_weights(exported):
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = onnx.load(exported.out / "model_int8.onnx").graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {i.name: i for i in graph.initializer}
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert len(compute) == 4
    for node in compute:
        for name in node.input[:2]:  # activation and weight both arrive dequantized
            assert producers[name].op_type == "DequantizeLinear", (node.name, name)
        weight_q = producers[node.input[1]].input[0]
        assert initializers[weight_q].data_type == TensorProto.INT8
        scale = numpy_helper.to_array(initializers[producers[node.input[1]].input[1]])
        assert scale.size > 1, "weights must be quantized per channel"
    # Float initializers may only be quantization scales: every weight matrix is int8.
    scales = {n.input[1] for n in graph.node if n.op_type.endswith("uantizeLinear")}
    big_float = [
        i.name
        for i in graph.initializer
        if i.data_type == TensorProto.FLOAT
        and i.name not in scales
        and numpy_helper.to_array(i).size > 64
    ]
    assert not big_float, big_float
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch"


@pytest.mark.parametrize("name", FILES)
def test_metadata_is_embedded_and_beside(exported, name):
    clf = load_classifier(exported.out / name)
    meta = clf.metadata
    assert meta.labels == FASHION_MNIST_LABELS and clf.labels == FASHION_MNIST_LABELS
    assert meta.dataset == "fashion" and meta.input_shape == (28, 28, 1)
    assert meta.layout == "NHWC" and meta.light_on_dark and meta.pixel_scale == 1 / 255
    digest = hashlib.sha256(exported.model_path.read_bytes()).hexdigest()
    assert meta.source_sha256 == digest
    assert meta.edgecnn_version
    sidecar = json.loads((exported.out / f"{name}.json").read_text())
    data = (exported.out / name).read_bytes()
    record = {"name": name, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert sidecar == {**meta.to_dict(), "file": record}
    assert meta.schema == 2 and meta.integrity
    # Each file's own temperature and threshold, fitted on the validation split at export;
    # the classifier applies them.
    confidence = meta.confidence
    assert confidence is not None and confidence.fitted_on == "validation"
    assert 0.01 <= confidence.temperature <= 100
    assert confidence.ece_after is not None and confidence.ece_before is not None
    assert confidence.ece_after <= max(confidence.ece_before, 0.02)
    assert confidence.reject_below is not None and 0 < confidence.reject_below < 1
    assert (clf.temperature, clf.reject_below) == (confidence.temperature, confidence.reject_below)
    if "int8" in name:
        assert meta.precision == "int8"
        assert meta.quantization["calibration"]["split"] == "train"
    if name == "model_int8.tflite":
        q = meta.quantization
        assert q["input"]["dtype"] == "int8" and "output" not in q  # float probabilities
        assert q["input"]["scale"] == pytest.approx(1 / 255)


def test_metadata_from_the_sidecar_alone(exported, tmp_path):
    import onnx

    proto = onnx.load(exported.out / "model_float32.onnx")
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, bare)
    sidecar = json.loads((exported.out / "model_float32.onnx.json").read_text())
    del sidecar["file"]  # written by hand, for a file edited by hand: no SHA-256 to check
    sidecar["labels"] = [f"class {i}" for i in range(10)]
    (tmp_path / "bare.onnx.json").write_text(json.dumps(sidecar))
    assert load_classifier(bare).labels[3] == "class 3"


def test_tflite_signature_names_input_and_output(exported):
    from ai_edge_litert.interpreter import Interpreter

    for name in ("model_float32.tflite", "model_int8.tflite"):
        interpreter = Interpreter(model_path=str(exported.out / name))
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}
        }


def test_calibration_uses_only_training_images(exported):
    record = json.loads((exported.out / "calibration.json").read_text())
    assert record["split"] == "train" and record["samples"] == 500
    indices = np.array(record["train_indices"])
    assert len(set(indices.tolist())) == 500 and indices.max() < 55_000
    np.testing.assert_array_equal(np.array(record["file_indices"]), indices + 5000)


def test_calibration_draw_is_seeded(fashion_dir):
    from edgecnn.export.config import ExportConfig
    from edgecnn.export.exporter import calibration_images
    from edgecnn.trainer.idx import load_dataset

    data = load_dataset("fashion", fashion_dir)
    _, a = calibration_images(data, ExportConfig(seed=1, calib_samples=50))
    _, b = calibration_images(data, ExportConfig(seed=1, calib_samples=50))
    _, c = calibration_images(data, ExportConfig(seed=2, calib_samples=50))
    assert a["train_indices"] == b["train_indices"] != c["train_indices"]


def test_every_file_and_reference_records_the_reports_source_model(exported):
    from edgecnn.export.report_file import load_report
    from edgecnn.runtime.verify import read_reference, reference_path

    report = load_report(exported.out)  # checks every kept file's sidecar against it
    for record in report.kept:
        if not record.is_folder:
            meta = read_reference(reference_path(exported.out / record.file))["meta"]
            assert meta["source_sha256"] == report.source_sha256, record.file
            assert meta["min_agreement"] == record.gate.min_agreement  # the whole gate
            assert meta["max_accuracy_drop_pp"] == record.gate.max_accuracy_drop_pp
    assert report.out_dir == str(exported.out)  # the folder's name, not its partial's
    name = exported.out.name
    beside = [p.name for p in exported.out.parent.iterdir() if name in p.name and p.name != name]
    assert beside == [f".{name}.lock"]  # no staging folder left, only the lock file


# ---- the folder is replaced whole (no TensorFlow: the staging alone) ---------------------


def _files(folder):
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _leftovers(out):
    """What stands beside ``out`` under a name made from it, but its lock file."""
    return sorted(
        p.name
        for p in out.parent.iterdir()
        if out.name in p.name and p.name not in (out.name, f".{out.name}.lock")
    )


def _staging(out, kind, pid=4_000_000, files=None):
    """A marked staging folder a dead export left (pid above any pid_max: nobody's)."""
    from edgecnn.export import staging

    token = f"{pid}-0123456789abcdef"
    folder = staging._staging_path(out, kind, token)
    folder.mkdir()
    staging._mark(folder, token)
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    return folder


@contextlib.contextmanager
def _held(path):
    """Hold an ``flock`` on ``path`` for the block, as a live export would."""
    fd = os.open(path, os.O_RDONLY | (0 if os.path.isdir(path) else os.O_CREAT), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def old_export(tmp_path):
    """A folder holding an earlier "export": a report, a model, its sidecar."""
    out = tmp_path / "exports"
    out.mkdir()
    files = {"export_report.json": b"{}", "model_int8.tflite": b"old model",
             "model_int8.tflite.json": b"{}", "c/edgecnn_model.c": b"int x;"}  # fmt: skip
    for name, data in files.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(data)
    return out


def test_a_finished_export_replaces_the_folder_whole(old_export):
    from edgecnn.export.staging import staged_folder

    old_export.chmod(0o2770)  # a group's shared folder stays one
    with staged_folder(old_export) as (final, partial):
        assert final == old_export and partial.parent == old_export.parent
        assert [p.name for p in partial.iterdir()] == [".edgecnn-staging"]  # its marker
        (partial / "model_float32.onnx").write_bytes(b"new model")
        (partial / "export_report.json").write_bytes(b'{"new": 1}')
    # Nothing of the old export stays beside the new one: not even a file it did not write.
    assert _files(old_export) == {"model_float32.onnx": b"new model",
                                  "export_report.json": b'{"new": 1}'}  # fmt: skip
    assert _leftovers(old_export) == []
    assert old_export.stat().st_mode & 0o7777 == 0o2770
    lock = old_export.with_name(".exports.lock")  # stays, hidden and empty: see staging
    assert lock.is_file() and lock.stat().st_size == 0


@pytest.mark.parametrize("error", [RuntimeError("conversion failed"), KeyboardInterrupt()])
def test_a_failed_export_leaves_the_old_folder_as_it_was(old_export, error):
    from edgecnn.export.staging import staged_folder

    before = _files(old_export)
    with pytest.raises(type(error)), staged_folder(old_export) as (_, partial):
        (partial / "model_int8.tflite").write_bytes(b"new model")
        raise error
    assert _files(old_export) == before and _leftovers(old_export) == []


def test_a_first_export_that_fails_leaves_no_folder(tmp_path):
    from edgecnn.export.staging import staged_folder

    out = tmp_path / "exports"
    with pytest.raises(RuntimeError), staged_folder(out) as (_, partial):
        (partial / "calibration.json").write_text("{}")
        raise RuntimeError("no data")
    assert not out.exists() and _leftovers(out) == []


def test_killed_between_the_two_renames_the_next_export_puts_the_old_back(old_export):
    """The first rename done (exports -> .exports.old-PID-TOKEN), the second not."""
    from edgecnn.export import staging
    from edgecnn.export.staging import staged_folder

    before = _files(old_export)
    token = "4000000-0123456789abcdef"  # a pid above any pid_max: a dead export's
    staging._mark(old_export, token)  # as swap marks it before the first rename
    old_export.rename(staging._staging_path(old_export, "old", token))
    _staging(old_export, "partial", files={"model_float32.onnx": b"new, complete"})
    with pytest.raises(RuntimeError), staged_folder(old_export):
        assert _files(old_export) == before  # put back before anything else
        raise RuntimeError("stop here")
    assert _files(old_export) == before and _leftovers(old_export) == []


def test_a_live_exports_folders_are_left_alone(old_export):
    """While an export holds the lock file, nothing beside the folder is touched."""
    from edgecnn.errors import ConfigError
    from edgecnn.export import staging
    from edgecnn.export.report_file import load_report
    from edgecnn.export.staging import lock_path, staged_folder

    live = _staging(old_export, "partial", files={"export_report.json": b"{}"})
    with _held(lock_path(old_export)):
        with (
            pytest.raises(ConfigError, match="being written by another"),
            staged_folder(old_export),
        ):
            pass
        assert live.is_dir()
        # A reader, between a live export's two renames, leaves the old folder aside too.
        token = "4000000-0123456789abcdef"
        staging._mark(old_export, token)
        aside = old_export.rename(staging._staging_path(old_export, "old", token))
        with pytest.raises(MISSING):
            load_report(old_export)
        assert not old_export.exists() and aside.is_dir()
        aside.rename(old_export)
    with staged_folder(old_export) as (_, partial):  # its owner gone, it goes too
        (partial / "export_report.json").write_text("{}")
    assert _leftovers(old_export) == []


def test_a_users_own_old_and_partial_folders_are_never_touched(old_export):
    """``mv exports exports.old-1``, ``cp -r exports exports.partial-2``: a user's backups.

    Neither an export nor a reader renames them into place or removes them, with or
    without the folder there; nor a hidden folder of the staging name without a marker.
    """
    import shutil

    from edgecnn.export.report_file import load_report
    from edgecnn.export.staging import staged_folder

    report = json.dumps(export_report_document()).encode()
    (old_export / "export_report.json").write_bytes(report)
    backups = [old_export.with_name(n) for n in ("exports.old-1", "exports.partial-2")]
    backups.append(old_export.with_name(".exports.old-7-0123456789abcdef"))
    for backup in backups:
        shutil.copytree(old_export, backup)
    forged = backups[-1] / ".edgecnn-staging"  # a marker for another token than the name's
    forged.write_text("edgecnn export 8 0123456789abcdef\n")
    saved = {b: _files(b) for b in backups}

    shutil.rmtree(old_export)  # <out> missing, as between an export's two renames
    with pytest.raises(MISSING):
        load_report(old_export)
    assert not old_export.exists()
    with staged_folder(old_export) as (_, partial):
        assert not old_export.exists()  # nothing was put back
        (partial / "export_report.json").write_bytes(report)
    assert load_report(old_export).files == ()
    with staged_folder(old_export) as (_, partial):  # once more, over the new export
        (partial / "export_report.json").write_bytes(report)
    assert {b: _files(b) for b in backups} == saved
    assert _files(old_export) == {"export_report.json": report}


def test_a_second_export_between_the_two_renames_is_refused(old_export, monkeypatch):
    """The lock is on a lock file beside the folder, not on the folder that is renamed.

    A second export starting while the first has renamed the old folder aside, but not
    yet the new one in, finds no folder: it must still be refused, and create nothing
    that the first export's rename would then replace.
    """
    from edgecnn.errors import ConfigError
    from edgecnn.export.report_file import load_report
    from edgecnn.export.staging import lock_path, staged_folder

    real_replace = os.replace
    seen = []

    def replace(src, dst):
        real_replace(src, dst)
        if not seen and ".old-" in os.fspath(dst):  # the first of the two renames
            seen.append(dst)
            assert not old_export.exists()
            refused = pytest.raises(ConfigError, match="being written by another")
            with refused, staged_folder(old_export):
                pass
            with pytest.raises(MISSING):
                load_report(old_export)  # a reader puts nothing back meanwhile either
            assert not old_export.exists()

    with staged_folder(old_export) as (final, partial):
        with pytest.raises(BlockingIOError), _held(lock_path(final)):
            pass
        with _held(final):  # the folder itself is not locked
            pass
        (partial / "export_report.json").write_text("{}")
        monkeypatch.setattr(os, "replace", replace)
    monkeypatch.undo()
    assert seen and _files(old_export) == {"export_report.json": b"{}"}
    assert _leftovers(old_export) == []


def test_a_second_export_into_the_same_folder_is_refused(old_export):
    from edgecnn.errors import ConfigError
    from edgecnn.export.staging import staged_folder

    with (
        staged_folder(old_export),
        pytest.raises(ConfigError, match="being written by another"),
        staged_folder(old_export),
    ):
        pass


@pytest.mark.parametrize("foreign", ["notes.txt", "model.keras", "config.json", "exports"])
def test_a_folder_holding_other_files_is_never_replaced(old_export, foreign):
    """--out pointing at a run folder or a folder of one's own: refused, untouched."""
    from edgecnn.errors import ConfigError
    from edgecnn.export.staging import staged_folder

    (old_export / foreign).write_text("mine")
    before = _files(old_export)
    with (
        pytest.raises(ConfigError, match=f"does not write \\({foreign}\\)"),
        staged_folder(old_export),
    ):
        pass
    assert _files(old_export) == before


def test_a_link_to_an_export_folder_replaces_the_folder_it_names(old_export, tmp_path):
    from edgecnn.export.staging import staged_folder

    link = tmp_path / "latest"
    link.symlink_to(old_export)
    with staged_folder(link) as (final, partial):
        (partial / "export_report.json").write_text("{}")
    assert link.is_symlink() and final == old_export.resolve()
    assert _files(old_export) == {"export_report.json": b"{}"}


def test_a_folder_that_mixes_two_models_is_refused_by_its_readers(tmp_path):
    from edgecnn.errors import DataError
    from edgecnn.export.report_file import load_report

    records = [export_record("model_float32.onnx", "onnx"),
               export_record("model_int8.onnx", "onnx", passed=False)]  # fmt: skip
    document = export_report_document(records, source_sha256="a" * 64)
    (tmp_path / "export_report.json").write_text(json.dumps(document))
    sidecar = tmp_path / "model_float32.onnx.json"
    sidecar.write_text(json.dumps({"source_sha256": "a" * 64}))
    assert load_report(tmp_path).source_sha256 == "a" * 64
    sidecar.write_text(json.dumps({"source_sha256": "b" * 64}))
    with pytest.raises(DataError, match="mixes two exports"):
        load_report(tmp_path)
    sidecar.unlink()
    with pytest.raises(DataError, match="model_float32.onnx"):
        load_report(tmp_path)


def test_the_current_folder_is_never_replaced(old_export, monkeypatch):
    from edgecnn.errors import ConfigError
    from edgecnn.export.staging import staged_folder

    monkeypatch.chdir(old_export)
    before = _files(old_export)
    for out in (".", str(old_export)):
        with pytest.raises(ConfigError, match="current folder"), staged_folder(out):
            pass
    assert _files(old_export) == before


def test_a_reader_puts_back_a_folder_left_between_the_two_renames(tmp_path):
    from edgecnn.export.report_file import load_report

    out = tmp_path / "exports"
    report = json.dumps(export_report_document()).encode()
    old = _staging(out, "old", files={"export_report.json": report})
    assert load_report(out).files == () and out.is_dir() and not old.exists()
    assert _files(out) == {"export_report.json": report}  # its marker gone with the name


def test_an_export_sigkilled_between_its_renames_is_put_back_by_a_reader(old_export):
    """A real SIGKILL after the first rename: a reader renames the old folder back."""
    import subprocess
    import sys

    from edgecnn.export.report_file import load_report
    from edgecnn.export.staging import staged_folder

    (old_export / "export_report.json").write_text(json.dumps(export_report_document()))
    before = _files(old_export)
    script = (
        "import os, signal, sys\n"
        "from edgecnn.export.staging import staged_folder\n"
        "real = os.replace\n"
        "def replace(src, dst):\n"
        "    real(src, dst)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)  # after the first rename\n"
        "with staged_folder(sys.argv[1]) as (_, partial):\n"
        "    (partial / 'export_report.json').write_text('{}')\n"
        "    os.replace = replace\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(old_export)], timeout=120)
    assert done.returncode == -9
    assert not old_export.exists() and len(_leftovers(old_export)) == 2  # old and partial
    load_report(old_export)
    assert _files(old_export) == before
    with staged_folder(old_export) as (_, partial):  # the partial goes with the next export
        (partial / "export_report.json").write_text("{}")
    assert _leftovers(old_export) == []
