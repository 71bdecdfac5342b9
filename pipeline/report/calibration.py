"""The report's section on confidence: each file's temperature, ECE before and after, "unknown".

The validation figures are those the export fitted and stored in each file's metadata
(its sidecar's ``confidence``); the test figures are ``edgecnn evaluate``'s
(:class:`~edgecnn.trainer.calibration_metrics.CalibrationMetrics`), which the run
measures for the Keras model and each int8 file it keeps. A file's evaluation is used
only while it describes the temperature the file holds now.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import DataError
from edgecnn.export.formats import FORMATS
from edgecnn.export.records import ExportedFile
from edgecnn.pipeline.recommend import best_file
from edgecnn.pipeline.report.html import E, figure, pct, table
from edgecnn.pipeline.results import RunData
from edgecnn.records import Fields, read_record
from edgecnn.run_folder import EXPORTS_DIR, METRICS_FILE, MODEL_FILE, RELIABILITY_FILE
from edgecnn.runtime.confidence import ECE_BINS, Confidence
from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.loading import library_in
from edgecnn.runtime.metadata import read_sidecar
from edgecnn.trainer.calibration_metrics import CALIBRATION_KEY, CalibrationMetrics

HEADERS = [
    "model",
    "temperature",
    "ECE before (val)",
    "ECE after (val)",
    "ECE before (test)",
    "ECE after (test)",
    "unknown below",
    "rejected (test)",
    "accuracy on accepted (test)",
]


@dataclass(frozen=True)
class Row:
    """One model's confidence: fitted on validation, and measured on test if it was."""

    name: str
    confidence: Confidence | None
    test: CalibrationMetrics | None
    #: The folder holding its reliability diagram, when ``test`` is known.
    figures: Path | None = None
    #: Why the file has no confidence record, when it has none.
    note: str = ""


def calibration(run: RunData) -> str:
    """The table of every kept file (and the Keras model), and one reliability diagram."""
    rows = [_keras_row(run)]
    rows += [_file_row(run.run_dir / EXPORTS_DIR, f) for f in run.export.kept
             if FORMATS[f.format].runnable]  # fmt: skip
    fitted = next((r.confidence for r in rows[1:] if r.confidence is not None), None)
    if fitted is None:
        intro = (
            "<p>No exported file holds a temperature: they were exported on too few "
            "validation images to fit one (or by an edgecnn before it fitted them), so "
            "their probabilities are the model's raw ones and nothing is answered "
            "<em>unknown</em>.</p>"
        )
    else:
        intro = (
            "<p>Each file's temperature and <em>unknown</em> threshold were fitted at "
            f"export on its own raw outputs on the {fitted.images:,} validation images, "
            "and are stored in its metadata: <code>edgecnn predict</code>, "
            "<code>serve</code> and the C library apply them. The temperature minimises "
            "the validation split's negative log-likelihood; the threshold keeps "
            f"{pct(fitted.acceptance, 0)} of its pictures. ECE, "
            "the expected calibration error, is the gap between how sure the model says "
            "it is and how often it is right, over "
            f"{ECE_BINS} equal-width bins of top-1 confidence: before is the raw outputs "
            "(T = 1), after the calibrated ones.</p>"
        )
    untested = [r.name for r in rows if r.test is None]
    note = ""
    if untested:
        note = (
            f"<p>Test columns come from <code>edgecnn evaluate</code>, which the run does "
            "for the Keras model and each int8 file; "
            f"{E(', '.join(untested))}: validation figures only "
            "(<code>edgecnn evaluate exports/FILE</code> measures it).</p>"
        )
    notes = "".join(f"<p>{E(r.name)}: {E(r.note)}</p>" for r in rows if r.note)
    return (
        intro
        + table(HEADERS, [_cells(r) for r in rows], numeric_from=1)
        + note
        + notes
        + _diagram(run, rows)
    )


def _cells(row: Row) -> list[str]:
    """A row of the table; a dash where a figure is unknown."""
    c, t = row.confidence, row.test
    threshold = c.reject_below if c is not None else None
    accepted = "-" if t is None or t.accepted_accuracy is None else pct(t.accepted_accuracy)
    return [
        row.name,
        "-" if c is None else f"{c.temperature:.3f}",
        _ece(None if c is None else c.ece_before),
        _ece(None if c is None else c.ece_after),
        _ece(None if t is None else t.ece_before),
        _ece(None if t is None else t.ece_after),
        "-" if threshold is None else f"{threshold:.3f}",
        "-" if t is None or threshold is None else pct(t.rejected),
        accepted if threshold is not None else "-",
    ]


def _ece(value: float | None) -> str:
    return "-" if value is None else pct(value)


def _keras_row(run: RunData) -> Row:
    """The Keras model: fitted on validation and measured on test by ``edgecnn evaluate``."""
    test = run.metrics.calibration
    name = f"{MODEL_FILE} (Keras)"
    if test is None:
        return Row(name, None, None, note="its evaluation measured no calibration")
    return Row(name, test.confidence, test, run.run_dir)


def _file_row(exports: Path, f: ExportedFile) -> Row:
    """An exported file: its sidecar's confidence, and its evaluation's test figures."""
    try:
        confidence = _stored_confidence(exports / f.name)
    except (OSError, ValueError, DataError, ModelError) as e:
        return Row(f.file, None, None, note=f"its metadata cannot be read ({e})")
    evaluation = exports / f"{f.name}.evaluation"
    test = _evaluated(evaluation / METRICS_FILE)
    if test is not None and test.confidence != confidence:
        test = None  # an evaluation of an earlier export of the file
    note = "" if confidence is not None else "no temperature in its metadata"
    return Row(f.file, confidence, test, evaluation if test is not None else None, note)


def _stored_confidence(path: Path) -> Confidence | None:
    """The ``confidence`` object of the sidecar of ``path`` (a folder: its library's).

    Raises:
        ModelError: the sidecar or its confidence is unreadable.
    """
    sidecar = read_sidecar(library_in(path))
    return None if sidecar is None else sidecar.metadata.confidence


def _evaluated(path: Path) -> CalibrationMetrics | None:
    """The calibration an evaluation's ``metrics.json`` holds, if it is there and readable."""
    if not path.is_file():
        return None

    def parse(f: Fields) -> CalibrationMetrics | None:
        if CALIBRATION_KEY not in f:
            return None
        return CalibrationMetrics.from_fields(f.object(CALIBRATION_KEY))

    try:
        return read_record(path, parse, "an evaluation")
    except DataError:
        return None


def _diagram(run: RunData, rows: list[Row]) -> str:
    """The reliability diagram of the recommended file, else of an int8 file, else Keras's."""
    best = best_file(run.export.files, run.latency_by_file())
    int8 = {f.file for f in run.export.files if f.precision == "int8"}
    drawn = [
        (r.figures / RELIABILITY_FILE, r.name, r.test)
        for r in rows
        if r.test is not None and r.figures is not None and (r.figures / RELIABILITY_FILE).is_file()
    ]
    if not drawn:
        return ""
    path, name, test = min(
        drawn, key=lambda d: (best is None or d[1] != best.file, d[1] not in int8)
    )
    after = (
        f"after calibration (T = {test.temperature:.3f})"
        if test.confidence is not None
        else "no temperature to calibrate with"
    )
    return figure(
        path,
        f"Reliability of {name} on the {test.images:,} {test.split} images: accuracy against "
        f"confidence per bin, before (raw) and {after}; below, each bin's count",
    )
