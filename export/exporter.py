"""``export_model``: convert, embed metadata, verify, and keep only the files that pass.

The steps, in order: resolve the source model, take the output folder's lock file and start a new
one beside it (:func:`export_model`, :mod:`edgecnn.export.staging`); load the model and
data and draw the calibration images (:func:`prepare`); for every file, convert, write
under a temporary name, verify through the runtime and keep or reject it
(:func:`export_file`); write the report (:func:`write_export_report`); swap the new folder in
for the old one whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import __version__, _atomic
from edgecnn._quiet import native_stderr_hidden
from edgecnn.export.config import ExportConfig
from edgecnn.export.formats import FORMATS, Check, Job
from edgecnn.export.measure import (
    Measured,
    check_runtimes,
    fit_confidence,
    runtimes_for,
    verify_file,
)
from edgecnn.export.records import ExportedFile, ExportReport, RuntimeCheck, Skipped
from edgecnn.export.staging import staged_folder
from edgecnn.export.table import format_table
from edgecnn.records import JSONObject
from edgecnn.run_folder import CALIBRATION_FILE, EXPORT_REPORT_FILE, EXPORTS_DIR
from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.gate import Gate, compare
from edgecnn.runtime.metadata import ModelMetadata, sidecar_path
from edgecnn.runtime.preprocess import softmax
from edgecnn.runtime.verify_reference import reference_bytes, reference_count, reference_path
from edgecnn.trainer import training_data
from edgecnn.trainer.dataset import VALIDATION_SIZE, Dataset, to_float
from edgecnn.trainer.model_source import ModelSource, resolve_model


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_images(data: Dataset, config: ExportConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """``calib_samples`` training-split images drawn with the seed, and a record of which.

    Never validation or test images: calibrating on them would leak into the numbers the
    gate reports.
    """
    n = min(config.calib_samples, len(data.x_train))
    rng = np.random.default_rng(config.seed)
    indices = np.sort(rng.choice(len(data.x_train), size=n, replace=False))
    record = {
        "split": "train",
        "samples": int(n),
        "seed": config.seed,
        "method": config.calib_method,
        "train_indices": indices.tolist(),
    }
    if data.record is None:  # IDX files: the first 5,000 training images are validation
        record["file_indices"] = (indices + VALIDATION_SIZE).tolist()
    return to_float(data.x_train[indices]), record


#: Top-1 agreement is measured on at least this many images: after the test split, the
#: validation and then the training images. One image of a 400-image test split is
#: 0.25%, more than a gate of 99.9% allows, so a small split alone cannot tell a
#: faithful file from a broken one. Fashion-MNIST's 10,000 test images are enough.
AGREEMENT_IMAGES = 10_000


def agreement_images(data: Dataset) -> np.ndarray:
    """The test images, then validation and training ones up to :data:`AGREEMENT_IMAGES`."""
    wanted = max(AGREEMENT_IMAGES, len(data.x_test))
    parts, have = [data.x_test], len(data.x_test)
    for images in (data.x_val, data.x_train):
        if have >= wanted:
            break
        parts.append(images[: wanted - have])
        have += len(parts[-1])
    return np.concatenate(parts)


def sidecar_document(meta: ModelMetadata, name: str, size: int, digest: str) -> JSONObject:
    """``<file>.json``: the metadata, and the whole file's name, size and SHA-256."""
    return {**meta.to_dict(), "file": {"name": name, "size_bytes": size, "sha256": digest}}


@dataclass
class Prepared:
    """Everything the files of one export share."""

    source: ModelSource
    out: Path  # where the files are made: a new folder beside ``final``
    final: Path  # where they end up, swapped in whole when the export is done
    job: Job
    data: Dataset
    images: np.ndarray  # what every file is checked on: the test images first
    reference: np.ndarray  # the Keras model's probabilities on ``images``
    #: Formats left out, and why (a compiler or a package this machine lacks).
    skipped: list[Skipped] = field(default_factory=list)
    #: Results several folder formats share (the reference kernels' outputs).
    memo: dict[str, Any] = field(default_factory=dict)


def export_model(
    target: str | Path,
    config: ExportConfig,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    stream: TextIO | None = None,
    on_file: Callable[[ExportedFile], None] | None = None,
    data: str | Path | None = None,
    on_reference: Callable[[np.ndarray], None] | None = None,
) -> ExportReport:
    """Export ``target`` (run directory or ``.keras``) in every format ``config`` asks for.

    Calibration and verification use the data the model was trained on (its run's
    ``config.json`` and ``split.json``), or ``data``: a folder of class folders or an
    ``.npz``, for a model file that came without its run.

    Each file is written under a temporary name, verified with :mod:`edgecnn.runtime` on
    the whole test split (agreement on at least :data:`AGREEMENT_IMAGES` images), and on
    every ``config.verify_with`` backend that runs it, then renamed to its final name if
    it passes its gate everywhere or to ``<name>.rejected`` if not. All of it happens in
    a new folder that replaces ``out_dir`` whole at the end: a failed or killed export
    leaves the earlier export as it was, never files of two models side by side.
    Returns the report also saved as ``export_report.json``. ``on_reference`` gets the
    Keras model's probabilities on the agreement images (the test images first), for a
    caller that measures the files again (``edgecnn run``'s int8 evaluations).
    """
    started = time.perf_counter()
    check_runtimes(config.verify_with)
    source = resolve_model(target)
    out_path = Path(out_dir or (source.run_dir or source.model_path.parent) / EXPORTS_DIR)
    with staged_folder(out_path) as (final, out):
        prepared = prepare(source, out, final, config, data_dir, data)
        if on_reference:
            on_reference(prepared.reference)
        files = []
        for fmt, precision in config.targets():
            record = export_file(prepared, fmt, precision)
            if record is None:
                continue
            files.append(record)
            if on_file:
                on_file(record)
        report = write_export_report(prepared, files, time.perf_counter() - started)
    (stream or sys.stdout).write(format_table(report) + "\n")
    return report


def prepare(
    source: ModelSource,
    out: Path,
    final: Path,
    config: ExportConfig,
    data_dir: str | Path | None,
    data: str | Path | None = None,
) -> Prepared:
    """Load the model and its data, draw and record the calibration images."""
    from edgecnn.trainer.evaluate import load_keras_model

    model = load_keras_model(source.model_path)
    dataset = training_data.for_model(model, source, data_dir, data, whole_train=True)
    calibration, record = calibration_images(dataset, config)
    _atomic.write_json(out / CALIBRATION_FILE, record)
    images = agreement_images(dataset)
    reference = softmax(model.predict(to_float(images), batch_size=1000, verbose=0))
    base = ModelMetadata(
        labels=dataset.labels,
        dataset=dataset.name,
        input_shape=tuple(int(d) for d in model.input_shape[1:]),  # type: ignore[arg-type]
        light_on_dark=dataset.light_on_dark,
        source_sha256=sha256(source.model_path),
        edgecnn_version=__version__,
    )
    job = Job(model, config, calibration, record, base, validation=(dataset.x_val, dataset.y_val))
    return Prepared(source, out, final, job, dataset, images, reference)


def _convert(fmt: str, precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
    """One file's bytes, metadata embedded, and that metadata."""
    with native_stderr_hidden():
        return FORMATS[fmt].convert(precision, job)


def export_file(prepared: Prepared, fmt: str, precision: str) -> ExportedFile | None:
    """Convert one file, verify it under a temporary name, then keep or reject it.

    An int8 file under ``--remedy`` is made once per remedy tried
    (:func:`export_remedied`) until one passes; the last one made is kept or rejected.
    Returns its record; None for a format this machine cannot write (said in the
    report's ``skipped``).
    """
    if FORMATS[fmt].folder:
        return export_folder(prepared, fmt, precision)
    asked = prepared.job.config.remedy
    if precision != "int8" or asked == "none":
        return _export_with(prepared, fmt, precision, prepared.job, last=True)
    return export_remedied(prepared, fmt, asked)


def export_remedied(prepared: Prepared, fmt: str, asked: str) -> ExportedFile:
    """``fmt``'s int8 file under ``--remedy asked``: each remedy made only when its turn comes.

    Plain int8 first (the number before); ``auto`` stops at the first file that passes,
    a named remedy is always made after it. A remedy this model cannot take is a trial
    with a note, not a failure.
    """
    from edgecnn.export.auto import RemedyRecord, Trial, plan, remedied

    names, left_out = plan(asked, fmt, prepared.job.config.full_integer)
    trials: list[Trial] = []
    made: ExportedFile | None = None  # the file left in the folder, kept or rejected
    made_by = "none"
    for i, name in enumerate(names):
        final = i == len(names) - 1
        try:
            with native_stderr_hidden():
                job = prepared.job if name == "none" else remedied(
                    prepared.job, name, fmt, prepared.data.x_train
                )  # fmt: skip
        except ValueError as e:
            trials.append(Trial(name, None, False, str(e)))
            continue
        before_only = asked != "auto" and not final  # a named remedy's plain number
        record = _export_with(prepared, fmt, "int8", job, last=final, measure_only=before_only)
        trials.append(Trial(name, record.agreement, record.passed, _note(fmt, job) or left_out))
        if (record.passed and not before_only) or final:
            made, made_by = record, name
            if record.passed and fmt == "tflite" and not _note(fmt, job):
                prepared.memo["int8_job"] = job  # the integer-only forms follow it
            break
    if made is None:  # the last remedies could not be made: plain int8 stands
        made = _export_with(prepared, fmt, "int8", prepared.job, last=True)
    chosen = made_by if made.passed else None
    return dataclasses.replace(made, remedy=RemedyRecord(asked, chosen, tuple(trials)))


def _note(fmt: str, job: Job) -> str:
    """What a remedy means beyond its file (the integer-only forms cannot follow it)."""
    from edgecnn.export.auto import INTEGER_ONLY

    if fmt == "tflite" and job.remedy not in ("none", *INTEGER_ONLY):
        return (
            "the C library and the TFLite Micro bundle are integer-only: they are made "
            "from the plain int8 form"
        )
    return ""


def _export_with(
    prepared: Prepared,
    fmt: str,
    precision: str,
    job: Job,
    last: bool,
    measure_only: bool = False,
) -> ExportedFile:
    """Convert ``job``'s file and verify it; keep it if it passes, reject it if ``last``.

    ``measure_only``: verify, then remove it whatever the gate says.
    """
    name = FORMATS[fmt].file_name(precision)
    started = time.perf_counter()
    data, meta = _convert(fmt, precision, job)
    convert_s = time.perf_counter() - started
    final = prepared.out / name
    tmp = _atomic.temporary_path(final)
    gate = job.config.gate(precision)
    try:
        _atomic.write_synced(tmp, data)
        data, meta = _calibrated(fmt, tmp, data, meta, job)
        # Verified under its temporary name: an unproven file never sits where users
        # would pick it up, and a replaced export is swapped in one rename.
        with native_stderr_hidden():
            labels = prepared.data.y_test
            measured = verify_file(tmp, prepared.images, labels, prepared.reference)
            runtimes = verify_elsewhere(prepared, tmp, name, gate, measured.backend)
        failures = gate.failures(measured.scores)
        failures += [f"on {r.backend}: {why}" for r in runtimes.values() for why in r.failures]
        if measure_only:
            tmp.unlink()
        elif not failures:
            digest = hashlib.sha256(data).hexdigest()  # the reference records it too
            _atomic.write_json(sidecar_path(final), sidecar_document(meta, name, len(data), digest))
            os.replace(tmp, final)
            _write_reference(prepared, final, digest, precision, measured, gate)
        elif last:
            os.replace(tmp, prepared.out / f"{name}.rejected")
        else:
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportedFile(
        format=fmt, precision=precision, file=name, size_bytes=len(data),
        scores=measured.scores, backend=measured.backend, latency_us=measured.latency_us,
        gate=gate, passed=not failures, failures=tuple(failures), runtimes=runtimes,
        convert_seconds=convert_s, verify_seconds=time.perf_counter() - started - convert_s,
    )  # fmt: skip


def _calibrated(
    fmt: str, tmp: Path, data: bytes, meta: ModelMetadata, job: Job
) -> tuple[bytes, ModelMetadata]:
    """The file at ``tmp`` with its own temperature and "unknown" threshold in its metadata.

    Fitted on its raw outputs on the validation split: an int8 file's differ from the
    float model's. ``tmp`` is rewritten; the file is unchanged without a validation split.
    """
    with native_stderr_hidden():
        fitted = fit_confidence(tmp, *job.validation)
    if fitted is None:
        return data, meta
    data, meta = FORMATS[fmt].with_metadata(data, dataclasses.replace(meta, confidence=fitted))
    _atomic.write_synced(tmp, data)
    return data, meta


def verify_elsewhere(
    prepared: Prepared, path: Path, name: str, gate: Gate, verified_by: str
) -> dict[str, RuntimeCheck]:
    """Verify ``path`` on every ``--verify-with`` backend that runs it, under ``gate``.

    A backend that cannot load or run the file fails it (its message names the file by
    its final ``name``, not its temporary one).
    """
    checks = {}
    for backend in runtimes_for(path, prepared.job.config.verify_with, verified_by):
        try:
            m = verify_file(
                path, prepared.images, prepared.data.y_test, prepared.reference, backend=backend
            )
        except ModelError as e:
            error = str(e).replace(str(path), name)
            checks[backend] = RuntimeCheck(backend, (error,), error=error)
            continue
        why = tuple(gate.failures(m.scores))
        checks[backend] = RuntimeCheck(backend, why, m.scores, m.latency_us)
    return checks


def _write_reference(prepared: Prepared, final: Path, digest: str, precision: str,
                     measured: Measured, gate: Gate) -> None:  # fmt: skip
    """``<file>.reference.npz``: what ``edgecnn verify`` checks the file against on a device.

    ``measured.probs`` are the file's outputs on ``prepared.images`` from its gate (test
    images first); the reference keeps the first few hundred, and the whole gate the file
    passed (a lowered ``--min-agreement`` too).
    """
    labels, probs = prepared.data.y_test, measured.probs
    n = reference_count(prepared.images.shape[1:], len(labels))
    document = reference_bytes(prepared.images[:n], labels[:n], prepared.reference[:n],
                               probs[:n], {
        "file": final.name, "precision": precision, "backend": measured.backend,
        "file_sha256": digest, "source_sha256": prepared.job.base.source_sha256,
        **gate.to_dict(),
    })  # fmt: skip
    _atomic.write_bytes(reference_path(final), document)


def export_folder(prepared: Prepared, fmt: str, precision: str) -> ExportedFile | None:
    """Generate a folder format from its accepted source file, verify it, keep or reject it.

    The folder is filled under a temporary name and moved into place in one rename (or
    aside as ``<name>.rejected``). Returns its record, or None when it was skipped.
    """
    spec = FORMATS[fmt]
    assert spec.source is not None
    name = spec.file_name(precision)
    source = prepared.out / FORMATS[spec.source[0]].file_name(spec.source[1])
    reason = spec.missing_requirements()
    if reason is None and not source.is_file():
        reason = f"generated from {source.name}, which did not pass its gate"
    if reason is not None:
        prepared.skipped.append(Skipped(fmt, reason))
        return None
    started = time.perf_counter()
    check = Check(prepared.images, prepared.data.y_test, prepared.reference, source,
                  prepared.memo)  # fmt: skip
    gate = prepared.job.config.gate(precision)
    folder = _atomic.temporary_dir(prepared.out / name)
    try:
        with native_stderr_hidden():
            try:
                job = prepared.memo.get("int8_job", prepared.job)
                result = spec.export(job, source, folder, check)
            except spec.skip_errors() as e:
                shutil.rmtree(folder, ignore_errors=True)
                prepared.skipped.append(Skipped(fmt, str(e), error=True))
                return None
        failures = (*gate.failures(result.scores), *result.failures)
        kept = name if not failures else f"{name}.rejected"
        _atomic.replace_dir(folder, prepared.out / kept)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ExportedFile(
        format=fmt, precision=precision, file=f"{name}/", size_bytes=result.size_bytes,
        scores=result.scores, backend=result.backend, latency_us=result.latency_us,
        gate=gate, passed=not failures, failures=failures, details=result.details,
        verify_seconds=time.perf_counter() - started,
    )  # fmt: skip


def write_export_report(prepared: Prepared, files: list[ExportedFile], seconds: float
                        ) -> ExportReport:  # fmt: skip
    """``export_report.json``: every file's record, the Keras reference, the configuration."""
    float32 = [f.size_bytes for f in files if f.precision == "float32"]
    reference_size = next(
        (f.size_bytes for f in files if f.file == "model_float32.tflite"), float32[0]
    )
    files = [dataclasses.replace(f, size_ratio=f.size_bytes / reference_size) for f in files]
    data = prepared.data
    keras = compare(prepared.reference, prepared.reference, data.y_test)
    report = ExportReport(
        source=str(prepared.source.model_path),
        source_sha256=prepared.job.base.source_sha256 or "",
        dataset=data.name,
        labels=tuple(data.labels),
        test_images=int(len(data.x_test)),
        agreement_images=int(len(prepared.images)),
        keras_accuracy=keras.accuracy,
        keras_per_class_accuracy=keras.per_class_accuracy,
        config=prepared.job.config,
        calibration_file=CALIBRATION_FILE,
        out_dir=str(prepared.final),
        files=tuple(files),
        skipped=tuple(prepared.skipped),
        seconds=seconds,
        edgecnn_version=__version__,
    )
    _atomic.write_json(prepared.out / EXPORT_REPORT_FILE, report.to_dict())
    return report
