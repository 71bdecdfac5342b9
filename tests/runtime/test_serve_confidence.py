"""``edgecnn serve``'s calibrated confidence and "unknown": replies, /health and /metadata,
the options, and a reload that keeps them.

The real server in a subprocess, serving the tiny numpy model with a temperature and
threshold fitted on real Fashion-MNIST test images (tests/calibrated_files.py).
"""

import os
import signal

import numpy as np
import pytest
from calibrated_files import FIT_IMAGES, calibrated_npz
from cli_helpers import assert_one_line_error, invoke
from serve_helpers import call, expected_reply, png_bytes, running_server, wait_until
from shared import ARRAY, TINY

from edgecnn.runtime import load_classifier
from edgecnn.runtime.confidence import UNKNOWN
from edgecnn.runtime.manifest import file_sha256
from edgecnn.runtime.serve.model_info import SHORT_SHA

REPLY = {"label", "unknown", "top_label", "confidence", "top_k", "model", "backend", "latency_ms"}


@pytest.fixture(scope="module")
def calibrated(test_images, tmp_path_factory):
    return calibrated_npz(tmp_path_factory.mktemp("calibrated"), test_images.x, test_images.y)


@pytest.fixture(scope="module")
def pictures(calibrated, test_images):
    """Test images the model was not fitted on: 12 it is sure of, 4 it is not."""
    images = test_images.x[FIT_IMAGES : FIT_IMAGES + 2000]
    unknown = load_classifier(calibrated).unknown(load_classifier(calibrated).predict(images))
    return np.concatenate([images[~unknown][:12], images[unknown][:4]])


def classify(port, image, top_k=3):
    status, reply, _ = call(port, "POST", f"/classify?top_k={top_k}", png_bytes(image))
    assert status == 200, reply
    return reply


def test_replies_say_unknown_and_the_top_label_as_the_api(calibrated, pictures):
    clf = load_classifier(calibrated, num_threads=1)
    with running_server(calibrated, "--threads", 1) as server:
        replies = [classify(server.port, image) for image in pictures]
        status, health, _ = call(server.port, "GET", "/health")
        status, meta, _ = call(server.port, "GET", "/metadata")
    assert [reply["unknown"] for reply in replies] == [False] * 12 + [True] * 4
    for image, reply in zip(pictures, replies, strict=True):
        answer = clf.answer(png_bytes(image), top_k=3)
        assert set(reply) == REPLY
        assert (reply["label"], reply["unknown"], reply["top_label"]) == (
            answer.label, answer.unknown, answer.top_label,
        )  # fmt: skip
        assert reply["confidence"] == answer.confidence
        assert reply["top_k"] == expected_reply(answer.top_k)
        assert reply["label"] == (UNKNOWN if reply["unknown"] else reply["top_label"])
    in_effect = {"temperature": clf.temperature, "reject_below": clf.reject_below}
    assert health["confidence_in_effect"] == in_effect
    assert meta["confidence_in_effect"] == in_effect
    # The file's own record is still there, as fitted.
    assert meta["confidence"] == clf.metadata.confidence.to_dict()


@pytest.mark.parametrize(
    ("args", "fitted_temperature", "reject_below"),
    [
        (["--no-reject"], True, None),
        (["--reject-below", "1"], True, 1.0),
        (["--reject-below", "0"], True, 0.0),
        (["--raw-confidence"], False, None),  # the file's threshold is for calibrated ones
        (["--raw-confidence", "--reject-below", "0.6"], False, 0.6),
    ],
)
def test_the_options_change_the_answers(
    calibrated, pictures, args, fitted_temperature, reject_below
):
    with running_server(calibrated, "--threads", 1, *args) as server:
        replies = [classify(server.port, image, top_k=10) for image in pictures]
        health = call(server.port, "GET", "/health")[1]
    clf = load_classifier(calibrated, calibrated=fitted_temperature,
                          reject=False if reject_below is None else reject_below)  # fmt: skip
    assert (clf.temperature != 1.0) == fitted_temperature
    in_effect = {"temperature": clf.temperature, "reject_below": reject_below}
    assert health["confidence_in_effect"] == in_effect
    for image, reply in zip(pictures, replies, strict=True):
        probs = clf.predict(png_bytes(image))
        got = {t["label"]: t["probability"] for t in reply["top_k"]}
        assert [got[label] for label in clf.labels] == probs[0].tolist()
        assert reply["unknown"] is bool(clf.unknown(probs)[0])
    unknown = [reply["unknown"] for reply in replies]
    if reject_below == 1.0:
        assert all(unknown)
    if not reject_below:
        assert not any(unknown)


BAD = {
    ("--reject-below", "1.5"): "--reject-below must be in 0..1, got 1.5",
    ("--reject-below", "-1"): "--reject-below must be in 0..1, got -1",
    ("--reject-below", "nan"): "--reject-below must be in 0..1, got nan",
    ("--reject-below", "0.5", "--no-reject"): "--reject-below and --no-reject contradict",
}


@pytest.mark.parametrize("args", BAD)
def test_bad_values_are_one_line_before_anything_listens(args, calibrated):
    result = invoke("serve", calibrated, "--port", 0, *args)
    assert_one_line_error(result, BAD[args])
    assert result.stdout == ""


def _replace(target, data):
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


@pytest.mark.parametrize(
    ("args", "in_effect"),
    [(["--reject-below", "0.9"], "fitted, 0.9"), (["--raw-confidence"], "1, never")],
)
def test_a_reloaded_model_answers_with_the_same_options(calibrated, tmp_path, args, in_effect):
    model = tmp_path / "model.npz"
    model.write_bytes((TINY / "weights.npz").read_bytes())  # no temperature, no threshold
    with running_server(model, "--threads", 1, *args) as server:
        before = call(server.port, "GET", "/health")[1]["confidence_in_effect"]
        _replace(model, calibrated.read_bytes())
        server.proc.send_signal(signal.SIGHUP)
        new_sha = file_sha256(calibrated)[:SHORT_SHA]

        def switched():
            return call(server.port, "GET", "/health")[1]["model_sha256"] == new_sha

        wait_until(switched, "serving the new model")
        after = call(server.port, "GET", "/health")[1]["confidence_in_effect"]
        reply = call(server.port, "POST", "/classify", ARRAY.read_bytes())[1]
    fitted = load_classifier(calibrated).temperature
    if in_effect == "fitted, 0.9":
        assert before == {"temperature": 1.0, "reject_below": 0.9}
        assert after == {"temperature": fitted, "reject_below": 0.9}
    else:
        assert before == after == {"temperature": 1.0, "reject_below": None}
    reject = after["reject_below"]
    clf = load_classifier(calibrated, calibrated=after["temperature"] != 1.0,
                          reject=False if reject is None else reject)  # fmt: skip
    answer = clf.answer(np.load(ARRAY), top_k=3)
    assert reply["top_k"] == expected_reply(answer.top_k)
    assert (reply["label"], reply["unknown"]) == (answer.label, answer.unknown)
