"""Names the tests share: where the small models are, which files an export writes."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgecnn.export.config import ExportConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
#: Models made by tools/make_test_models.py: every format, small, sealed, with sidecars.
TINY = DATA / "tiny"
TINY_FILES = (
    "model_float32.tflite",
    "model_int8.tflite",
    "model_float32.onnx",
    "model_int8.onnx",
    "weights.npz",
)
#: A picture of Fashion-MNIST test image 0, an ankle boot, and the same as an array.
PICTURE = DATA / "ankle_boot.png"
ARRAY = DATA / "ankle_boot.npy"
#: What the session's export (and edgecnn run) writes, in order.
EXPORTED_FILES = tuple(ExportConfig(int8=True, fp16=True, dynamic=True).file_names())


def source_copy(folder: Path) -> Path:
    """The checkout as git would clone it, without build leftovers, caches or the venv.

    Building from a copy leaves no build/ or *.egg-info in the checkout.
    """
    src = folder / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,  # edgecnn/runtime and friends stay links to the stage folders
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "*.egg-info", "build", "__pycache__", ".*_cache"
        ),
    )
    return src
