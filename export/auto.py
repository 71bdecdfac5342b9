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
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.export.formats import Job
from edgecnn.records import Fields, JSONObject
from edgecnn.trainer.dataset import VALIDATION_SIZE

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
#: Remedies the ONNX converter applies. Not bias correction: its 7-bit weights
#: (``reduce_range``) are not the 8-bit ones the correction models.
ONNX_REMEDIES = ("calibration", "equalize")


@dataclass(frozen=True)
class Trial:
    """One remedy tried on one file: its agreement with Keras and whether it passed."""

    remedy: str  # "none" for plain int8
    agreement: float | None  # None: the remedy could not be made (``note`` says why)
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
        return cls(
            f.text("remedy"),
            f.optional_number("agreement"),
            f.flag("passed"),
            f.text("note", ""),
        )


@dataclass(frozen=True)
class RemedyRecord:
    """What ``--remedy`` did for one int8 file: every trial, and the one kept.

    The first trial is plain int8 (the "before"); the file kept is the last trial's.
    """

    asked: str
    chosen: str | None  # the remedy of the kept file ("none": plain int8); None: all failed
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
        """``equalize: 95.32% -> 99.79%``, ``no remedy needed``, or what was left out."""
        measured = [t for t in self.trials if t.agreement is not None]
        notes = "; ".join(dict.fromkeys(t.note for t in self.trials if t.note))
        if not measured:
            return notes
        before = measured[0]
        if self.chosen == "none":
            return "no remedy needed" if self.asked == "auto" else f"plain int8 kept ({notes})"
        last = next((t for t in reversed(measured) if t.remedy == self.chosen), measured[-1])
        name = last.remedy if self.chosen else f"{last.remedy} (failed too)"
        assert before.agreement is not None and last.agreement is not None
        return f"{name}: {100 * before.agreement:.2f}% -> {100 * last.agreement:.2f}%"


def plan(asked: str, fmt: str, full_integer: bool) -> tuple[list[str], str]:
    """The remedies to try for ``fmt``'s int8 file, in order, and a note on any left out.

    ``auto``: plain int8, then every remedy ``fmt`` takes; a named one: plain int8 (the
    number before, measured, never kept) then that remedy, or plain int8 alone with a
    note when ``fmt`` cannot take it.
    """
    if asked == "auto":
        return ["none", *(r for r in REMEDIES if applies(r, fmt, full_integer))], ""
    if applies(asked, fmt, full_integer):
        return ["none", asked], ""
    return ["none"], f"{asked} applies to the .tflite only: plain int8"


def applies(remedy: str, fmt: str, full_integer: bool) -> bool:
    """Whether ``fmt``'s converter can apply ``remedy`` (``--full-integer``: integer-only)."""
    if remedy == "none":
        return True
    if fmt == "onnx":
        return remedy in ONNX_REMEDIES
    return remedy in INTEGER_ONLY or not full_integer


def calibration_size(calib_samples: int, train: int) -> int:
    """How many training images the ``calibration`` remedy calibrates on."""
    return min(max(MORE_CALIBRATION, 4 * calib_samples), train)


def remedied(job: Job, remedy: str, fmt: str, train: np.ndarray) -> Job:
    """A new job whose converters make ``remedy``'s int8 file (``job`` unchanged).

    Raises:
        ValueError: the remedy cannot be made for this model (said in the trial's note).
    """
    fresh = dataclasses.replace(job, cache={}, remedy=remedy)
    if remedy == "float-layer":
        return dataclasses.replace(fresh, float_layers=most_sensitive(job))
    keep_float = fmt == "tflite" and not job.config.full_integer
    model, calibration, indices = remedied_model(
        job.model, job.calibration, remedy, train, job.config.seed,
        job.config.calib_samples, keep_float,
    )  # fmt: skip
    fresh = dataclasses.replace(fresh, model=model, calibration=calibration)
    if indices is not None:
        record = {**job.calibration_record, "samples": len(indices)}
        record["train_indices"] = indices.tolist()
        if "file_indices" in record:  # IDX files: validation comes first in the file
            record["file_indices"] = (indices + VALIDATION_SIZE).tolist()
        fresh = dataclasses.replace(fresh, calibration_record=record)
    return fresh


def remedied_model(
    model: Any,
    calibration: np.ndarray,
    remedy: str,
    train: np.ndarray,
    seed: int,
    calib_samples: int,
    logits_in_float: bool,
) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """The Keras model and calibration images ``remedy`` makes the int8 file from.

    ``train``: the training images (uint8) more calibration draws from, with ``seed``;
    ``logits_in_float``: the file keeps its last layer in float, so bias correction
    leaves it alone. Returns the model, the calibration images and, for ``calibration``,
    the training indices drawn. Deterministic: ``edgecnn doctor`` rebuilds what a
    remedied file was made from with it.
    """
    from edgecnn.export import remedies
    from edgecnn.trainer.dataset import to_float

    if remedy == "calibration":
        n = calibration_size(calib_samples, len(train))
        if n <= len(calibration):
            raise ValueError(f"no more images than plain int8 had ({len(calibration):,})")
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(len(train), size=n, replace=False))
        return model, to_float(train[indices]), indices
    if remedy == "equalize":
        return remedies.equalize(model, calibration)[0], calibration, None
    if remedy == "bias-correction":
        weighted = [layer.name for layer in model.layers if layer.get_weights()]
        layers = weighted[:-1] if logits_in_float else None
        return remedies.bias_corrected(model, calibration, layers=layers)[0], calibration, None
    return model, calibration, None  # none, int16 (the converter reads job.remedy)


def most_sensitive(job: Job) -> tuple[str, ...]:
    """The float group of the layer whose float output lifts agreement most.

    Measured on the calibration images (never the test images the gate judges on):
    :func:`~edgecnn.export.doctor.diagnosis.float_group` of each layer in turn.
    """
    from edgecnn.export.doctor.diagnosis import layer_trials
    from edgecnn.export.formats.tflite import calibrate

    calibrated = calibrate(job.model, job.calibration)
    reference = job.model.predict(job.calibration, batch_size=1000, verbose=0).argmax(axis=1)
    trials = layer_trials(job.model, calibrated, job.calibration, reference)
    if not trials:
        return ()
    return max(trials, key=lambda t: (t.agreement, t.float_layers)).float_layers
