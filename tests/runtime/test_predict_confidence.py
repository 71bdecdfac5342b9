"""``edgecnn predict``'s calibrated confidence and "unknown": the options, every output style,
the worker processes, and video streams.

The tiny numpy model with a temperature and threshold fitted on real Fashion-MNIST test
images (tests/calibrated_files.py); 300 other test images saved as PNG, more than one
batch, so that the worker processes classify them. The slow test at the end runs the
session's real export, whose files were fitted by the exporter itself.
"""

import json

import numpy as np
import pytest
from calibrated_files import FIT_IMAGES, calibrated_npz
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from shared import PICTURE, TINY
from video_files import make_video

from edgecnn.runtime import load_classifier
from edgecnn.runtime.confidence import UNKNOWN
from edgecnn.runtime.predict.workers import BATCH_SIZE, cores, workers_pay

PICTURES = 300
#: Numpy's matrix products sum in blocks that depend on the batch size (see
#: test_predict_files.py): probabilities of a batch and of one image differ by this much.
ATOL = 1e-5
KEYS = {"file", "label", "unknown", "top_label", "confidence", "top_k"}


@pytest.fixture(scope="module")
def calibrated(test_images, tmp_path_factory):
    return calibrated_npz(tmp_path_factory.mktemp("calibrated"), test_images.x, test_images.y)


@pytest.fixture(scope="module")
def pictures(test_images, tmp_path_factory):
    """300 test images the model was not fitted on, as PNG files; and the images."""
    folder = tmp_path_factory.mktemp("pictures")
    images = test_images.x[FIT_IMAGES : FIT_IMAGES + PICTURES]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return folder, images


def results(*args):
    result = invoke("predict", *args, "--json", "--top-k", "10")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["results"]


def probabilities(rows, labels):
    """The rows' probabilities, in the model's class order."""
    by_label = [{t["label"]: t["probability"] for t in row["top_k"]} for row in rows]
    return np.array([[got[label] for label in labels] for got in by_label], np.float32)


def test_pictures_are_classified_by_worker_processes(pictures):
    """The tests below go through the workers (their ModelSpec carries the options): the
    folder holds more than a batch, which is what makes predict start them."""
    folder, _ = pictures
    assert len(list(folder.iterdir())) == PICTURES > BATCH_SIZE
    if cores() < 2:  # deliberate: predict starts no workers on one core, nothing to check
        pytest.skip("one core: predict starts no worker processes here")
    assert workers_pay(PICTURES)


def test_json_says_unknown_and_the_top_label(calibrated, pictures):
    folder, images = pictures
    clf = load_classifier(calibrated)
    assert clf.temperature != 1 and clf.reject_below is not None
    rows = results(calibrated, folder)
    assert all(set(row) == KEYS for row in rows)
    probs = probabilities(rows, clf.labels)
    np.testing.assert_allclose(probs, clf.predict(images), rtol=0, atol=ATOL)
    unknown = np.array([row["unknown"] for row in rows])
    np.testing.assert_array_equal(unknown, clf.unknown(probs))
    assert 0 < unknown.sum() < len(rows) / 4  # about 5% are: the fit keeps 95%
    for row in rows:
        assert row["top_label"] == row["top_k"][0]["label"]
        assert row["confidence"] == row["top_k"][0]["probability"]
        assert row["label"] == (UNKNOWN if row["unknown"] else row["top_label"])


def test_jsonl_and_text_say_the_same(calibrated, pictures):
    folder, _ = pictures
    rows = results(calibrated, folder)
    lines = invoke("predict", calibrated, folder, "--jsonl", "--top-k", "10").stdout
    assert [json.loads(line) for line in lines.splitlines()] == rows
    text = invoke("predict", calibrated, folder, "--top-k", "2")
    assert text.exit_code == 0, text.stderr
    for line, row in zip(text.stdout.splitlines(), rows, strict=True):
        width = len(row["file"])  # every name is as long
        assert line[:width] == row["file"]
        body = line[width + 2 :]  # LABEL (12 wide) CONFIDENCE%  [top-k]
        assert body[:12].rstrip() == row["label"]  # "unknown" in the label's column
        assert body[12:21] == f" {100 * row['confidence']:5.1f}%  "
        # The top class is listed whatever the label says.
        assert body[21:].startswith(f"[{row['top_label']} {row['confidence']:.3f}, ")


def test_no_reject_never_answers_unknown(calibrated, pictures):
    folder, _ = pictures
    default = results(calibrated, folder)
    rows = results(calibrated, folder, "--no-reject")
    assert not any(row["unknown"] for row in rows)
    assert [row["label"] for row in rows] == [row["top_label"] for row in default]
    assert [row["top_k"] for row in rows] == [row["top_k"] for row in default]  # calibrated


@pytest.mark.parametrize(("threshold", "unknown"), [("1", True), ("0", False), ("1.0", True)])
def test_reject_below_overrides_the_files_threshold(calibrated, pictures, threshold, unknown):
    folder, _ = pictures
    rows = results(calibrated, folder, "--reject-below", threshold)
    # No top probability here is exactly 1, which is the one that "1" still accepts.
    assert all(row["confidence"] < 1 for row in rows)
    assert [row["unknown"] for row in rows] == [unknown] * PICTURES
    assert {row["label"] == UNKNOWN for row in rows} == {unknown}


def test_reject_below_between(calibrated, pictures):
    folder, _ = pictures
    rows = results(calibrated, folder, "--reject-below", "0.9")
    assert [row["unknown"] for row in rows] == [row["confidence"] < np.float32(0.9) for row in rows]
    assert 0 < sum(row["unknown"] for row in rows) < PICTURES


def test_raw_confidence_gives_the_models_own_probabilities(calibrated, pictures):
    folder, images = pictures
    raw = load_classifier(calibrated, calibrated=False)
    assert raw.temperature == 1 and raw.reject_below is None
    rows = results(calibrated, folder, "--raw-confidence")
    probs = probabilities(rows, raw.labels)
    np.testing.assert_allclose(probs, raw.predict(images), rtol=0, atol=ATOL)
    calibrated_probs = load_classifier(calibrated).predict(images)
    assert np.abs(probs - calibrated_probs).max() > 0.01  # the temperature is not 1
    # The file's threshold was fitted on calibrated probabilities: not applied to raw ones.
    assert not any(row["unknown"] for row in rows)
    rows = results(calibrated, folder, "--raw-confidence", "--reject-below", "0.9")
    assert [row["unknown"] for row in rows] == [row["confidence"] < np.float32(0.9) for row in rows]


def test_a_file_without_a_fit_is_calibrated_by_nothing_and_never_unknown():
    rows = results(TINY / "model_int8.tflite", PICTURE)
    raw = load_classifier(TINY / "model_int8.tflite", calibrated=False).classify(PICTURE, 10)
    assert [(t["label"], t["probability"]) for t in rows[0]["top_k"]] == raw
    assert rows[0]["unknown"] is False and rows[0]["label"] == rows[0]["top_label"]
    assert results(TINY / "model_int8.tflite", PICTURE, "--reject-below", "1")[0]["unknown"]


BAD = {
    ("--reject-below", "1.5"): "--reject-below must be in 0..1, got 1.5",
    ("--reject-below", "-0.1"): "--reject-below must be in 0..1, got -0.1",
    ("--reject-below", "nan"): "--reject-below must be in 0..1, got nan",
    ("--reject-below", "inf"): "--reject-below must be in 0..1, got inf",
    ("--reject-below", "0.5", "--no-reject"): "--reject-below and --no-reject contradict",
}


@pytest.mark.parametrize("args", BAD)
def test_bad_values_are_one_line(args, calibrated, tmp_path):
    result = invoke("predict", calibrated, PICTURE, *args)
    assert_one_line_error(result, BAD[args])
    assert result.stdout == ""
    # A video is refused the same, before it is opened.
    result = invoke("predict", calibrated, tmp_path / "missing.mp4", *args)
    assert_one_line_error(result, BAD[args])


# --- a video: a frame is "unknown" as a picture is, and a label of its own for --on-change


@pytest.fixture(scope="module")
def video(calibrated, test_images, tmp_path_factory):
    """A sure picture, an unsure one (top probability below 0.3), another sure one, 10
    frames each, in MJPEG (nearly lossless at this quality); and the labels to expect."""
    clf = load_classifier(calibrated)
    images = test_images.x[FIT_IMAGES:]
    probs = clf.predict(images)
    top = probs.max(axis=1)
    sure = np.flatnonzero(top > 0.99)
    first, unsure = int(sure[0]), int(np.flatnonzero(top < 0.3)[0])
    second = next(int(i) for i in sure if probs[i].argmax() != probs[first].argmax())
    chosen = images[[first, unsure, second]]
    path = tmp_path_factory.mktemp("video") / "v.avi"
    made = make_video(path, chosen, hold=10)
    labels = [clf.labels[probs[first].argmax()], UNKNOWN, clf.labels[probs[second].argmax()]]
    return made, labels


def frame_lines(*args):
    result = invoke("predict", *args, "--jsonl")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_video_frame_is_unknown_when_the_model_is_not_sure(calibrated, video):
    made, labels = video
    lines = frame_lines(calibrated, made.path)
    assert [line["label"] for line in lines] == [labels[made.picture_of(i)] for i in range(30)]
    for line in lines:
        assert line["unknown"] == (line["label"] == UNKNOWN)
        assert line["top_label"] == line["top_k"][0]["label"] != UNKNOWN
    assert not any(line["unknown"] for line in frame_lines(calibrated, made.path, "--no-reject"))
    forced = frame_lines(calibrated, made.path, "--reject-below", "1")
    assert {line["label"] for line in forced} == {UNKNOWN}


def test_on_change_treats_unknown_as_a_label(calibrated, video):
    made, labels = video
    # The unsure frames' confidence is below --min-confidence's 0.5: as "unknown" they
    # still make a stable label.
    lines = frame_lines(calibrated, made.path, "--on-change")
    assert [line["label"] for line in lines] == labels
    assert [line["previous"] for line in lines] == [None, *labels[:-1]]
    assert [line["frame"] for line in lines] == [2, 12, 22]
    text = invoke("predict", calibrated, made.path, "--on-change")
    assert text.stdout.splitlines()[1].split()[3] == UNKNOWN
    assert text.stdout.splitlines()[2].endswith(f"(was {UNKNOWN})")
    forced = frame_lines(calibrated, made.path, "--on-change", "--reject-below", "1")
    assert [line["label"] for line in forced] == [UNKNOWN]  # one stable label throughout


# --- the session's export: every file fitted by the exporter ----------------------------


def test_exported_files_answer_as_the_api_with_and_without_calibration(exported, pictures):
    folder, images = pictures
    files = sorted(exported.out.glob("model_*.tflite")) + sorted(exported.out.glob("*.onnx"))
    for path in [*files, exported.out / "weights.npz"]:
        clf = load_classifier(path)
        raw = load_classifier(path, calibrated=False)
        assert clf.metadata.confidence is not None and clf.reject_below is not None, path
        atol = ATOL if path.suffix == ".npz" else 1e-6  # the others: batches as single images
        rows = results(path, folder)
        probs = probabilities(rows, clf.labels)
        np.testing.assert_allclose(probs, clf.predict(images), rtol=0, atol=atol, err_msg=path)
        assert [row["unknown"] for row in rows] == clf.unknown(probs).tolist(), path
        rows = results(path, folder, "--raw-confidence")
        probs = probabilities(rows, raw.labels)
        np.testing.assert_allclose(probs, raw.predict(images), rtol=0, atol=atol, err_msg=path)
