"""``edgecnn verify``: a file checked on the device against what it gave at export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli_without
from shared import tiny_exports_with_references

from edgecnn.runtime import load_classifier
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
    assert r["passed"], r["failures"]
    assert r["images"] == N and r["agreement_with_export"] == 1.0
    assert r["max_diff_from_export"] <= 1e-6
    # In int8 steps for an int8 output (a --full-integer file, as the tiny one is); the
    # default int8 files end in float.
    output = load_classifier(tiny_exports / name).metadata.quantization.get("output")
    if output:
        assert r["max_steps_from_export"] == 0
    else:
        assert "max_steps_from_export" not in r


def test_the_cli_prints_the_gate_and_passes(tiny_exports):
    done = run_cli_without(["verify", tiny_exports / "model_int8.tflite"], ("tensorflow",))
    assert "top-1 agreement with Keras" in done.stdout and done.stdout.strip().endswith("PASS")
    result = invoke("verify", tiny_exports / "model_int8.tflite", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["passed"] is True


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
    assert not r["passed"] and "another export" in r["failures"][0]


def test_another_files_reference_is_refused(tiny_exports):
    r = verify(tiny_exports / "model_float32.onnx",
               reference_path(tiny_exports / "model_int8.tflite"))  # fmt: skip
    assert not r["passed"] and "made for model_int8.tflite (int8)" in r["failures"][0]


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
