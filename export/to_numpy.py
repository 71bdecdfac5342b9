"""Keras -> ``weights.npz`` for the runtime's numpy backend (layout in its module docstring)."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from edgecnn.runtime import integrity
from edgecnn.runtime.metadata import ModelMetadata
from edgecnn.runtime.numpy_backend import WEIGHT_KEYS


def convert(model: Any, base: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """The model's float32 weights as the bytes of an ``.npz`` archive, and their metadata.

    The metadata inside records the SHA-256 of the weights (the archive's bytes cannot
    hold their own digest: zip members carry a CRC).
    """
    arrays: dict[str, np.ndarray] = {}
    for key in WEIGHT_KEYS:
        layer, kind = key.split(".")
        weights = model.get_layer(layer).get_weights()
        arrays[key] = np.asarray(weights[0 if kind == "kernel" else 1], dtype=np.float32)
    digest = integrity.weights_digest(arrays, WEIGHT_KEYS)
    meta = dataclasses.replace(base, integrity={"weights_sha256": digest})
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(meta.to_json()), **arrays)
    return buffer.getvalue(), meta
