"""Keras -> ``weights.npz`` for the runtime's numpy backend (layout in its module docstring)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from edgecnn.runtime.numpy_backend import WEIGHT_KEYS


def convert(model: Any, metadata_json: str) -> bytes:
    """The model's float32 weights and metadata as the bytes of an ``.npz`` archive."""
    arrays: dict[str, np.ndarray] = {}
    for key in WEIGHT_KEYS:
        layer, kind = key.split(".")
        weights = model.get_layer(layer).get_weights()
        arrays[key] = np.asarray(weights[0 if kind == "kernel" else 1], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(metadata_json), **arrays)
    return buffer.getvalue()
