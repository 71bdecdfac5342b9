"""Model files given to the runtime: damaged, disguised, hand-made or lying about themselves.

Missing, empty, truncated, random and fuzzed files; any changed byte (the integrity check);
a file renamed to another format; ONNX external data; hostile ``weights.npz`` archives;
sidecars and embedded metadata that cannot be right; inputs the runtime cannot take;
weights and outputs holding NaN or infinity. Each is a ModelError naming the file (one line
and exit 2 on the command line), never a crash.
"""

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from serve_helpers import npy_header
from shared import PICTURE, TINY

from edgecnn.runtime import ModelError, load_classifier


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


# -- damaged files -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tflite", ".onnx", ".npz"])
def test_missing_and_empty_model(tmp_path, suffix):
    with pytest.raises(ModelError, match="does not exist"):
        load_classifier(tmp_path / f"nope{suffix}")
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(ModelError, match="is empty"):
        load_classifier(tmp_path / f"empty{suffix}")


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_float32.onnx", "weights.npz"])
def test_truncated_and_random_models(tmp_path, name):
    data = (TINY / name).read_bytes()
    target = tmp_path / name
    for payload in (data[: len(data) // 2], data[:100], np.random.default_rng(0).bytes(5000)):
        target.write_bytes(payload)
        with pytest.raises(ModelError):
            load_classifier(target).predict(np.zeros((1, 28, 28), np.uint8))


def test_tflite_renamed_onnx_and_back(tmp_path):
    (tmp_path / "m.onnx").write_bytes((TINY / "model_int8.tflite").read_bytes())
    with pytest.raises(ModelError, match="is a .tflite file with a .onnx name"):
        load_classifier(tmp_path / "m.onnx")
    (tmp_path / "m.tflite").write_bytes((TINY / "model_float32.onnx").read_bytes())
    with pytest.raises(ModelError, match="not a .tflite file"):
        load_classifier(tmp_path / "m.tflite")


def test_fuzzed_model_bytes_only_raise_our_errors(tmp_path):
    """Corrupted models in a child process: a crash (segfault) would fail the test."""
    code = f"""
import numpy as np
from edgecnn.runtime import InferenceError, load_classifier
rng = np.random.default_rng(1234)
for name in ("model_int8.tflite", "model_float32.tflite", "model_int8.onnx", "weights.npz"):
    data = open({str(TINY)!r} + "/" + name, "rb").read()
    for i in range(60):
        b = bytearray(data)
        kind = i % 3
        if kind == 0:
            for _ in range(int(rng.integers(1, 20))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif kind == 1:
            b = b[: int(rng.integers(8, len(b)))]
        else:
            pos = int(rng.integers(0, 4000))
            b[pos:pos + 64] = rng.bytes(64)
        path = {str(tmp_path)!r} + "/fuzz_" + name
        open(path, "wb").write(b)
        try:
            # Without the integrity check: the interpreters themselves meet the damage.
            load_classifier(path, check_integrity=False).predict(np.zeros((2, 28, 28), np.uint8))
        except InferenceError:
            pass
print("survived")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "survived" in done.stdout


# -- the integrity check -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_float32.onnx", "model_int8.onnx"])
@pytest.mark.parametrize("sidecar", [False, True], ids=["alone", "with-sidecar"])
def test_any_changed_byte_is_refused(tmp_path, name, sidecar):
    """80 single-byte changes (headers, tensor tables, scales, weights) are each refused,
    with or without the sidecar; the unchanged file loads."""
    data = (TINY / name).read_bytes()
    target = tmp_path / name
    if sidecar:
        target.with_name(name + ".json").write_bytes((TINY / f"{name}.json").read_bytes())
    # 60 positions in the first 2 KB (headers, tensor tables, scales), 20 anywhere else.
    rng = np.random.default_rng(5)
    positions = sorted(set(rng.integers(0, 2048, 60)) | set(rng.integers(0, len(data), 20)))
    loaded_anyway = []
    for at in positions:
        target.write_bytes(_flip(data, int(at)))
        try:
            load_classifier(target).predict(np.zeros((1, 28, 28), np.uint8))
        except ModelError:
            continue
        loaded_anyway.append(int(at))
    assert loaded_anyway == []
    target.write_bytes(data)
    assert load_classifier(target).predict(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)


def test_changed_weights_in_an_npz_are_refused(tmp_path):
    with np.load(TINY / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["fc1.kernel"] = arrays["fc1.kernel"].copy()
    arrays["fc1.kernel"][3, 4] += 0.5
    np.savez(tmp_path / "weights.npz", **arrays)
    with pytest.raises(ModelError, match="weights do not match"):
        load_classifier(tmp_path / "weights.npz")
    assert load_classifier(tmp_path / "weights.npz", check_integrity=False).labels


def test_a_sidecar_from_another_export_is_noticed(tmp_path):
    (tmp_path / "m.tflite").write_bytes((TINY / "model_int8.tflite").read_bytes())
    other = (TINY / "model_float32.tflite.json").read_text()
    (tmp_path / "m.tflite.json").write_text(other)
    with pytest.raises(ModelError, match="SHA-256 differs"):
        load_classifier(tmp_path / "m.tflite")


def test_the_cli_can_skip_the_integrity_check(tmp_path):
    data = (TINY / "model_float32.onnx").read_bytes()
    (tmp_path / "edited.onnx").write_bytes(_flip(data, len(data) // 2))  # inside a weight
    assert_one_line_error(invoke("predict", tmp_path / "edited.onnx", PICTURE), "damaged")
    result = invoke("predict", tmp_path / "edited.onnx", PICTURE, "--no-integrity-check")
    assert result.exit_code == 0 and result.stdout.startswith(str(PICTURE))
    # (One byte in a weight of this small model turns the boot into a sneaker: why the
    # check is on by default.)


def test_many_threads_loading_at_once_see_the_same_integrity_verdict():
    """Eight threads loading one sealed file at once all pass its check; the file is not
    changed."""
    path = TINY / "model_int8.tflite"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    errors = []

    def load() -> None:
        try:
            load_classifier(path).predict(np.zeros((1, 28, 28), np.uint8))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and hashlib.sha256(path.read_bytes()).hexdigest() == digest


# -- ONNX external data and weights.npz archives ---------------------------------------------


def test_onnx_files_with_external_data_are_refused(tmp_path, monkeypatch):
    """An ONNX file naming an external data file beside it is refused: nothing is read
    from outside the model file."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    proto = onnx.load(TINY / "model_float32.onnx")
    del proto.metadata_props[:]
    convert_model_to_external_data(proto, location="secret.txt", size_threshold=1024)
    onnx.save(proto, tmp_path / "m.onnx", save_as_external_data=False)
    (tmp_path / "secret.txt").write_bytes(os.urandom(1 << 20))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="external data"):
        load_classifier(tmp_path / "m.onnx")
    assert_one_line_error(invoke("predict", tmp_path / "m.onnx", PICTURE), "external data")


def _zip_method_flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")  # first central directory entry
    data[at + 10 : at + 12] = struct.pack("<H", 77)  # an unknown compression method
    path.write_bytes(bytes(data))


def _npz_with_member(path: Path, key: str, header: bytes, payload: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for k in ("conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias", "fc1.kernel",
                  "fc1.bias", "logits.kernel", "logits.bias"):  # fmt: skip
            buffer = io.BytesIO()
            np.save(buffer, np.zeros(2, np.float32))
            archive.writestr(f"{k}.npy", header + payload if k == key else buffer.getvalue())


def test_damaged_and_hostile_npz_files_are_model_errors(tmp_path):
    """An unknown compression method, a member claiming terabytes, a complex member: each a
    ModelError (no ComplexWarning), and one line on the command line."""
    (tmp_path / "a.npz").write_bytes((TINY / "weights.npz").read_bytes())
    _zip_method_flipped(tmp_path / "a.npz")
    with pytest.raises(ModelError, match="not a readable weights.npz"):
        load_classifier(tmp_path / "a.npz")
    _npz_with_member(tmp_path / "b.npz", "fc1.kernel", npy_header("<f4", (10**12, 28, 28)))
    with pytest.raises(ModelError, match="more than"):
        load_classifier(tmp_path / "b.npz")
    _npz_with_member(tmp_path / "c.npz", "fc1.kernel", npy_header("<c8", (2,)), b"\0" * 16)
    with pytest.raises(ModelError, match="not a plain number"):  # no ComplexWarning either
        load_classifier(tmp_path / "c.npz")
    assert_one_line_error(invoke("predict", tmp_path / "a.npz", PICTURE), "weights.npz")


# -- metadata --------------------------------------------------------------------------------


def _with_metadata(source: Path, target: Path, value: str) -> Path:
    import onnx

    proto = onnx.load(source)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {"edgecnn": value})
    onnx.save(proto, target)
    return target


def test_metadata_that_cannot_be_right_is_a_model_error(tmp_path):
    """Sidecars that do not describe the model (wrong label count, a scale that is text, not
    a mapping), and weights.npz arrays that do not form the network."""
    import onnx

    proto = onnx.load(TINY / "model_float32.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "m.onnx")
    meta = json.loads((TINY / "model_float32.onnx.json").read_text())
    del meta["file"]
    for broken in (
        {**meta, "labels": ["a", "b", "c"]},
        {**meta, "preprocessing": {"pixel_scale": "one"}},
        [1, 2],
        {"format": "x"},
    ):
        (tmp_path / "m.onnx.json").write_text(json.dumps(broken))
        with pytest.raises(ModelError, match="metadata"):
            load_classifier(tmp_path / "m.onnx")
    shutil.copy(TINY / "weights.npz", tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["fc1.bias"] = arrays["fc1.bias"][:5]
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(ModelError, match="do not form the edgecnn network"):
        load_classifier(tmp_path / "w.npz", check_integrity=False)
    arrays["fc1.kernel"] = np.float32(1.0)
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(ModelError, match="do not form the edgecnn network"):
        load_classifier(tmp_path / "w.npz", check_integrity=False)


def test_hostile_metadata_is_a_model_error_naming_the_file(tmp_path):
    """Embedded metadata nested 100,000 deep, labels of the wrong type, a megabyte label,
    terminal escapes, repeated labels, a wrong scale, a schema without its digest: each a
    ModelError naming the file, and one line without the escape on the command line."""
    meta = json.loads((TINY / "model_float32.onnx.json").read_text())
    del meta["file"]
    meta["integrity"], meta["schema"] = {}, 1
    source = TINY / "model_float32.onnx"
    cases = {
        "deep": "[" * 100_000 + "]" * 100_000,
        "int labels": json.dumps({**meta, "labels": list(range(10))}),
        "string labels": json.dumps({**meta, "labels": "abcdefghij"}),
        "huge label": json.dumps({**meta, "labels": ["x" * 1_000_000, *meta["labels"][1:]]}),
        "escapes": json.dumps({**meta, "labels": ["\x1b[31mred", *meta["labels"][1:]]}),
        "repeated": json.dumps({**meta, "labels": ["Bag"] * 10}),
        "pixel scale": json.dumps({**meta, "preprocessing": {"pixel_scale": 0.5}}),
        "schema 2 without digest": json.dumps({**meta, "schema": 2}),
    }
    for case, value in cases.items():
        path = _with_metadata(source, tmp_path / f"{case.replace(' ', '_')}.onnx", value)
        with pytest.raises(ModelError) as e:
            load_classifier(path)
        assert str(path) in str(e.value), case
        result = invoke("predict", path, PICTURE)
        assert_one_line_error(result)
        assert "\x1b" not in result.stderr


def test_light_on_dark_false_is_honoured(tmp_path, test_images):
    """Metadata saying the model was not trained on light objects on a dark ground: a
    dark-on-light picture is not inverted, it classifies as the same pixels as an array."""
    meta = json.loads((TINY / "model_float32.onnx.json").read_text())
    del meta["file"]
    meta["integrity"], meta["schema"] = {}, 1
    meta["preprocessing"]["light_on_dark"] = False
    path = _with_metadata(TINY / "model_float32.onnx", tmp_path / "m.onnx", json.dumps(meta))
    clf = load_classifier(path)
    dark_on_light = _png(255 - test_images.x[0])
    np.testing.assert_allclose(clf.predict(dark_on_light), clf.predict(255 - test_images.x[0]))


# -- inputs the runtime cannot take (TensorFlow makes the models) ---------------------------


@pytest.fixture(scope="module")
def wrong_shape_models(tmp_path_factory):
    """TFLite and ONNX models: ``colour`` takes 32x32x3, ``two`` takes 28x28x2; no metadata."""
    import keras
    import tensorflow as tf
    import tf2onnx

    out = tmp_path_factory.mktemp("wrong")
    for name, shape in {"colour": (32, 32, 3), "two": (28, 28, 2)}.items():
        model = keras.Sequential(
            [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
        )
        spec = tf.TensorSpec([None, *shape], tf.float32, name="image")
        fn = tf.function(lambda image, model=model: model(image), input_signature=[spec])
        concrete = fn.get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
        (out / f"{name}.tflite").write_bytes(converter.convert())
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=17)
        (out / f"{name}.onnx").write_bytes(proto.SerializeToString())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_model_whose_input_differs_from_its_metadata(wrong_shape_models, suffix, tmp_path):
    # Without metadata a file is described by the model itself: numbered classes.
    clf = load_classifier(wrong_shape_models / f"colour{suffix}")
    assert clf.generic_labels and clf.input_shape == (32, 32, 3) and clf.labels[0] == "class_0"
    # A sidecar describing the tutorial's 28x28x1 model does not fit it.
    target = tmp_path / f"colour{suffix}"
    shutil.copy(wrong_shape_models / f"colour{suffix}", target)
    meta = json.loads((TINY / "model_float32.onnx.json").read_text())
    del meta["file"]
    target.with_name(target.name + ".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"metadata says input \(28, 28, 1\), the model takes"):
        load_classifier(target)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_model_whose_input_is_neither_grey_nor_colour(wrong_shape_models, suffix):
    with pytest.raises(ModelError, match="input has 2 channels; expected 1"):
        load_classifier(wrong_shape_models / f"two{suffix}")


# -- NaN, infinity and logits (made from the session's trained model) ------------------------


@pytest.fixture(scope="module")
def nan_models(exported, tmp_path_factory):
    """A float32 .tflite whose logits bias holds NaN, and weights.npz files with bad values."""
    import keras

    out = tmp_path_factory.mktemp("nan")
    model = keras.models.load_model(exported.model_path)
    bias = model.get_layer("logits").get_weights()[1].astype(np.float32).tobytes()
    data = (exported.out / "model_float32.tflite").read_bytes()
    assert data.count(bias) == 1
    at = data.index(bias)
    poisoned = data[:at] + np.float32(np.nan).tobytes() + data[at + 4 :]
    (out / "nan.tflite").write_bytes(poisoned)
    with np.load(exported.out / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "metadata"}
    for name, key, value in (
        ("nan.npz", "fc1.kernel", np.nan),
        ("inf.npz", "logits.bias", np.inf),
        ("huge.npz", "conv1.bias", 1e300),
    ):
        changed = dict(arrays)
        changed[key] = changed[key].astype(np.float64)
        changed[key].flat[0] = value
        np.savez(out / name, **changed)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nan.npz", "inf.npz", "huge.npz"])
def test_weights_with_nan_infinity_or_absurd_values_are_refused_at_load(nan_models, name):
    with pytest.raises(ModelError, match="NaN or infinity|above"):
        load_classifier(nan_models / name)


@pytest.mark.slow
def test_a_model_computing_nan_is_a_model_error_everywhere(nan_models, tmp_path):
    """A NaN in the logits bias: the integrity check refuses the file, and without it the
    outputs are refused, in the API and on the command line (no NaN printed)."""
    path = nan_models / "nan.tflite"
    with pytest.raises(ModelError, match="damaged"):  # its own digest catches the change...
        load_classifier(path)
    clf = load_classifier(path, check_integrity=False)  # ...and without it, the outputs do
    with pytest.raises(ModelError, match="NaN or infinity"):
        clf.predict(np.zeros((28, 28), np.uint8))
    result = invoke("predict", path, PICTURE, "--json", "--no-integrity-check")
    assert_one_line_error(result, "NaN or infinity")
    assert "NaN" not in result.stdout


@pytest.fixture(scope="module")
def logits_model(tmp_path_factory, exported):
    """The trained model converted to .tflite without its softmax, and its metadata."""
    import keras
    import tensorflow as tf

    out = tmp_path_factory.mktemp("logits")
    model = keras.models.load_model(exported.model_path)
    spec = tf.TensorSpec([None, 28, 28, 1], tf.float32, name="image")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", lambda image: {"logits": model(image, training=False)}, [spec]
    )
    archive.write_out(str(out / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved"))
    (out / "logits.tflite").write_bytes(converter.convert())
    meta = json.loads((exported.out / "model_float32.tflite.json").read_text())
    del meta["file"]
    meta["integrity"] = {}
    meta["schema"] = 1
    return out / "logits.tflite", meta


@pytest.mark.slow
def test_a_model_without_softmax_is_refused_unless_its_metadata_says_logits(
    logits_model, keras_reference
):
    """Outputs that are no probabilities are refused; metadata saying ``logits`` makes the
    runtime apply the softmax, matching Keras to 1e-5."""
    path, meta = logits_model
    path.with_name(path.name + ".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not probabilities"):
        load_classifier(path).predict(keras_reference.x[:5])
    meta["output"]["kind"] = "logits"
    path.with_name(path.name + ".json").write_text(json.dumps(meta))
    probs = load_classifier(path, calibrated=False).predict(keras_reference.x[:50])
    np.testing.assert_allclose(probs, keras_reference.probs[:50], atol=1e-5)
