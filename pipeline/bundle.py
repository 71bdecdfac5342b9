"""``edgecnn bundle``: one archive that installs edgecnn and a verified model on a device.

A device often has no route to a package index, and edgecnn is not published on one. The
bundle carries everything: edgecnn's wheel (built from this source tree), the wheels its
target needs for each Python it supports (downloaded here, once, for the target's CPU),
the model file with its sidecar and its ``edgecnn verify`` reference, and ``install.sh``,
which installs offline into a venv (``pip install --no-index``) and ends by running
``edgecnn verify`` on the model, so parity with the exporting machine is checked where the
model runs. The emulated Raspberry Pi tests install from these bundles.

Layout, inside ``edgecnn-<target>/``: ``install.sh``, ``README.txt``, ``bundle.json`` (the
target, each Python's requirements and model, every file's SHA-256), ``SHA256SUMS`` (the
same digests and bundle.json's, in ``sha256sum -c`` form, which install.sh checks before
it runs anything), ``wheels/`` and ``model/``. Every model is checked before it is packed
(:mod:`edgecnn.pipeline.bundle_models`).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn import __version__, _atomic, _json
from edgecnn.errors import ConfigError, DataError, EdgecnnError
from edgecnn.export.exporter import sha256
from edgecnn.pipeline.bundle_models import copy_checked, write_new
from edgecnn.run_folder import BENCH_FILE, EXPORT_REPORT_FILE, EXPORTS_DIR

#: The numpy backend's file: the fallback where no interpreter wheel exists.
NUMPY_FILE = "weights.npz"
#: Every file's digest in ``sha256sum`` form, the list install.sh checks the bundle by.
SUMS_FILE = "SHA256SUMS"
#: A path install.sh accepts in SHA256SUMS (its grep has the same pattern): a plain name,
#: at most one folder deep, no part starting with a dot, so never ``..`` or absolute.
PLAIN_PATH = re.compile(r"([A-Za-z0-9_+-][A-Za-z0-9._+-]*/)?[A-Za-z0-9_+-][A-Za-z0-9._+-]*")


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
#: Optional wheels: picture files (Pillow). Missing ones are noted, not fatal.
OPTIONAL = ("pillow",)


class BundleError(EdgecnnError):
    """The bundle cannot be built (no wheel for the target, no edgecnn source, no network)."""


def build_bundle(
    source: Path,
    target_key: str,
    out: Path | None = None,
    models: tuple[str, ...] | None = None,
    pythons: tuple[str, ...] | None = None,
    wheels: Path | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Write the bundle for ``target_key`` from ``source`` (a run or its exports/ folder).

    ``out`` ending in ``.tar.gz`` or ``.tgz`` is an archive, anything else a folder
    (default: ``edgecnn-<target>.tar.gz`` beside the exports folder). ``models`` names the
    exported files, the first the one install.sh verifies (default: the run's
    recommendation for the target); ``pythons`` the
    Python versions to carry wheels for; ``wheels`` a folder to take wheels from instead
    of the package index (``pip download --no-index --find-links``). Returns the manifest.
    """
    target = TARGETS.get(target_key)
    if target is None:
        raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, got {target_key!r}")
    exports = _exports_dir(source)
    report = _report(exports)
    rows = report["files"]
    names = list(models or (_recommended(rows, target, exports.parent),))
    for name in names:
        if (exports / name).is_dir():
            raise ConfigError(f"--model {name}: folders (the C library, TFLM) are not bundled")
        if not Path(name).suffix:
            continue  # not a model file: _model_files says so
        fmt = _format_of(name)
        if target.machine is not None and fmt != "numpy" and fmt not in target.interpreters:
            raise ConfigError(f"--model {name}: {target.name} has no interpreter for "
                              f".{fmt} files")  # fmt: skip
    bundled = _model_files(rows, names)
    if pythons is None:
        pythons = target.pythons
    for version in pythons:
        if not _is_version(version):
            raise ConfigError(f"--python takes versions such as 3.11, got {version!r}")
    if out is None:
        out = exports.parent / f"edgecnn-{target.key}.tar.gz"
    archive = out.name.endswith((".tar.gz", ".tgz"))
    if archive and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the archive to write")
    if not archive and out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / "bundle.json").is_file():
            # Replaced as a whole: never a folder that holds anything but a bundle.
            raise ConfigError(f"--out {out} is a folder that is not a bundle; name a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _write(exports, report, target, names, bundled, pythons, out, wheels, log)
    except OSError as e:  # writing the bundle: reading the exports raises DataError
        raise BundleError(f"cannot write {out}: {e.strerror or type(e).__name__}") from None
    if archive:
        manifest["sha256"] = sha256(out)
        log(f"  SHA-256 of {out.name}: {manifest['sha256']} (compare it on the device: "
            f"sha256sum {out.name})")  # fmt: skip
    else:
        manifest["sha256"] = sha256(out / SUMS_FILE)
        log(f"  SHA-256 of {SUMS_FILE}, which lists every other file's: {manifest['sha256']}")
    manifest["out"] = str(out)
    manifest["size_bytes"] = _size(out)
    return manifest


def _write(
    exports: Path,
    report: dict[str, Any],
    target: BundleTarget,
    names: list[str],
    bundled: list[str],
    pythons: tuple[str, ...],
    out: Path,
    wheels: Path | None,
    log: Any,
) -> dict[str, Any]:
    """Fill the bundle in a temporary folder beside ``out``, then move it into place."""
    archive = out.name.endswith((".tar.gz", ".tgz"))
    name = f"edgecnn-{target.key}"
    with tempfile.TemporaryDirectory(prefix=".edgecnn-bundle-", dir=out.parent) as scratch:
        root = Path(scratch) / name
        (root / "wheels").mkdir(parents=True)
        (root / "model").mkdir()
        copy_checked(exports, bundled, report, root / "model")
        own = _edgecnn_wheel(root / "wheels", wheels)
        log(f"  {own.name}")
        plan = _download(target, pythons, names, own, root / "wheels", wheels, log)
        for version, entry in plan.items():
            if entry["model"] == NUMPY_FILE and NUMPY_FILE not in bundled:
                raise BundleError(
                    f"{target.name}: Python {version} has no {entry['missing']} wheel, and "
                    f"the exports hold no {NUMPY_FILE} for the numpy backend; export again "
                    "or leave that Python out with --python"
                )
        _write_text(root / "install.sh", _install_script(), executable=True)
        manifest: dict[str, Any] = {
            "edgecnn_version": __version__,
            "edgecnn_wheel": own.name,
            "target": target.key,
            "target_name": target.name,
            "machine": target.machine,
            "system_numpy": target.system_numpy,
            "notes": target.notes,
            "model": names[0],
            "models": bundled,
            "pythons": plan,
        }
        _write_text(root / "README.txt", readme(manifest))
        manifest["files"] = _digests(root)  # every file but bundle.json and SHA256SUMS
        write_new(root / "bundle.json", (_json.dumps(manifest) + "\n").encode())
        sums = _digests(root)
        write_new(root / SUMS_FILE, "".join(f"{d}  {p}\n" for p, d in sums.items()).encode())
        if archive:
            with _atomic.atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
                tar.add(root, arcname=name)
        else:
            _atomic.replace_dir(root, out)
    return manifest


def _digests(root: Path) -> dict[str, str]:
    """Each file's SHA-256 by its path in the bundle, sorted (as ``sha256sum -c`` reads it)."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        relative = path.relative_to(root).as_posix()
        if not PLAIN_PATH.fullmatch(relative):  # install.sh would refuse the bundle
            raise BundleError(f"{relative}: a file name install.sh does not accept")
        digests[relative] = sha256(path)
    return digests


def readme(manifest: dict[str, Any]) -> str:
    """README.txt: what the bundle holds and the one command that installs it."""
    lines = [
        f"edgecnn {manifest['edgecnn_version']} for {manifest['target_name']}",
        "",
        "Install (offline, into a venv; checks the model with edgecnn verify at the end):",
        "",
        "    sh install.sh [VENV]        # default VENV: ~/edgecnn",
        "",
        "It first checks every file against SHA256SUMS and installs nothing if one differs,",
        "is missing or extra. It cannot check itself: before running it, compare the",
        "archive's SHA-256 with the one edgecnn bundle printed (sha256sum ARCHIVE).",
        "",
        f"Model: model/{manifest['model']}",
        "",
        "By Python version:",
    ]
    for version, entry in manifest["pythons"].items():
        extra = f" (no {entry['missing']} wheel)" if entry.get("missing") else ""
        lines.append(f"  {version}: {' '.join(entry['requirements'])}; runs "
                     f"model/{entry['model']}{extra}")  # fmt: skip
    if not manifest["pythons"]:
        lines.append("  any: edgecnn's wheel; its requirements come from the system or the "
                     "package index")  # fmt: skip
    lines += ["", manifest["notes"], ""]
    return "\n".join(lines)


# --- the source -----------------------------------------------------------------------


def _exports_dir(source: Path) -> Path:
    for candidate in (source, source / EXPORTS_DIR):
        if (candidate / EXPORT_REPORT_FILE).is_file():
            return candidate
    if not source.exists():
        raise DataError(f"{source} does not exist")
    raise DataError(
        f"{source} is neither a run folder nor an exports folder (no {EXPORT_REPORT_FILE}); "
        "run edgecnn export first"
    )


def _report(exports: Path) -> dict[str, Any]:
    try:
        report = json.loads((exports / EXPORT_REPORT_FILE).read_text())
        if not isinstance(report.get("files"), list):
            raise ValueError("no list of files")
        return dict(report)
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise DataError(f"{exports / EXPORT_REPORT_FILE} is unreadable ({e})") from None


def _recommended(rows: list[dict[str, Any]], target: BundleTarget, run_dir: Path) -> str:
    from edgecnn.pipeline.recommend import TARGETS as RECOMMEND_TARGETS
    from edgecnn.pipeline.recommend import recommend

    wanted = [t for t in RECOMMEND_TARGETS if t.key == target.recommend_key]
    latency: dict[str, float] = {}
    if target.recommend_key == "here" and platform.machine() == target.machine:
        latency = _bench_latency(run_dir)
        latency = latency or {r["file"]: r["latency_us"] for r in rows if r.get("latency_us")}
    elif target.recommend_key == "here":  # measured on another CPU: say nothing of speed
        wanted = [t for t in RECOMMEND_TARGETS if t.key == "pi64"]
    rows = [r for r in rows if "file" in r and "format" in r]
    picks = recommend(rows, latency, tuple(wanted))
    if not picks:
        raise DataError(f"no exported file that passed its gate runs on {target.name}")
    return str(picks[0]["file"])


def _bench_latency(run_dir: Path) -> dict[str, float]:
    """Single-image p50 per file from the run's bench stage, if it ran."""
    from edgecnn.pipeline.results import latency_by_file

    try:
        return latency_by_file(json.loads((run_dir / BENCH_FILE).read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _model_files(rows: list[dict[str, Any]], chosen: list[str]) -> list[str]:
    """The model files to bundle: the chosen ones, and weights.npz too as the fallback.

    Each is copied with its sidecar and reference, and checked, by ``copy_checked``.
    """
    passed = {r["file"] for r in rows if r.get("passed")}
    names = list(dict.fromkeys(chosen))
    for name in names:
        if name not in {r.get("file") for r in rows}:
            raise ConfigError(f"--model {name}: not a file of this export")
        if name not in passed:
            raise ConfigError(f"--model {name}: it failed its gate; bundle a file that passed")
    if NUMPY_FILE not in names and NUMPY_FILE in passed:
        names.append(NUMPY_FILE)
    for name in names:
        if not PLAIN_PATH.fullmatch(name) or "/" in name:
            raise DataError(f"{EXPORT_REPORT_FILE} names {name!r}, not a plain file name")
    return names


def _format_of(name: str) -> str:
    return "numpy" if name == NUMPY_FILE else Path(name).suffix.lstrip(".")


# --- wheels ---------------------------------------------------------------------------


def _edgecnn_wheel(dest: Path, wheels: Path | None) -> Path:
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


def _download(
    target: BundleTarget,
    pythons: tuple[str, ...],
    models: list[str],
    own: Path,
    dest: Path,
    wheels: Path | None,
    log: Any,
) -> dict[str, dict[str, Any]]:
    """Download each Python's wheels into ``dest``; what each installs and runs.

    Each Python runs the first of ``models`` whose interpreter has a wheel for it, else
    weights.npz on the numpy backend.
    """
    base = [r for r in _requirements(own) if not (target.system_numpy and r.startswith("numpy"))]
    interpreters = list(dict.fromkeys(
        target.interpreters[f] for f in map(_format_of, models) if f in target.interpreters
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
        runnable = [m for m in models if _format_of(m) == "numpy"
                    or target.interpreters.get(_format_of(m)) in entry["requirements"]]  # fmt: skip
        entry["model"] = runnable[0] if runnable else NUMPY_FILE
        first = target.interpreters.get(_format_of(models[0]))
        if first in missing:  # the first file cannot run here: say which wheel is missing
            entry["missing"] = first
        for extra in OPTIONAL:
            if _fetch(target, version, [extra], dest, wheels, own, optional=True):
                entry["requirements"].append(extra)
        log(f"  Python {version}: {' '.join(entry['requirements'])} -> {entry['model']}")
        plan[version] = entry
    return plan


def _fetch(
    target: BundleTarget,
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


# --- small helpers --------------------------------------------------------------------


def _install_script() -> str:
    return resources.files("edgecnn.pipeline").joinpath("templates/install.sh").read_text()


def _write_text(path: Path, text: str, executable: bool = False) -> None:
    write_new(path, text.encode())
    if executable:
        path.chmod(0o755)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _is_version(text: str) -> bool:
    parts = text.split(".")
    return (
        len(parts) == 2 and all(p.isdigit() for p in parts) and parts[0] == "3"
        and int(parts[1]) >= 10
    )  # fmt: skip
