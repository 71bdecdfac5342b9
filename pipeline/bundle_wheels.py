"""The wheels a bundle carries: edgecnn's, and each Python's requirements for the target.

edgecnn's wheel is built from this source tree (edgecnn is on no package index); the
others are downloaded here, once, as binary wheels for the target's CPU and Python, or
taken offline from a ``--wheels`` folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn.errors import EdgecnnError
from edgecnn.pipeline.devices import NUMPY_FILE, Device, format_of

#: Optional wheels: picture files (Pillow). Missing ones are noted, not fatal.
OPTIONAL = ("pillow",)
#: Video files, cameras and streams (PyAV, edgecnn[video]; frames are resized by
#: Pillow): only with ``--video``, since PyAV's wheel (FFmpeg's libraries inside) adds
#: tens of MB for each Python (docs/benchmarks.md, "`edgecnn predict` on a video").
#: PyAV publishes aarch64 and armv7l wheels; Pillow has none for armv7l, so a 32-bit Pi
#: takes Debian's python3-pil, as it takes its numpy.
VIDEO = ("av",)


class BundleError(EdgecnnError):
    """The bundle cannot be built (no wheel for the target, no edgecnn source, no network)."""


def edgecnn_wheel(dest: Path, wheels: Path | None) -> Path:
    """The edgecnn wheel: from ``wheels`` if it holds this version, else built here.

    Built from a clean copy of the source tree (a ``build/`` folder left from an earlier
    build could put deleted files in the wheel); with ``wheels``, offline from there.
    """
    if wheels is not None:
        found = sorted(wheels.glob(f"edgecnn-{__version__}-*.whl"))
        if found:
            return Path(shutil.copy2(found[-1], dest))
    root = _source_tree()
    # With a recent setuptools here, build with it: no build environment to download.
    args = ["--no-build-isolation"] if _has_setuptools() else []
    if wheels is not None:
        args += ["--no-index", "--find-links", str(wheels)]
    with tempfile.TemporaryDirectory(prefix="edgecnn-source-") as scratch:
        source = Path(scratch) / "edgecnn"
        shutil.copytree(root, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
        done = _pip("wheel", "--no-deps", *args, "-w", str(dest), str(source))
    if done.returncode != 0:
        raise BundleError(f"building edgecnn's wheel failed: {_last_line(done)}")
    return next(dest.glob("edgecnn-*.whl"))


#: What a source tree holds besides the source.
_NOT_SOURCE = (".git", ".venv", "venv", "build", "dist", "runs", "*.egg-info", "__pycache__",
               ".*_cache", "node_modules", "*.tar.gz")  # fmt: skip


def _has_setuptools(minimum: int = 77) -> bool:
    """Whether this environment has the setuptools pyproject.toml asks for."""
    from importlib import metadata

    try:
        return int(metadata.version("setuptools").split(".")[0]) >= minimum
    except (metadata.PackageNotFoundError, ValueError):
        return False


def _source_tree() -> Path:
    """The folder with edgecnn's pyproject.toml, when running from a clone."""
    here = Path(__file__).resolve().parent  # pipeline/, the symlink resolved
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "edgecnn"' in pyproject.read_text():
            return folder
    raise BundleError(
        "edgecnn bundle builds edgecnn's wheel from its source: run it from a clone, or "
        f"pass --wheels DIR holding edgecnn-{__version__}-*.whl"
    )


def _requirements(wheel: Path) -> list[str]:
    """The wheel's unconditional requirements (extras carry a marker)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(name).decode())
    return [r for r in meta.get_all("Requires-Dist") or [] if ";" not in r]


def download(
    target: Device,
    pythons: tuple[str, ...],
    models: list[str],
    own: Path,
    dest: Path,
    wheels: Path | None,
    log: Any,
    video: bool = False,
) -> dict[str, dict[str, Any]]:
    """Download each Python's wheels into ``dest``; what each installs and runs.

    Each Python runs the first of ``models`` whose interpreter has a wheel for it, else
    weights.npz on the numpy backend. ``video`` adds PyAV's wheel where one exists.
    """
    base = [r for r in _requirements(own) if not (target.system_numpy and r.startswith("numpy"))]
    interpreters = list(dict.fromkeys(
        target.interpreters[f] for f in map(format_of, models) if f in target.interpreters
    ))  # fmt: skip
    plan: dict[str, dict[str, Any]] = {}
    if target.machine is None:  # requirements come from the device's package index
        return plan
    for version in pythons:
        _fetch(target, version, base, dest, wheels, own)
        entry: dict[str, Any] = {"requirements": ["edgecnn"]}
        missing = []
        for interpreter in interpreters:
            if _fetch(target, version, [interpreter], dest, wheels, own, optional=True):
                entry["requirements"].append(interpreter)
            else:
                missing.append(interpreter)
        runnable = [m for m in models if format_of(m) == "numpy"
                    or target.interpreters.get(format_of(m)) in entry["requirements"]]  # fmt: skip
        entry["model"] = runnable[0] if runnable else NUMPY_FILE
        first = target.interpreters.get(format_of(models[0]))
        if first in missing:  # the first file cannot run here: say which wheel is missing
            entry["missing"] = first
        for extra in OPTIONAL + (VIDEO if video else ()):
            if _fetch(target, version, [extra], dest, wheels, own, optional=True):
                entry["requirements"].append(extra)
        unmet = [r for r in (*OPTIONAL, *VIDEO) if r not in entry["requirements"]]
        note = ""
        if video and unmet:
            note = f" (no {', '.join(unmet)} wheel: install.sh names the system's package)"
        log(f"  Python {version}: {' '.join(entry['requirements'])} -> {entry['model']}{note}")
        plan[version] = entry
    return plan


def _fetch(
    target: Device,
    version: str | None,
    requirements: list[str],
    dest: Path,
    wheels: Path | None,
    own: Path,
    optional: bool = False,
) -> bool:
    """``pip download`` binary wheels for the target; False if none exists (optional)."""
    args = ["download", "--only-binary=:all:", "-d", str(dest), "--find-links", str(dest)]
    if wheels is not None:
        args += ["--no-index", "--find-links", str(wheels)]
    if version is not None and target.machine is not None:
        # pip takes each manylinux_2_X tag literally: list every one up to the target's.
        for minor in range(17, target.glibc_minor + 1):
            args.append(f"--platform=manylinux_2_{minor}_{target.machine}")
        args += [f"--platform=manylinux2014_{target.machine}", f"--platform=linux_{target.machine}"]
        abi = "cp" + version.replace(".", "")
        args += ["--python-version", version, "--implementation", "cp", "--abi", abi]
    else:  # pure-Python wheels, for any CPython from 3.10 on
        args += ["--platform", "any", "--python-version", "3.10", "--implementation", "py",
                 "--abi", "none"]  # fmt: skip
    if target.system_numpy:
        # pip must not resolve numpy, which the OS provides: typer's requirements are
        # listed instead.
        args.append("--no-deps")
        extra = _pure_dependencies(requirements)
        requirements = [_pinned(_name(r)) if _name(r) == "typer" else r for r in requirements]
        requirements += extra
    done = _pip(*args, *dict.fromkeys(requirements))
    if done.returncode == 0:
        return True
    text = done.stdout + done.stderr
    if optional and "No matching distribution" in text:
        return False
    where = f" for Python {version} on {target.machine}" if version else ""
    raise BundleError(f"pip download {' '.join(requirements)}{where} failed: {_last_line(done)}")


def _pure_dependencies(requirements: list[str]) -> list[str]:
    """Typer's requirements, as installed on this machine, pinned to those versions.

    Only for targets whose numpy comes from the OS, where pip must not resolve (numpy is
    a requirement of edgecnn) and is run with ``--no-deps``: the set this machine runs is
    the set the device gets.
    """
    from importlib import metadata

    names: list[str] = []
    todo = [_name(r) for r in requirements if _name(r) == "typer"]
    while todo:
        name = todo.pop()
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for r in reqs:
            if any(m in r for m in ("extra ==", "Windows", "win32", "darwin")):
                continue  # extras, and what only other systems need
            key = _name(r)
            if key and key not in names and key != "numpy":
                names.append(key)
                todo.append(key)
    return [_pinned(n) for n in names]


def _name(requirement: str) -> str:
    key = requirement.split(";")[0].strip()
    for sep in "<>=!~[( ":
        key = key.split(sep)[0]
    return key.lower()


def _pinned(name: str) -> str:
    """``name==version`` as installed here, else ``name``."""
    from importlib import metadata

    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"]
    return subprocess.run(command, capture_output=True, text=True)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"
