"""The sample picture a bundle carries: one real test picture its model gets right.

After install.sh, ``edgecnn predict sample-ankle-boot.png`` shows the model at work on the
device before any picture of the user's is at hand, and the name says what it should
answer. The picture comes from the model's verify reference, which holds the run's own
test pictures with their classes and the exported file's answers: the one picked is the
one the bundled file (and Keras) put in its class with the most confidence.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np

#: The bundle's folder for it.
SAMPLE_DIR = "sample"


def write_sample(model: Path, labels: tuple[str, ...], dest: Path) -> str | None:
    """Write ``dest/sample-<class>.png`` from ``model``'s verify reference; its name.

    None when the reference holds no picture that both the model and Keras classify
    correctly, or is not one a bundle reads (``copy_checked`` has read it already).
    """
    from edgecnn.runtime.errors import ModelError
    from edgecnn.runtime.verify import read_reference, reference_path

    try:
        ref = read_reference(reference_path(model))
    except ModelError:
        return None
    index = pick(ref["images"], ref["labels"], ref["keras"], ref["exported"])
    if index is None:
        return None
    label = int(ref["labels"][index])
    name = f"sample-{slug(labels[label] if label < len(labels) else str(label))}.png"
    dest.mkdir(exist_ok=True)
    with open(dest / name, "xb") as f:
        f.write(png_bytes(ref["images"][index]))
    return name


def pick(
    images: np.ndarray, labels: np.ndarray, keras: np.ndarray, exported: np.ndarray
) -> int | None:
    """The picture both answers classify right, the exported file most confidently."""
    right = (exported.argmax(axis=1) == labels) & (keras.argmax(axis=1) == labels)
    if images.ndim == 4 and images.shape[-1] not in (1, 3) or not right.any():
        return None
    confidence = np.where(right, exported[np.arange(len(labels)), labels], -1.0)
    return int(confidence.argmax())


def slug(label: str) -> str:
    """A class name as a file name's part: ``Ankle boot`` -> ``ankle-boot``."""
    text = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    return text[:40] or "class"


def png_bytes(image: np.ndarray) -> bytes:
    """A plain PNG of a uint8 picture: ``(H, W)`` or ``(H, W, 1)`` grey, ``(H, W, 3)`` colour."""
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
