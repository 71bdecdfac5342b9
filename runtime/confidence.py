"""Confidence that means what it says, and "unknown" for a picture that is none of the classes.

Two things are fitted on the validation split and stored in a model's metadata
(``"confidence"``), per file: a file's int8 outputs differ from its float model's.

* **Temperature scaling** (Guo et al., 2017): calibrated probabilities are
  ``softmax(logits / T)``. The exported files end at probabilities, so it is applied to
  them as ``p ** (1 / T)``, renormalised: the same thing exactly, since
  ``log p = logits - logsumexp(logits)`` and the constant cancels. ``T`` minimises the
  negative log-likelihood of the validation labels; ``T > 1`` softens an overconfident
  model.
* **Rejection**: a picture whose largest calibrated probability is below
  ``reject_below`` is answered ``unknown`` (its top class still reported beside it). The
  threshold keeps ``acceptance`` (95%) of the validation pictures.

Measured with :func:`expected_calibration_error` (15 equal-width bins),
:func:`reliability`, :func:`auroc` and :func:`false_accept_rate`. numpy only: the
runtime, the exporter, the trainer and the benchmark share these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.records import JSONObject
from edgecnn.runtime.errors import ModelError

#: What a rejected picture's label is.
UNKNOWN = "unknown"
#: Scores a rejection rule may use: the largest calibrated probability.
RULES = ("max_probability",)
#: The share of in-distribution validation pictures the fitted threshold keeps.
DEFAULT_ACCEPTANCE = 0.95
#: Bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15
#: Temperatures a fit may choose and metadata may hold.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0
#: The fewest labelled pictures a fit takes: fewer say little about a temperature.
MIN_FIT_IMAGES = 50

# Probabilities are clipped here before the logarithm: an int8 softmax's zeros, and a
# float32 one's underflow, stay (next to) zero whatever the temperature.
_TINY = 1e-30


@dataclass(frozen=True)
class Confidence:
    """A file's calibration and rejection rule, as its metadata stores them.

    ``reject_below`` is None when the file has no rule (nothing is ever "unknown").
    ``ece_before``/``ece_after`` are the validation split's expected calibration error
    at ``T = 1`` and at ``temperature``, as fractions.
    """

    temperature: float = 1.0
    reject_below: float | None = None
    rule: str = "max_probability"
    acceptance: float = DEFAULT_ACCEPTANCE
    fitted_on: str = "validation"
    images: int = 0
    ece_before: float | None = None
    ece_after: float | None = None

    def __post_init__(self) -> None:
        check_temperature(self.temperature, "temperature")
        if self.reject_below is not None:
            check_probability(self.reject_below, "reject_below")
        if self.rule not in RULES:
            raise ModelError(
                f"metadata confidence rule {self.rule!r:.40} is not one of {', '.join(RULES)}"
            )
        if not _number(self.acceptance) or not 0 < self.acceptance <= 1:
            raise ModelError(
                f"metadata confidence acceptance must be in (0, 1], got {self.acceptance!r:.20}"
            )

    def to_dict(self) -> JSONObject:
        """JSON-ready form, stored as the metadata's ``confidence`` object."""
        return {
            "temperature": self.temperature,
            "rule": self.rule,
            "reject_below": self.reject_below,
            "acceptance": self.acceptance,
            "fitted_on": self.fitted_on,
            "images": self.images,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
        }

    @classmethod
    def from_dict(cls, data: object) -> Confidence:
        """Parse :meth:`to_dict`'s form.

        Raises:
            ModelError: a field is missing, of another type, or impossible (a temperature
                that is not a positive number, a threshold outside 0..1), in one line.
        """
        if not isinstance(data, dict):
            raise ModelError(f"metadata confidence must be an object, got {type(data).__name__}")
        if "temperature" not in data:
            raise ModelError("metadata confidence has no temperature")
        images = data.get("images", 0)
        if type(images) is not int or images < 0:
            raise ModelError(f"metadata confidence images must be a count, got {images!r:.20}")
        fitted_on = data.get("fitted_on", "validation")
        if not isinstance(fitted_on, str) or not fitted_on.isprintable() or len(fitted_on) > 40:
            raise ModelError(
                f"metadata confidence fitted_on is not a short name: {fitted_on!r:.40}"
            )
        return cls(
            temperature=data["temperature"],
            reject_below=data.get("reject_below"),
            rule=data.get("rule", "max_probability"),
            acceptance=data.get("acceptance", DEFAULT_ACCEPTANCE),
            fitted_on=fitted_on,
            images=images,
            ece_before=_optional_fraction(data.get("ece_before"), "ece_before"),
            ece_after=_optional_fraction(data.get("ece_after"), "ece_after"),
        )


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_temperature(value: object, what: str = "temperature") -> float:
    """``value`` as a temperature in :data:`MIN_TEMPERATURE`..:data:`MAX_TEMPERATURE`.

    Raises:
        ModelError: anything else (negative, zero, NaN, not a number).
    """
    if not _number(value) or not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:  # type: ignore[operator]
        raise ModelError(
            f"metadata confidence {what} must be a number in {MIN_TEMPERATURE:g}.."
            f"{MAX_TEMPERATURE:g}, got {value!r:.20}"
        )
    return float(value)  # type: ignore[arg-type]


def check_probability(value: object, what: str) -> float:
    """``value`` as a probability threshold in 0..1.

    Raises:
        ModelError: anything else.
    """
    if not _number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise ModelError(f"metadata confidence {what} must be in 0..1, got {value!r:.20}")
    return float(value)  # type: ignore[arg-type]


def _optional_fraction(value: object, what: str) -> float | None:
    return None if value is None else check_probability(value, what)


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs`` (rows of probabilities) at ``temperature``: ``softmax(log(probs) / T)``.

    float32 rows summing to 1; ``temperature == 1`` returns ``probs`` unchanged.
    """
    if temperature == 1.0:
        return probs
    z = np.log(np.maximum(probs, _TINY), dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    calibrated: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return calibrated


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean ``-log p(label)`` of ``probs`` at ``temperature``."""
    z = np.log(np.maximum(probs, _TINY), dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels``.

    The likelihood is convex in ``1 / T``; a golden-section search over ``log T`` finds
    its minimum to about 1e-4 relative.

    Raises:
        ValueError: fewer than :data:`MIN_FIT_IMAGES` rows, or labels outside the classes.
    """
    probs, labels = _checked_pair(probs, labels)
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa = negative_log_likelihood(probs, labels, math.exp(a))
    fb = negative_log_likelihood(probs, labels, math.exp(b))
    while hi - lo > 1e-4:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = negative_log_likelihood(probs, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = negative_log_likelihood(probs, labels, math.exp(b))
    return round(math.exp((lo + hi) / 2), 5)


def fit_threshold(calibrated: np.ndarray, acceptance: float = DEFAULT_ACCEPTANCE) -> float:
    """The largest ``reject_below`` that still accepts ``acceptance`` of these rows.

    A row is accepted when its top probability is at least the threshold, so the
    threshold is the ``1 - acceptance`` quantile of the top probabilities, taken from
    below (ties never push the accepted share under ``acceptance``).
    """
    top = np.sort(np.asarray(calibrated, dtype=np.float64).max(axis=1))
    keep = math.ceil(acceptance * len(top) - 1e-9)
    if keep <= 0:
        return 1.0
    # float32 probabilities compare against the threshold as float32: round it down there.
    return float(np.float32(top[len(top) - keep]))


def fit(
    probs: np.ndarray,
    labels: np.ndarray,
    acceptance: float | None = DEFAULT_ACCEPTANCE,
    fitted_on: str = "validation",
    temperature: float | None = None,
) -> Confidence:
    """Temperature and (unless ``acceptance`` is None) rejection threshold for ``probs``.

    ``probs`` are a file's own uncalibrated outputs on labelled pictures it was not
    trained on (the validation split). ``temperature``, when given, was fitted elsewhere
    (on the same pictures' logits, say) and is kept; the threshold and the calibration
    errors are still those of ``probs``.

    Raises:
        ValueError: too few rows, or labels outside the classes.
    """
    probs, labels = _checked_pair(probs, labels)
    if temperature is None:
        temperature = fit_temperature(probs, labels)
    calibrated = calibrate(probs, temperature)
    threshold = None if acceptance is None else fit_threshold(calibrated, acceptance)
    return Confidence(
        temperature=temperature,
        reject_below=threshold,
        acceptance=DEFAULT_ACCEPTANCE if acceptance is None else acceptance,
        fitted_on=fitted_on,
        images=len(labels),
        ece_before=round(expected_calibration_error(probs, labels), 6),
        ece_after=round(expected_calibration_error(calibrated, labels), 6),
    )


def _checked_pair(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64, copy=False)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"{len(labels)} labels for outputs of shape {probs.shape}")
    if len(labels) < MIN_FIT_IMAGES:
        raise ValueError(
            f"{len(labels)} labelled pictures are too few to fit a temperature "
            f"(at least {MIN_FIT_IMAGES})"
        )
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels outside 0..{probs.shape[1] - 1}")
    return probs, labels


def rejected(calibrated: np.ndarray, reject_below: float | None) -> np.ndarray:
    """Which rows are "unknown": their top probability is below ``reject_below``."""
    if reject_below is None:
        return np.zeros(len(calibrated), dtype=bool)
    top: np.ndarray = np.asarray(calibrated).max(axis=1) < np.float32(reject_below)
    return top


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's bins: equal-width confidence ranges over 0..1.

    Per bin: how many rows fell in it, their mean confidence, and the fraction right
    (NaN for an empty bin).
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean gap of the bins."""
        total = sum(self.counts)
        if not total:
            return 0.0
        gaps = (
            n * abs(a - c)
            for n, a, c in zip(self.counts, self.accuracy, self.confidence, strict=True)
            if n
        )
        return float(sum(gaps) / total)

    def to_dict(self) -> JSONObject:
        """JSON-ready form (empty bins' means as null)."""
        return {
            "edges": list(self.edges),
            "counts": list(self.counts),
            "confidence": [None if math.isnan(v) else v for v in self.confidence],
            "accuracy": [None if math.isnan(v) else v for v in self.accuracy],
        }


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """The reliability diagram of ``probs`` against ``labels``: top-1 confidence per bin.

    A confidence of exactly ``k / bins`` falls in bin ``k - 1`` (bins are ``(lo, hi]``),
    as in Guo et al.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    top = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    which = np.clip(np.ceil(top * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=top, minlength=bins)
    right_sum = np.bincount(which, weights=right.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = conf_sum / counts
        mean_right = right_sum / counts
    return Reliability(
        edges=tuple(float(i / bins) for i in range(bins + 1)),
        counts=tuple(int(n) for n in counts),
        confidence=tuple(float(v) for v in mean_conf),
        accuracy=tuple(float(v) for v in mean_right),
    )


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over ``bins`` equal-width bins of top-1 confidence, as a fraction (0.01 is 1%)."""
    return reliability(probs, labels, bins).ece


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """How well a score (higher = more in-distribution) ranks ``inside`` above ``outside``.

    The probability that a random in-distribution picture scores above a random
    out-of-distribution one, ties counted half (the Mann-Whitney statistic).
    """
    inside = np.asarray(inside, dtype=np.float64).ravel()
    outside = np.asarray(outside, dtype=np.float64).ravel()
    if not len(inside) or not len(outside):
        raise ValueError("AUROC needs scores on both sides")
    scores = np.concatenate([inside, outside])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Ties share their mean rank.
    sorted_scores = scores[order]
    _, first, count = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, n in zip(first[count > 1], count[count > 1], strict=True):
        ranks[order[start : start + n]] = start + (n + 1) / 2
    above = ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2
    return float(above / (len(inside) * len(outside)))


def false_accept_rate(
    inside: np.ndarray, outside: np.ndarray, acceptance: float = DEFAULT_ACCEPTANCE
) -> float:
    """The share of ``outside`` the threshold keeping ``acceptance`` of ``inside`` accepts."""
    threshold = fit_threshold(np.asarray(inside, dtype=np.float64)[:, None], acceptance)
    return float(np.mean(np.asarray(outside) >= threshold))
