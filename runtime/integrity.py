"""Whether a model file is still the one the exporter verified, byte for byte.

A flipped byte can leave a model loadable while its answers change. Two records catch
that:

* ``content_sha256`` in the metadata embedded in ``.tflite`` and ``.onnx`` files: the
  SHA-256 of the file's own bytes with that digest's 64 characters read as zeros. The
  file thus checks itself, wherever it is copied, without a sidecar. The digest is
  found in the raw bytes, not through the parsed metadata, so damage to the metadata's
  framing is caught too.
* ``file.sha256`` in the ``<file>.json`` sidecar: the SHA-256 of the whole file.

``weights.npz`` records ``weights_sha256`` over its arrays instead (zip members carry
their own CRC, and rewriting the archive would change its bytes).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgecnn.runtime.errors import IntegrityError, ModelError

PLACEHOLDER = "0" * 64
_FIELD = re.compile(rb'"content_sha256":\s*"([0-9a-f]{64})"')
#: How to load a file edited on purpose (never native code: see backends/c.py).
SKIP_HINT = "check_integrity=False (--no-integrity-check) loads it anyway"


def seal(data: bytes) -> bytes:
    """Replace the one placeholder digest in ``data`` by the digest of ``data`` itself.

    Raises:
        ValueError: ``data`` holds no placeholder, or more than one.
    """
    found = [m for m in _FIELD.finditer(data) if m.group(1) == PLACEHOLDER.encode()]
    if len(found) != 1:
        raise ValueError(f"expected one content_sha256 placeholder, found {len(found)}")
    digest = hashlib.sha256(data).hexdigest().encode()
    start, end = found[0].span(1)
    return data[:start] + digest + data[end:]


def content_digest(data: bytes) -> str | None:
    """The embedded ``content_sha256`` of ``data``, or None if it records none."""
    found = _FIELD.findall(data)
    return found[0].decode() if len(found) == 1 else None


def check_content(data: bytes, path: Path) -> bool:
    """Verify the embedded ``content_sha256``; False if the file records none.

    Raises:
        ModelError: the file's bytes do not match their recorded digest.
    """
    found = list(_FIELD.finditer(data))
    if not found:
        return False
    if len(found) > 1:
        raise ModelError(f"{path}: holds {len(found)} content digests; the file is damaged")
    start, end = found[0].span(1)
    zeroed = data[:start] + PLACEHOLDER.encode() + data[end:]
    if hashlib.sha256(zeroed).hexdigest() != found[0].group(1).decode():
        raise IntegrityError(
            f"{path}: its bytes do not match the SHA-256 recorded inside it, so the file is "
            f"damaged or was edited; re-export it ({SKIP_HINT})"
        )
    return True


def check_file(data: bytes, expected: str, path: Path, sidecar: Path) -> None:
    """Compare the whole file's SHA-256 with the one its sidecar records.

    Raises:
        ModelError: they differ.
    """
    if hashlib.sha256(data).hexdigest() != expected:
        raise IntegrityError(
            f"{path}: its SHA-256 differs from the one in {sidecar.name}, so the file is "
            f"damaged, was edited, or the sidecar belongs to another export ({SKIP_HINT})"
        )


def weights_digest(arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> str:
    """SHA-256 over the named arrays: each one's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for key in keys:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_weights(arrays: Mapping[str, np.ndarray], keys: Sequence[str], expected: str,
                  path: Path) -> None:  # fmt: skip
    """Compare the arrays' digest with the one recorded in the metadata.

    Raises:
        ModelError: they differ.
    """
    if weights_digest(arrays, keys) != expected:
        raise IntegrityError(
            f"{path}: its weights do not match the SHA-256 recorded in its metadata, so the "
            f"file is damaged or was edited; re-export it ({SKIP_HINT})"
        )
