import io
import itertools
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from shared import ARRAY, PICTURE, TINY, TINY_FILES

from edgecnn.runtime import InputError, ModelError, load_classifier
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


# -- invert on arrays ----------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY_FILES)
def test_invert_applies_to_arrays_as_to_pictures(name):
    """A dark-on-white array with ``invert=True`` is the picture the model was trained on."""
    clf = load_classifier(TINY / name)
    boot = np.load(ARRAY)
    expected = clf.predict(PICTURE)
    assert clf.classify(PICTURE)[0][0] == "Ankle boot"
    dark_on_white = 255 - boot
    for form in (
        dark_on_white,  # uint8: predict's hot path unless invert=True
        dark_on_white[None, ..., None],
        dark_on_white.astype(np.float32) / 255,  # float in [0, 1]: 1 - x
        dark_on_white.astype(np.int32),
        dark_on_white.tolist(),
    ):
        np.testing.assert_allclose(clf.predict(form, invert=True), expected, atol=1e-6)
        assert clf.classify(form, invert=True)[0][0] == "Ankle boot"
    # Arrays are taken as they are unless told: None and False change nothing.
    for invert in (None, False):
        np.testing.assert_allclose(clf.predict(boot, invert=invert), expected, atol=1e-6)
        np.testing.assert_allclose(
            clf.predict(dark_on_white, invert=invert), clf.predict(dark_on_white), atol=0
        )
    assert clf.classify(dark_on_white)[0][0] != "Ankle boot"
    # The picture file, dark on white, inverted on request or by its light border.
    inverted_png = _png(dark_on_white)
    np.testing.assert_allclose(clf.predict(inverted_png, invert=True), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict(inverted_png), expected, atol=1e-6)
    with pytest.raises(InputError, match="invert must be"):
        clf.predict(boot, invert="yes")


# -- metadata the file does not have, or that contradicts it ------------------------------


def _onnx_without_metadata(path, classes=10, softmax=True):
    """A small float ONNX model of ``classes`` outputs, built by hand, with no metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(0, 0.05, (784, classes)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits" if softmax else "out"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["out"], axis=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", classes])],
        [weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_model_without_metadata_gets_numbered_classes(tmp_path):
    for classes in (5, 10):
        path = _onnx_without_metadata(tmp_path / f"c{classes}.onnx", classes)
        clf = load_classifier(path)
        assert clf.generic_labels
        assert clf.labels == tuple(f"class_{i}" for i in range(classes))
        assert clf.predict(np.load(ARRAY)).shape == (1, classes)
        assert clf.classify(np.load(ARRAY))[0][0].startswith("class_")
    assert not load_classifier(TINY / "model_int8.onnx").generic_labels


def _edited_onnx(tmp_path, edit, name="model_float32.onnx"):
    """``name`` with its metadata moved to a sidecar edited by ``edit(document)``."""
    import onnx

    proto = onnx.load(TINY / name)
    del proto.metadata_props[:]
    target = tmp_path / name
    onnx.save(proto, target)
    document = json.loads((TINY / f"{name}.json").read_text())
    del document["file"]
    edit(document)
    target.with_name(target.name + ".json").write_text(json.dumps(document))
    return target


@pytest.mark.parametrize("name", ["model_float32.onnx", "model_int8.onnx"])
def test_metadata_saying_logits_on_probabilities_is_refused(tmp_path, name):
    path = _edited_onnx(tmp_path, lambda d: d["output"].update(kind="logits"), name)
    for check in (True, False):
        with pytest.raises(ModelError, match="says the outputs are logits, but they are already"):
            load_classifier(path, check_integrity=check)
    result = invoke("predict", path, PICTURE, "--no-integrity-check")
    assert_one_line_error(result, "already probabilities")


def test_real_logits_are_softmaxed(tmp_path):
    """A model that does end at logits, and says so, loads; its outputs are probabilities."""
    path = _onnx_without_metadata(tmp_path / "logits.onnx", softmax=False)
    document = json.loads((TINY / "model_float32.onnx.json").read_text())
    del document["file"]
    document["output"]["kind"] = "logits"
    document["integrity"] = {}
    path.with_name(path.name + ".json").write_text(json.dumps(document))
    probs = load_classifier(path, check_integrity=False).predict(np.load(ARRAY))
    np.testing.assert_allclose(probs.sum(), 1, atol=1e-5)


def test_no_integrity_check_accepts_metadata_without_an_integrity_record(tmp_path):
    path = _edited_onnx(tmp_path, lambda d: d.pop("integrity"))
    with pytest.raises(ModelError, match="no integrity record"):
        load_classifier(path)
    assert load_classifier(path, check_integrity=False).classify(PICTURE)[0][0] == "Ankle boot"
    result = invoke("predict", path, PICTURE, "--no-integrity-check")
    assert result.exit_code == 0 and "Ankle boot" in result.stdout, result.stderr


# -- an embedding app's stderr --------------------------------------------------------------


def test_loading_and_classifying_print_nothing_on_stderr():
    """LiteRT's "Created TensorFlow Lite XNNPACK delegate" line is not the app's to see."""
    code = (
        "import os, sys\n"
        "from edgecnn.runtime import load_classifier\n"
        "for name in sys.argv[1:]:\n"
        "    clf = load_classifier(name)\n"
        "    print(clf.classify(os.environ['PICTURE'])[0][0])\n"
        "os.write(2, b'the app wrote this\\n')\n"
    )
    names = [str(TINY / n) for n in TINY_FILES]
    done = subprocess.run(
        [sys.executable, "-c", code, *names],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PICTURE": str(PICTURE)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Ankle", "boot"] * len(names)
    assert done.stderr == "the app wrote this\n"


def test_what_others_write_to_stderr_during_a_load_is_passed_on(capfd):
    from edgecnn._quiet import banners_hidden
    from edgecnn.runtime.backends import BANNERS

    with banners_hidden(BANNERS):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"a line of the app's\n")
    assert capfd.readouterr().err == "a line of the app's\n"


def test_ctrl_c_after_any_call_of_a_hidden_block_gives_stderr_back():
    """Wherever KeyboardInterrupt strikes, descriptor 2 is the process's stderr again.

    Python raises a signal's exception once a call returns. A profile function raises it
    as the n-th call the redirection makes returns, for every n: at the block's start and
    in its clean-up. (Once, a Ctrl-C that came during the clean-up left descriptor 2 on
    the temporary file, and the command's "error: interrupted" unseen.)
    """
    from edgecnn import _quiet

    code = _quiet._fd2_captured.__wrapped__.__code__

    def identity() -> tuple[int, int]:
        st = os.fstat(2)
        return st.st_dev, st.st_ino

    before = identity()
    for strike in itertools.count(1):
        returned = 0

        def profile(frame, event, arg, strike=strike):
            nonlocal returned
            made_here = event == "c_return" and frame.f_code is code
            made_here |= event == "return" and frame.f_back and frame.f_back.f_code is code
            if made_here:
                returned += 1
                if returned == strike:
                    raise KeyboardInterrupt

        sys.setprofile(profile)
        try:
            with _quiet.native_stderr_hidden():
                os.write(2, b"hidden\n")
        except KeyboardInterrupt:
            pass
        finally:
            sys.setprofile(None)
        assert identity() == before, f"descriptor 2 not given back after call {strike}"
        if returned < strike:  # ran to the end unstruck: every call was tried
            break
    assert strike > 10
