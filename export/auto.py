"""``edgecnn export --remedy``: int8 files that fail their gate, fixed and proven.

Remedies, in order of cost: more calibration images; cross-layer equalization (the float
function unchanged, measured); bias correction; the most sensitive layer kept in float
(with the tensor it makes); 16-bit activations. ``auto`` tries plain int8 first, then each
remedy in turn, and keeps the first file that passes its gate: the ones before cost
nothing at inference, and the last two are the slower ones, tried last. Each remedy is a
new :class:`~edgecnn.export.formats.Job` for the same converters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgecnn.export.formats import Job
from edgecnn.records import Fields, JSONObject

#: Every remedy by name, in the order ``auto`` tries them.
REMEDIES = ("calibration", "equalize", "bias-correction", "float-layer", "int16")
#: What ``--remedy`` accepts.
REMEDY_CHOICES = ("none", "auto", *REMEDIES)
#: ``calibration`` uses this many training images (or four times ``--calib-samples`` if
#: more; all of them if fewer), and is skipped when that is no more than plain int8 had.
MORE_CALIBRATION = 2_000
#: Remedies the integer-only forms (``--full-integer``, the C library, TFLite Micro) can
#: take: they change the weights or the calibration, not the operators' types.
INTEGER_ONLY = ("calibration", "equalize", "bias-correction")
#: Remedies a format's converter applies; the others change only the TFLite file.
ONNX_REMEDIES = INTEGER_ONLY


@dataclass(frozen=True)
class Trial:
    """One remedy tried on one file: its agreement with Keras and whether it passed."""

    remedy: str  # "none" for plain int8
    agreement: float
    passed: bool
    note: str = ""

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {
            "remedy": self.remedy,
            "agreement": self.agreement,
            "passed": self.passed,
            "note": self.note,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> Trial:
        """The record :meth:`to_dict` wrote."""
        return cls(f.text("remedy"), f.number("agreement"), f.flag("passed"), f.text("note", ""))


@dataclass(frozen=True)
class RemedyRecord:
    """What ``--remedy`` did for one int8 file: every trial, and the one kept."""

    asked: str
    chosen: str | None  # the remedy of the kept file ("none": plain int8 passed)
    trials: tuple[Trial, ...]

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {
            "asked": self.asked,
            "chosen": self.chosen,
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_fields(cls, f: Fields) -> RemedyRecord:
        """The record :meth:`to_dict` wrote."""
        return cls(
            f.text("asked"),
            f.optional_text("chosen"),
            tuple(Trial.from_fields(t) for t in f.objects("trials")),
        )

    def summary(self) -> str:
        """``equalize: 95.32% -> 99.79%`` or ``none needed``."""
        if not self.trials:
            return ""
        before, last = self.trials[0], self.trials[-1]
        if self.chosen == "none":
            return "no remedy needed"
        name = self.chosen or f"none passed ({last.remedy} last)"
        return f"{name}: {100 * before.agreement:.2f}% -> {100 * last.agreement:.2f}%"


def candidates(job: Job, fmt: str, asked: str, train: np.ndarray) -> Iterator[tuple[str, Job]]:
    """``(remedy, job)`` to try for ``fmt``'s int8 file, in order.

    ``auto``: plain int8, then every remedy ``fmt`` and the configuration allow; a named
    remedy: just that one. ``train``: the training images (uint8) more calibration draws from.
    """
    names = ("none", *REMEDIES) if asked == "auto" else (asked,)
    for name in names:
        if not applies(name, fmt, job.config.full_integer):
            continue
        if (
            name == "calibration"
            and asked == "auto"
            and calibration_size(job, train) <= len(job.calibration)
        ):
            continue  # no more images than plain int8 had: the same file again
        yield name, remedied(job, name, train)


def calibration_size(job: Job, train: np.ndarray) -> int:
    """How many training images the ``calibration`` remedy calibrates on."""
    return min(max(MORE_CALIBRATION, 4 * job.config.calib_samples), len(train))


def applies(remedy: str, fmt: str, full_integer: bool) -> bool:
    """Whether ``fmt``'s converter can apply ``remedy`` (``--full-integer``: integer-only)."""
    if remedy == "none":
        return True
    if fmt == "onnx":
        return remedy in ONNX_REMEDIES
    return remedy in INTEGER_ONLY or not full_integer


def remedied(job: Job, remedy: str, train: np.ndarray) -> Job:
    """A new job whose converters make ``remedy``'s int8 file (``job`` unchanged)."""
    from edgecnn.export import remedies
    from edgecnn.trainer.dataset import to_float

    fresh = dataclasses.replace(job, cache={}, remedy=remedy)
    if remedy == "calibration":
        n = calibration_size(job, train)
        rng = np.random.default_rng(job.config.seed)
        indices = np.sort(rng.choice(len(train), size=n, replace=False))
        record = {**job.calibration_record, "samples": int(n), "train_indices": indices.tolist()}
        record.pop("file_indices", None)
        calibration = to_float(train[indices])
        return dataclasses.replace(fresh, calibration=calibration, calibration_record=record)
    if remedy == "equalize":
        model, _ = remedies.equalize(job.model, job.calibration)
        return dataclasses.replace(fresh, model=model)
    if remedy == "bias-correction":
        model, _ = remedies.bias_corrected(job.model, job.calibration)
        return dataclasses.replace(fresh, model=model)
    if remedy == "float-layer":
        return dataclasses.replace(fresh, float_layers=most_sensitive(job))
    return fresh  # int16: the converter reads job.remedy


def most_sensitive(job: Job) -> tuple[str, ...]:
    """The float group of the layer whose float output lifts agreement most.

    Measured on the calibration images (never the test images the gate judges on):
    :func:`~edgecnn.export.doctor.diagnosis.float_group` of each layer in turn.
    """
    from edgecnn.export.doctor.diagnosis import (
        float_group,
        float_nodes,
        top1_agreement,
        weighted_layers,
    )
    from edgecnn.export.formats.tflite import calibrate, quantize_calibrated

    calibrated = calibrate(job.model, job.calibration)
    reference = job.model.predict(job.calibration, batch_size=1000, verbose=0).argmax(axis=1)
    best: tuple[float, tuple[str, ...]] = (-1.0, ())
    for layer in weighted_layers(job.model)[:-1]:
        group = float_group(job.model, layer)
        data = quantize_calibrated(calibrated, float_nodes(calibrated, job.model, group))
        score = top1_agreement(data, job.calibration, reference)
        best = max(best, (score, group))
    return best[1]
