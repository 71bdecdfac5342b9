"""The kinds of device a model is exported for: the one registry of them.

Each :class:`Device` says which exported formats load there (the run's recommendation
picks among those) and, for the kinds ``edgecnn bundle`` packs for, the CPU, the Pythons
and the interpreter pip installs for each model format. A file whose format has no
interpreter there, or a Python the interpreter publishes no wheel for, falls back to
``weights.npz`` on the runtime's numpy backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.runtime.backends import INTERPRETERS

#: The pip names of the interpreters a bundle carries, from the runtime's registry.
LITERT = INTERPRETERS["litert"].distribution
TFLITE_RUNTIME = INTERPRETERS["tflite"].distribution
ONNXRUNTIME = INTERPRETERS["onnxruntime"].distribution

#: The numpy backend's file: the fallback where no interpreter wheel exists.
NUMPY_FILE = "weights.npz"


@dataclass(frozen=True)
class Device:
    """A kind of device: what loads there, and what a bundle for it carries."""

    key: str
    #: How the run's recommendations name it.
    name: str
    #: The exported formats that load there.
    formats: tuple[str, ...]
    #: Why they do, as the recommendation says it ("": nothing to say).
    why_loadable: str = ""
    #: Listed in the run's recommendations.
    recommended: bool = True
    # --- edgecnn bundle --target: a device with ``systems`` is one ---------------------
    #: The systems the bundle installs on, as its README names them.
    systems: str = ""
    machine: str | None = None  # platform.machine() there; None: any (pure-Python wheels only)
    pythons: tuple[str, ...] = ()
    #: Model format -> the interpreter's pip name.
    interpreters: dict[str, str] = field(default_factory=dict)
    #: numpy from the OS (Debian's python3-numpy) instead of a wheel: no 32-bit ARM wheels.
    system_numpy: bool = False
    notes: str = ""
    #: The oldest glibc the target's systems have: wheels may need no newer one.
    glibc_minor: int = 36
    #: Bundled on a machine with this CPU, the file is picked as for this machine: by the
    #: speeds its bench stage measured.
    speed_measured_here: bool = False


#: This machine: the file measured fastest here (see pipeline.recommend).
HERE = Device("here", "this machine", ("tflite", "onnx", "numpy"))

DEVICES = (
    HERE,
    Device(
        "pi64", "Raspberry Pi, 64-bit OS", ("tflite", "onnx", "numpy"),
        "LiteRT and onnxruntime publish aarch64 wheels",
        systems="Raspberry Pi OS 64-bit (bookworm, trixie)", machine="aarch64",
        pythons=("3.11", "3.13"),
        interpreters={"tflite": LITERT, "onnx": ONNXRUNTIME},
        notes="Raspberry Pi OS bookworm has Python 3.11, trixie 3.13.",
    ),
    Device(
        "pi32", "Raspberry Pi, 32-bit OS", ("tflite", "numpy"),
        "tflite-runtime 2.14 on bookworm (no wheel for trixie's Python 3.13: use "
        "weights.npz there)",
        systems="Raspberry Pi OS 32-bit (bookworm, trixie)", machine="armv7l",
        pythons=("3.11", "3.13"), interpreters={"tflite": TFLITE_RUNTIME},
        system_numpy=True,
        notes="numpy is Debian's (sudo apt install python3-numpy): no 32-bit ARM wheels "
        "exist; so is Pillow, for pictures and videos (sudo apt install python3-pil).",
    ),
    Device("mobile", "Android / iOS app", ("tflite",), "LiteRT is the phones' runtime"),
    Device("mcu", "microcontroller", ("c", "tflm"), "C99, no operating system needed"),
    Device(
        "linux-x86", "64-bit x86 Linux", ("tflite", "onnx", "numpy"), recommended=False,
        systems="64-bit x86 Linux (Debian 12+, Ubuntu 22.04+)", machine="x86_64",
        pythons=("3.10", "3.11", "3.12", "3.13"),
        interpreters={"tflite": LITERT, "onnx": ONNXRUNTIME},
        notes="Its wheels need glibc 2.35 or newer.", glibc_minor=35,
        speed_measured_here=True,
    ),
    Device(
        "generic", "any system with Python 3.10+", ("tflite", "numpy"), recommended=False,
        systems="any system with Python 3.10+",
        notes="edgecnn's wheel and the model only: install.sh lets pip take numpy and Typer "
        "from the package index, and the venv sees the system's packages, so an "
        "interpreter installed there (tflite-runtime, ai-edge-litert, onnxruntime) is "
        "used; without one the numpy backend runs weights.npz, where the bundle carries it.",
    ),
)  # fmt: skip

#: The devices the run recommends a file for, in the order it lists them.
RECOMMENDED = tuple(d for d in DEVICES if d.recommended)
#: ``edgecnn bundle --target``'s devices by key.
BUNDLE_TARGETS = {d.key: d for d in DEVICES if d.systems}


def format_of(name: str) -> str:
    """The model format a bundled file is: its suffix, or ``numpy`` for weights.npz."""
    return "numpy" if name == NUMPY_FILE else Path(name).suffix.lstrip(".")
