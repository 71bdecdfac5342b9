"""The one gate an exported file must pass, and the measurements it is applied to.

The exporter (``edgecnn export``), the device (``edgecnn verify``), ``edgecnn evaluate``
and ``edgecnn run`` compare a file's outputs with the Keras model's through
:func:`compare` and judge them with a :class:`Gate`; nothing else computes top-1
agreement or writes a gate's verdict. numpy only, so that a device can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

#: The least top-1 agreement with Keras of each precision's default gate.
DEFAULT_MIN_AGREEMENT = {"float32": 0.999, "float16": 0.999, "dynamic": 0.99, "int8": 0.99}
#: The largest probability difference from Keras a float32 file may show.
DEFAULT_MAX_PROB_DIFF = {"float32": 1e-4}
#: The largest accuracy drop, in percentage points, of the quantized precisions.
DEFAULT_MAX_ACCURACY_DROP_PP = {"dynamic": 0.5, "int8": 0.5}
#: A file that meets its default gate falls below :func:`agreement_floor` on a
#: sample of images less often than this.
FLOOR_RISK = 1e-6


def predicted(probs: np.ndarray) -> np.ndarray:
    """Each row's top-1 class."""
    top: np.ndarray = np.asarray(probs).argmax(axis=1)
    return top


def top1_agreement(probs: np.ndarray, reference: np.ndarray) -> float:
    """The fraction of rows whose top-1 class is the reference's."""
    return float(np.mean(predicted(probs) == predicted(reference)))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of the first ``len(labels)`` rows whose top-1 class is their label."""
    return float(np.mean(predicted(probs[: len(labels)]) == labels))


@dataclass(frozen=True)
class Scores:
    """A file's outputs measured against the reference's (the Keras model's).

    Accuracy is measured on the labelled rows (the test images); agreement and the
    largest probability difference on every row, since they need no labels.
    """

    accuracy: float
    reference_accuracy: float
    agreement: float
    agreement_images: int
    max_prob_diff: float
    #: Accuracy per true class, in class order: where quantization moved the answers
    #: even when the total barely changed.
    per_class_accuracy: tuple[float, ...] = ()

    @property
    def delta_pp(self) -> float:
        """The accuracy's change against the reference's, in percentage points."""
        return 100 * (self.accuracy - self.reference_accuracy)


def compare(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> Scores:
    """``probs`` against ``reference``; ``labels`` belong to the first ``len(labels)`` rows."""
    # np.bincount takes the platform's index type only: int32 on 32-bit ARM, where labels
    # read from a reference are int64.
    labels = np.asarray(labels).astype(np.intp, copy=False)
    pred, ref_pred = predicted(probs), predicted(reference)  # each once
    tested = pred[: len(labels)]
    classes = probs.shape[1]
    correct = np.bincount(labels[tested == labels], minlength=classes)
    totals = np.maximum(np.bincount(labels, minlength=classes), 1)
    return Scores(
        accuracy=float(np.mean(tested == labels)),
        reference_accuracy=float(np.mean(ref_pred[: len(labels)] == labels)),
        agreement=float(np.mean(pred == ref_pred)),
        agreement_images=int(len(probs)),
        max_prob_diff=float(np.abs(probs - reference).max()),
        per_class_accuracy=tuple(float(x) for x in correct / totals),
    )


def _apart(value: float, limit: float, scale: float = 1.0) -> tuple[str, str]:
    """``value`` and ``limit`` printed with enough decimals to tell them apart."""
    for digits in (2, 3, 4, 6):
        a, b = f"{scale * value:.{digits}f}", f"{scale * limit:.{digits}f}"
        if a != b:
            return a, b
    return f"{scale * value:g}", f"{scale * limit:g}"


@dataclass(frozen=True)
class Gate:
    """What a file must reach against the Keras model: agreement, accuracy, probabilities."""

    min_agreement: float
    max_accuracy_drop_pp: float | None = None
    max_prob_diff: float | None = None

    def failures(self, scores: Scores) -> list[str]:
        """Why ``scores`` fail this gate; empty if they pass.

        Every test is written so that a NaN measurement fails it.
        """
        why = []
        if not scores.agreement >= self.min_agreement:
            got, limit = _apart(scores.agreement, self.min_agreement, 100)
            why.append(f"top-1 agreement with Keras {got}% < {limit}%")
        drop = -scores.delta_pp
        if self.max_accuracy_drop_pp is not None and not drop <= self.max_accuracy_drop_pp:
            got, limit = _apart(drop, self.max_accuracy_drop_pp)
            why.append(f"accuracy dropped {got} pp > {limit} pp")
        if self.max_prob_diff is not None and not scores.max_prob_diff <= self.max_prob_diff:
            why.append(
                f"max probability difference {scores.max_prob_diff:.2e} > {self.max_prob_diff:.0e}"
            )
        return why

    def on_sample(self, precision: str, at_export: Scores) -> Gate:
        """This gate as it applies to a sample of the images it was passed on.

        ``edgecnn verify`` runs a few hundred of the export's images. On a sample, a file
        that passed shows a little more or less than it did on the whole set, so the
        sample may ask no more than the file reached on those same images at export
        (``at_export``), and never less than :func:`agreement_floor`: below it, the file
        is not the one that passed, whatever the reference says. The accuracy drop is
        held to the larger of the gate's and the export's drop on the sample, plus the
        answers the agreement rule lets this machine change beyond the export's (each may
        cost one right answer: on 500 images one answer is 0.2 points, and an accuracy rule
        stricter than the agreement rule would fail a faithful file on a near-tie or two);
        the largest probability difference to the smaller of the gate's and the
        precision's default.
        """
        floor = agreement_floor(precision, at_export.agreement_images)
        agreement = max(floor, min(self.min_agreement, at_export.agreement))
        drop = self.max_accuracy_drop_pp
        if drop is not None:
            allowed_flips = max(0.0, at_export.agreement - agreement)
            drop = max(drop, -at_export.delta_pp) + 100 * allowed_flips
        limits = [
            x for x in (self.max_prob_diff, DEFAULT_MAX_PROB_DIFF.get(precision)) if x is not None
        ]
        return replace(
            self,
            min_agreement=agreement,
            max_accuracy_drop_pp=drop,
            max_prob_diff=min(limits) if limits else None,
        )

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return {
            "min_agreement": self.min_agreement,
            "max_accuracy_drop_pp": self.max_accuracy_drop_pp,
            "max_prob_diff": self.max_prob_diff,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Gate:
        """The gate :meth:`to_dict` wrote; a missing limit is no limit.

        Raises:
            ValueError: a limit that is not a finite number (named).
        """
        return cls(
            min_agreement=_limit(data, "min_agreement", required=True) or 0.0,
            max_accuracy_drop_pp=_limit(data, "max_accuracy_drop_pp"),
            max_prob_diff=_limit(data, "max_prob_diff"),
        )


def _limit(data: Mapping[str, object], key: str, required: bool = False) -> float | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} is {value!r:.40}, not a finite number")
    return float(value)


def default_gate(precision: str) -> Gate:
    """The gate a file of ``precision`` passes unless an export asked for another."""
    return Gate(
        DEFAULT_MIN_AGREEMENT[precision],
        max_accuracy_drop_pp=DEFAULT_MAX_ACCURACY_DROP_PP.get(precision),
        max_prob_diff=DEFAULT_MAX_PROB_DIFF.get(precision),
    )


#: The default gate of each precision.
GATES = {precision: default_gate(precision) for precision in DEFAULT_MIN_AGREEMENT}


def agreement_floor(precision: str, images: int) -> float:
    """The least agreement a sample of ``images`` may show from a file of ``precision``.

    A file that met its precision's default gate (99% top-1 agreement for int8) shows
    fewer agreements than this on ``images`` images less often than :data:`FLOOR_RISK`
    (binomial tail). 96.2% for int8 and 98.8% for float32 on 500 images.
    """
    p = 1 - DEFAULT_MIN_AGREEMENT.get(precision, min(DEFAULT_MIN_AGREEMENT.values()))
    tail = 1.0
    for k in range(images + 1):
        tail -= math.comb(images, k) * p**k * (1 - p) ** (images - k)
        if tail < FLOOR_RISK:
            return (images - k) / images
    return 0.0
