"""``edgecnn verify``: is this file, on this device, the file the exporter proved?

Each exported file gets ``<file>.reference.npz`` beside it: a few hundred test images,
their classes, the Keras model's probabilities and the exporting machine's for that
file, and the gate the file passed. On the device, :func:`verify` runs the file through
the runtime on those images and applies the same gate: top-1 agreement with Keras (and
for float32 files the largest probability difference). It also says how far this
device's outputs are from the exporting machine's, in int8 steps for int8 files: ARM
kernels round a few values otherwise, which is expected, and flips a near-tie now and
then, which the gate measures. Only numpy and the runtime are needed.

A reference is checked before use (:mod:`edgecnn.runtime.verify_reference`), and what it
says can only raise the gate, never lower it below what the default gate of the file's
precision allows on that many images; the precision comes from the file's own sealed
metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn._files import read_regular_file
from edgecnn.run_folder import EXPORT_REPORT_FILE
from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.errors import MODEL_MAX_BYTES, IntegrityError, ModelError
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

#: The reference's functions are named here too, for the callers that import them from here.
__all__ = [
    "DEFAULT_MAX_PROB_DIFF",
    "DEFAULT_MIN_AGREEMENT",
    "REFERENCE_SUFFIX",
    "agreement_floor",
    "format_result",
    "read_reference",
    "reference_bytes",
    "reference_count",
    "reference_path",
    "verify",
]

#: The default gate of each precision, which ``edgecnn.export.config.GATES`` is made of:
#: the least top-1 agreement with Keras, and the largest probability difference.
DEFAULT_MIN_AGREEMENT = {"float32": 0.999, "float16": 0.999, "dynamic": 0.99, "int8": 0.99}
DEFAULT_MAX_PROB_DIFF = {"float32": 1e-4}
#: A file that meets its default gate falls below :func:`agreement_floor` on a
#: reference's images less often than this.
FLOOR_RISK = 1e-6


def agreement_floor(precision: str, images: int) -> float:
    """The least agreement a reference's gate may ask of a file of ``precision``.

    A file that met its precision's default gate (99% top-1 agreement for int8) shows
    fewer agreements than this on ``images`` images less often than :data:`FLOOR_RISK`
    (binomial tail): below it, the file is not the one that passed, whatever the
    reference says. 96.2% for int8 and 98.8% for float32 on 500 images.
    """
    p = 1 - DEFAULT_MIN_AGREEMENT.get(precision, min(DEFAULT_MIN_AGREEMENT.values()))
    tail = 1.0
    for k in range(images + 1):
        tail -= math.comb(images, k) * p**k * (1 - p) ** (images - k)
        if tail < FLOOR_RISK:
            return (images - k) / images
    return 0.0


def verify(
    model: str | Path,
    reference: str | Path | None = None,
    backend: str = "auto",
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Run ``model`` on its reference images here and apply its export gate.

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
    gate = ref["meta"]
    result: dict[str, Any] = {"model": str(model), "reference": str(ref_path),
                              "images": len(ref["images"]), "gate": gate}  # fmt: skip
    try:
        clf = load_classifier(model, backend=backend, num_threads=num_threads)
    except IntegrityError as e:
        return {**result, "passed": False, "failures": [str(e)]}
    _check_belongs(ref, ref_path, clf)
    _check_consistent(ref, ref_path, clf.metadata.precision)
    try:
        probs = clf.predict(ref["images"])
    except ModelError as e:  # NaN or no probabilities: the file is broken here
        return {**result, "passed": False, "failures": [str(e)]}
    result.update(_measure(ref, probs, clf))
    failures = _not_the_proven_file(model, gate, clf)
    failures += _gate_failures(result, ref, gate, clf.metadata.precision)
    result.update(passed=not failures, failures=failures)
    return result


def _check_belongs(ref: dict[str, Any], ref_path: Path, clf: Any) -> None:
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


def _check_consistent(ref: dict[str, Any], ref_path: Path, precision: str) -> None:
    """The exporting machine's outputs must agree with Keras as a file that passed does.

    Raises:
        ModelError: they agree less than :func:`agreement_floor` allows.
    """
    floor = agreement_floor(precision, len(ref["images"]))
    at_export = float(np.mean(ref["exported"].argmax(1) == ref["keras"].argmax(1)))
    if not at_export >= floor:
        raise ModelError(
            f"{ref_path}: its exported outputs agree with its Keras outputs on "
            f"{100 * at_export:.2f}% of its images, less than the {100 * floor:.2f}% of any "
            f"{precision} file that passed the default gate; damaged, made by hand, or "
            "exported with a lower --min-agreement"
        )


def _measure(ref: dict[str, Any], probs: np.ndarray, clf: Any) -> dict[str, Any]:
    """Agreement and accuracy here, and the largest differences from Keras and the export."""
    top, keras_top, export_top = probs.argmax(1), ref["keras"].argmax(1), ref["exported"].argmax(1)
    diff_export = float(np.abs(probs - ref["exported"]).max())
    out = {
        "backend": clf.backend_name,
        "machine": f"{platform.system()} {platform.machine()}",
        "accuracy": float(np.mean(top == ref["labels"])),
        "keras_accuracy": float(np.mean(keras_top == ref["labels"])),
        "agreement": float(np.mean(top == keras_top)),
        "agreement_with_export": float(np.mean(top == export_top)),
        "max_prob_diff": float(np.abs(probs - ref["keras"]).max()),
        "max_diff_from_export": diff_export,
        "agreement_at_export": float(np.mean(export_top == keras_top)),
    }
    step = (clf.metadata.quantization.get("output") or {}).get("scale")
    # A native library (the C backend) answers with the softmax of its int8 logits, not
    # its int8 scores.
    if is_number(step) and step > 0 and not BACKENDS[clf.backend_name].native:
        out["max_steps_from_export"] = int(round(diff_export / float(step)))
    return out


def _not_the_proven_file(model: Path, gate: dict[str, Any], clf: Any) -> list[str]:
    """Why ``model`` is not the file the reference (or the report beside it) describes."""
    failures, metadata = [], clf.metadata
    recorded = gate.get("file_sha256")
    if recorded and _loaded_sha256(clf) != recorded:
        failures.append(f"the reference was made for another export of {gate.get('file')} "
                        "(its SHA-256 differs); export again")  # fmt: skip
    if gate.get("precision") not in (None, metadata.precision):
        failures.append(f"the reference was made for {gate.get('file')} ({gate['precision']}), "
                        f"this file is {metadata.precision}")  # fmt: skip
    source = _report_source(model)
    if source and metadata.source_sha256 and source != metadata.source_sha256:
        failures.append(f"{model.name} was exported from another Keras model than the "
                        f"{EXPORT_REPORT_FILE} beside it describes: the folder mixes two "
                        "exports; export again")  # fmt: skip
    return failures


def _loaded_sha256(clf: Any) -> str:
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


def _gate_failures(r: dict[str, Any], ref: dict[str, Any], gate: dict[str, Any],
                   precision: str) -> list[str]:  # fmt: skip
    """The gate applied to what this device measured; records the thresholds in ``r``.

    The gate was passed on thousands of images; these few hundred are a sample of them,
    so the file must reach the gate here or what it reached on this sample at export,
    but never less than :func:`agreement_floor`, whatever the reference says.
    """
    floor = agreement_floor(precision, len(ref["images"]))
    threshold = max(floor, min(float(gate["min_agreement"]), r["agreement_at_export"]))
    r.update(agreement_floor=floor, agreement_threshold=threshold)
    failures = []
    if not r["agreement"] >= threshold:
        failures.append(f"top-1 agreement with Keras {100 * r['agreement']:.2f}% < "
                        f"{100 * threshold:.2f}%")  # fmt: skip
    limits = [gate.get("max_prob_diff"), DEFAULT_MAX_PROB_DIFF.get(precision)]
    known = [float(x) for x in limits if x is not None]
    if known:
        limit = min(known)
        r["max_prob_diff_limit"] = limit
        if not r["max_prob_diff"] <= limit:
            failures.append(f"max probability difference {r['max_prob_diff']:.2e} > {limit:.0e}")
    return failures


def format_result(r: dict[str, Any]) -> str:
    """What ``edgecnn verify`` prints."""
    if "agreement" not in r:
        return f"{r['model']}: FAIL: {'; '.join(r['failures'])}"
    lines = [
        f"{r['model']} on {r['backend']} ({r['machine']}), {r['images']:,} reference images "
        f"exported on {r['gate'].get('exported_on', '?')}:",
        f"  top-1 agreement with Keras       {100 * r['agreement']:7.2f}%   "
        f"(gate >= {100 * r['agreement_threshold']:.2f}%; at export "
        f"{100 * r['agreement_at_export']:.2f}%)",
        f"  top-1 agreement with the export  {100 * r['agreement_with_export']:7.2f}%",
        f"  accuracy                         {100 * r['accuracy']:7.2f}%   "
        f"(Keras {100 * r['keras_accuracy']:.2f}%)",
        f"  largest difference from Keras    {r['max_prob_diff']:.2e}",
    ]
    steps = r.get("max_steps_from_export")
    lines.append(
        f"  largest difference from export   {r['max_diff_from_export']:.2e}"
        + (f" ({steps} int8 steps)" if steps is not None else "")
    )
    lines.append("PASS" if r["passed"] else "FAIL: " + "; ".join(r["failures"]))
    return "\n".join(lines)
