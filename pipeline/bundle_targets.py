"""The kinds of device ``edgecnn bundle`` packs for: CPU, Pythons and interpreter wheels.

Each target names the interpreter pip installs for each model format; a file whose
format has none there, or a Python the interpreter publishes no wheel for, falls back to
``weights.npz`` on the runtime's numpy backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The numpy backend's file: the fallback where no interpreter wheel exists.
NUMPY_FILE = "weights.npz"


@dataclass(frozen=True)
class BundleTarget:
    """A kind of device: its CPU, its Pythons, and the interpreter wheels it can get."""

    key: str
    name: str
    machine: str | None  # platform.machine() there; None: any (pure-Python wheels only)
    pythons: tuple[str, ...]
    #: Model format -> the interpreter's pip name.
    interpreters: dict[str, str]
    #: numpy from the OS (Debian's python3-numpy) instead of a wheel: no 32-bit ARM wheels.
    system_numpy: bool
    #: pipeline.recommend's target whose file the bundle takes by default.
    recommend_key: str
    notes: str
    #: The oldest glibc the target's systems have: wheels may need no newer one.
    glibc_minor: int = 36


TARGETS = {
    t.key: t
    for t in (
        BundleTarget(
            "pi64", "Raspberry Pi OS 64-bit (bookworm, trixie)", "aarch64", ("3.11", "3.13"),
            {"tflite": "ai-edge-litert", "onnx": "onnxruntime"}, False, "pi64",
            "bookworm has Python 3.11, trixie 3.13; both get LiteRT and onnxruntime wheels.",
        ),
        BundleTarget(
            "pi32", "Raspberry Pi OS 32-bit (bookworm, trixie)", "armv7l", ("3.11", "3.13"),
            {"tflite": "tflite-runtime"}, True, "pi32",
            "numpy is Debian's (sudo apt install python3-numpy): no 32-bit ARM wheels exist. "
            "tflite-runtime 2.14 has a wheel for bookworm's Python 3.11 only; on trixie "
            "(3.13) the runtime's numpy backend runs weights.npz.",
        ),
        BundleTarget(
            "linux-x86", "64-bit x86 Linux (Debian 12+, Ubuntu 22.04+)", "x86_64",
            ("3.10", "3.11", "3.12", "3.13"),
            {"tflite": "ai-edge-litert", "onnx": "onnxruntime"}, False, "here",
            "Python 3.10 to 3.13; glibc 2.35 or newer.", 35,
        ),
        BundleTarget(
            "generic", "any system with Python 3.10+", None, (),
            {}, False, "pi32",
            "edgecnn's wheel and the model only: install.sh lets pip take numpy and Typer "
            "from the package index, and the venv sees the system's packages, so an "
            "interpreter installed there (tflite-runtime, ai-edge-litert, onnxruntime) is "
            "used; without one the numpy backend runs weights.npz.",
        ),
    )
}  # fmt: skip


def format_of(name: str) -> str:
    """The model format a bundled file is: its suffix, or ``numpy`` for weights.npz."""
    return "numpy" if name == NUMPY_FILE else Path(name).suffix.lstrip(".")
