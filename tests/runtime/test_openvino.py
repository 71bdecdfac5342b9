"""The openvino backend on the checked-in models: same answers, same metadata, thread-safe."""

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cli_helpers import invoke
from shared import ARRAY, PICTURE, TINY

from edgecnn.runtime import ModelError, load_classifier
from edgecnn.runtime.backends import BACKENDS, candidates, default_threads
from edgecnn.runtime.onnx_scan import read_onnx_metadata
from edgecnn.runtime.tflite_metadata import read_tflite_io_quantization

pytest.importorskip("openvino")

#: Each file, the backend auto picks for it, and how close OpenVINO must come to it.
#: float32: the same arithmetic in another order. int8: other kernels round other
#: intermediate values, so an image near a tie may flip.
FILES = [
    ("model_float32.onnx", 1e-5),
    ("model_float32.tflite", 1e-5),
    ("model_int8.onnx", None),
    ("model_int8.tflite", None),
    ("full_integer/model_int8.tflite", None),
]


@pytest.fixture(scope="module")
def images(test_images):
    return test_images.x[:2000]


@pytest.mark.parametrize(("name", "atol"), FILES)
def test_openvino_agrees_with_the_default_backend(images, name, atol):
    openvino = load_classifier(TINY / name, backend="openvino")
    default = load_classifier(TINY / name)
    assert openvino.backend_name == "openvino" and default.backend_name != "openvino"
    got, expected = openvino.predict(images), default.predict(images)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    if atol is not None:
        np.testing.assert_allclose(got, expected, atol=atol)
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.998
    assert openvino.metadata == default.metadata and openvino.labels == default.labels
    assert openvino.backend.input_shape == (28, 28, 1) and openvino.backend.num_classes == 10


@pytest.mark.parametrize(("name", "atol"), FILES)
def test_one_image_float_input_and_large_batches_agree(images, name, atol):
    clf = load_classifier(TINY / name, backend="openvino")
    batch = clf.predict(images[:600])  # 256, 256 and a dynamic-size chunk of 88
    singles = np.concatenate([clf.predict(images[i]) for i in range(5)])
    np.testing.assert_allclose(singles, batch[:5], atol=1e-6)
    np.testing.assert_allclose(clf.predict(images[:7]), batch[:7], atol=1e-6)
    floats = clf.predict(images[:300].astype(np.float32) / np.float32(255))
    np.testing.assert_allclose(floats, batch[:300], atol=1e-6)
    assert clf.classify(images[0])[0][0] == clf.labels[batch[0].argmax()]


@pytest.mark.parametrize(("name", "atol"), FILES)
def test_the_bare_runner_computes_what_predict_returns(images, name, atol):
    clf = load_classifier(TINY / name, backend="openvino", num_threads=1)
    for size in (1, 5, 256):
        batch = images[:size].reshape(size, 28, 28, 1)
        bare = np.asarray(clf.backend.raw_runner(batch)(), dtype=np.float32)
        # A full-integer softmax is renormalised by the runtime, not by a bare loop.
        tolerance = 2 / 256 if name.startswith("full") else 1e-6
        np.testing.assert_allclose(bare, clf.predict(batch), atol=tolerance)


def test_threads_are_the_ones_openvino_uses():
    assert load_classifier(TINY / "model_int8.onnx", "openvino", 1).backend.threads == 1
    threads = load_classifier(TINY / "model_int8.onnx", "openvino").backend.threads
    # default_threads(), or fewer: OpenVINO runs no more threads than there are cores.
    assert 1 <= threads <= default_threads()


@pytest.mark.parametrize("name", ["model_int8.onnx", "model_float32.tflite"])
def test_threads_sharing_one_classifier_get_the_serial_answers(images, name):
    clf = load_classifier(TINY / name, backend="openvino")
    # Sizes that use each compiled model: batch 1, the dynamic one, 256, and chunks.
    jobs = [images[i : i + size] for i in range(0, 40, 4) for size in (1, 3, 256, 300)]
    serial = [clf.predict(x) for x in jobs]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            parallel = list(pool.map(clf.predict, jobs))
            for a, b in zip(parallel, serial, strict=True):
                np.testing.assert_array_equal(a, b)


def test_without_openvino_the_error_names_the_extra():
    # A fresh interpreter in which ``import openvino`` fails, as where it is not installed.
    code = (
        "import sys\n"
        "sys.modules['openvino'] = None\n"
        "from edgecnn.runtime import ModelError, load_classifier\n"
        "try:\n"
        f"    load_classifier({str(TINY / 'model_int8.onnx')!r}, backend='openvino')\n"
        "except ModelError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == (
        'the openvino backend needs openvino: pip install "edgecnn[openvino]"'
    ), done.stderr


def test_auto_never_picks_openvino():
    assert not BACKENDS["openvino"].auto
    for suffix in (".onnx", ".tflite"):
        assert "openvino" not in candidates(suffix, "auto")
        assert candidates(suffix, "openvino") == ("openvino",)
    assert load_classifier(TINY / "model_int8.onnx").backend_name == "onnxruntime"
    with pytest.raises(ModelError, match="cannot run .npz"):
        load_classifier(TINY / "weights.npz", backend="openvino")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x08\x07" + bytes(range(256)) * 4, "not a valid ONNX model"),
        (b"not a model at all", "not a valid ONNX model"),
    ],
)
def test_unreadable_onnx_is_a_one_line_model_error(tmp_path, content, match):
    (tmp_path / "m.onnx").write_bytes(content)
    with pytest.raises(ModelError, match=match) as caught:
        load_classifier(tmp_path / "m.onnx", backend="openvino")
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "m.onnx")) and "\n" not in message
    assert "Exception from" not in message and "src/" not in message


@pytest.mark.parametrize("name", ["model_float32.onnx", "model_int8.tflite"])
def test_damaged_files_are_model_errors(tmp_path, name):
    data = (TINY / name).read_bytes()
    target = tmp_path / name.replace("/", "_")
    target.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ModelError, match="SHA-256|valid|damaged"):
        load_classifier(target, backend="openvino")
    with pytest.raises(ModelError) as caught:
        load_classifier(target, backend="openvino", check_integrity=False)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(target))
    # Damage in the middle of the weights: the recorded digest catches what parses.
    middle = bytearray(data)
    middle[len(data) // 2] ^= 0x5A
    target.write_bytes(bytes(middle))
    with pytest.raises(ModelError, match="SHA-256"):
        load_classifier(target, backend="openvino")


def test_onnx_external_data_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx.external_data_helper import convert_model_to_external_data

    proto = onnx.load(TINY / "model_float32.onnx")
    del proto.metadata_props[:]
    convert_model_to_external_data(proto, location="secret.txt", size_threshold=1024)
    onnx.save(proto, tmp_path / "m.onnx", save_as_external_data=False)
    with pytest.raises(ModelError, match="external data"):
        load_classifier(tmp_path / "m.onnx", backend="openvino")


def test_metadata_readers_match_the_interpreters():
    ort = pytest.importorskip("onnxruntime")
    for name in ("model_float32.onnx", "model_int8.onnx"):
        data = (TINY / name).read_bytes()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        assert read_onnx_metadata(data) == dict(session.get_modelmeta().custom_metadata_map)
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    for name in ("model_float32.tflite", "model_int8.tflite", "full_integer/model_int8.tflite"):
        interpreter = litert.Interpreter(model_path=str(TINY / name))
        details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        expected = tuple(d["quantization"] if d["dtype"] != np.float32 else None for d in details)
        assert read_tflite_io_quantization((TINY / name).read_bytes()) == expected, name
    with pytest.raises(ValueError, match="TFL3"):
        read_tflite_io_quantization(b"\x00" * 16)


def test_predict_on_the_command_line(tmp_path):
    shutil.copy(TINY / "model_int8.onnx", tmp_path / "model_int8.onnx")
    shutil.copy(TINY / "model_int8.onnx.json", tmp_path / "model_int8.onnx.json")
    for model in (tmp_path / "model_int8.onnx", TINY / "model_float32.tflite"):
        result = invoke("predict", model, ARRAY, PICTURE, "--backend", "openvino")
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 2 and all("Ankle boot" in line for line in lines), lines


def test_every_exported_file_passes_its_gate_on_openvino(exported, keras_reference):
    """float16 and dynamic-range .tflite files too: OpenVINO reads every precision."""
    from edgecnn.runtime.gate import GATES, top1_agreement

    ref = keras_reference.probs
    for record in exported.report.files:
        if not record.file.endswith((".onnx", ".tflite")):
            continue
        probs = load_classifier(
            exported.out / record.file, backend="openvino", calibrated=False
        ).predict(keras_reference.x)
        gate = GATES[record.precision]
        assert top1_agreement(probs, ref) >= gate.min_agreement, record.file
        if gate.max_prob_diff is not None:
            np.testing.assert_allclose(probs, ref, atol=gate.max_prob_diff, err_msg=record.file)
