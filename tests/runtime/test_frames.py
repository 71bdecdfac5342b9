"""Frames an app grabs itself, classified one after another: crop, colour order, polarity,
and the stable-label events, on real Fashion-MNIST pictures and the tiny int8 model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared import TINY
from video_files import frame_of

from edgecnn.runtime import load_classifier
from edgecnn.runtime.confidence import UNKNOWN
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.frames import (
    POLARITY_FRAMES,
    Change,
    Crop,
    FrameClassifier,
    FrameResult,
    StableLabel,
    check_frame,
    invert_choice,
)
from edgecnn.runtime.images import resize_array

MODEL = TINY / "model_int8.tflite"


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(MODEL)


@pytest.fixture(scope="module")
def pictures(test_images):
    return test_images.x[:8]


# --- Crop ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["center", "centre", " Center ", "CENTRE"])
def test_crop_center(text):
    crop = Crop.parse(text)
    assert crop == Crop() and str(crop) == "center"
    assert crop.region(640, 480) == (80, 0, 480, 480)
    assert crop.region(480, 640) == (0, 80, 480, 480)
    assert crop.region(641, 480) == (80, 0, 480, 480)
    assert crop.region(1, 1) == (0, 0, 1, 1)


def test_crop_box():
    crop = Crop.parse(" 10 , 20,30 ,40 ")
    assert crop.box == (10, 20, 30, 40) and str(crop) == "10,20,30,40"
    assert crop.region(40, 60) == (10, 20, 30, 40)  # ends exactly at the edges
    with pytest.raises(InputError, match="does not fit in a 39x60 frame"):
        crop.region(39, 60)
    with pytest.raises(InputError, match="does not fit in a 40x59 frame"):
        crop.region(40, 59)


@pytest.mark.parametrize(
    "text", ["", "1,2,3", "1,2,3,4,5", "0,0,0,5", "0,0,5,0", "-1,0,5,5", "a,b,c,d", "1.5,0,2,2",
             "123456,0,1,1", "middle"],
)  # fmt: skip
def test_bad_crops(text):
    with pytest.raises(InputError, match="--crop") as e:
        Crop.parse(text)
    assert "\n" not in str(e.value)


# --- check_frame -----------------------------------------------------------------------


def coloured(height=6, width=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_check_frame_orders():
    rgb = coloured()
    assert check_frame(rgb) is rgb or np.array_equal(check_frame(rgb), rgb)
    assert np.array_equal(check_frame(rgb[:, :, ::-1], "bgr"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(check_frame(rgba), rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(check_frame(bgra, "bgr"), rgb)
    # No pixel is copied: a view of the caller's array.
    assert np.shares_memory(check_frame(bgra, "bgr"), bgra)


def test_check_frame_greyscale():
    grey = coloured()[:, :, 0]
    assert np.array_equal(check_frame(grey), grey)
    assert np.array_equal(check_frame(grey, "bgr"), grey)
    assert np.array_equal(check_frame(grey[:, :, np.newaxis], "bgr"), grey)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.zeros((6, 8, 3), np.float32), "uint8"),
        (np.zeros((6, 8, 3), np.int16), "uint8"),
        (np.zeros((6, 8, 3), bool), "uint8"),
        (np.zeros((6, 8, 2), np.uint8), "shape"),
        (np.zeros((6, 8, 5), np.uint8), "shape"),
        (np.zeros(8, np.uint8), "shape"),
        (np.zeros((2, 6, 8, 3), np.uint8), "shape"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros((6, 0), np.uint8), "empty"),
        ([[0, 1], [2, 3]], "numpy array"),
        (np.array(3, np.uint8), "shape"),
        (np.uint8(3), "numpy array"),
    ],
)
def test_check_frame_refuses(frame, match):
    with pytest.raises(InputError, match=match):
        check_frame(frame)


def test_check_frame_refuses_an_unknown_order():
    with pytest.raises(InputError, match="colour order"):
        check_frame(coloured(), "rgba")


def test_invert_choice():
    assert [invert_choice(v) for v in ("auto", "YES", "no", None, True, False)] == [
        None, True, False, None, True, False,
    ]  # fmt: skip
    for bad in ("maybe", 1, 0.0, ""):
        with pytest.raises(InputError, match="invert"):
            invert_choice(bad)


# --- FrameClassifier -------------------------------------------------------------------


def reference(classifier, frame, box, invert, top_k=10):
    x, y, w, h = box
    image = resize_array(frame[y : y + h, x : x + w], classifier.input_shape)
    return classifier.classify(image, top_k=top_k, invert=invert)


def test_classify_equals_classify_on_the_resized_crop(classifier, pictures):
    frames = FrameClassifier(classifier, top_k=10)
    boxed = FrameClassifier(classifier, crop="82,2,476,476", top_k=10, invert="no")
    bgr = FrameClassifier(classifier, order="bgr", top_k=10)
    for i, picture in enumerate(pictures):
        frame = frame_of(picture)
        frame[:, :, 0] //= 2  # a colour frame: the order matters
        result = frames.classify(frame)
        assert result.index == i and result.time == float(i)
        want = reference(classifier, frame, (80, 0, 480, 480), invert=False)
        assert [label for label, _ in result.top_k] == [label for label, _ in want]
        np.testing.assert_allclose([p for _, p in result.top_k], [p for _, p in want], atol=1e-6)
        assert (result.label, result.confidence) == result.top_k[0]
        boxed_result = boxed.classify(frame)
        boxed_want = reference(classifier, frame, (82, 2, 476, 476), invert=False)
        assert [label for label, _ in boxed_result.top_k] == [label for label, _ in boxed_want]
        np.testing.assert_allclose(
            [p for _, p in boxed_result.top_k], [p for _, p in boxed_want], atol=1e-6
        )
        assert bgr.classify(np.ascontiguousarray(frame[:, :, ::-1])).top_k == result.top_k


def test_classify_with_time_and_top_k(classifier, pictures):
    frames = FrameClassifier(classifier, top_k=2)
    result = frames.classify(frame_of(pictures[0]), time=1.25)
    assert result.time == 1.25 and len(result.top_k) == 2
    assert result.to_dict() == {
        "frame": 0,
        "time": 1.25,
        "label": result.label,
        "unknown": False,  # the tiny files have no threshold
        "top_label": result.label,
        "confidence": result.confidence,
        "top_k": [{"label": label, "probability": p} for label, p in result.top_k],
    }
    with pytest.raises(InputError):
        FrameClassifier(classifier, top_k=11)
    with pytest.raises(InputError, match="order"):
        FrameClassifier(classifier, order="rgba")
    with pytest.raises(InputError, match="does not fit"):
        FrameClassifier(classifier, crop="0,0,700,10").classify(frame_of(pictures[0]))


def test_polarity_is_decided_once_from_the_first_frame(classifier, pictures):
    frames = FrameClassifier(classifier, top_k=10)
    assert frames.invert is None
    light = 255 - frame_of(pictures[0])  # dark clothes on white, as a camera sees them
    first = frames.classify(light)
    assert frames.invert is True
    assert first.top_k == tuple(reference(classifier, light, (80, 0, 480, 480), invert=True))
    # Later frames with a dark border do not flip it back.
    dark = frame_of(pictures[1])
    later = frames.classify(dark)
    assert frames.invert is True
    assert later.top_k == tuple(reference(classifier, dark, (80, 0, 480, 480), invert=True))
    # And the other way round.
    other = FrameClassifier(classifier)
    other.classify(dark)
    other.classify(light)
    assert other.invert is False


@pytest.mark.parametrize(("invert", "expected"), [("yes", True), ("no", False), (True, True)])
def test_forced_polarity(invert, expected, classifier, pictures):
    frames = FrameClassifier(classifier, invert=invert)
    assert frames.invert is expected
    frames.classify(255 - frame_of(pictures[0]))
    frames.classify(frame_of(pictures[0]))
    assert frames.invert is expected


def test_polarity_is_decided_on_the_first_frames_only(classifier, pictures):
    """A first batch longer than the polarity window: only its first frames vote."""
    frames = FrameClassifier(classifier)
    light = [frames.prepare(255 - frame_of(p)) for p in pictures[:3]]
    dark = [frames.prepare(frame_of(p)) for p in pictures] * 4
    images = np.stack(light + dark)  # 3 of the first 5 are light; 3 of 35 overall
    count = len(images)
    frames.classify_prepared(images, range(count), [i / 30 for i in range(count)])
    assert POLARITY_FRAMES == 5 and frames.invert is True


def test_polarity_window_is_one_second(classifier, pictures):
    """Frames a second apart: only the first votes, though five fit the count."""
    frames = FrameClassifier(classifier)
    light = frames.prepare(255 - frame_of(pictures[0]))
    dark = frames.prepare(frame_of(pictures[1]))
    images = np.stack([light, dark, dark, dark, dark])
    frames.classify_prepared(images, range(5), [0.0, 1.0, 2.0, 3.0, 4.0])
    assert frames.invert is True


# --- unknown ---------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.9, 1.0])
def test_a_frame_below_the_threshold_is_unknown(pictures, threshold):
    classifier = load_classifier(MODEL, reject=threshold)
    frames = FrameClassifier(classifier, top_k=2)
    found = [frames.classify(frame_of(p)) for p in pictures]
    probs = classifier.predict(np.stack([frames.prepare(frame_of(p)) for p in pictures]))
    unknown = probs.max(axis=1) < np.float32(threshold)
    assert [r.unknown for r in found] == unknown.tolist()
    for r in found:
        assert r.top_label == r.top_k[0][0] and r.confidence == r.top_k[0][1]
        assert r.label == (UNKNOWN if r.unknown else r.top_label)
        line = r.to_dict()
        assert (line["label"], line["unknown"], line["top_label"]) == (r.label, r.unknown,
                                                                       r.top_label)  # fmt: skip
        assert type(line["unknown"]) is bool  # JSON's, not numpy's
    if threshold == 0.9:
        assert 0 < sum(unknown) < len(pictures)


def test_frames_follow_the_files_fitted_threshold(test_images, tmp_path):
    from calibrated_files import FIT_IMAGES, calibrated_npz

    classifier = load_classifier(calibrated_npz(tmp_path, test_images.x, test_images.y))
    images = test_images.x[FIT_IMAGES : FIT_IMAGES + 200, :, :, None]
    frames = FrameClassifier(classifier, invert="no")
    found = frames.classify_prepared(images, range(200), [i / 30 for i in range(200)])
    expected = classifier.unknown(classifier.predict(images))
    assert [r.unknown for r in found] == expected.tolist() and 0 < expected.sum() < 100
    raw = FrameClassifier(load_classifier(tmp_path / "weights.npz", reject=False), invert="no")
    assert not any(r.unknown for r in raw.classify_prepared(images, range(200), [0.0] * 200))


# --- StableLabel -----------------------------------------------------------------------


def result(index, label, confidence=0.9, unknown=False):
    top_k = ((label, confidence), ("other", 1 - confidence))
    return FrameResult(index, index / 10, top_k, unknown)


def feed(stable, labels, confidences=None):
    confidences = confidences or [0.9] * len(labels)
    return [
        stable.update(result(i, label, c))
        for i, (label, c) in enumerate(zip(labels, confidences, strict=True))
    ]


def test_stable_after_k_frames_in_a_row():
    events = feed(StableLabel(3), list("aaabbbbab"))
    assert [e and (e.index, e.label, e.previous) for e in events] == [
        None, None, (2, "a", None), None, None, (5, "b", "a"), None, None, None,
    ]  # fmt: skip
    assert events[2] == Change(2, 0.2, "a", 0.9, None)


def test_no_event_for_the_same_label_again():
    stable = StableLabel(2)
    events = feed(stable, list("aabaaaa"))
    assert [e.index for e in events if e] == [1]
    assert stable.stable == "a"


def test_a_frame_below_the_confidence_breaks_the_run():
    events = feed(StableLabel(3, 0.5), list("aaaa"), [0.9, 0.4, 0.9, 0.9])
    assert events == [None] * 4
    events = feed(StableLabel(3, 0.5), list("aaaaa"), [0.9, 0.4, 0.9, 0.9, 0.6])
    assert events[-1] == Change(4, 0.4, "a", 0.6, None)
    # The confidence is the lowest of the frames that made it stable.
    events = feed(StableLabel(2, 0.5), list("aaa"), [0.5, 0.99, 0.7])
    assert events[1].confidence == 0.5


def test_one_frame_is_enough_with_frames_1():
    events = feed(StableLabel(1, 0), list("abba"))
    assert [(e.label, e.previous) for e in events if e] == [("a", None), ("b", "a"), ("a", "b")]


@pytest.mark.parametrize(
    ("frames", "confidence"), [(0, 0.5), (-1, 0.5), (1.5, 0.5), (True, 0.5), (3, 1.5), (3, -0.1),
                               (3, float("nan")), (3, True), (3, "0.5")],
)  # fmt: skip
def test_stable_label_refuses(frames, confidence):
    with pytest.raises(InputError):
        StableLabel(frames, confidence)


def stable_reference(frames, threshold, results):
    """The definition, written plainly: a run of the same label, each frame confident."""
    stable, run_label, run = None, None, []
    events = []
    for i, (label, p) in enumerate(results):
        if p < threshold:
            run_label, run = None, []
            events.append(None)
            continue
        if label != run_label:
            run_label, run = label, []
        run.append(p)
        if len(run) >= frames and label != stable:
            events.append((i, label, min(run[-frames:]), stable))
            stable = label
        else:
            events.append(None)
    return events


@settings(max_examples=200, deadline=None)
@given(
    frames=st.integers(1, 4),
    threshold=st.sampled_from([0.0, 0.5, 0.8]),
    results=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0.3, 0.6, 0.9, 1.0])),
                     max_size=40),
)  # fmt: skip
def test_stable_label_follows_its_definition(frames, threshold, results):
    stable = StableLabel(frames, threshold)
    got = [stable.update(result(i, label, p)) for i, (label, p) in enumerate(results)]
    want = stable_reference(frames, threshold, results)
    assert [g and (g.index, g.label, g.confidence, g.previous) for g in got] == want


def test_unknown_is_a_label_of_its_own_whatever_its_confidence():
    stable = StableLabel(2, 0.5)
    frames = [("a", 0.9, False), ("a", 0.9, False), ("a", 0.3, True), ("b", 0.2, True),
              ("b", 0.9, False), ("b", 0.8, False), ("a", 0.4, True),
              ("c", 0.35, True)]  # fmt: skip
    events = [stable.update(result(i, *f)) for i, f in enumerate(frames)]
    assert [e and (e.index, e.label, e.confidence, e.previous) for e in events] == [
        None, (1, "a", 0.9, None), None, (3, UNKNOWN, 0.2, "a"),
        None, (5, "b", 0.8, UNKNOWN), None, (7, UNKNOWN, 0.35, "b"),
    ]  # fmt: skip
    assert stable.stable == UNKNOWN
    # A class named "unknown" is another label than the answer "unknown".
    stable = StableLabel(1, 0.5)
    named = [("unknown", 0.9, False), ("x", 0.3, True), ("unknown", 0.9, False)]
    assert sum(stable.update(result(i, *f)) is not None for i, f in enumerate(named)) == 3


@settings(max_examples=200, deadline=None)
@given(
    frames=st.integers(1, 4),
    threshold=st.sampled_from([0.0, 0.5, 0.8]),
    results=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0.3, 0.6, 0.9, 1.0]),
                               st.booleans()), max_size=40),
)  # fmt: skip
def test_stable_label_with_unknown_follows_its_definition(frames, threshold, results):
    stable = StableLabel(frames, threshold)
    got = [stable.update(result(i, *r)) for i, r in enumerate(results)]
    # An unknown frame is the label "unknown", and counts whatever its confidence.
    plain = [(UNKNOWN, 1.0) if unknown else (label, p) for label, p, unknown in results]
    want = stable_reference(frames, threshold, plain)
    lowest = [[p for label, p, unknown in results[: i + 1]] for i in range(len(results))]
    assert [g and (g.index, g.label, g.previous) for g in got] == [
        w and (w[0], w[1], w[3]) for w in want
    ]
    for g in got:  # the confidence of a change is the lowest of the frames that made it
        if g is not None:
            assert g.confidence == min(lowest[g.index][g.index + 1 - frames :])
