"""What an exported model says about itself: labels, input layout, preprocessing, quantization.

The exporter embeds one JSON document in every file (a TFLite metadata buffer named
``edgecnn``, an ONNX ``metadata_props`` entry ``edgecnn``, a ``metadata`` array inside
``weights.npz``) and writes the same JSON beside it as ``<file>.json``. Either is enough.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.labels import FASHION_MNIST_LABELS

METADATA_KEY = "edgecnn"
SCHEMA_VERSION = 1


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
    input_shape: tuple[int, int, int] = (28, 28, 1)
    layout: str = "NHWC"
    input_name: str = "image"
    output_name: str = "probabilities"
    pixel_scale: float = 1 / 255
    light_on_dark: bool = True
    precision: str = "float32"
    source_sha256: str | None = None
    edgecnn_version: str | None = None
    quantization: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the one written into model files."""
        return {
            "format": "edgecnn-model",
            "schema": SCHEMA_VERSION,
            "labels": list(self.labels),
            "dataset": self.dataset,
            "input": {
                "name": self.input_name,
                "shape": list(self.input_shape),
                "layout": self.layout,
            },
            "output": {"name": self.output_name, "kind": "probabilities"},
            "preprocessing": {
                "pixel_scale": self.pixel_scale,
                "range": [0.0, 1.0],
                "light_on_dark": self.light_on_dark,
            },
            "precision": self.precision,
            "quantization": self.quantization,
            "source_sha256": self.source_sha256,
            "edgecnn_version": self.edgecnn_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Parse :meth:`to_dict`'s form.

        Raises:
            ModelError: it is not edgecnn metadata, or fields are missing.
        """
        try:
            if data.get("format") != "edgecnn-model":
                raise ModelError("metadata is not edgecnn's (no format: edgecnn-model)")
            pre = data.get("preprocessing", {})
            if len(data["labels"]) != 10 or tuple(data["input"]["shape"]) != (28, 28, 1):
                raise ModelError("metadata must name 10 labels and a (28, 28, 1) input")
            return cls(
                labels=tuple(data["labels"]),
                dataset=data.get("dataset", "fashion"),
                input_shape=tuple(data["input"]["shape"]),  # type: ignore[arg-type]
                layout=data["input"].get("layout", "NHWC"),
                input_name=data["input"].get("name", "image"),
                output_name=data.get("output", {}).get("name", "probabilities"),
                pixel_scale=float(pre.get("pixel_scale", 1 / 255)),
                light_on_dark=bool(pre.get("light_on_dark", True)),
                precision=data.get("precision", "float32"),
                source_sha256=data.get("source_sha256"),
                edgecnn_version=data.get("edgecnn_version"),
                quantization=dict(data.get("quantization") or {}),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ModelError(f"incomplete or invalid edgecnn metadata ({e})") from None

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def parse_metadata(raw: bytes | str, where: str) -> ModelMetadata:
    """Parse JSON metadata read from ``where`` (named in errors)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{where}: metadata is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where}: metadata is not a JSON object")
    return ModelMetadata.from_dict(data)


def sidecar_path(model_path: Path) -> Path:
    """``model_int8.tflite`` -> ``model_int8.tflite.json``."""
    return model_path.with_name(model_path.name + ".json")


def read_sidecar(model_path: Path) -> ModelMetadata | None:
    """The metadata in ``<file>.json`` beside the model, if there is one."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}") from None
    return parse_metadata(raw, str(path))


def resolve_metadata(embedded: bytes | str | None, model_path: Path) -> ModelMetadata:
    """Embedded metadata if the file has it, else the sidecar, else Fashion-MNIST defaults."""
    if embedded:
        return parse_metadata(embedded, str(model_path))
    return read_sidecar(model_path) or ModelMetadata()
