"""The ``<file>.reference.npz`` that ``edgecnn verify`` checks an exported file against.

The exporter writes one beside every file it keeps: a few hundred test images, their
classes, the Keras model's probabilities and the exporting machine's for that file, and
the gate the file passed (:meth:`edgecnn.runtime.gate.Gate.to_dict`; references written
before it have no ``max_accuracy_drop_pp``). It is a file like any other, damaged or made
by hand, so :func:`read_reference` checks everything before it is used: the archive is
the one np.savez writes, each array has the dtype and size an export writes, the
probabilities are finite rows of one class count summing to 1, the labels are in range,
and the gate is made of finite numbers and short text.
"""

from __future__ import annotations

import io
import json
import math
import platform
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from edgecnn import __version__
from edgecnn._files import read_regular_file
from edgecnn.runtime.contract import MAX_CLASSES, MIN_CLASSES
from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.loading import SUM_TOLERANCE
from edgecnn.runtime.npy import ARCHIVE_ERRORS, NpyError, read_member

#: Suffix of the reference written beside each exported file.
REFERENCE_SUFFIX = ".reference.npz"
#: Test images in a reference (fewer for large inputs: at most MAX_PIXEL_BYTES of pixels).
REFERENCE_IMAGES = 500
MAX_PIXEL_BYTES = 4 * 1024 * 1024
#: What a reference may weigh when read (what the exporter writes is a few MiB at most).
MAX_REFERENCE_BYTES = 16 * 1024 * 1024
#: Array name -> (numpy kinds it may hold, the most bytes it may inflate to).
ARRAYS = {
    "images": ("u", MAX_PIXEL_BYTES + 4096),
    "labels": ("iu", 8 * REFERENCE_IMAGES + 4096),
    "keras": ("f", 8 * REFERENCE_IMAGES * MAX_CLASSES + 4096),
    "exported": ("f", 8 * REFERENCE_IMAGES * MAX_CLASSES + 4096),
    "meta": ("U", 64 * 1024),
}
SHA256_TEXT = re.compile(r"[0-9a-f]{64}")
_ZIP_END = b"PK\x05\x06"


def reference_path(model: str | Path) -> Path:
    """``model_int8.tflite`` -> ``model_int8.tflite.reference.npz``."""
    path = Path(model)
    return path.with_name(path.name.rstrip("/") + REFERENCE_SUFFIX)


def reference_count(image_shape: tuple[int, ...], available: int) -> int:
    """How many images a reference holds for inputs of ``image_shape``."""
    per_image = int(np.prod(image_shape))
    return max(1, min(available, REFERENCE_IMAGES, MAX_PIXEL_BYTES // per_image))


def reference_bytes(images: np.ndarray, labels: np.ndarray, keras: np.ndarray,
                    exported: np.ndarray, gate: dict[str, Any]) -> bytes:  # fmt: skip
    """The ``.reference.npz`` document for one exported file."""
    meta = {
        **gate,
        "exported_on": f"{platform.system()} {platform.machine()}",
        "edgecnn_version": __version__,
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=np.ascontiguousarray(images, dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        keras=np.asarray(keras, dtype=np.float32),
        exported=np.asarray(exported, dtype=np.float32),
        meta=np.array(json.dumps(meta, allow_nan=False)),
    )
    return buffer.getvalue()


def read_reference(path: Path) -> dict[str, Any]:
    """The arrays and the gate of a reference, each checked before it is read.

    Raises:
        ModelError: missing, not a reference, damaged, or holding what no export writes.
    """
    data = read_regular_file(path, MAX_REFERENCE_BYTES, ModelError, "a reference file")
    # np.savez writes a plain zip: five members, no comment, so its end record closes it.
    if data[-22:-18] != _ZIP_END or int.from_bytes(data[-12:-10], "little") > len(ARRAYS):
        raise ModelError(f"{path}: not an edgecnn reference (not the archive np.savez writes)")
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            for key, (kinds, limit) in ARRAYS.items():
                info = members.get(f"{key}.npy")
                if info is None:
                    raise ModelError(f"{path}: not an edgecnn reference (no {key})")
                if info.file_size > limit:
                    raise ModelError(f"{path}: its {key} array is {info.file_size:,} bytes; "
                                     f"no export writes more than {limit:,}")  # fmt: skip
                with archive.open(info) as stream:
                    try:
                        out[key] = read_member(stream, info.file_size, limit, kinds)
                    except NpyError as e:
                        raise ModelError(f"{path}: its {key} array: {e}") from None
        meta = json.loads(str(out["meta"]), parse_constant=_no_constant)
    except ModelError:
        raise
    except ARCHIVE_ERRORS as e:  # NpyError is a ValueError
        raise ModelError(f"{path}: not a readable reference ({type(e).__name__}: {e})") from None
    problem = _array_problem(out) or _gate_problem(meta)
    if problem:
        raise ModelError(f"{path}: {problem}; not a reference an export writes")
    out["meta"] = meta
    return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON has")


def _array_problem(ref: dict[str, Any]) -> str | None:
    """What makes the arrays of a reference impossible, or None."""
    images, labels, keras, exported = (ref[k] for k in ("images", "labels", "keras", "exported"))
    n = len(images) if images.ndim else 0
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or n > REFERENCE_IMAGES:
        return f"its images are {images.dtype} of shape {images.shape}, not up to " \
               f"{REFERENCE_IMAGES} uint8 pictures"  # fmt: skip
    if labels.shape != (n,):
        return f"it has {n} images but labels of shape {labels.shape}"
    for name, probs in (("Keras", keras), ("exported", exported)):
        if probs.ndim != 2 or len(probs) != n or not MIN_CLASSES <= probs.shape[1] <= MAX_CLASSES:
            return f"its {name} probabilities have shape {probs.shape}, not ({n}, classes)"
        if probs.shape[1] != keras.shape[1]:
            return f"its Keras and exported probabilities have {keras.shape[1]} and " \
                   f"{probs.shape[1]} classes"  # fmt: skip
        rows = probs.astype(np.float64)
        if not np.isfinite(rows).all():
            return f"its {name} probabilities hold NaN or infinity"
        sums = rows.sum(axis=1)
        if (
            rows.min() < 0
            or rows.max() > 1 + SUM_TOLERANCE
            or np.abs(sums - 1).max() > SUM_TOLERANCE
        ):
            return f"its {name} probabilities are not rows in [0, 1] summing to 1 (sums " \
                   f"{sums.min():.3g}..{sums.max():.3g})"  # fmt: skip
    if labels.min() < 0 or labels.max() >= keras.shape[1]:
        return f"its labels run {labels.min()}..{labels.max()}, not 0..{keras.shape[1] - 1}"
    return None


def _gate_problem(meta: Any) -> str | None:
    """What makes a reference's gate impossible, or None."""
    if not isinstance(meta, dict):
        return "its gate is not a JSON object"
    agreement = meta.get("min_agreement")
    if not is_number(agreement) or not 0 <= agreement <= 1.01:
        return f"its gate's min_agreement is {agreement!r:.40}, not a fraction in [0, 1]"
    limit = meta.get("max_prob_diff")
    if limit is not None and (not is_number(limit) or limit < 0):
        return f"its gate's max_prob_diff is {limit!r:.40}, not a number >= 0"
    drop = meta.get("max_accuracy_drop_pp")  # absent from references before the shared gate
    if drop is not None and (not is_number(drop) or not 0 <= drop <= 100):
        return f"its gate's max_accuracy_drop_pp is {drop!r:.40}, not 0..100 percentage points"
    for key in ("file_sha256", "source_sha256"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) and SHA256_TEXT.fullmatch(value)):
            return f"its {key} is {value!r:.40}, not a SHA-256"
    for key in ("file", "precision", "backend", "exported_on", "edgecnn_version"):
        value = meta.get(key)
        if value is not None and not _short_text(value):
            return f"its {key} is {value!r:.40}, not a short line of text"
    return None


def is_number(value: Any) -> TypeGuard[float]:
    """A finite int or float (not a bool): what a gate's numbers must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 200
        and not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value)
    )
