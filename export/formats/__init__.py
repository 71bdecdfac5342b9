"""Exported formats: one module each, one entry here, one converter signature.

A file format's module defines ``convert(precision, job) -> (bytes, metadata)``: the
whole file, its metadata embedded, ready for the verification gate. A folder format (the
C library, the TFLite Micro bundle) is generated from a file that has passed its own
gate; its module defines ``export(job, source, folder, check) -> FolderResult``, which
fills ``folder`` and verifies it, and owns everything else that is only its own:
``missing_requirements()`` (why this machine cannot write it), ``SKIP_ERRORS`` (what
means "this model cannot be written so"), and ``Details``, what it measured and how the
table, the report and the recommendation show it. Registering either is one entry in
:data:`FORMATS`; nothing outside a format's module names it. Modules are imported only
when their format is written or read, so exporting ONNX never imports the TFLite
converter and the other way round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgecnn.records import Fields, JSONObject
from edgecnn.runtime import integrity
from edgecnn.runtime.gate import Scores
from edgecnn.runtime.metadata import ModelMetadata

if TYPE_CHECKING:
    from edgecnn.export.config import ExportConfig


@dataclass
class Job:
    """What every converter gets: the Keras model, how to export, and the shared metadata."""

    model: Any  # a Keras model: TensorFlow ships no types
    config: ExportConfig
    calibration: np.ndarray
    calibration_record: dict[str, Any]
    base: ModelMetadata
    #: Intermediate results shared between formats (the float ONNX graph, say).
    cache: dict[str, bytes] = field(default_factory=dict)
    #: The ``--remedy`` this job's int8 files are made with (edgecnn.export.auto).
    remedy: str = "none"
    #: Layers the int8 ``.tflite`` keeps in float (the ``float-layer`` remedy).
    float_layers: tuple[str, ...] = ()
    #: The validation split (uint8 images, labels) each file's temperature and "unknown"
    #: threshold are fitted on (edgecnn.runtime.confidence); empty when there is none.
    validation: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int64))
    )

    def calibration_summary(self, method: str) -> dict[str, Any]:
        """Where the int8 calibration images came from, for the file's metadata."""
        record = self.calibration_record
        return {**{k: record[k] for k in ("split", "samples", "seed")}, "method": method}


@dataclass(frozen=True)
class Format:
    """One exported format: its module, suffix, precisions and file name."""

    module: str
    suffix: str
    precisions: tuple[str, ...]
    #: A fixed file name; otherwise ``model_<precision><suffix>``.
    file: str | None = None
    #: Chosen with ``--formats``; the others are always written.
    selectable: bool = True
    #: A folder generated from another format's file: that file's (format, precision).
    source: tuple[str, str] | None = None
    #: ``edgecnn.runtime`` can load it (the TFLite Micro bundle runs only inside TFLM).
    runnable: bool = True
    #: A folder format's files that must be there for the folder to be whole.
    contents: tuple[str, ...] = ()

    @property
    def folder(self) -> bool:
        """Whether this format is a folder generated from another file."""
        return self.source is not None

    def file_name(self, precision: str) -> str:
        """``model_int8.tflite`` and friends; a folder format's folder name."""
        return self.file or f"model_{precision}{self.suffix}"

    def load_module(self) -> ModuleType:
        """The format's module (imported now)."""
        return import_module(f"{__name__}.{self.module}")

    def convert(self, precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
        """The file's bytes and metadata (imports the format's module)."""
        result: tuple[bytes, ModelMetadata] = self.load_module().convert(precision, job)
        return result

    def with_metadata(self, data: bytes, meta: ModelMetadata) -> tuple[bytes, ModelMetadata]:
        """A file's bytes with ``meta`` in place of the metadata they hold, sealed again."""
        result: tuple[bytes, ModelMetadata] = self.load_module().with_metadata(data, meta)
        return result

    def export(self, job: Job, source: Path, folder: Path, check: Check) -> FolderResult:
        """A folder format: fill ``folder`` from ``source`` and verify it."""
        result: FolderResult = self.load_module().export(job, source, folder, check)
        return result

    def missing_requirements(self) -> str | None:
        """Why this machine cannot write this format (a compiler, a package), or None."""
        check = getattr(self.load_module(), "missing_requirements", None)
        return None if check is None else check()

    def skip_errors(self) -> tuple[type[Exception], ...]:
        """The exceptions that mean "this model or machine cannot have this format"."""
        errors: tuple[type[Exception], ...] = getattr(self.load_module(), "SKIP_ERRORS", ())
        return errors

    def details_from(self, fields: Fields) -> Details:
        """The format's :class:`Details` as :meth:`Details.to_dict` wrote them.

        Raises:
            edgecnn.records.RecordError: a field the format never writes (named).
        """
        details: Details = self.load_module().Details.from_fields(fields)
        return details


class Details(Protocol):
    """What only one format measures, and how the table, report and recommendation show it."""

    @property
    def title(self) -> str:
        """How the report heads the format's facts ("C99, no dependencies")."""

    def to_dict(self) -> JSONObject:
        """JSON-ready form: the row's ``details``."""

    def table_note(self, file: str) -> str | None:
        """A line under the export table about ``file``, or None."""

    def report_facts(self) -> list[tuple[str, str]]:
        """The report's table of what was measured: (what, value) pairs."""

    def device_facts(self, size_bytes: int) -> list[str]:
        """What the recommendation says of it for a device (flash, RAM), or nothing."""


@dataclass(frozen=True)
class FolderResult:
    """What a folder format's ``export`` measured: the gate's inputs and its own details."""

    scores: Scores
    #: The engine it was verified on (a runtime backend, or the format's own).
    backend: str
    size_bytes: int
    details: Details
    #: Failures beyond the gate's (scores that differ from the reference kernels, say).
    failures: tuple[str, ...] = ()
    latency_us: float | None = None


FORMATS: dict[str, Format] = {
    "tflite": Format("tflite", ".tflite", ("float32", "float16", "dynamic", "int8")),
    "onnx": Format("onnx", ".onnx", ("float32", "int8")),
    # The runtime's numpy backend, for devices without any interpreter wheel.
    "numpy": Format("numpy", ".npz", ("float32",), file="weights.npz", selectable=False),
    # Microcontrollers: generated once the int8 .tflite has passed its gate, from its
    # full-integer form (export/formats/tflite.full_integer_flatbuffer).
    "c": Format(
        "c",
        "",
        ("int8",),
        file="c",
        source=("tflite", "int8"),
        contents=("edgecnn_model.h", "edgecnn_model.c", "README.md"),
    ),
    "tflm": Format(
        "tflm",
        "",
        ("int8",),
        file="tflm",
        source=("tflite", "int8"),
        runnable=False,
        contents=("model_data.h", "model_data.cc", "model_ops.h", "model_info.h", "README.md"),
    ),
}


@dataclass
class Check:
    """What a folder format is verified on: the export's images and references.

    ``images`` are uint8, the test images first (their ``labels``); ``reference`` holds the
    Keras model's probabilities for them; ``source`` is the accepted file whose passing
    the folder waits for (the int8 ``.tflite``; its full-integer form is what is
    generated). ``memo`` keeps results that several formats share (the reference kernels'
    outputs, the full-integer flatbuffer).
    """

    images: np.ndarray
    labels: np.ndarray
    reference: np.ndarray
    source: Path
    #: Results shared between formats, each a different type: keyed by what it is.
    memo: dict[str, Any] = field(default_factory=dict)


def placeholder_metadata(
    base: ModelMetadata, precision: str, quantization: dict[str, Any]
) -> ModelMetadata:
    """A file's metadata with a placeholder digest, for :func:`sealed` to fill in."""
    return dataclasses.replace(
        base,
        precision=precision,
        quantization=quantization,
        integrity={"content_sha256": integrity.PLACEHOLDER},
    )


def sealed(data: bytes, meta: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """The file with its own digest written in, and the metadata that records it."""
    data = integrity.seal(data)
    digest = integrity.content_digest(data) or ""
    return data, dataclasses.replace(meta, integrity={"content_sha256": digest})
