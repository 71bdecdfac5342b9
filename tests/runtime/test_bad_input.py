import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from shared import PICTURE, TINY

from edgecnn.runtime import InferenceError, InputError, ModelError, load_classifier


@pytest.fixture(scope="module")
def clf():
    return load_classifier(TINY / "model_int8.tflite")


# -- model files ---------------------------------------------------------------------------


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


def test_unknown_suffix_backend_and_threads(tmp_path):
    (tmp_path / "m.pb").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model format"):
        load_classifier(tmp_path / "m.pb")
    with pytest.raises(ModelError, match="unknown backend"):
        load_classifier(TINY / "model_int8.tflite", backend="tensorrt")
    with pytest.raises(ModelError, match="cannot run .tflite"):
        load_classifier(TINY / "model_int8.tflite", backend="onnxruntime")
    with pytest.raises(InputError, match="num_threads"):
        load_classifier(TINY / "model_int8.tflite", num_threads=0)
    (tmp_path / "folder.tflite").mkdir()
    with pytest.raises(ModelError, match="directory"):
        load_classifier(tmp_path / "folder.tflite")


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


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_model_whose_input_differs_from_its_metadata(wrong_shape_models, suffix, tmp_path):
    import json
    import shutil

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


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_model_whose_input_is_neither_grey_nor_colour(wrong_shape_models, suffix):
    with pytest.raises(ModelError, match="input has 2 channels; expected 1"):
        load_classifier(wrong_shape_models / f"two{suffix}")


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


# -- arrays --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((28, 27), np.uint8), "shape"),
        (np.zeros((2, 28, 28, 3), np.uint8), "shape"),
        (np.zeros((28,), np.uint8), "shape"),
        (np.zeros((1, 1, 28, 28, 1), np.uint8), "shape"),
        (np.zeros((0, 28, 28), np.uint8), "empty batch"),
        (np.full((28, 28), np.nan, np.float32), "NaN"),
        (np.full((28, 28), np.inf, np.float32), "NaN or infinity"),
        (np.full((28, 28), 255.0, np.float32), "divide by 255"),
        (np.full((28, 28), -0.5, np.float32), r"\[0, 1\]"),
        (np.full((28, 28), 300, np.int32), r"\[0, 255\]"),
        (np.zeros((28, 28), bool), "dtype"),
        (np.array([["a"] * 28] * 28), "dtype"),
        (np.zeros((28, 28), complex), "dtype"),
        ([[1, 2], [3]], "cannot read|dtype|shape"),
    ],
)
def test_bad_arrays(clf, bad, match):
    with pytest.raises(InputError, match=match):
        clf.predict(bad)


@settings(max_examples=150, deadline=None)
@given(
    arrays=hnp.arrays(
        dtype=st.sampled_from(
            [np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=30),
    )
)
def test_any_array_gives_probabilities_or_an_input_error(clf, arrays):
    try:
        probs = clf.predict(arrays)
    except InputError:
        return
    assert probs.ndim == 2 and probs.shape[1] == 10 and len(probs) >= 1
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=784, max_size=784), st.integers(1, 3))
def test_valid_images_always_classify(clf, pixels, n):
    batch = np.tile(np.array(pixels, np.uint8).reshape(1, 28, 28), (n, 1, 1))
    probs = clf.predict(batch)
    assert probs.shape == (n, 10)
    np.testing.assert_array_equal(probs[0], probs[-1])


# -- pictures ------------------------------------------------------------------------------


def _huge_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_pictures(clf, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        clf.predict(tmp_path / "empty.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(InputError, match="not a PNG, JPEG or BMP"):
        clf.predict(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="does not exist"):
        clf.predict(tmp_path / "missing.png")
    with pytest.raises(InputError, match="not a PNG"):
        clf.predict(b"GIF89a" + b"\0" * 100)
    gif = io.BytesIO()
    from PIL import Image

    Image.new("L", (28, 28)).save(gif, format="GIF")
    with pytest.raises(InputError, match="not a PNG, JPEG or BMP"):
        clf.predict(gif.getvalue())


def test_a_20000_pixel_square_picture_is_refused_before_decoding(clf, tmp_path):
    import resource

    path = tmp_path / "huge.png"
    path.write_bytes(_huge_png_header(20000, 20000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match="20000x20000|megapixels|limit|large"):
        clf.predict(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"peak memory grew {grown_mb:.0f} MB"


def test_errors_share_one_base():
    assert issubclass(ModelError, InferenceError) and issubclass(InputError, InferenceError)
    assert issubclass(InputError, ValueError)


def test_metadata_that_cannot_be_right_is_a_model_error(tmp_path):
    import json
    import shutil

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


def test_sixteen_bit_pictures_are_scaled_not_clipped():
    from PIL import Image

    clf = load_classifier(TINY / "model_float32.tflite")
    image = np.load(PICTURE.with_suffix(".npy"))
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint16) * 257).save(buffer, format="PNG")
    np.testing.assert_allclose(clf.predict(buffer.getvalue()), clf.predict(image), atol=1e-6)
