"""Keras -> ``weights.npz`` for the runtime's numpy backend (layout in its module docstring)."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from edgecnn.export.formats import Job
from edgecnn.runtime import integrity
from edgecnn.runtime.backends.numpy import WEIGHT_KEYS
from edgecnn.runtime.metadata import ModelMetadata


def convert(precision: str, job: Job) -> tuple[bytes, ModelMetadata]:
    """The model's float32 weights as the bytes of an ``.npz`` archive, and their metadata.

    The metadata inside records the SHA-256 of the weights (the archive's bytes cannot
    hold their own digest: zip members carry a CRC).
    """
    return weights_archive(job.model, dataclasses.replace(job.base, precision=precision))


def with_metadata(data: bytes, meta: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """The archive ``data`` with ``meta`` in place of its metadata.

    The integrity record is the weights' own digest, so it stands.
    """
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if name != "metadata"}
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(meta.to_json()), **arrays)
    return buffer.getvalue(), meta


def weights_archive(model: Any, base: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """The ``.npz`` bytes of ``model``'s weights with ``base`` and their digest inside."""
    arrays: dict[str, np.ndarray] = {}
    for key in WEIGHT_KEYS:
        layer, kind = key.split(".")
        weights = model.get_layer(layer).get_weights()
        arrays[key] = np.asarray(weights[0 if kind == "kernel" else 1], dtype=np.float32)
    digest = integrity.weights_digest(arrays, WEIGHT_KEYS)
    meta = dataclasses.replace(base, integrity={"weights_sha256": digest})
    buffer = io.BytesIO()
    shape = np.array(model.input_shape[1:], dtype=np.int32)
    np.savez(buffer, metadata=np.array(meta.to_json()), input_shape=shape, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue(), meta
