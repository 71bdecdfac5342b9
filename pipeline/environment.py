"""What a run was made with: package versions and the machine, without importing the packages."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from edgecnn.runtime.backends import INTERPRETERS

#: Shown in the report as ``name: version``; the first installed distribution of each wins.
#: The runtime's interpreters come from its registry, so a new backend is listed too.
PACKAGES = {
    "TensorFlow": ("tensorflow-cpu", "tensorflow"),
    "Keras": ("keras",),
    **{i.label: (i.distribution,) for i in INTERPRETERS.values()},
    "tf2onnx": ("tf2onnx",),
    "ONNX": ("onnx",),
    "tflite-micro": ("tflite-micro",),
    "NumPy": ("numpy",),
    "Pillow": ("pillow",),
}


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (absent ones are left out)."""
    versions = {"Python": platform.python_version()}
    for label, distributions in PACKAGES.items():
        for name in distributions:
            try:
                versions[label] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def cpu_model() -> str:
    """The CPU's model name, as the kernel reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def describe_environment() -> dict[str, Any]:
    """The machine (CPU, cores, memory, OS) and the package versions, JSON-ready."""
    memory = _memory_gib()
    return {
        "machine": {
            "cpu": cpu_model(),
            "architecture": platform.machine(),
            "cores": os.cpu_count(),
            "memory_gib": round(memory, 1) if memory else None,
            "system": f"{platform.system()} {platform.release()}",
            "python": sys.version.split()[0],
        },
        "versions": package_versions(),
    }
