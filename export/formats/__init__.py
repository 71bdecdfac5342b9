"""Exported formats: one module each, one entry here, one converter signature.

A format module defines ``convert(precision, job) -> (bytes, metadata)``: the whole file,
its metadata embedded, ready for the verification gate. Registering it is one entry in
:data:`FORMATS`. Modules are imported only when their format is written, so exporting
ONNX never imports the TFLite converter and the other way round.
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

    def file_name(self, precision: str) -> str:
        """``model_int8.tflite`` and friends."""
        return self.file or f"model_{precision}{self.suffix}"

    def convert(self, precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
        """The file's bytes and metadata (imports the format's module)."""
        module = import_module(f"{__name__}.{self.module}")
        result: tuple[bytes, ModelMetadata] = module.convert(precision, job)
        return result


FORMATS: dict[str, Format] = {
    "tflite": Format("tflite", ".tflite", ("float32", "float16", "dynamic", "int8")),
    "onnx": Format("onnx", ".onnx", ("float32", "int8")),
    # The runtime's numpy backend, for devices without any interpreter wheel.
    "numpy": Format("numpy", ".npz", ("float32",), file="weights.npz", selectable=False),
}


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
