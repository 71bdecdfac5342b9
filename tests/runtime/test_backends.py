import numpy as np
import pytest
from shared import ROOT, TINY

from edgecnn.runtime import load_classifier


def test_float_backends_agree_with_keras_and_each_other(exported, keras_reference):
    results = {
        name: load_classifier(exported.out / name, calibrated=False).predict(keras_reference.x)
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


def test_both_kinds_of_int8_tflite_give_probabilities(test_images):
    """The default int8 file ends in float; a --full-integer one in int8 (steps of 1/256)."""
    images = test_images.x[:300]
    default = load_classifier(TINY / "model_int8.tflite")
    full = load_classifier(TINY / "full_integer" / "model_int8.tflite")
    assert "output" not in default.metadata.quantization
    assert full.metadata.quantization["output"]["scale"] == pytest.approx(1 / 256)
    p, q = default.predict(images), full.predict(images)
    for probs in (p, q):
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert np.mean(p.argmax(1) == q.argmax(1)) >= 0.97
    # Runners-up: distinct in the float-ended file, mostly tied at 0 in the full-integer one.
    top3 = np.sort(p, axis=1)[:, -3:]
    assert np.mean(top3[:, 1] > top3[:, 0]) > 0.99
    assert np.mean(np.sort(q, axis=1)[:, -3] == 0) > np.mean(top3[:, 0] == 0)
    assert default.classify(images[0], top_k=3)[0][0] == full.classify(images[0], top_k=3)[0][0]


def test_each_backend_entry_says_what_it_needs_and_whether_it_starts_threads():
    """The registry is the one place: predict's fork rule and the install hints follow it."""
    import tomllib

    from edgecnn.runtime.backends import BACKENDS
    from edgecnn.runtime.predict.workers import THREADED_MODULES

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    named = " ".join(" ".join(v) for v in pyproject["project"]["optional-dependencies"].values())
    for name, entry in BACKENDS.items():
        if entry.package is None:
            assert entry.install_hint == "" and not entry.starts_threads, name
            continue
        assert entry.install_hint.startswith("pip install"), name
        if entry.starts_threads:
            assert entry.package.module.split(".")[0] in THREADED_MODULES, name
        # Each interpreter is an extra of edgecnn's, but for the legacy tflite-runtime,
        # which devices install on their own (32-bit ARM, where LiteRT has no wheel).
        if entry.distribution != "tflite-runtime":
            assert entry.distribution in named, name
