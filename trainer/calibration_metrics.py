"""Calibration on the test split, before and after: the record ``edgecnn evaluate`` writes.

``metrics.json`` (the Keras model's, and each exported file's ``<file>.evaluation/``)
holds it under ``calibration``: the expected calibration error at ``T = 1`` and at the
model's temperature, the reliability diagram's bins both ways, and what the "unknown"
rule fitted on the validation split rejects among the test pictures. numpy only: the
report reads it back without TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecnn.records import Fields, JSONObject, RecordError, check_schema
from edgecnn.runtime.confidence import (
    ECE_BINS,
    MIN_FIT_IMAGES,
    Confidence,
    Reliability,
    calibrate,
    fit,
    rejected,
    reliability,
)
from edgecnn.runtime.errors import ModelError

#: The key of ``metrics.json`` that holds :meth:`CalibrationMetrics.to_dict`.
CALIBRATION_KEY = "calibration"
#: The schema :meth:`CalibrationMetrics.to_dict` writes.
SCHEMA = 1


@dataclass(frozen=True)
class CalibrationMetrics:
    """How well a model's confidence matched its accuracy on ``images`` test pictures.

    ``confidence`` is what was fitted on the validation split (temperature, threshold,
    the validation ECEs), None when the model has none (then "after" is "before").
    ``rejected`` is the share of test pictures answered "unknown"; ``accepted_accuracy``
    the accuracy on the others (None when every picture was rejected).
    """

    confidence: Confidence | None
    images: int
    accuracy: float
    ece_before: float
    ece_after: float
    rejected: float
    accepted_accuracy: float | None
    before: Reliability
    after: Reliability
    split: str = "test"

    @property
    def temperature(self) -> float:
        """The temperature of "after" (1 without a fitted one)."""
        return 1.0 if self.confidence is None else self.confidence.temperature

    @property
    def reject_below(self) -> float | None:
        """The "unknown" threshold applied, or None."""
        return None if self.confidence is None else self.confidence.reject_below

    def to_dict(self) -> JSONObject:
        """JSON-ready form, stored as ``metrics.json``'s ``calibration`` object."""
        return {
            "schema": SCHEMA,
            "split": self.split,
            "images": self.images,
            "bins": len(self.before.counts),
            "confidence": None if self.confidence is None else self.confidence.to_dict(),
            "accuracy": self.accuracy,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "rejected": self.rejected,
            "accepted_accuracy": self.accepted_accuracy,
            "reliability_before": self.before.to_dict(),
            "reliability_after": self.after.to_dict(),
        }

    @classmethod
    def from_fields(cls, f: Fields) -> CalibrationMetrics:
        """The record :meth:`to_dict` wrote; names a field it rejects.

        Raises:
            RecordError: a field is missing, of another type, or impossible.
        """
        check_schema(f, SCHEMA, "a calibration record")
        confidence = None
        if "confidence" in f:
            try:
                confidence = Confidence.from_dict(f.raw("confidence"))
            except ModelError as e:  # "metadata confidence ...": here it is a record's field
                raise RecordError(f"{f.where} {str(e).removeprefix('metadata ')}") from None
        return cls(
            confidence=confidence,
            images=f.integer("images"),
            accuracy=_fraction(f, "accuracy"),
            ece_before=_fraction(f, "ece_before"),
            ece_after=_fraction(f, "ece_after"),
            rejected=_fraction(f, "rejected"),
            accepted_accuracy=None
            if "accepted_accuracy" not in f
            else _fraction(f, "accepted_accuracy"),
            before=_reliability(f.object("reliability_before")),
            after=_reliability(f.object("reliability_after")),
            split=f.text("split", default="test"),
        )


def _fraction(f: Fields, key: str) -> float:
    value = f.number(key)
    if not 0 <= value <= 1:
        raise RecordError(f"{f.where}.{key} is {value!r}, not a fraction in 0..1")
    return value


def _reliability(f: Fields) -> Reliability:
    """A reliability diagram's bins as :meth:`Reliability.to_dict` wrote them."""
    edges = f.numbers("edges")
    counts = f.raw("counts")
    if not isinstance(counts, list) or not all(type(n) is int and n >= 0 for n in counts):
        raise RecordError(f"{f.where}.counts is not a list of image counts")
    means = {key: _means(f, key, len(counts)) for key in ("confidence", "accuracy")}
    if len(edges) != len(counts) + 1 or not counts:
        raise RecordError(f"{f.where} has {len(edges)} edges for {len(counts)} bins")
    return Reliability(tuple(edges), tuple(counts), means["confidence"], means["accuracy"])


def _means(f: Fields, key: str, bins: int) -> tuple[float, ...]:
    """A bin's mean per bin, NaN where the bin is empty (null in the file)."""
    values = f.raw(key)
    if not isinstance(values, list) or len(values) != bins:
        raise RecordError(f"{f.where}.{key} is not a list of {bins} means")
    means = []
    for v in values:
        if v is None:
            means.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1:
            means.append(float(v))
        else:
            raise RecordError(f"{f.where}.{key} holds {v!r:.20}, not a fraction or null")
    return tuple(means)


def measure_calibration(
    raw_probs: np.ndarray, labels: np.ndarray, confidence: Confidence | None
) -> CalibrationMetrics:
    """ECE and reliability of ``raw_probs`` (T = 1) and calibrated by ``confidence``.

    ``raw_probs`` are a model's uncalibrated probabilities on the test pictures; the
    "unknown" share and the accuracy on the accepted pictures are those of the calibrated
    ones under ``confidence``'s threshold, as ``edgecnn predict`` answers.
    """
    labels = np.asarray(labels)
    temperature = 1.0 if confidence is None else confidence.temperature
    calibrated = calibrate(raw_probs, temperature)
    before = reliability(raw_probs, labels, ECE_BINS)
    after = reliability(calibrated, labels, ECE_BINS)
    unknown = rejected(calibrated, None if confidence is None else confidence.reject_below)
    right = np.asarray(raw_probs).argmax(axis=1) == labels  # a temperature keeps the order
    accepted = ~unknown
    return CalibrationMetrics(
        confidence=confidence,
        images=len(labels),
        accuracy=float(right.mean()) if len(labels) else 0.0,
        ece_before=round(before.ece, 6),
        ece_after=round(after.ece, 6),
        rejected=float(unknown.mean()) if len(labels) else 0.0,
        accepted_accuracy=float(right[accepted].mean()) if accepted.any() else None,
        before=before,
        after=after,
    )


def fit_and_measure(
    val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray, test_labels: np.ndarray
) -> tuple[CalibrationMetrics, str]:
    """A Keras model's temperature and threshold fitted on validation, measured on test.

    ``*_probs`` are the softmax of its logits. Returns the record and where the
    temperature came from, in words (too few validation pictures: none is fitted).
    """
    if len(val_labels) < MIN_FIT_IMAGES:
        reason = (f"{len(val_labels)} validation images are too few to fit a temperature "
                  f"(at least {MIN_FIT_IMAGES})")  # fmt: skip
        return measure_calibration(test_probs, test_labels, None), reason
    confidence = fit(val_probs, val_labels)
    return measure_calibration(test_probs, test_labels, confidence), fitted_on(confidence)


def fitted_on(confidence: Confidence) -> str:
    """Where a temperature came from, in words: "fitted on 5,000 validation images"."""
    return f"fitted on {confidence.images:,} {confidence.fitted_on} images"


def calibration_lines(result: CalibrationMetrics, fitted: str) -> str:
    """What ``edgecnn evaluate`` prints: ECE before and after, then the "unknown" rule.

    ``fitted`` says where the temperature came from ("fitted on 5,000 validation images").
    """
    n = f"{result.images:,} {result.split} images"
    if result.confidence is None:
        text = (f"Calibration error (ECE, {ECE_BINS} bins) on the {n}: "
                f"{100 * result.ece_before:.2f}%, uncalibrated ({fitted})\n")  # fmt: skip
    else:
        text = (f"Calibration error (ECE, {ECE_BINS} bins) on the {n}: "
                f"{100 * result.ece_before:.2f}% before, {100 * result.ece_after:.2f}% after "
                f"(temperature {result.temperature:.4g}, {fitted})\n")  # fmt: skip
    if result.reject_below is None:
        return text + 'No "unknown" rule: every picture gets a class\n'
    accepted = result.accepted_accuracy
    on_accepted = "none accepted" if accepted is None else f"{100 * accepted:.2f}%"
    return text + (
        f'"unknown" below {result.reject_below:.4f}: {100 * result.rejected:.2f}% of the '
        f"{n} rejected; accuracy on the accepted {on_accepted} "
        f"({100 * result.accuracy:.2f}% on all)\n"
    )
