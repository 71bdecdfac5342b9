"""What a run was made with: package versions and the machine, without importing the packages."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata

from edgecnn.records import Fields, JSONObject
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


@dataclass(frozen=True)
class Environment:
    """The machine a run (or its last resumed part) ran on, and the package versions."""

    cpu: str = "?"
    architecture: str = "?"
    cores: int | None = None
    memory_gib: float | None = None
    system: str = "?"
    python: str = "?"
    versions: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> JSONObject:
        """JSON-ready form: ``run.json``'s ``environment``."""
        return {
            "machine": {
                "cpu": self.cpu,
                "architecture": self.architecture,
                "cores": self.cores,
                "memory_gib": self.memory_gib,
                "system": self.system,
                "python": self.python,
            },
            "versions": dict(self.versions),
        }

    @classmethod
    def from_fields(cls, f: Fields) -> Environment:
        """What :meth:`to_dict` wrote (every part may be absent: "?" in the report)."""
        machine = f.object("machine", default={})
        versions = f.object("versions", default={})
        return cls(
            cpu=machine.text("cpu", default="?"),
            architecture=machine.text("architecture", default="?"),
            cores=None if "cores" not in machine else machine.integer("cores", least=1),
            memory_gib=machine.optional_number("memory_gib"),
            system=machine.text("system", default="?"),
            python=machine.text("python", default="?"),
            versions={str(k): versions.text(str(k)) for k in versions.data},
        )

    def rows(self) -> dict[str, str]:
        """The report's "Machine and versions": what, and its value."""
        memory = "?" if self.memory_gib is None else f"{self.memory_gib}"
        return {
            "CPU": self.cpu,
            "Cores": "?" if self.cores is None else str(self.cores),
            "Memory": f"{memory} GiB",
            "System": f"{self.system} ({self.architecture})",
            **self.versions,
        }


def describe_environment() -> Environment:
    """The machine (CPU, cores, memory, OS) and the package versions."""
    memory = _memory_gib()
    return Environment(
        cpu=cpu_model(),
        architecture=platform.machine(),
        cores=os.cpu_count(),
        memory_gib=round(memory, 1) if memory else None,
        system=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        versions=package_versions(),
    )
