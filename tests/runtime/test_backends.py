import numpy as np
import pytest

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


def test_explicit_backend_choice(exported):
    clf = load_classifier(exported.out / "model_int8.tflite", backend="litert", num_threads=1)
    assert clf.backend_name == "litert" and clf._backend.threads == 1
    assert load_classifier(exported.out / "weights.npz", backend="numpy").backend_name == "numpy"


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_does_not_change_answers(exported, keras_reference, threads):
    for name in ("model_int8.tflite", "model_float32.onnx"):
        a = load_classifier(exported.out / name, num_threads=threads).predict(
            keras_reference.x[:300]
        )
        b = load_classifier(exported.out / name).predict(keras_reference.x[:300])
        np.testing.assert_allclose(a, b, atol=1e-6)
