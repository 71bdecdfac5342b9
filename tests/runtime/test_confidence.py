"""Calibration and the "unknown" rule: the arithmetic, the metadata, bad values (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgecnn.runtime import confidence as C
from edgecnn.runtime import load_classifier
from edgecnn.runtime.errors import InputError, ModelError
from edgecnn.runtime.metadata import ModelMetadata, parse_metadata
from edgecnn.runtime.preprocess import softmax

logit_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 20), st.integers(2, 12)),
    elements=st.floats(-30, 30, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(logit_rows, st.floats(0.05, 20))
def test_calibrating_probabilities_is_temperature_scaling_of_their_logits(logits, temperature):
    probs = softmax(logits.astype(np.float32))
    expected = softmax((logits / temperature).astype(np.float32))
    calibrated = C.calibrate(probs, temperature)
    assert calibrated.dtype == np.float32
    np.testing.assert_allclose(calibrated.sum(axis=1), 1, atol=1e-6)
    # float32 probabilities below about 1e-38 are lost; what is left agrees closely.
    np.testing.assert_allclose(calibrated, expected, atol=2e-5)


def test_a_temperature_of_one_returns_the_probabilities_as_they_are():
    probs = softmax(np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32))
    assert C.calibrate(probs, 1.0) is probs


def test_zero_probabilities_stay_zero_at_any_temperature():
    probs = np.array([[0.0, 0.25, 0.75]], np.float32)
    calibrated = C.calibrate(probs, 4.0)
    assert calibrated[0, 0] < 1e-7
    assert calibrated[0, 1] < calibrated[0, 2]


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_temperature):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4, size=(20_000, 10))
    truth = softmax((logits / true_temperature).astype(np.float32)).astype(np.float64)
    labels = (truth.cumsum(axis=1) > rng.random((len(truth), 1))).argmax(axis=1)
    fitted = C.fit_temperature(softmax(logits.astype(np.float32)), labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)


def test_fitting_a_temperature_makes_an_overconfident_model_honest():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3, size=(10_000, 10))
    truth = softmax(logits.astype(np.float32)).astype(np.float64)
    labels = (truth.cumsum(axis=1) > rng.random((len(truth), 1))).argmax(axis=1)
    overconfident = softmax((logits * 2).astype(np.float32))
    fitted = C.fit(overconfident, labels)
    assert fitted.temperature == pytest.approx(2.0, rel=0.05)
    assert fitted.ece_before is not None and fitted.ece_before > 0.05
    assert fitted.ece_after is not None and fitted.ece_after < 0.015
    calibrated = C.calibrate(overconfident, fitted.temperature)
    assert C.rejected(calibrated, fitted.reject_below).mean() == pytest.approx(0.05, abs=0.001)


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float32, st.integers(1, 300), elements=st.sampled_from([0.1, 0.3, 0.5, 0.9, 1.0])),
    st.floats(0.01, 1.0),
)
def test_the_threshold_keeps_at_least_the_share_asked_and_no_higher_one_does(top, acceptance):
    rows = np.stack([top, 1 - top], axis=1).astype(np.float32)
    threshold = C.fit_threshold(rows, acceptance)
    kept = ~C.rejected(rows, threshold)
    assert kept.mean() >= acceptance - 1e-9
    higher = rows.max(axis=1)[rows.max(axis=1) > threshold]
    if len(higher):
        stricter = float(higher.min())
        assert (~C.rejected(rows, stricter)).mean() < acceptance


def test_expected_calibration_error_by_hand():
    # Two bins used of 15: (0.6, 0.667] holds 0.62 and 0.65, one right;
    # (0.933, 1] holds 0.95, right.
    probs = np.array([[0.62, 0.38], [0.65, 0.35], [0.95, 0.05]])
    labels = np.array([0, 1, 0])
    diagram = C.reliability(probs, labels)
    assert sum(diagram.counts) == 3
    assert diagram.counts[9] == 2 and diagram.counts[14] == 1
    expected = (2 * abs(0.5 - 0.635) + abs(1 - 0.95)) / 3
    assert C.expected_calibration_error(probs, labels) == pytest.approx(expected)
    assert math.isnan(diagram.accuracy[0])
    assert diagram.to_dict()["accuracy"][0] is None


def test_a_confidence_on_a_bin_edge_falls_in_the_bin_below():
    probs = np.array([[2 / 15, 13 / 15], [1.0, 0.0]])
    counts = C.reliability(probs, np.array([1, 0])).counts
    assert counts[12] == 1 and counts[14] == 1


def test_a_perfectly_calibrated_model_has_a_small_error():
    rng = np.random.default_rng(3)
    probs = softmax(rng.normal(scale=3, size=(50_000, 10)).astype(np.float32)).astype(np.float64)
    labels = (probs.cumsum(axis=1) > rng.random((len(probs), 1))).argmax(axis=1)
    assert C.expected_calibration_error(probs, labels) < 0.01


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.int8, st.integers(1, 30), elements=st.integers(0, 5)),
    arrays(np.int8, st.integers(1, 30), elements=st.integers(0, 5)),
)
def test_auroc_is_the_share_of_pairs_ranked_right_ties_counted_half(inside, outside):
    pairs = [(a > b) + 0.5 * (a == b) for a in inside for b in outside]
    assert C.auroc(inside, outside) == pytest.approx(np.mean(pairs))


def test_the_false_accept_rate_is_taken_at_the_threshold_keeping_95_percent():
    inside = np.linspace(0.01, 1, 100)
    outside = np.array([0.0, 0.05, 0.06, 0.5, 0.9])
    # 95 of the 100 inside scores are >= 0.06.
    assert C.false_accept_rate(inside, outside) == pytest.approx(3 / 5)


def test_fits_need_enough_labelled_pictures():
    with pytest.raises(ValueError, match="too few"):
        C.fit(np.full((10, 2), 0.5), np.zeros(10, int))
    with pytest.raises(ValueError, match="labels outside"):
        C.fit(np.full((100, 2), 0.5), np.full(100, 2))


FITTED = C.Confidence(1.3, 0.58, images=5000, ece_before=0.021, ece_after=0.007)


def test_the_confidence_record_round_trips_through_metadata():
    meta = ModelMetadata(confidence=FITTED)
    assert parse_metadata(meta.to_json(), "m").confidence == FITTED
    bare = ModelMetadata()
    assert "confidence" not in bare.to_dict()
    assert parse_metadata(bare.to_json(), "m").confidence is None
    never = dataclasses.replace(FITTED, reject_below=None)
    assert parse_metadata(ModelMetadata(confidence=never).to_json(), "m").confidence == never


@pytest.mark.parametrize(
    "change, message",
    [
        ({"temperature": -1.0}, "temperature must be a number in 0.01..100, got -1.0"),
        ({"temperature": 0}, "temperature must be a number in 0.01..100, got 0"),
        ({"temperature": "2"}, "temperature must be a number"),
        ({"temperature": True}, "temperature must be a number"),
        ({"temperature": 1e9}, "temperature must be a number in 0.01..100"),
        ({"reject_below": 1.5}, "reject_below must be in 0..1, got 1.5"),
        ({"reject_below": -0.1}, "reject_below must be in 0..1, got -0.1"),
        ({"reject_below": [0.5]}, "reject_below must be in 0..1"),
        ({"rule": "energy"}, "rule 'energy' is not one of max_probability"),
        ({"acceptance": 0}, "acceptance must be in (0, 1]"),
        ({"images": -3}, "images must be a count"),
        ({"ece_after": 2}, "ece_after must be in 0..1"),
        ({"fitted_on": "a\nb"}, "fitted_on is not a short name"),
    ],
)
def test_impossible_confidence_metadata_is_refused_in_one_line(change, message):
    document = ModelMetadata(confidence=FITTED).to_dict()
    document["confidence"] = {**document["confidence"], **change}  # type: ignore[dict-item]
    with pytest.raises(ModelError) as caught:
        parse_metadata(json.dumps(document), "model.tflite.json")
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith("model.tflite.json: metadata confidence ")


def test_confidence_that_is_not_an_object_or_has_no_temperature_is_refused():
    document = ModelMetadata().to_dict()
    for value, message in (("hot", "must be an object"), ({}, "has no temperature")):
        document["confidence"] = value
        with pytest.raises(ModelError, match=message):
            parse_metadata(json.dumps(document), "m")


def _with_confidence(tmp_path, tiny, confidence):
    """A copy of the tiny numpy model whose embedded metadata holds ``confidence``.

    No sidecar: its record of the file's digest would no longer match.
    """
    with np.load(tiny / "weights.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    document = json.loads(str(arrays["metadata"]))
    document["confidence"] = confidence
    arrays["metadata"] = np.array(json.dumps(document))
    model = tmp_path / "weights.npz"
    np.savez(model, **arrays)
    return model


def test_a_file_without_confidence_answers_as_before(tiny, test_images):
    classifier = load_classifier(tiny / "model_float32.onnx")
    assert classifier.metadata.confidence is None
    assert classifier.temperature == 1.0 and classifier.reject_below is None
    probs = classifier.predict(test_images.x[:50])
    assert not classifier.unknown(probs).any()
    raw = load_classifier(tiny / "model_float32.onnx", calibrated=False).predict(test_images.x[:50])
    np.testing.assert_array_equal(probs, raw)


def test_the_sidecars_temperature_and_threshold_are_applied(tmp_path, tiny, test_images):
    model = _with_confidence(tmp_path, tiny, {"temperature": 2.0, "reject_below": 0.9})
    images = test_images.x[:200]
    classifier = load_classifier(model, check_integrity=False)
    raw = load_classifier(model, check_integrity=False, calibrated=False).predict(images)
    probs = classifier.predict(images)
    np.testing.assert_allclose(probs, C.calibrate(raw, 2.0), atol=1e-7)
    assert (probs.max(axis=1) <= raw.max(axis=1) + 1e-6).all()  # softer
    unknown = classifier.unknown(probs)
    np.testing.assert_array_equal(unknown, probs.max(axis=1) < np.float32(0.9))
    assert 0 < unknown.sum() < len(images)
    answer = classifier.answer(images[int(np.flatnonzero(unknown)[0])])
    assert answer.unknown and answer.label == C.UNKNOWN
    assert answer.top_label == answer.top_k[0][0] != C.UNKNOWN
    sure = classifier.answer(images[int(np.flatnonzero(~unknown)[0])])
    assert not sure.unknown and sure.label == sure.top_label
    # Raw probabilities have no fitted threshold; an explicit one still applies.
    assert load_classifier(model, check_integrity=False, calibrated=False).reject_below is None
    assert load_classifier(model, check_integrity=False, reject=False).reject_below is None
    assert load_classifier(model, check_integrity=False, reject=0.25).reject_below == 0.25


@pytest.mark.parametrize("reject", [1.5, -1, "high", float("nan")])
def test_an_impossible_reject_option_is_refused(tiny, reject):
    with pytest.raises(InputError, match="reject must be True, False or a probability"):
        load_classifier(tiny / "model_float32.onnx", reject=reject)


def test_predict_refuses_a_model_whose_confidence_metadata_is_impossible(tmp_path, tiny):
    model = _with_confidence(tmp_path, tiny, {"temperature": -1, "reject_below": 0.5})
    result = invoke("predict", model, tiny.parent / "ankle_boot.png")
    assert_one_line_error(result, "metadata confidence temperature must be a number in 0.01..100")


def test_a_temperature_fitted_elsewhere_is_kept_and_the_rest_fitted_on_these_outputs():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (400, 5))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 5, 400)
    given = C.fit(probs, labels, temperature=2.0)
    assert given.temperature == 2.0 and given.images == 400
    calibrated = C.calibrate(probs.astype(np.float32), 2.0)
    assert given.reject_below == C.fit_threshold(calibrated)
    assert given.ece_after == round(C.expected_calibration_error(calibrated, labels), 6)
    assert C.fit(probs, labels).temperature != 2.0
