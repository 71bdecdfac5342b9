"""What an exported model says about itself: labels, input layout, preprocessing, quantization.

The exporter embeds one JSON document in every file (a TFLite metadata buffer named
``edgecnn``, an ONNX ``metadata_props`` entry ``edgecnn``, a ``metadata`` array inside
``weights.npz``) and writes the same JSON beside it as ``<file>.json``, which also
records the whole file's SHA-256. Either is enough to describe the model.

Metadata comes from files a user may have edited or damaged, so every field is checked:
labels must be distinct, printable strings; preprocessing the runtime cannot honour is
refused rather than ignored.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from edgecnn._files import read_regular_file
from edgecnn.records import JSONObject
from edgecnn.runtime.confidence import Confidence
from edgecnn.runtime.contract import (
    DEFAULT_INPUT_SHAPE,
    INPUT_NAME,
    LAYOUT,
    OUTPUT_NAME,
    PIXEL_SCALE,
)
from edgecnn.runtime.errors import SIDECAR_MAX_BYTES, ModelError
from edgecnn.runtime.labels import FASHION_MNIST_LABELS, check_class_names

METADATA_KEY = "edgecnn"
#: 2: files carry an integrity record (``integrity``) that the runtime verifies.
SCHEMA_VERSION = 2
MAX_LABEL_CHARS = 100
MAX_CLASSES = 1000
OUTPUT_KINDS = ("probabilities", "logits")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Quantization:
    """An int8 tensor's affine mapping: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class ModelMetadata:
    """The self-description every edgecnn export carries."""

    labels: tuple[str, ...] = FASHION_MNIST_LABELS
    dataset: str = "fashion"
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE
    layout: str = LAYOUT
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    output_kind: str = "probabilities"
    pixel_scale: float = PIXEL_SCALE
    light_on_dark: bool = True
    precision: str = "float32"
    source_sha256: str | None = None
    edgecnn_version: str | None = None
    quantization: dict[str, Any] = field(default_factory=dict)
    #: ``{"content_sha256": ...}`` (TFLite, ONNX) or ``{"weights_sha256": ...}`` (npz).
    integrity: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    #: Temperature and "unknown" threshold fitted for this file (edgecnn.runtime.confidence);
    #: None for a file exported before edgecnn had them, or by hand.
    confidence: Confidence | None = None

    def to_dict(self) -> JSONObject:
        """JSON-ready form, the one written into model files."""
        document: JSONObject = {
            "format": "edgecnn-model",
            "schema": self.schema,
            "labels": list(self.labels),
            "dataset": self.dataset,
            "input": {
                "name": self.input_name,
                "shape": list(self.input_shape),
                "layout": self.layout,
            },
            "output": {"name": self.output_name, "kind": self.output_kind},
            "preprocessing": {
                "pixel_scale": self.pixel_scale,
                "range": [0.0, 1.0],
                "light_on_dark": self.light_on_dark,
            },
            "precision": self.precision,
            "quantization": self.quantization,
            "source_sha256": self.source_sha256,
            "edgecnn_version": self.edgecnn_version,
            "integrity": self.integrity,
        }
        # Optional: a runtime from before calibration reads the rest and ignores it.
        if self.confidence is not None:
            document["confidence"] = self.confidence.to_dict()
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ModelMetadata:
        """Parse and check :meth:`to_dict`'s form.

        Raises:
            ModelError: it is not edgecnn metadata, or a field is missing or impossible.
        """
        try:
            return _parse(data)
        except ModelError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ModelError(
                f"incomplete or invalid edgecnn metadata ({type(e).__name__}: {e})"
            ) from None

    def to_json(self) -> str:
        """Indented JSON text (strict: no NaN)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _parse(data: Mapping[str, object]) -> ModelMetadata:
    if not isinstance(data, dict) or data.get("format") != "edgecnn-model":
        raise ModelError("metadata is not edgecnn's (no format: edgecnn-model)")
    schema = data.get("schema", 1)
    if type(schema) is not int or not 1 <= schema <= SCHEMA_VERSION:
        raise ModelError(f"metadata schema {schema!r} is not one this edgecnn reads (1..2)")
    io_in, io_out = _object(data, "input"), _object(data, "output", {})
    pre = _object(data, "preprocessing", {})
    scale = pre.get("pixel_scale", PIXEL_SCALE)
    if not isinstance(scale, (int, float)) or not math.isclose(scale, PIXEL_SCALE, rel_tol=1e-6):
        raise ModelError(
            f"metadata asks for pixel_scale {scale!r}; this runtime feeds pixels / 255 only"
        )
    light_on_dark = pre.get("light_on_dark", True)
    if not isinstance(light_on_dark, bool):
        raise ModelError(f"metadata light_on_dark must be true or false, got {light_on_dark!r}")
    kind = io_out.get("kind", "probabilities")
    if kind not in OUTPUT_KINDS:
        raise ModelError(f"metadata output kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    layout = io_in.get("layout", LAYOUT)
    if layout != LAYOUT:
        raise ModelError(f"metadata input layout {layout!r} is not NHWC")
    integrity = _object(data, "integrity", {})
    for key, value in integrity.items():
        if key not in ("content_sha256", "weights_sha256") or not _is_digest(value):
            raise ModelError(f"metadata integrity record {key!r}: {value!r} is not a SHA-256")
    source_sha256 = data.get("source_sha256")
    quantization = data.get("quantization") or {}
    if not isinstance(quantization, dict):
        raise ModelError("metadata quantization must be an object")
    confidence = data.get("confidence")
    return ModelMetadata(
        labels=check_labels(data["labels"]),
        dataset=_text(data.get("dataset", "fashion"), "dataset"),
        input_shape=_shape(io_in["shape"]),
        layout=layout,
        input_name=_text(io_in.get("name", INPUT_NAME), "input name"),
        output_name=_text(io_out.get("name", OUTPUT_NAME), "output name"),
        output_kind=kind,
        pixel_scale=PIXEL_SCALE,
        light_on_dark=light_on_dark,
        precision=_text(data.get("precision", "float32"), "precision"),
        source_sha256=source_sha256 if _is_digest(source_sha256) else None,
        edgecnn_version=_optional_text(data.get("edgecnn_version")),
        quantization=quantization,
        integrity=dict(integrity),
        schema=schema,
        confidence=None if confidence is None else Confidence.from_dict(confidence),
    )


def _object(
    data: Mapping[str, object], key: str, default: dict[str, Any] | None = None
) -> dict[str, Any]:
    value = data.get(key, default) if default is not None else data[key]
    if not isinstance(value, dict):
        raise ModelError(f"metadata {key} must be an object, got {type(value).__name__}")
    return value


def _is_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _text(value: object, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or _unprintable(value):
        raise ModelError(f"metadata {what} must be a short printable string, got {value!r:.80}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value, "edgecnn_version")


def _unprintable(text: str) -> bool:
    """Control characters (newlines, terminal escapes) or line separators."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def check_labels(labels: object) -> tuple[str, ...]:
    """Class names: a list of 2 or more distinct, printable strings of at most 100 characters.

    Raises:
        ModelError: anything else (a bare string, numbers, escapes, duplicates).
    """
    if not isinstance(labels, (list, tuple)):
        raise ModelError(f"metadata labels must be a list of strings, got {type(labels).__name__}")
    if not 2 <= len(labels) <= MAX_CLASSES:
        raise ModelError(f"metadata names {len(labels)} labels; a model has 2 to {MAX_CLASSES}")
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ModelError(f"metadata labels must be non-empty strings, found {label!r:.40}")
        if len(label) > MAX_LABEL_CHARS:
            raise ModelError(
                f"metadata label {label[:20]!r}... is {len(label)} characters; at most "
                f"{MAX_LABEL_CHARS}"
            )
        if _unprintable(label):
            raise ModelError(f"metadata label {label!r:.60} holds control characters")
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: bytes of a name in another encoding
            raise ModelError(
                f"metadata label {label!r:.60} is not text (bytes in another encoding than UTF-8?)"
            ) from None
    if len(set(labels)) != len(labels):
        raise ModelError("metadata labels repeat a class name")
    return check_class_names(labels, ModelError, "metadata label")


def _shape(shape: object) -> tuple[int, int, int]:
    if not (
        isinstance(shape, (list, tuple))
        and len(shape) == 3
        and all(type(d) is int and 1 <= d <= 4096 for d in shape)
    ):
        raise ModelError(
            f"metadata input shape must be [height, width, channels], got {shape!r:.60}"
        )
    return (shape[0], shape[1], shape[2])


def parse_metadata(raw: bytes | str, where: str) -> ModelMetadata:
    """Parse JSON metadata read from ``where`` (named in every error)."""
    if len(raw) > SIDECAR_MAX_BYTES:
        raise ModelError(f"{where}: metadata of {len(raw):,} bytes is implausibly large")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{where}: metadata is not valid JSON ({e})") from None
    except RecursionError:
        raise ModelError(f"{where}: metadata is nested too deeply to be edgecnn's") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where}: metadata is not a JSON object")
    try:
        return ModelMetadata.from_dict(data)
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None


def sidecar_path(model_path: Path) -> Path:
    """``model_int8.tflite`` -> ``model_int8.tflite.json``."""
    return model_path.with_name(model_path.name + ".json")


@dataclass(frozen=True)
class Sidecar:
    """``<file>.json``: the model's metadata and, from exports, the file's own SHA-256."""

    metadata: ModelMetadata
    file_sha256: str | None


def read_sidecar(model_path: Path) -> Sidecar | None:
    """The sidecar beside the model, if there is one.

    Raises:
        ModelError: it exists but is unreadable or invalid.
    """
    path = sidecar_path(model_path)
    if not path.exists():
        return None
    raw = read_regular_file(path, SIDECAR_MAX_BYTES, ModelError, "a metadata file")
    metadata = parse_metadata(raw, str(path))
    record = json.loads(raw).get("file")
    digest = record.get("sha256") if isinstance(record, dict) else None
    if record is not None and not _is_digest(digest):
        raise ModelError(f"{path}: its file record has no valid sha256")
    return Sidecar(metadata, digest)
