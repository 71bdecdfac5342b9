import numpy as np
import pytest
from shared import TINY

from edgecnn.runtime import load_classifier


def test_float_backends_agree_with_keras_and_each_other(exported, keras_reference):
    results = {
        name: load_classifier(exported.out / name).predict(keras_reference.x)
        for name in ("model_float32.tflite", "model_float32.onnx", "weights.npz")
    }
    ref = keras_reference.probs
    for name, probs in results.items():
        assert np.mean(probs.argmax(1) == ref.argmax(1)) >= 0.999, name
        np.testing.assert_allclose(probs, ref, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(results["model_float32.tflite"], results["weights.npz"], atol=1e-5)


def test_explicit_backend_choice():
    clf = load_classifier(TINY / "model_int8.tflite", backend="litert", num_threads=1)
    assert clf.backend_name == "litert" and clf.backend.threads == 1
    assert load_classifier(TINY / "weights.npz", backend="numpy").backend_name == "numpy"
    onnx = load_classifier(TINY / "model_int8.onnx", num_threads=2)
    assert onnx.backend.threads == 2  # every interpreter reports the threads it uses
    assert load_classifier(TINY / "weights.npz").backend.threads is None  # numpy's BLAS


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_does_not_change_answers(test_images, threads):
    for name in ("model_int8.tflite", "model_float32.onnx"):
        a = load_classifier(TINY / name, num_threads=threads).predict(test_images.x[:300])
        b = load_classifier(TINY / name).predict(test_images.x[:300])
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("backend", ["litert-builtin", "litert-reference"])
def test_tflite_kernels_can_be_chosen(test_images, backend):
    clf = load_classifier(TINY / "model_int8.tflite", backend=backend)
    default = load_classifier(TINY / "model_int8.tflite")
    assert clf.backend_name == backend
    probs, expected = clf.predict(test_images.x[:200]), default.predict(test_images.x[:200])
    assert np.mean(probs.argmax(1) == expected.argmax(1)) >= 0.98
    with pytest.raises(Exception, match="cannot run .onnx"):
        load_classifier(TINY / "model_int8.onnx", backend=backend)
