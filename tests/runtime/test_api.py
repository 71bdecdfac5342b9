import io
import threading

import numpy as np
import pytest
from PIL import Image
from shared import TINY, TINY_FILES

from edgecnn.runtime import InputError, load_classifier
from edgecnn.runtime.labels import FASHION_MNIST_LABELS

#: The backend ``auto`` picks for each file here, with every extra installed.
AUTO_BACKEND = {".tflite": "litert", ".onnx": "onnxruntime", ".npz": "numpy"}


@pytest.fixture(scope="module", params=TINY_FILES)
def clf(request):
    return load_classifier(TINY / request.param)


def test_predict_returns_probabilities(clf, test_images):
    probs = clf.predict(test_images.x[:50])
    assert probs.shape == (50, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-3)
    assert (probs >= 0).all()
    assert clf.labels == FASHION_MNIST_LABELS and clf.input_shape == (28, 28, 1)


def test_every_input_form_gives_the_same_answer(clf, test_images):
    x = test_images.x[:5]
    expected = clf.predict(x)
    for form in (
        x.astype(np.float32) / 255,
        x[..., None],
        (x.astype(np.float64) / 255)[..., None],
        x.astype(np.int32),
        list(x),
    ):
        np.testing.assert_allclose(clf.predict(form), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict(x[0]), expected[:1], atol=1e-6)
    np.testing.assert_allclose(clf.predict(x[0][..., None]), expected[:1], atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 600])
def test_any_batch_size_matches_one_at_a_time(clf, test_images, n):
    x = test_images.x[:n]
    batch = clf.predict(x)
    singles = np.concatenate([clf.predict(x[i]) for i in range(0, n, max(1, n // 7))])
    np.testing.assert_allclose(batch[:: max(1, n // 7)], singles, atol=1e-5)


def test_classify_top_k(clf, test_images):
    ranked = clf.classify(test_images.x[0], top_k=3)
    assert len(ranked) == 3 and all(label in FASHION_MNIST_LABELS for label, _ in ranked)
    assert ranked[0][1] >= ranked[1][1] >= ranked[2][1]
    assert ranked[0][0] == FASHION_MNIST_LABELS[int(clf.predict(test_images.x[0]).argmax())]
    with pytest.raises(InputError, match="top_k"):
        clf.classify(test_images.x[0], top_k=11)
    with pytest.raises(InputError, match="one image"):
        clf.classify(test_images.x[:2])


def _png(array, mode="L"):
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pictures_in_any_mode_size_and_polarity(test_images, tmp_path):
    clf = load_classifier(TINY / "model_float32.tflite")
    image = test_images.x[0]
    expected = clf.predict(image)
    np.testing.assert_allclose(clf.predict(_png(image)), expected, atol=1e-6)
    path = tmp_path / "boot.png"
    path.write_bytes(_png(image, "RGB"))
    np.testing.assert_allclose(clf.predict(path), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict(str(path)), expected, atol=1e-6)
    # Dark on light (a product photo) is inverted automatically, or on request.
    inverted = _png(255 - image)
    assert clf.classify(inverted)[0][0] == clf.classify(image)[0][0]
    np.testing.assert_allclose(clf.predict(inverted, invert=True), expected, atol=1e-6)
    assert not np.allclose(clf.predict(inverted, invert=False), expected, atol=1e-3)
    # A large JPEG of the same picture still lands on the same class.
    big = Image.fromarray(image).resize((700, 700), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.convert("RGB").save(buffer, format="JPEG", quality=95)
    assert clf.classify(buffer.getvalue())[0][0] == clf.classify(image)[0][0]
    bmp = io.BytesIO()
    Image.fromarray(image).save(bmp, format="BMP")
    np.testing.assert_allclose(clf.predict(bmp.getvalue()), expected, atol=1e-6)
    both = clf.predict([_png(image), path])
    np.testing.assert_allclose(both, np.concatenate([expected, expected]), atol=1e-6)


def test_metadata_is_exposed(clf):
    assert clf.metadata.dataset == "fashion"
    assert clf.metadata.precision == ("int8" if "int8" in clf.path.name else "float32")
    assert clf.backend_name == AUTO_BACKEND[clf.path.suffix] == clf.backend.name


@pytest.mark.slow
def test_threads_share_one_classifier(test_images):
    for name in ("model_int8.tflite", "model_float32.onnx", "weights.npz"):
        clf = load_classifier(TINY / name)
        images = test_images.x[:500]
        # One thread's answers, image by image (a batch may round differently in BLAS).
        expected = np.concatenate([clf.predict(image) for image in images])
        mismatches, errors = [], []

        def worker(
            offset: int,
            clf=clf,
            images=images,
            expected=expected,
            mismatches=mismatches,
            errors=errors,
        ) -> None:
            try:
                for i in range(500):
                    j = (i + offset * 61) % 500
                    if not np.array_equal(clf.predict(images[j]), expected[j : j + 1]):
                        mismatches.append(j)
            except Exception as e:  # surfaced below; a thread cannot fail the test itself
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a worker hung"
        assert not errors, errors
        assert not mismatches, f"{name}: {len(mismatches)} answers differed across threads"
