"""Exported formats: one module each, one entry here, one converter signature.

A file format's module defines ``convert(precision, job) -> (bytes, metadata)``: the
whole file, its metadata embedded, ready for the verification gate. A folder format (the
C library, the TFLite Micro bundle) is generated from a file that has passed its own
gate; its module defines ``export(job, source, folder, check) -> dict``, which fills
``folder`` and verifies it, returning the report row's measurements. Registering either
is one entry in :data:`FORMATS`. Modules are imported only when their format is
written, so exporting ONNX never imports the TFLite converter and the other way round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import numpy as np

from edgecnn.runtime import integrity
from edgecnn.runtime.metadata import ModelMetadata


@dataclass
class Job:
    """What every converter gets: the Keras model, how to export, and the shared metadata."""

    model: Any
    config: Any  # ExportConfig
    calibration: np.ndarray
    calibration_record: dict[str, Any]
    base: ModelMetadata
    #: Intermediate results shared between formats (the float ONNX graph, say).
    cache: dict[str, bytes] = field(default_factory=dict)

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

    def load_module(self) -> Any:
        """The format's module (imported now)."""
        return import_module(f"{__name__}.{self.module}")

    def convert(self, precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
        """The file's bytes and metadata (imports the format's module)."""
        result: tuple[bytes, ModelMetadata] = self.load_module().convert(precision, job)
        return result


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
    source: Any  # Path
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
