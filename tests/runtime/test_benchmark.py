"""``edgecnn bench``'s baseline and the runtime's fast path: right answers, honest comparisons."""

import shutil

import numpy as np
import pytest
from shared import TINY

from edgecnn.runtime import ModelError, load_classifier
from edgecnn.runtime.benchmark import bench_images, bench_model, raw_runner
from edgecnn.runtime.verify import reference_bytes, reference_path

CASES = [
    ("model_float32.tflite", "litert"),
    ("model_int8.tflite", "litert"),
    ("full_integer/model_int8.tflite", "litert"),
    ("model_float32.onnx", "onnxruntime"),
    ("model_int8.onnx", "onnxruntime"),
    ("weights.npz", "numpy"),
]
GATE = {"min_agreement": 0.99}


@pytest.mark.parametrize(("name", "backend"), CASES)
def test_the_bare_runner_computes_what_predict_returns(test_images, name, backend):
    """The baseline does the same work: same pixels in, the same numbers out."""
    clf = load_classifier(TINY / name, backend=backend, num_threads=1)
    for size in (1, 5, 64):
        batch = test_images.x[:size]
        bare = np.asarray(raw_runner(clf, batch)(), dtype=np.float32).reshape(size, -1)
        probs = clf.predict(batch)
        np.testing.assert_array_equal(bare.argmax(1), probs.argmax(1))
        # An int8 softmax is renormalised by the runtime, not by a bare loop: within a step.
        np.testing.assert_allclose(bare, probs, atol=2 / 256 if "full" in name else 1e-6)
    # The runner resized the thread's interpreter; the runtime's own calls still agree.
    one = [clf.predict(test_images.x[i : i + 1])[0] for i in range(3)]
    np.testing.assert_allclose(one, clf.predict(test_images.x[:3]), atol=1e-5)


def test_probabilities_are_checked_in_every_row_of_small_and_large_batches():
    clf = load_classifier(TINY / "model_float32.tflite")
    good = np.full((3, 10), 0.1, np.float32)
    for rows in (3, 300):  # Python's check for a few rows, numpy's for many
        probs = np.resize(good, (rows, 10))
        assert clf._checked(probs) is probs
        for row, value, message in (
            (1, np.nan, "NaN or infinity"),  # not in the first row: min() would miss it
            (rows - 1, np.inf, "NaN or infinity"),
            (rows - 1, -0.5, "not probabilities"),
            (0, 0.9, "not probabilities"),  # a row summing to 1.8
        ):
            bad = probs.copy()
            bad[row, 3] = value
            with pytest.raises(ModelError, match=message):
                clf._checked(bad)


def test_bench_times_the_test_images_saved_at_export(tmp_path, test_images):
    model = tmp_path / "model_int8.tflite"
    shutil.copy(TINY / "model_int8.tflite", model)
    shutil.copy(TINY / "model_int8.tflite.json", tmp_path)
    clf = load_classifier(model)
    _, source = bench_images(clf, 4)
    assert source == "random pixels"  # no reference beside the file yet
    images = test_images.x[:7].reshape(7, 28, 28)
    scores = clf.predict(images)
    reference_path(model).write_bytes(reference_bytes(images, np.zeros(7), scores, scores, GATE))
    timed, source = bench_images(clf, 10)
    assert source == "test images from the export"
    np.testing.assert_array_equal(timed[:7].reshape(7, 28, 28), images)
    np.testing.assert_array_equal(timed[7:], timed[:3])  # repeated to the count asked
    r = bench_model(model, [1, 8], threads=1, runs=20, cold=False)
    assert r["images"] == "test images from the export" and "cold_start_s" not in r
    assert r["latency_ratio"] > 0 and r["latency_ratio_p99"] > 0
    assert set(r["throughput"]) == {"1", "8"}
