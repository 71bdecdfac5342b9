"""``edgecnn verify``: is this file, on this device, the file the exporter proved?

Each exported file gets ``<file>.reference.npz`` beside it: a few hundred test images,
their classes, the Keras model's probabilities and the exporting machine's for that
file, and the gate the file passed. On the device, :func:`verify` runs the file through
the runtime on those images and applies the export's gate, :class:`edgecnn.runtime.gate.Gate`
as the export recorded it, to the measurements of :func:`edgecnn.runtime.gate.compare`:
top-1 agreement with Keras, the accuracy drop (when the reference records a limit) and
the largest probability difference. The images are a sample of those the gate was
passed on, so the gate applies as :meth:`~edgecnn.runtime.gate.Gate.on_sample` makes it
from what the exporting machine reached on the same images. It also says how far this
device's outputs are from the exporting machine's, in int8 steps for int8 files: ARM
kernels round a few values otherwise, which is expected, and flip a near-tie now and
then, which the gate measures. Only numpy and the runtime are needed.

A reference is checked before use (:mod:`edgecnn.runtime.verify_reference`), and what it
says can never lower the agreement asked below what the default gate of the file's
precision allows on that many images (:func:`~edgecnn.runtime.gate.agreement_floor`),
nor raise a float32 file's probability limit; the precision comes from the file's own
sealed metadata.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn._files import read_regular_file
from edgecnn.run_folder import EXPORT_REPORT_FILE
from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.errors import MODEL_MAX_BYTES, IntegrityError, ModelError
from edgecnn.runtime.gate import Gate, Scores, agreement_floor, compare, top1_agreement
from edgecnn.runtime.verify_reference import (
    MAX_REFERENCE_BYTES,
    REFERENCE_SUFFIX,
    SHA256_TEXT,
    is_number,
    read_reference,
    reference_bytes,
    reference_count,
    reference_path,
)

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier

#: The reference's functions are named here too, for the callers that import them from here.
__all__ = [
    "REFERENCE_SUFFIX",
    "VerifyResult",
    "format_result",
    "read_reference",
    "reference_bytes",
    "reference_count",
    "reference_path",
    "verify",
]


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found; :meth:`to_dict` is ``edgecnn verify --json``.

    The measurements are None when the file could not run here (its bytes failed their
    check, or it computed NaN); ``applied`` is None when it could not even be loaded.
    """

    model: str
    reference: str
    images: int
    #: The reference's meta: the gate the file passed at export, and what it was made for.
    recorded: Mapping[str, Any]
    passed: bool
    failures: tuple[str, ...]
    #: The gate applied here: the recorded one on this sample (:meth:`Gate.on_sample`).
    applied: Gate | None = None
    #: The least agreement any reference may ask of this file's precision on this sample.
    agreement_floor: float | None = None
    #: The exporting machine's outputs against Keras on the reference's images.
    at_export: Scores | None = None
    backend: str | None = None
    machine: str | None = None
    #: This device's outputs against Keras on the reference's images.
    scores: Scores | None = None
    agreement_with_export: float | None = None
    max_diff_from_export: float | None = None
    #: The largest difference from the export in output quantization steps (int8 outputs).
    max_steps_from_export: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the keys of a measurement or a limit are there when it is."""
        out: dict[str, Any] = {"model": self.model, "reference": self.reference,
                               "images": self.images, "gate": dict(self.recorded)}  # fmt: skip
        if self.scores is not None and self.at_export is not None:
            out.update(
                backend=self.backend,
                machine=self.machine,
                accuracy=self.scores.accuracy,
                keras_accuracy=self.scores.reference_accuracy,
                agreement=self.scores.agreement,
                agreement_with_export=self.agreement_with_export,
                max_prob_diff=self.scores.max_prob_diff,
                max_diff_from_export=self.max_diff_from_export,
                agreement_at_export=self.at_export.agreement,
                accuracy_at_export=self.at_export.accuracy,
            )
            if self.max_steps_from_export is not None:
                out["max_steps_from_export"] = self.max_steps_from_export
        if self.applied is not None:
            out.update(agreement_floor=self.agreement_floor,
                       agreement_threshold=self.applied.min_agreement)  # fmt: skip
            if self.applied.max_prob_diff is not None:
                out["max_prob_diff_limit"] = self.applied.max_prob_diff
            out["applied_gate"] = self.applied.to_dict()
        out.update(passed=self.passed, failures=list(self.failures))
        return out


def verify(
    model: str | Path,
    reference: str | Path | None = None,
    backend: str = "auto",
    num_threads: int | None = None,
) -> VerifyResult:
    """Run ``model`` on its reference images here and apply its export gate.

    The gate is the one the reference records (:meth:`Gate.from_dict`), as it applies
    to the reference's images (:meth:`Gate.on_sample`, from what the exporting machine
    reached on them); the file's scores here must pass it (:meth:`Gate.failures`).

    A file that is not the one that was proven fails (``passed`` False, the reasons in
    ``failures``) rather than raising: its bytes no longer match their recorded SHA-256,
    it computes NaN here, or the export report beside it names another source model.

    Raises:
        ModelError: the model or the reference cannot be read, the reference is not one
            an export writes, or they do not belong together (another shape, another
            class count, another source model).
    """
    from edgecnn.runtime import load_classifier

    model = Path(model)
    ref_path = Path(reference) if reference is not None else reference_path(model)
    if not ref_path.is_file() and reference is None:
        raise ModelError(
            f"{model} has no {ref_path.name} beside it; export again with this edgecnn, or "
            "name one with --reference"
        )
    ref = read_reference(ref_path)
    meta = ref["meta"]
    recorded = Gate.from_dict(meta)  # read_reference checked its numbers
    base = VerifyResult(str(model), str(ref_path), len(ref["images"]), meta, False, ())
    try:
        clf = load_classifier(model, backend=backend, num_threads=num_threads, calibrated=False)
    except IntegrityError as e:
        return replace(base, failures=(str(e),))
    precision = clf.metadata.precision
    _check_belongs(ref, ref_path, clf)
    at_export = compare(ref["exported"], ref["keras"], ref["labels"])
    floor = agreement_floor(precision, len(ref["images"]))
    _check_consistent(at_export, floor, ref_path, precision)
    gate = recorded.on_sample(precision, at_export)
    base = replace(base, applied=gate, agreement_floor=floor, at_export=at_export)
    try:
        probs = clf.predict(ref["images"])
    except ModelError as e:  # NaN or no probabilities: the file is broken here
        return replace(base, failures=(str(e),))
    scores = compare(probs, ref["keras"], ref["labels"])
    failures = _not_the_proven_file(model, meta, clf) + gate.failures(scores)
    diff_export = float(np.abs(probs - ref["exported"]).max())
    return replace(
        base,
        passed=not failures,
        failures=tuple(failures),
        backend=clf.backend_name,
        machine=f"{platform.system()} {platform.machine()}",
        scores=scores,
        agreement_with_export=top1_agreement(probs, ref["exported"]),
        max_diff_from_export=diff_export,
        max_steps_from_export=_steps(diff_export, clf),
    )


def _check_belongs(ref: dict[str, Any], ref_path: Path, clf: Classifier) -> None:
    """The reference must be of this model: its image shape, classes and source model.

    Raises:
        ModelError: it is another model's.
    """
    if tuple(ref["images"].shape[1:]) not in (clf.input_shape, clf.input_shape[:2]):
        raise ModelError(f"{ref_path}: its images are not {clf.input_shape}; another model's")
    if ref["keras"].shape[1] != len(clf.labels):
        raise ModelError(f"{ref_path}: {ref['keras'].shape[1]} classes, the model has "
                         f"{len(clf.labels)}; another model's")  # fmt: skip
    recorded, own = ref["meta"].get("source_sha256"), clf.metadata.source_sha256
    if recorded and own and recorded != own:
        raise ModelError(f"{ref_path}: made for a file exported from another Keras model "
                         "(its source SHA-256 differs); another model's")  # fmt: skip


def _check_consistent(at_export: Scores, floor: float, ref_path: Path, precision: str) -> None:
    """The exporting machine's outputs must agree with Keras as a file that passed does.

    Raises:
        ModelError: they agree less than :func:`~edgecnn.runtime.gate.agreement_floor`
            (``floor``) allows.
    """
    if not at_export.agreement >= floor:
        raise ModelError(
            f"{ref_path}: its exported outputs agree with its Keras outputs on "
            f"{100 * at_export.agreement:.2f}% of its images, less than the "
            f"{100 * floor:.2f}% of any {precision} file that passed the default gate; "
            "damaged, made by hand, or exported with a lower --min-agreement"
        )


def _steps(diff_export: float, clf: Classifier) -> int | None:
    """``diff_export`` in steps of the file's int8 output, if it has one."""
    step = (clf.metadata.quantization.get("output") or {}).get("scale")
    # A native library (the C backend) answers with the softmax of its int8 logits, not
    # its int8 scores.
    if is_number(step) and step > 0 and not BACKENDS[clf.backend_name].native:
        return int(round(diff_export / float(step)))
    return None


def _not_the_proven_file(model: Path, meta: Mapping[str, Any], clf: Classifier) -> list[str]:
    """Why ``model`` is not the file the reference (or the report beside it) describes."""
    failures, metadata = [], clf.metadata
    recorded = meta.get("file_sha256")
    if recorded and _loaded_sha256(clf) != recorded:
        failures.append(f"the reference was made for another export of {meta.get('file')} "
                        "(its SHA-256 differs); export again")  # fmt: skip
    if meta.get("precision") not in (None, metadata.precision):
        failures.append(f"the reference was made for {meta.get('file')} ({meta['precision']}), "
                        f"this file is {metadata.precision}")  # fmt: skip
    source = _report_source(model)
    if source and metadata.source_sha256 and source != metadata.source_sha256:
        failures.append(f"{model.name} was exported from another Keras model than the "
                        f"{EXPORT_REPORT_FILE} beside it describes: the folder mixes two "
                        "exports; export again")  # fmt: skip
    return failures


def _loaded_sha256(clf: Classifier) -> str:
    """The SHA-256 of the file ``clf`` runs: the library it loaded, for ``exports/c`` too.

    A backend that keeps the digest of the bytes it loaded (the C library's) says it;
    for the others the file the loader resolved (``clf.path``) is read again, bounded as
    the loader reads it.
    """
    digest = getattr(clf.backend, "file_sha256", None)
    if isinstance(digest, str):
        return digest
    data = read_regular_file(clf.path, MODEL_MAX_BYTES, ModelError, "a model file")
    return hashlib.sha256(data).hexdigest()


def _report_source(model: Path) -> str | None:
    """The source model's SHA-256 in the export report beside ``model``, if it lists it."""
    path = model.parent / EXPORT_REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(read_regular_file(path, MAX_REFERENCE_BYTES, ModelError, "a report"))
        files = {row.get("file", "").rstrip("/") for row in report["files"]}
        source = report["source_sha256"]
    except (ModelError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not a report this check can read: the file's own checks stand
    listed = model.name in files
    return source if listed and isinstance(source, str) and SHA256_TEXT.fullmatch(source) else None


def format_result(r: VerifyResult) -> str:
    """What ``edgecnn verify`` prints: the measurements beside the gate applied to them."""
    scores, at_export, gate = r.scores, r.at_export, r.applied
    if scores is None or at_export is None or gate is None:
        return f"{r.model}: FAIL: {'; '.join(r.failures)}"
    lines = [
        f"{r.model} on {r.backend} ({r.machine}), {r.images:,} reference images "
        f"exported on {r.recorded.get('exported_on', '?')}:",
        f"  top-1 agreement with Keras       {100 * scores.agreement:7.2f}%   "
        f"(gate >= {100 * gate.min_agreement:.2f}%; at export {100 * at_export.agreement:.2f}%)",
        f"  top-1 agreement with the export  {100 * (r.agreement_with_export or 0):7.2f}%",
        f"  accuracy                         {100 * scores.accuracy:7.2f}%   "
        f"(Keras {100 * scores.reference_accuracy:.2f}%; at export "
        f"{100 * at_export.accuracy:.2f}%)",
    ]
    if gate.max_accuracy_drop_pp is not None:
        lines.append(
            f"  accuracy drop from Keras         {-scores.delta_pp:7.2f} pp "
            f"(gate <= {gate.max_accuracy_drop_pp:.2f} pp; at export {-at_export.delta_pp:.2f} pp)"
        )
    limit = f"   (gate <= {gate.max_prob_diff:.0e})" if gate.max_prob_diff is not None else ""
    lines.append(f"  largest difference from Keras    {scores.max_prob_diff:.2e}{limit}")
    steps = r.max_steps_from_export
    lines.append(
        f"  largest difference from export   {r.max_diff_from_export or 0:.2e}"
        + (f" ({steps} int8 steps)" if steps is not None else "")
    )
    lines.append("PASS" if r.passed else "FAIL: " + "; ".join(r.failures))
    return "\n".join(lines)
