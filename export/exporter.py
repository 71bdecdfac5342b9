"""``export_model``: convert, embed metadata, verify, and keep only the files that pass.

The steps, in order: resolve the source model, take the output folder's lock file and start a new
one beside it (:func:`export_model`, :mod:`edgecnn.export.staging`); load the model and
data and draw the calibration images (:func:`prepare`); for every file, convert, write
under a temporary name, verify through the runtime and keep or reject it
(:func:`export_file`); write the report (:func:`write_export_report`); swap the new folder in
for the old one whole.
"""

from __future__ import annotations

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

from edgecnn import __version__, _atomic, _json
from edgecnn._files import MiB, read_regular_file
from edgecnn._quiet import native_stderr_hidden
from edgecnn.errors import DataError
from edgecnn.export.config import ExportConfig
from edgecnn.export.formats import FORMATS, Check, Job
from edgecnn.export.mcu.graph import UnsupportedModel
from edgecnn.export.mcu.toolchain import ToolchainError
from edgecnn.export.measure import check_runtimes, compare, runtimes_for, verify_file
from edgecnn.export.staging import recover, staged_folder
from edgecnn.export.table import format_table
from edgecnn.run_folder import CALIBRATION_FILE, EXPORT_REPORT_FILE, EXPORTS_DIR
from edgecnn.runtime.errors import SIDECAR_MAX_BYTES, ModelError
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


def sidecar_document(meta: ModelMetadata, name: str, data: bytes) -> dict[str, Any]:
    """``<file>.json``: the metadata, and the whole file's name, size and SHA-256."""
    record = {"name": name, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {**meta.to_dict(), "file": record}


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
    skipped: list[dict[str, Any]] = field(default_factory=list)
    #: Results several folder formats share (the reference kernels' outputs).
    memo: dict[str, Any] = field(default_factory=dict)


def export_model(
    target: str | Path,
    config: ExportConfig,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    stream: TextIO | None = None,
    on_file: Callable[[dict[str, Any]], None] | None = None,
    data: str | Path | None = None,
) -> dict[str, Any]:
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
    Returns the report also saved as ``export_report.json``.
    """
    started = time.perf_counter()
    check_runtimes(config.verify_with)
    source = resolve_model(target)
    out_path = Path(out_dir or (source.run_dir or source.model_path.parent) / EXPORTS_DIR)
    with staged_folder(out_path) as (final, out):
        prepared = prepare(source, out, final, config, data_dir, data)
        rows = []
        for fmt, precision in config.targets():
            row = export_file(prepared, fmt, precision)
            if row is None:
                continue
            rows.append(row)
            if on_file:
                on_file(row)
        report = write_export_report(prepared, rows, time.perf_counter() - started)
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
    job = Job(model, config, calibration, record, base)
    return Prepared(source, out, final, job, dataset, images, reference)


def _convert(fmt: str, precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
    """One file's bytes, metadata embedded, and that metadata."""
    with native_stderr_hidden():
        return FORMATS[fmt].convert(precision, job)


def export_file(prepared: Prepared, fmt: str, precision: str) -> dict[str, Any] | None:
    """Convert one file, verify it under a temporary name, then keep or reject it.

    Returns its row of the report; None for a format this machine cannot write (said in
    the report's ``skipped``).
    """
    if FORMATS[fmt].folder:
        return export_folder(prepared, fmt, precision)
    name = FORMATS[fmt].file_name(precision)
    started = time.perf_counter()
    data, meta = _convert(fmt, precision, prepared.job)
    convert_s = time.perf_counter() - started
    final = prepared.out / name
    tmp = _atomic.temporary_path(final)
    row: dict[str, Any] = {
        "format": fmt,
        "precision": precision,
        "file": name,
        "size_bytes": len(data),
        "convert_seconds": convert_s,
    }
    try:
        _atomic.write_synced(tmp, data)
        # Verified under its temporary name: an unproven file never sits where users
        # would pick it up, and a replaced export is swapped in one rename.
        with native_stderr_hidden():
            labels = prepared.data.y_test
            measured, probs = verify_file(tmp, prepared.images, labels, prepared.reference)
            row.update(measured)
            elsewhere = verify_elsewhere(prepared, tmp, precision, row)
        row["failures"] = prepared.job.config.gate(precision).failures(row) + elsewhere
        row["passed"] = not row["failures"]
        if row["passed"]:
            _atomic.write_json(sidecar_path(final), sidecar_document(meta, name, data))
            os.replace(tmp, final)
            _write_reference(prepared, final, precision, row, probs)
        else:
            os.replace(tmp, prepared.out / f"{name}.rejected")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    row["verify_seconds"] = time.perf_counter() - started - convert_s
    return row


#: What the report keeps of a file's verification on each ``--verify-with`` backend.
RUNTIME_FIELDS = ("accuracy", "delta_pp", "agreement", "max_prob_diff", "latency_us")


def verify_elsewhere(prepared: Prepared, path: Path, precision: str, row: dict[str, Any]
                     ) -> list[str]:  # fmt: skip
    """Verify ``path`` on every ``--verify-with`` backend that runs it, under the same gate.

    Each backend's measurements go in ``row["runtimes"]``; returns their gate failures,
    each naming its backend. A backend that cannot load or run the file fails it.
    """
    config, failures = prepared.job.config, []
    for name in runtimes_for(path, config.verify_with, row["backend"]):
        try:
            measured, _ = verify_file(
                path, prepared.images, prepared.data.y_test, prepared.reference, backend=name
            )
        except ModelError as e:  # said with the file's final name, not its temporary one
            error = str(e).replace(str(path), row["file"])
            row.setdefault("runtimes", {})[name] = {"error": error, "failures": [error]}
            failures.append(f"on {name}: {error}")
            continue
        why = config.gate(precision).failures(measured)
        result = {k: measured[k] for k in RUNTIME_FIELDS}
        row.setdefault("runtimes", {})[name] = {**result, "failures": why}
        failures += [f"on {name}: {reason}" for reason in why]
    return failures


def _write_reference(prepared: Prepared, final: Path, precision: str, row: dict[str, Any],
                     probs: np.ndarray) -> None:  # fmt: skip
    """``<file>.reference.npz``: what ``edgecnn verify`` checks the file against on a device.

    ``probs`` are the file's outputs on ``prepared.images`` from its gate (test images
    first); the reference keeps the first few hundred.
    """
    labels = prepared.data.y_test
    n = reference_count(prepared.images.shape[1:], len(labels))
    gate = prepared.job.config.gate(precision)
    document = reference_bytes(prepared.images[:n], labels[:n], prepared.reference[:n],
                               probs[:n], {
        "file": final.name, "precision": precision, "backend": row["backend"],
        "file_sha256": sha256(final), "source_sha256": prepared.job.base.source_sha256,
        "min_agreement": float(gate.min_agreement),
        "max_prob_diff": None if gate.max_prob_diff is None else float(gate.max_prob_diff),
    })  # fmt: skip
    _atomic.write_bytes(reference_path(final), document)


def export_folder(prepared: Prepared, fmt: str, precision: str) -> dict[str, Any] | None:
    """Generate a folder format from its accepted source file, verify it, keep or reject it.

    The folder is filled under a temporary name and moved into place in one rename (or
    aside as ``<name>.rejected``). Returns its row, or None when it was skipped.
    """
    spec = FORMATS[fmt]
    assert spec.source is not None
    name = spec.file_name(precision)
    source = prepared.out / FORMATS[spec.source[0]].file_name(spec.source[1])
    reason = _missing_tools(fmt)
    if reason is None and not source.is_file():
        reason = f"generated from {source.name}, which did not pass its gate"
    if reason is not None:
        _skip(prepared, fmt, reason)
        return None
    started = time.perf_counter()
    check = Check(prepared.images, prepared.data.y_test, prepared.reference, source,
                  prepared.memo)  # fmt: skip
    folder = _atomic.temporary_dir(prepared.out / name)
    try:
        with native_stderr_hidden():
            row: dict[str, Any] = {"format": fmt, "precision": precision, "file": f"{name}/"}
            try:
                row.update(spec.load_module().export(prepared.job, source, folder, check))
            except (UnsupportedModel, ToolchainError) as e:
                shutil.rmtree(folder, ignore_errors=True)
                _skip(prepared, fmt, str(e), error=True)
                return None
        failures = prepared.job.config.gate(precision).failures(row)
        row["failures"] = failures + row.pop("failures_extra", [])
        row["passed"] = not row["failures"]
        _atomic.replace_dir(folder, prepared.out / (name if row["passed"] else f"{name}.rejected"))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    row["verify_seconds"] = time.perf_counter() - started
    return row


def _skip(prepared: Prepared, fmt: str, reason: str, error: bool = False) -> None:
    """Record ``fmt`` as not written; ``error``: this model cannot be written so."""
    entry: dict[str, Any] = {"format": fmt, "reason": reason}
    if error:
        entry["error"] = True
    prepared.skipped.append(entry)


def _missing_tools(fmt: str) -> str | None:
    """Why this machine cannot write ``fmt`` (no compiler, no package), or None."""
    if fmt == "c":
        from edgecnn.export.mcu.toolchain import host_compiler

        if host_compiler() is None:
            return "no C compiler found (install gcc, or set CC)"
    if fmt == "tflm":
        import importlib.util

        if importlib.util.find_spec("tflite_micro") is None:
            return 'the tflite-micro package is not installed: pip install "edgecnn[mcu]"'
    return None


def write_export_report(
    prepared: Prepared, rows: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """``export_report.json``: every file's row, the Keras reference, and the configuration."""
    float32 = [r["size_bytes"] for r in rows if r["precision"] == "float32"]
    reference_size = next(
        (r["size_bytes"] for r in rows if r["file"] == "model_float32.tflite"), float32[0]
    )
    for row in rows:
        row["size_ratio"] = row["size_bytes"] / reference_size
    data = prepared.data
    keras_scores = compare(prepared.reference, prepared.reference, data.y_test)
    report = {
        "source": str(prepared.source.model_path),
        "source_sha256": prepared.job.base.source_sha256,
        "dataset": data.name,
        "test_images": int(len(data.x_test)),
        "agreement_images": int(len(prepared.images)),
        "labels": list(data.labels),
        "keras_accuracy": keras_scores["accuracy"],
        "keras_per_class_accuracy": keras_scores["per_class_accuracy"],
        "config": prepared.job.config.to_dict(),
        "calibration_file": CALIBRATION_FILE,
        "out_dir": str(prepared.final),
        "files": rows,
        "skipped": prepared.skipped,
        "passed": all(r["passed"] for r in rows),
        "seconds": seconds,
        "edgecnn_version": __version__,
    }
    _atomic.write_json(prepared.out / EXPORT_REPORT_FILE, report)
    return report


#: What ``export_report.json`` may weigh when read back (an export writes a few KiB).
MAX_REPORT_BYTES = 16 * MiB


class ReportError(DataError, ValueError):
    """``export_report.json`` is missing, damaged or not one an export writes.

    A ValueError too, as an unreadable JSON document was: ``edgecnn run --resume`` then
    takes the export stage for not done rather than trusting the folder.
    """


class MissingReport(ReportError, FileNotFoundError):
    """There is no ``export_report.json``: a FileNotFoundError too, as it always was."""


def load_report(out_dir: Path) -> dict[str, Any]:
    """Read ``export_report.json`` back, checked, once :func:`check_sources` trusts the folder.

    A folder missing because an export was killed between its two renames is put back
    first (:func:`edgecnn.export.staging.recover`). The report is a plain file that any
    hand may have edited, so it is read bounded and strict, and each row's ``file``,
    ``format`` and ``passed`` are checked before anyone uses them (:func:`check_report`).

    Raises:
        MissingReport: there is no report.
        ReportError: unreadable, too large, not strict JSON, or a field no export writes
            (the message names it).
        DataError: a file kept there came from another model than the report says.
    """
    recover(out_dir)
    path = out_dir / EXPORT_REPORT_FILE
    if not path.exists():
        raise MissingReport(f"{path} does not exist: nothing was exported there")
    raw = read_regular_file(path, MAX_REPORT_BYTES, ReportError, "an export report")
    try:
        report = _json.loads(raw)
    except ValueError as e:
        raise ReportError(f"{path}: not readable JSON ({str(e)[:200]}); export again") from None
    problem = check_report(report)
    if problem:
        raise ReportError(f"{path}: {problem}; not a report an export writes, export again")
    check_sources(out_dir, report)
    return report


def check_report(report: Any) -> str | None:
    """What makes a report unusable, naming the field, or None.

    It is an object whose ``files`` lists one object per file, each with ``file`` (a
    plain name inside the folder, ``/``-terminated for a folder format), ``format`` (a
    key of :data:`FORMATS`) and ``passed`` (true or false), and ``failures`` a list of
    text where there is one.
    """
    if not isinstance(report, dict):
        return f"it is a JSON {type(report).__name__}, not an object"
    rows = report.get("files")
    if not isinstance(rows, list):
        return f"files is {rows!r:.40}, not a list" if "files" in report else "it has no files"
    for i, row in enumerate(rows):
        where = f"files[{i}]"
        if not isinstance(row, dict):
            return f"{where} is {row!r:.40}, not an object"
        for key in ("file", "format", "passed"):
            if key not in row:
                return f"{where} has no {key}"
        fmt, name, passed = row["format"], row["file"], row["passed"]
        if not isinstance(fmt, str) or fmt not in FORMATS:
            return f"{where}.format is {fmt!r:.40}, not one of {', '.join(FORMATS)}"
        if not isinstance(passed, bool):
            return f"{where}.passed is {passed!r:.40}, not true or false"
        if not _plain_name(name, FORMATS[fmt].folder):
            kind = "folder name ending in /" if FORMATS[fmt].folder else "file name"
            return f"{where}.file is {name!r:.60}, not a plain {kind}"
        failures = row.get("failures", [])
        if not isinstance(failures, list) or not all(isinstance(f, str) for f in failures):
            return f"{where}.failures is {failures!r:.40}, not a list of text"
    return None


def _plain_name(name: Any, folder: bool) -> bool:
    """A name of one entry of the export folder: no directory part, nothing to climb with.

    A folder format's name ends in ``/``, a file's does not.
    """
    if not isinstance(name, str) or name.endswith("/") is not folder:
        return False
    stem = name.removesuffix("/")
    return (
        0 < len(stem) <= 255
        and stem not in (".", "..")
        and not any(c in stem for c in "/\\\0")
        and stem.isprintable()
    )


def check_sources(out_dir: Path, report: dict[str, Any]) -> None:
    """Every file the report keeps must record the report's source model in its sidecar.

    An export replaces its folder whole, so this holds unless files were copied in by
    hand or an older edgecnn was killed mid-export; then the report describes files it
    did not measure, and nothing should be read, benchmarked or shipped from there.

    Raises:
        DataError: a kept file's sidecar is missing or names another source model.
    """
    expected = report.get("source_sha256")
    for row in report.get("files", []):
        name = row.get("file") if isinstance(row, dict) else None
        if not isinstance(name, str) or not row.get("passed") or name.endswith("/"):
            continue  # rejected files and folder formats carry no sidecar
        try:
            raw = read_regular_file(sidecar_path(out_dir / name), SIDECAR_MAX_BYTES, DataError,
                                    "a metadata file")  # fmt: skip
            recorded = _json.loads(raw).get("source_sha256")
        except (DataError, ValueError, AttributeError):
            recorded = "missing"
        if recorded != expected:
            raise DataError(
                f"{out_dir}: {name} was not exported from the model {EXPORT_REPORT_FILE} "
                "describes (its sidecar records another source model, or none); the folder "
                "mixes two exports: export again"
            )
