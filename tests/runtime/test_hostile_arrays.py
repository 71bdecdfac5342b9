"""Arrays given to the runtime: in memory, and as ``.npy`` files on the command line.

Wrong shapes, dtypes and value ranges are InputErrors naming what is wrong; ``.npy`` headers
that lie about their size or type are one line and exit 2; any array at all gives
probabilities or an InputError; large batches run in bounded memory.
"""

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, peak_rss_mb
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from serve_helpers import npy_header
from shared import TINY

from edgecnn.runtime import InputError, load_classifier

TINY_FLOAT = TINY / "model_float32.tflite"


@pytest.fixture(scope="module")
def clf():
    return load_classifier(TINY / "model_int8.tflite")


# -- arrays in memory ----------------------------------------------------------------------


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


def test_an_empty_list_is_an_empty_batch():
    with pytest.raises(InputError, match="empty batch"):
        load_classifier(TINY_FLOAT).predict([])


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
    """Any 28x28 uint8 image classifies, and the same image the same way in a batch."""
    batch = np.tile(np.array(pixels, np.uint8).reshape(1, 28, 28), (n, 1, 1))
    probs = clf.predict(batch)
    assert probs.shape == (n, 10)
    np.testing.assert_array_equal(probs[0], probs[-1])


def test_onnxruntime_runs_large_batches_in_bounded_memory():
    """20,000 images in one call run in chunks: the peak grows by about the output (the
    whole batch at once took about 1.9 GB)."""
    code = (
        "import numpy as np\n"
        "from edgecnn.runtime import load_classifier\n"
        "clf = load_classifier(sys.argv[1])\n"
        "clf.predict(np.zeros((256, 28, 28), np.uint8))\n"
        "images = np.zeros((20000, 28, 28), np.uint8)\n"
        "mark()\n"
        "assert clf.predict(images).shape == (20000, 10)\n"
    )
    before, after, _ = peak_rss_mb(code, TINY / "model_float32.onnx")
    assert after - before < 150, f"peak grew {after - before:.0f} MB"


# -- .npy files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,match",
    [
        (npy_header("<f8", (2**38,)), "more than"),
        (npy_header("<f4", (10**12, 28, 28)), "more than"),
        (npy_header("<m8", (28, 28)), "not a plain number"),
        (npy_header("|V0", (28, 28)), "not a plain number"),
        (npy_header("<f4", (2**62 + 196, 4)), "more than"),
        (b"PK\x03\x04" + b"\0" * 40, "zip archive"),
    ],
)
def test_hostile_npy_files_are_one_line_exit_2(tmp_path, header, match):
    """Headers claiming terabytes (or a size that wraps), types that are no number, a zip:
    ``edgecnn predict`` says so in one line and exits 2."""
    (tmp_path / "x.npy").write_bytes(header + b"\0" * 64)
    assert_one_line_error(invoke("predict", TINY_FLOAT, tmp_path / "x.npy"), match)


def test_timedelta_arrays_are_refused(tmp_path):
    """A timedelta array is no picture: refused as a file and as an array."""
    np.save(tmp_path / "t.npy", np.zeros((28, 28), "m8[s]"))
    assert_one_line_error(invoke("predict", TINY_FLOAT, tmp_path / "t.npy"), "not a plain number")
    with pytest.raises(InputError, match="dtype"):
        load_classifier(TINY_FLOAT).predict(np.zeros((28, 28), "m8[s]"))


def test_an_npz_renamed_npy_is_named_for_what_it_is(tmp_path):
    (tmp_path / "w.npy").write_bytes((TINY / "weights.npz").read_bytes())
    assert_one_line_error(invoke("predict", TINY_FLOAT, tmp_path / "w.npy"), "zip archive")
