"""``edgecnn verify``: a file checked on the device against what it gave at export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli_without
from shared import tiny_exports_with_references

from edgecnn.runtime import load_classifier
from edgecnn.runtime.gate import agreement_floor
from edgecnn.runtime.verify import reference_bytes, reference_path, verify

N = 300


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory, test_images):
    """The tiny files, each with a reference as the exporter writes it."""
    folder = tmp_path_factory.mktemp("verify")
    return tiny_exports_with_references(folder, test_images.x[:N], test_images.y[:N])


@pytest.mark.parametrize(
    "name", ["model_int8.tflite", "model_float32.onnx", "weights.npz", "model_int8.onnx"]
)
def test_an_untouched_file_passes_with_its_numbers(tiny_exports, name):
    r = verify(tiny_exports / name)
    assert r.passed, r.failures
    assert r.images == N and r.agreement_with_export == 1.0
    assert r.max_diff_from_export is not None and r.max_diff_from_export <= 1e-6
    # In int8 steps for an int8 output (a --full-integer file, as the tiny one is); the
    # default int8 files end in float.
    output = load_classifier(tiny_exports / name).metadata.quantization.get("output")
    if output:
        assert r.max_steps_from_export == 0 and r.to_dict()["max_steps_from_export"] == 0
    else:
        assert r.max_steps_from_export is None and "max_steps_from_export" not in r.to_dict()


#: The keys of ``edgecnn verify --json`` for a file that ran (max_steps_from_export and
#: max_prob_diff_limit when there are such).
JSON_KEYS = {
    "model", "reference", "images", "gate", "backend", "machine", "accuracy",
    "keras_accuracy", "agreement", "agreement_with_export", "max_prob_diff",
    "max_diff_from_export", "agreement_at_export", "accuracy_at_export", "agreement_floor",
    "agreement_threshold", "applied_gate", "passed", "failures",
}  # fmt: skip


def test_the_cli_prints_the_gate_and_passes(tiny_exports):
    done = run_cli_without(["verify", tiny_exports / "model_int8.tflite"], ("tensorflow",))
    assert "top-1 agreement with Keras" in done.stdout and done.stdout.strip().endswith("PASS")
    assert "(gate >= 99.00%" in done.stdout
    result = invoke("verify", tiny_exports / "model_int8.tflite", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 0 and document["passed"] is True
    assert JSON_KEYS <= set(document) <= JSON_KEYS | {"max_steps_from_export"}
    assert document["applied_gate"] == {
        "min_agreement": 0.99, "max_accuracy_drop_pp": None, "max_prob_diff": None
    }  # fmt: skip
    float32 = invoke("verify", tiny_exports / "model_float32.onnx")
    assert "(gate <= 1e-04)" in float32.stdout, float32.stdout


def test_a_tampered_file_fails_with_exit_1(tiny_exports, tmp_path):
    for f in ("model_int8.tflite", "model_int8.tflite.json", "model_int8.tflite.reference.npz"):
        shutil.copy(tiny_exports / f, tmp_path / f)
    data = bytearray((tmp_path / "model_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "model_int8.tflite").write_bytes(bytes(data))
    result = invoke("verify", tmp_path / "model_int8.tflite")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "SHA-256" in result.stdout


def test_outputs_that_moved_fail_the_gate(tiny_exports, tmp_path):
    """A device that answers otherwise (simulated: the reference says other answers)."""
    from edgecnn.runtime.verify import read_reference

    ref = read_reference(reference_path(tiny_exports / "model_int8.tflite"))
    keras = np.roll(ref["keras"], 1, axis=1)  # every top-1 moved to another class
    other = tmp_path / "moved.npz"
    other.write_bytes(reference_bytes(ref["images"], ref["labels"], keras, keras, ref["meta"]))
    result = invoke("verify", tiny_exports / "model_int8.tflite", "--reference", other)
    assert result.exit_code == 1
    assert "top-1 agreement with Keras" in result.stdout.splitlines()[-1]


def test_a_reference_of_another_export_of_the_same_name_fails(tiny_exports, tmp_path):
    """Recorded SHA-256 of the file: a reference left from an older export does not pass."""
    from edgecnn.runtime.verify import read_reference

    ref = read_reference(reference_path(tiny_exports / "model_int8.tflite"))
    meta = {**ref["meta"], "file_sha256": "0" * 64}
    other = tmp_path / "old.npz"
    other.write_bytes(reference_bytes(ref["images"], ref["labels"], ref["keras"],
                                      ref["exported"], meta))  # fmt: skip
    r = verify(tiny_exports / "model_int8.tflite", other)
    assert not r.passed and "another export" in r.failures[0]


def test_another_files_reference_is_refused(tiny_exports):
    r = verify(tiny_exports / "model_float32.onnx",
               reference_path(tiny_exports / "model_int8.tflite"))  # fmt: skip
    assert not r.passed and "made for model_int8.tflite (int8)" in r.failures[0]


def test_bad_references_are_one_line(tiny_exports, tmp_path):
    model = tiny_exports / "model_int8.tflite"
    missing = tmp_path / "model_int8.tflite"
    shutil.copy(model, missing)
    shutil.copy(f"{model}.json", f"{missing}.json")
    assert_one_line_error(invoke("verify", missing), match="has no model_int8.tflite.reference")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really")
    assert_one_line_error(invoke("verify", model, "--reference", garbage))
    assert_one_line_error(invoke("verify", model, "--reference", tmp_path / "nope.npz"))
    wrong = tmp_path / "wrong.npz"
    ref = np.load(reference_path(model))
    gate = json.loads(str(ref["meta"]))
    wrong.write_bytes(reference_bytes(np.zeros((3, 14, 14), np.uint8), ref["labels"][:3],
                                      ref["keras"][:3], ref["exported"][:3], gate))  # fmt: skip
    assert_one_line_error(invoke("verify", model, "--reference", wrong), match="another model")


# ---- references that would lower their own gate, or that no export writes ----------------


def _arrays(tiny_exports, name="model_int8.tflite"):
    """The arrays and the gate of ``name``'s reference, as a dict to change and write."""
    from edgecnn.runtime.verify import read_reference

    ref = read_reference(reference_path(tiny_exports / name))
    return {k: ref[k] for k in ("images", "labels", "keras", "exported")}, dict(ref["meta"])


def _write(path, arrays, meta, meta_text=None):
    """A reference as np.savez writes it, arrays as given (no dtype coercion)."""
    text = meta_text if meta_text is not None else json.dumps(meta)
    np.savez_compressed(path, **arrays, meta=np.array(text))
    return path


def _rows(probs):
    """``probs`` made rows that sum to 1 again."""
    probs = probs + 1e-3
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def _refused(tiny_exports, reference, match=None, name="model_int8.tflite"):
    """``verify`` answers in one line, exit 2, and ``--json`` still prints one document."""
    model = tiny_exports / name
    assert_one_line_error(invoke("verify", model, "--reference", reference), match=match)
    result = invoke("verify", model, "--reference", reference, "--json")
    assert_one_line_error(result, match=match)
    document = json.loads(result.stdout)
    assert document["passed"] is False and document["error"]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["keras", "exported"])
def test_probabilities_that_are_not_finite_are_refused(tiny_exports, tmp_path, key, value):
    """All-NaN Keras outputs used to pass (the gate fell to 12%), and --json printed nothing."""
    arrays, meta = _arrays(tiny_exports)
    arrays[key] = np.full_like(arrays[key], value)
    _refused(tiny_exports, _write(tmp_path / "r.npz", arrays, meta), "NaN or infinity")


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: a.update(keras=a["keras"][:, 0]), "shape (300,)"),  # was IndexError
        (lambda a: a.update(exported=a["exported"][:, :3]), "10 and 3 classes"),  # ValueError
        (lambda a: a.update(keras=a["keras"] * 2), "summing to 1"),
        (lambda a: a.update(keras=a["keras"] - 0.05), "summing to 1"),
        (
            lambda a: a.update(
                keras=_rows(a["keras"][:, :3]),
                exported=_rows(a["exported"][:, :3]),
                labels=a["labels"] % 3,
            ),
            "3 classes, the model has 10",
        ),  # fmt: skip
        (lambda a: a.update(keras=a["keras"][:200]), "not (300, classes)"),
        (lambda a: a.update(labels=a["labels"][:10]), "labels of shape (10,)"),
        (lambda a: a.update(labels=a["labels"] + 10), "labels run"),
        (lambda a: a.update(labels=a["labels"] - 1), "labels run"),
        (lambda a: a.update(images=a["images"].astype(np.float32)), "images array"),
        (lambda a: a.update(images=a["images"].astype(np.uint16)), "uint16"),
        (lambda a: a.update(images=a["images"][:, :, :, None, None]), "pictures"),
        (lambda a: a.update(labels=a["labels"].astype(np.float64)), "labels array"),
        (lambda a: a.update(keras=(a["keras"] > 0.5).astype(np.int64)), "keras array"),
        (lambda a: a.pop("exported"), "no exported"),
        (lambda a: a.pop("labels"), "no labels"),
        (lambda a: a.update(extra=np.zeros(3)), "np.savez writes"),
        # Six thousand zero images inflate to 4.7 MB: more than any export writes.
        (lambda a: a.update(images=np.zeros((6000, 28, 28), np.uint8)), "no export writes"),
    ],
)
def test_impossible_arrays_are_one_line(tiny_exports, tmp_path, change, match):
    arrays, meta = _arrays(tiny_exports)
    change(arrays)
    _refused(tiny_exports, _write(tmp_path / "r.npz", arrays, meta), match)


@pytest.mark.parametrize(
    "edit,match",
    [
        ('"min_agreement": -Infinity', "-Infinity"),
        ('"min_agreement": NaN', "NaN"),
        ('"min_agreement": 1e999', "min_agreement is inf"),
        ('"min_agreement": "0.99"', "min_agreement"),
        ('"min_agreement": true', "min_agreement"),
        ('"min_agreement": -0.5', "min_agreement"),
        ('"min_agreement": 7', "min_agreement"),
        ('"max_prob_diff": -1', "max_prob_diff"),
        ('"max_prob_diff": Infinity', "Infinity"),
        ('"max_accuracy_drop_pp": -1', "max_accuracy_drop_pp"),
        ('"max_accuracy_drop_pp": "0.5"', "max_accuracy_drop_pp"),
        ('"max_accuracy_drop_pp": 101', "max_accuracy_drop_pp"),
        ('"file_sha256": "abc"', "file_sha256"),
        ('"exported_on": "Linux\\u001b[31m x86"', "exported_on"),
    ],
)
def test_impossible_gates_are_one_line(tiny_exports, tmp_path, edit, match):
    arrays, meta = _arrays(tiny_exports)
    key = edit.split(":")[0].strip('"')
    meta.pop(key, None)
    text = json.dumps(meta)[:-1] + ", " + edit + "}"
    _refused(tiny_exports, _write(tmp_path / "r.npz", arrays, meta, text), match)


@pytest.mark.parametrize("text", ["[0.99]", '"gate"', "", "{"])
def test_a_gate_that_is_not_an_object_is_one_line(tiny_exports, tmp_path, text):
    arrays, meta = _arrays(tiny_exports)
    _refused(tiny_exports, _write(tmp_path / "r.npz", arrays, meta, text))


def test_a_low_recorded_gate_cannot_pass_a_file_below_the_floor(tiny_exports, tmp_path):
    """min_agreement 0 and outputs "at export" equally wrong: the floor still holds."""
    arrays, meta = _arrays(tiny_exports)
    moved = arrays["keras"].copy()
    moved[:30] = np.roll(moved[:30], 1, axis=1)  # a tenth of the answers moved
    arrays.update(keras=moved, exported=moved)  # consistent: the export "agreed" with them
    reference = _write(tmp_path / "r.npz", arrays, {**meta, "min_agreement": 0.0})
    r = verify(tiny_exports / "model_int8.tflite", reference)
    assert r.scores is not None and r.applied is not None
    assert r.scores.agreement < 0.95 and not r.passed
    assert r.applied.min_agreement == r.agreement_floor == agreement_floor("int8", N)
    document = r.to_dict()
    assert document["agreement_threshold"] == document["agreement_floor"] == r.agreement_floor
    assert "top-1 agreement with Keras" in r.failures[0]
    result = invoke("verify", tiny_exports / "model_int8.tflite", "--reference", reference)
    assert result.exit_code == 1 and "FAIL" in result.stdout


def test_outputs_at_export_that_disagree_with_keras_are_refused(tiny_exports, tmp_path):
    """They used to drop the gate to the agreement "at export": 0%."""
    arrays, meta = _arrays(tiny_exports)
    arrays["exported"] = np.roll(arrays["keras"], 1, axis=1)
    _refused(tiny_exports, _write(tmp_path / "r.npz", arrays, meta), "agree with its Keras")


def test_a_float32_file_keeps_its_probability_limit_without_one_recorded(tiny_exports, tmp_path):
    arrays, meta = _arrays(tiny_exports, "model_float32.onnx")
    keras = arrays["keras"].astype(np.float64)
    keras[:, 0] += 1e-3
    keras[:, 1] -= 1e-3
    arrays["keras"] = np.clip(keras, 0, 1).astype(np.float32)
    for gate in ({**meta, "max_prob_diff": None}, {**meta, "max_prob_diff": 1.0}):
        gate.pop("max_prob_diff") if gate["max_prob_diff"] is None else None
        reference = _write(tmp_path / "r.npz", arrays, gate)
        r = verify(tiny_exports / "model_float32.onnx", reference)
        assert not r.passed and r.to_dict()["max_prob_diff_limit"] == 1e-4
        assert "max probability difference" in r.failures[-1]


def _answers(tiny_exports, arrays, name="model_int8.tflite"):
    """The file's top-1 classes here on the reference's images."""
    return load_classifier(tiny_exports / name).predict(arrays["images"]).argmax(1)


def _label_rows(labels):
    """Probability rows whose top-1 class is each label."""
    return _rows(np.eye(10, dtype=np.float32)[labels])


def test_an_accuracy_drop_the_export_showed_on_the_sample_passes(tiny_exports, tmp_path):
    """The gate passed on thousands of images; on the reference's few hundred the file
    dropped more than the gate allows (Keras right where the file is wrong, five times):
    the same outputs here pass, and the limit applied is the export's drop there."""
    arrays, meta = _arrays(tiny_exports)
    wrong = np.flatnonzero(_answers(tiny_exports, arrays) != arrays["labels"])[:5]
    assert len(wrong) == 5
    arrays["keras"][wrong] = _label_rows(arrays["labels"][wrong])
    reference = _write(tmp_path / "r.npz", arrays, {**meta, "max_accuracy_drop_pp": 0.5})
    r = verify(tiny_exports / "model_int8.tflite", reference)
    assert r.passed, r.failures
    assert r.at_export is not None and r.applied is not None and r.scores is not None
    assert -r.at_export.delta_pp > 0.5
    assert r.applied.max_accuracy_drop_pp == pytest.approx(-r.at_export.delta_pp)
    assert r.applied.min_agreement == pytest.approx(r.at_export.agreement)
    assert "accuracy drop from Keras" in invoke("verify", tiny_exports / "model_int8.tflite",
                                                "--reference", reference).stdout  # fmt: skip


def test_a_device_losing_answers_the_export_had_fails_the_accuracy_drop(tiny_exports, tmp_path):
    """The exporting machine (and Keras) answered five images right that this file gets
    wrong here: the accuracy drop of the recorded gate fails. A reference written before
    the gate recorded it has no such rule, and still reads."""
    arrays, meta = _arrays(tiny_exports)
    wrong = np.flatnonzero(_answers(tiny_exports, arrays) != arrays["labels"])[:5]
    for key in ("keras", "exported"):
        arrays[key][wrong] = _label_rows(arrays["labels"][wrong])
    reference = _write(tmp_path / "r.npz", arrays, {**meta, "max_accuracy_drop_pp": 0.5})
    r = verify(tiny_exports / "model_int8.tflite", reference)
    assert not r.passed
    assert any(f.startswith("accuracy dropped ") for f in r.failures), r.failures
    old = _write(tmp_path / "old.npz", arrays, {k: v for k, v in meta.items()
                                                if k != "max_accuracy_drop_pp"})  # fmt: skip
    r = verify(tiny_exports / "model_int8.tflite", old)
    assert r.applied is not None and r.applied.max_accuracy_drop_pp is None
    assert not any("accuracy dropped" in f for f in r.failures)


def test_a_reference_of_another_model_is_one_line(tiny_exports, tmp_path):
    arrays, meta = _arrays(tiny_exports)
    other = {**meta, "source_sha256": "1" * 64}
    _refused(tiny_exports, _write(tmp_path / "r.npz", arrays, other), "another Keras model")


def test_a_file_beside_a_report_of_another_model_fails(tiny_exports, tmp_path):
    """A folder that mixes two exports: the report describes another model than the file's."""
    for f in ("model_int8.tflite", "model_int8.tflite.json", "model_int8.tflite.reference.npz"):
        shutil.copy(tiny_exports / f, tmp_path / f)
    report = json.loads((tiny_exports / "export_report.json").read_text())
    report["source_sha256"] = "2" * 64
    (tmp_path / "export_report.json").write_text(json.dumps(report))
    result = invoke("verify", tmp_path / "model_int8.tflite")
    assert result.exit_code == 1 and "mixes two exports" in result.stdout
    # A report that does not list the file says nothing about it.
    report["files"] = [r for r in report["files"] if r["file"] != "model_int8.tflite"]
    (tmp_path / "export_report.json").write_text(json.dumps(report))
    assert invoke("verify", tmp_path / "model_int8.tflite").exit_code == 0


def test_a_huge_reference_is_refused_before_it_is_read(tiny_exports, tmp_path):
    big = tmp_path / "big.npz"
    with open(big, "wb") as f:
        f.truncate(17 * 1024 * 1024)
    _refused(tiny_exports, big)


@pytest.mark.parametrize("key", ["min_agreement", "meta"])
def test_a_reference_without_its_gate_is_one_line(tiny_exports, tmp_path, key):
    arrays, meta = _arrays(tiny_exports)
    path = tmp_path / "r.npz"
    if key == "meta":
        np.savez_compressed(path, **arrays)
    else:
        _write(path, arrays, {k: v for k, v in meta.items() if k != key})
    _refused(tiny_exports, path, "no meta" if key == "meta" else "min_agreement is None")


def test_an_archive_np_savez_does_not_write_is_one_line(tiny_exports, tmp_path):
    """A zip comment, or many members: the end record is checked before zipfile reads more."""
    import zipfile

    arrays, meta = _arrays(tiny_exports)
    commented = _write(tmp_path / "c.npz", arrays, meta)
    with zipfile.ZipFile(commented, "a") as archive:
        archive.comment = b"hello"
    _refused(tiny_exports, commented, "not the archive np.savez writes")
    crowded = tmp_path / "many.npz"
    np.savez(crowded, **arrays, meta=np.array(json.dumps(meta)),
             **{f"x{i}": np.zeros(1) for i in range(1000)})  # fmt: skip
    _refused(tiny_exports, crowded, "not the archive np.savez writes")
