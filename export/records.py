"""What an export hands on: a record per exported file, and the export report.

``export_report.json`` is :meth:`ExportReport.to_dict`; every reader (the table, ``edgecnn
run``'s report and recommendation, ``edgecnn bundle``) takes it through
:meth:`ExportReport.from_dict` and reads typed attributes, never string keys. What only
one format measures (the C library's work buffer, TFLM's arena) is that format's
:class:`edgecnn.export.formats.Details`, rendered by the format itself.

Schema 1 is what edgecnn wrote before the report had a schema: the same layout without
``gate`` and ``details`` (a folder format's details were among the row's own keys); it
still reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgecnn.export.auto import RemedyRecord
from edgecnn.export.config import ExportConfig
from edgecnn.export.formats import FORMATS, Details
from edgecnn.records import Fields, JSONObject, RecordError, check_schema
from edgecnn.runtime.gate import Gate, Scores

#: The schema :meth:`ExportReport.to_dict` writes.
SCHEMA = 2


def scores_to_dict(scores: Scores) -> JSONObject:
    """A :class:`Scores` as the report's flat keys."""
    return {
        "accuracy": scores.accuracy,
        "reference_accuracy": scores.reference_accuracy,
        "delta_pp": scores.delta_pp,
        "agreement": scores.agreement,
        "agreement_images": scores.agreement_images,
        "max_prob_diff": scores.max_prob_diff,
        "per_class_accuracy": list(scores.per_class_accuracy),
    }


def scores_from(f: Fields) -> Scores:
    """The :class:`Scores` among ``f``'s keys (see :func:`scores_to_dict`)."""
    accuracy = f.number("accuracy")
    # Schema 1 wrote a --verify-with backend's delta_pp without the reference's accuracy.
    reference = accuracy - f.number("delta_pp", default=0.0) / 100
    return Scores(
        accuracy=accuracy,
        reference_accuracy=f.number("reference_accuracy", default=reference),
        agreement=f.number("agreement"),
        agreement_images=f.integer("agreement_images", default=0),
        max_prob_diff=f.number("max_prob_diff"),
        per_class_accuracy=f.numbers("per_class_accuracy", default=()),
    )


@dataclass(frozen=True)
class RuntimeCheck:
    """A file verified again on a ``--verify-with`` backend, under the same gate."""

    backend: str
    failures: tuple[str, ...]
    scores: Scores | None = None
    latency_us: float | None = None
    #: The backend could not load or run the file (then ``scores`` is None).
    error: str | None = None

    def to_dict(self) -> JSONObject:
        """JSON-ready form (the backend's name is its key in the row's ``runtimes``)."""
        if self.scores is None:
            return {"error": self.error, "failures": list(self.failures)}
        return {
            **scores_to_dict(self.scores),
            "latency_us": self.latency_us,
            "failures": list(self.failures),
        }

    @classmethod
    def from_fields(cls, backend: str, f: Fields) -> RuntimeCheck:
        """The check :meth:`to_dict` wrote."""
        failures = f.texts("failures", default=())
        if "error" in f:
            return cls(backend, failures, error=f.text("error"))
        return cls(backend, failures, scores_from(f), f.optional_number("latency_us"))


@dataclass(frozen=True)
class ExportedFile:
    """One exported file (or folder), what it measured, and the gate's verdict."""

    format: str
    precision: str
    #: Its name in the export folder; a folder format's ends in ``/``.
    file: str
    size_bytes: int
    scores: Scores
    #: The runtime backend it was verified on (``auto``'s choice), or the engine that ran it.
    backend: str
    passed: bool
    failures: tuple[str, ...]
    #: The gate it was held to (None in a schema-1 report, which did not record it).
    gate: Gate | None = None
    #: Median single-image latency while verifying; None where not measured (TFLM).
    latency_us: float | None = None
    convert_seconds: float | None = None
    verify_seconds: float = 0.0
    #: Its size against ``model_float32.tflite`` (or the first float32 file).
    size_ratio: float = 1.0
    runtimes: Mapping[str, RuntimeCheck] = field(default_factory=dict)
    #: What only its format measures (the folder formats'), or None.
    details: Details | None = None
    #: What ``--remedy`` tried for an int8 file, and what it kept.
    remedy: RemedyRecord | None = None

    @property
    def name(self) -> str:
        """The file's or folder's name, without the folder's ``/``."""
        return self.file.rstrip("/")

    @property
    def is_folder(self) -> bool:
        """Whether it is a folder format's folder."""
        return FORMATS[self.format].folder

    @property
    def accuracy(self) -> float:
        """Its accuracy on the test images."""
        return self.scores.accuracy

    @property
    def agreement(self) -> float:
        """Its top-1 agreement with the Keras model."""
        return self.scores.agreement

    def to_dict(self) -> JSONObject:
        """JSON-ready form: the row of ``export_report.json``."""
        out: JSONObject = {
            "format": self.format,
            "precision": self.precision,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "convert_seconds": self.convert_seconds,
            **scores_to_dict(self.scores),
            "backend": self.backend,
            "latency_us": self.latency_us,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "failures": list(self.failures),
            "passed": self.passed,
            "verify_seconds": self.verify_seconds,
            "size_ratio": self.size_ratio,
        }
        if self.runtimes:
            out["runtimes"] = {name: r.to_dict() for name, r in self.runtimes.items()}
        if self.details is not None:
            out["details"] = self.details.to_dict()
        if self.remedy is not None:
            out["remedy"] = self.remedy.to_dict()
        return out

    @classmethod
    def from_fields(cls, f: Fields, schema: int = SCHEMA) -> ExportedFile:
        """The row :meth:`to_dict` wrote (or a schema-1 row).

        Raises:
            RecordError: a field no export writes (named).
        """
        fmt = f.text("format")
        if fmt not in FORMATS:
            raise RecordError(f"{f.where}.format is {fmt[:40]!r}, not one of {', '.join(FORMATS)}")
        spec = FORMATS[fmt]
        name = f.text("file")
        if not _plain_name(name, spec.folder):
            kind = "folder name ending in /" if spec.folder else "file name"
            raise RecordError(f"{f.where}.file is {name[:60]!r}, not a plain {kind}")
        runtimes = f.object("runtimes", default={})
        details = None
        if spec.folder:
            # Schema 1 kept a folder format's details among the row's own keys.
            source = f.object("details") if schema >= 2 else f
            details = spec.details_from(source)
        return cls(
            format=fmt,
            precision=f.text("precision"),
            file=name,
            size_bytes=f.integer("size_bytes"),
            scores=scores_from(f),
            backend=f.text("backend", default=""),
            passed=f.flag("passed"),
            failures=f.texts("failures", default=()),
            gate=_gate(f),
            latency_us=f.optional_number("latency_us"),
            convert_seconds=f.optional_number("convert_seconds"),
            verify_seconds=f.number("verify_seconds", default=0.0),
            size_ratio=f.number("size_ratio", default=1.0),
            runtimes={
                str(k): RuntimeCheck.from_fields(str(k), runtimes.object(str(k)))
                for k in runtimes.data
            },
            details=details,
            remedy=RemedyRecord.from_fields(f.object("remedy")) if "remedy" in f else None,
        )


def _gate(f: Fields) -> Gate | None:
    """The row's gate, or None in a schema-1 row.

    Raises:
        RecordError: a limit that is not a finite number (named).
    """
    if "gate" not in f:
        return None
    try:
        return Gate.from_dict(f.object("gate").data)
    except ValueError as e:
        raise RecordError(f"{f.where}.gate.{e}") from None


def _plain_name(name: str, folder: bool) -> bool:
    """A name of one entry of the export folder: no directory part, nothing to climb with.

    A folder format's name ends in ``/``, a file's does not.
    """
    if name.endswith("/") is not folder:
        return False
    stem = name.removesuffix("/")
    return (
        0 < len(stem) <= 255
        and stem not in (".", "..")
        and not any(c in stem for c in "/\\\0")
        and stem.isprintable()
    )


@dataclass(frozen=True)
class Skipped:
    """A format this export did not write, and why."""

    format: str
    reason: str
    #: The model cannot be written so (rather than: this machine lacks a tool).
    error: bool = False

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        out: JSONObject = {"format": self.format, "reason": self.reason}
        if self.error:
            out["error"] = True
        return out

    @classmethod
    def from_fields(cls, f: Fields) -> Skipped:
        """The entry :meth:`to_dict` wrote."""
        return cls(f.text("format"), f.text("reason"), f.flag("error", default=False))


@dataclass(frozen=True)
class ExportReport:
    """``export_report.json``: every file's record, the Keras reference, the configuration."""

    source: str
    source_sha256: str
    dataset: str
    labels: tuple[str, ...]
    test_images: int
    #: Top-1 agreement was measured on this many images (test images first).
    agreement_images: int
    keras_accuracy: float
    keras_per_class_accuracy: tuple[float, ...]
    config: ExportConfig
    out_dir: str
    files: tuple[ExportedFile, ...]
    skipped: tuple[Skipped, ...] = ()
    seconds: float = 0.0
    edgecnn_version: str = ""
    calibration_file: str = "calibration.json"
    schema: int = SCHEMA

    @property
    def passed(self) -> bool:
        """Whether every file passed its gate."""
        return all(f.passed for f in self.files)

    @property
    def kept(self) -> tuple[ExportedFile, ...]:
        """The files that passed their gate."""
        return tuple(f for f in self.files if f.passed)

    def to_dict(self) -> JSONObject:
        """JSON-ready form: ``export_report.json``."""
        return {
            "schema": SCHEMA,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "dataset": self.dataset,
            "test_images": self.test_images,
            "agreement_images": self.agreement_images,
            "labels": list(self.labels),
            "keras_accuracy": self.keras_accuracy,
            "keras_per_class_accuracy": list(self.keras_per_class_accuracy),
            "config": self.config.to_dict(),
            "calibration_file": self.calibration_file,
            "out_dir": self.out_dir,
            "files": [f.to_dict() for f in self.files],
            "skipped": [s.to_dict() for s in self.skipped],
            "passed": self.passed,
            "seconds": self.seconds,
            "edgecnn_version": self.edgecnn_version,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> ExportReport:
        """The report :meth:`to_dict` wrote, or a schema-1 one.

        Raises:
            RecordError: a field no export writes (named), or a newer schema.
        """
        schema = check_schema(f, SCHEMA, "the export report")
        test_images = f.integer("test_images")
        return cls(
            source=f.text("source"),
            source_sha256=f.text("source_sha256"),
            dataset=f.text("dataset"),
            labels=f.texts("labels"),
            test_images=test_images,
            agreement_images=f.integer("agreement_images", default=test_images),
            keras_accuracy=f.number("keras_accuracy"),
            keras_per_class_accuracy=f.numbers("keras_per_class_accuracy", default=()),
            config=ExportConfig.from_fields(f.object("config")),
            out_dir=f.text("out_dir", default=""),
            files=tuple(ExportedFile.from_fields(r, schema) for r in f.objects("files")),
            skipped=tuple(Skipped.from_fields(s) for s in f.objects("skipped", required=False)),
            seconds=f.number("seconds", default=0.0),
            edgecnn_version=f.text("edgecnn_version", default=""),
            calibration_file=f.text("calibration_file", default="calibration.json"),
            schema=schema,
        )

    @classmethod
    def from_dict(cls, data: object) -> ExportReport:
        """:meth:`from_fields` of a parsed document."""
        return cls.from_fields(Fields(data))
