"""``edgecnn bundle``: one archive that installs edgecnn and a verified model on a device.

A device often has no route to a package index, and edgecnn is not published on one. The
bundle carries everything: edgecnn's wheel (built from this source tree), the wheels its
target needs for each Python it supports (downloaded here, once, for the target's CPU),
the model file with its sidecar and its ``edgecnn verify`` reference, and ``install.sh``,
which installs offline into a venv (``pip install --no-index``) and ends by putting the
model into the venv's store with ``edgecnn models add``, which runs ``edgecnn verify`` on
it, so parity with the exporting machine is checked where the model runs. The emulated
Raspberry Pi tests install from these bundles.

Layout, inside ``edgecnn-<target>/``: ``install.sh``, ``README.txt``, ``bundle.json`` (the
target, the model's name and version in the store, each Python's requirements and model,
every file's SHA-256), ``SHA256SUMS`` (the same digests and bundle.json's, in
``sha256sum -c`` form, which install.sh checks before it runs anything), ``wheels/``,
``model/``, ``sample/`` (a test picture the model classifies right,
:mod:`edgecnn.pipeline.bundle_sample`), ``edgecnn-serve.service`` (install.sh --service's
systemd unit) and, made with ``--key``, ``keys/owner.pub`` and ``SHA256SUMS.sig``, the
owner's signature of SHA256SUMS (:mod:`edgecnn.pipeline.release`). The targets are in
:mod:`edgecnn.pipeline.devices`, the wheels are gathered by
:mod:`edgecnn.pipeline.bundle_wheels`, and every model is checked before it is packed
(:mod:`edgecnn.pipeline.bundle_models`).
"""

from __future__ import annotations

import platform
import re
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn import __version__, _atomic, _json
from edgecnn.errors import ConfigError, DataError
from edgecnn.export.exporter import sha256
from edgecnn.export.records import ExportedFile, ExportReport
from edgecnn.pipeline.bundle_models import copy_checked, write_new
from edgecnn.pipeline.bundle_readme import readme
from edgecnn.pipeline.bundle_sample import SAMPLE_DIR, write_sample
from edgecnn.pipeline.bundle_wheels import BundleError, download, edgecnn_wheel
from edgecnn.pipeline.devices import BUNDLE_TARGETS, HERE, NUMPY_FILE, Device, format_of
from edgecnn.pipeline.release import OwnerKey, model_name, model_version, owner_key, sign_checked
from edgecnn.records import read_record
from edgecnn.run_folder import BENCH_FILE, EXPORT_REPORT_FILE, EXPORTS_DIR

#: Every file's digest in ``sha256sum`` form, the list install.sh checks the bundle by.
SUMS_FILE = "SHA256SUMS"
#: The owner's signature of SHA256SUMS's bytes, in bundles made with --key.
SIGNATURE_FILE = SUMS_FILE + ".sig"
#: The owner's public key, which install.sh makes the device trust on its first install.
KEYS_DIR = "keys"
OWNER_KEY = f"{KEYS_DIR}/owner.pub"
#: The systemd user unit install.sh --service fills in (pipeline/templates).
SERVICE_FILE = "edgecnn-serve.service"
#: A path install.sh accepts in SHA256SUMS (its grep has the same pattern): a plain name,
#: at most one folder deep, no part starting with a dot (so never ``..`` or absolute) or
#: a dash (which a command would take for an option).
PLAIN_PATH = re.compile(r"([A-Za-z0-9_+][A-Za-z0-9._+-]*/)?[A-Za-z0-9_+][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class BundlePlan:
    """What a bundle holds and where it goes, every choice checked before a byte is written."""

    target: Device
    exports: Path
    report: ExportReport
    #: The exported files asked for (or recommended), the first the one install.sh verifies.
    models: list[str]
    #: Those and weights.npz, the fallback: each copied with its sidecar and reference.
    bundled: list[str]
    pythons: tuple[str, ...]
    out: Path
    #: A folder to take wheels from instead of the package index.
    wheels: Path | None
    #: Carry PyAV for video files, cameras and streams, where it has a wheel.
    video: bool = False
    #: The model's name in the device's store.
    name: str = "model"
    #: The owner's key to sign with (None: an unsigned bundle).
    key: OwnerKey | None = None

    @property
    def archive(self) -> bool:
        """Whether ``out`` is a ``.tar.gz`` archive (else a folder)."""
        return self.out.name.endswith((".tar.gz", ".tgz"))

    @property
    def folder_name(self) -> str:
        """The bundle's top folder, ``edgecnn-<target>``."""
        return f"edgecnn-{self.target.key}"


def build_bundle(
    source: Path,
    target_key: str,
    out: Path | None = None,
    models: tuple[str, ...] | None = None,
    pythons: tuple[str, ...] | None = None,
    wheels: Path | None = None,
    log: Any = print,
    video: bool = False,
    name: str | None = None,
    key: Path | None = None,
) -> dict[str, Any]:
    """Write the bundle for ``target_key`` from ``source`` (a run or its exports/ folder).

    ``out`` ending in ``.tar.gz`` or ``.tgz`` is an archive, anything else a folder
    (default: ``edgecnn-<target>.tar.gz`` beside the exports folder). ``models`` names the
    exported files, the first the one install.sh verifies (default: the run's
    recommendation for the target); ``pythons`` the
    Python versions to carry wheels for; ``wheels`` a folder to take wheels from instead
    of the package index (``pip download --no-index --find-links``); ``video`` adds
    PyAV's wheel for videos (tens of MB a Python; a 32-bit Pi needs Debian's Pillow);
    ``name`` the model's name in the device's store (default: the dataset's); ``key`` the
    owner's private key, to sign SHA256SUMS and carry the public key for the device.
    Returns the manifest.
    """
    plan = plan_bundle(source, target_key, out, models, pythons, wheels, video, name, key)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _write(plan, log)
    except OSError as e:  # writing the bundle: reading the exports raises DataError
        raise BundleError(f"cannot write {plan.out}: {e.strerror or type(e).__name__}") from None
    out = plan.out
    if plan.archive:
        manifest["sha256"] = sha256(out)
        log(f"  SHA-256 of {out.name}: {manifest['sha256']} (compare it on the device: "
            f"sha256sum {out.name})")  # fmt: skip
    else:
        manifest["sha256"] = sha256(out / SUMS_FILE)
        log(f"  SHA-256 of {SUMS_FILE}, which lists every other file's: {manifest['sha256']}")
    manifest["out"] = str(out)
    manifest["size_bytes"] = _size(out)
    return manifest


# --- plan: every choice, checked before anything is written --------------------------


def plan_bundle(
    source: Path,
    target_key: str,
    out: Path | None,
    models: tuple[str, ...] | None,
    pythons: tuple[str, ...] | None,
    wheels: Path | None,
    video: bool = False,
    name: str | None = None,
    key: Path | None = None,
) -> BundlePlan:
    """The target, the model files, the Pythons and the output, as ``build_bundle`` takes them.

    Raises:
        ConfigError: an option names something the bundle cannot hold.
        DataError: the exports are unreadable or hold nothing for the target.
    """
    target, exports, report, names = choose_models(source, target_key, models)
    bundled = model_files(report.files, names)
    pythons = target.pythons if pythons is None else pythons
    for version in pythons:
        if not _is_version(version):
            raise ConfigError(f"--python takes versions such as 3.11, got {version!r}")
    out = exports.parent / f"edgecnn-{target.key}.tar.gz" if out is None else out
    owner = None if key is None else owner_key(key, public_too=True)
    plan = BundlePlan(target, exports, report, names, bundled, pythons, out, wheels, video,
                      model_name(report, name), owner)  # fmt: skip
    _check_out(plan)
    return plan


def choose_models(
    source: Path, target_key: str, models: tuple[str, ...] | None
) -> tuple[Device, Path, ExportReport, list[str]]:
    """The target, the exports folder, its report and the model files to pack, checked.

    The model files are those asked for, or the run's recommendation for the target; the
    full bundle and the update file choose alike.

    Raises:
        ConfigError: an unknown target, or a file the target cannot load.
        DataError: the exports are unreadable or hold nothing for the target.
    """
    target = BUNDLE_TARGETS.get(target_key)
    if target is None:
        raise ConfigError(
            f"--target must be one of {', '.join(BUNDLE_TARGETS)}, got {target_key!r}"
        )
    exports = _exports_dir(source)
    report = _report(exports)
    names = list(models or (_recommended(report.files, target, exports.parent),))
    _check_models(names, exports, target)
    return target, exports, report, names


def _check_models(names: list[str], exports: Path, target: Device) -> None:
    """Each named file is a model file the target has an interpreter (or numpy) for."""
    for name in names:
        if (exports / name).is_dir():
            raise ConfigError(f"--model {name}: folders (the C library, TFLM) are not bundled")
        if not Path(name).suffix:
            continue  # not a model file: model_files says so
        fmt = format_of(name)
        if target.machine is not None and fmt != "numpy" and fmt not in target.interpreters:
            raise ConfigError(f"--model {name}: {target.systems} has no interpreter for "
                              f".{fmt} files")  # fmt: skip


def _check_out(plan: BundlePlan) -> None:
    """``--out`` is a new archive, a new folder, or a bundle folder to replace whole."""
    out = plan.out
    if plan.archive and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the archive to write")
    if not plan.archive and out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / "bundle.json").is_file():
            # Replaced as a whole: never a folder that holds anything but a bundle.
            raise ConfigError(f"--out {out} is a folder that is not a bundle; name a new one")


# --- fetch and assemble, in a temporary folder beside the output ----------------------


def _write(plan: BundlePlan, log: Any) -> dict[str, Any]:
    """Fill the bundle in a temporary folder beside ``out``, then move it into place."""
    out = plan.out
    with tempfile.TemporaryDirectory(prefix=".edgecnn-bundle-", dir=out.parent) as scratch:
        root = Path(scratch) / plan.folder_name
        own, pythons = fetch(plan, root, log)
        manifest = assemble(plan, root, own, pythons)
        if plan.archive:
            with _atomic.atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
                tar.add(root, arcname=plan.folder_name)
        else:
            _atomic.replace_dir(root, out)
    return manifest


def fetch(plan: BundlePlan, root: Path, log: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    """Copy the checked model files into ``root/model`` and the wheels into ``root/wheels``.

    Returns edgecnn's wheel's name and, by Python version, what it installs and runs.
    """
    (root / "wheels").mkdir(parents=True)
    (root / "model").mkdir()
    copy_checked(plan.exports, plan.bundled, plan.report, root / "model")
    own = edgecnn_wheel(root / "wheels", plan.wheels)
    log(f"  {own.name}")
    target = plan.target
    pythons = download(
        target, plan.pythons, plan.models, own, root / "wheels", plan.wheels, log, plan.video
    )
    for version, entry in pythons.items():
        if entry["model"] == NUMPY_FILE and NUMPY_FILE not in plan.bundled:
            raise BundleError(
                f"{target.systems}: Python {version} has no {entry['missing']} wheel, and "
                f"the exports hold no {NUMPY_FILE} for the numpy backend; export again "
                "or leave that Python out with --python"
            )
    return own.name, pythons


def assemble(
    plan: BundlePlan, root: Path, own: str, pythons: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Write install.sh, README.txt, bundle.json and SHA256SUMS beside the fetched files.

    Also the sample picture, and, with a key, ``keys/owner.pub`` and ``SHA256SUMS.sig``.
    """
    _write_text(root / "install.sh", _template("install.sh"), executable=True)
    _write_text(root / SERVICE_FILE, _template(SERVICE_FILE))  # install.sh --service
    target = plan.target
    model = root / "model" / plan.models[0]
    sample = write_sample(model, plan.report.labels, root / SAMPLE_DIR)
    if plan.key is not None:
        from edgecnn.runtime.signing import public_key_text

        (root / KEYS_DIR).mkdir()
        _write_text(root / OWNER_KEY, public_key_text(plan.key.public) + "\n")
    manifest: dict[str, Any] = {
        "edgecnn_version": __version__,
        "name": plan.name,
        "version": model_version(plan.exports, sha256(model)),
        "signed": plan.key is not None,
        "sample": None if sample is None else f"{SAMPLE_DIR}/{sample}",
        "edgecnn_wheel": own,
        "target": target.key,
        "target_name": target.systems,
        "machine": target.machine,
        "system_numpy": target.system_numpy,
        "video": plan.video,
        "notes": target.notes,
        "model": plan.models[0],
        "models": plan.bundled,
        "pythons": pythons,
    }
    _write_text(root / "README.txt", readme(manifest))
    manifest["files"] = _digests(root)  # every file but bundle.json and SHA256SUMS
    write_new(root / "bundle.json", (_json.dumps(manifest) + "\n").encode())
    sums = _digests(root)
    text = "".join(f"{d}  {p}\n" for p, d in sums.items()).encode()
    write_new(root / SUMS_FILE, text)
    if plan.key is not None:
        write_new(root / SIGNATURE_FILE, sign_checked(plan.key, text))
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


def _report(exports: Path) -> ExportReport:
    """The export report, read bounded and strict (its reader names a field it rejects).

    Each packed file is checked against it by ``copy_checked``.

    Raises:
        DataError: it is missing or unreadable, or not a report an export writes.
    """
    from edgecnn.export.report_file import MAX_REPORT_BYTES

    return read_record(exports / EXPORT_REPORT_FILE, ExportReport.from_fields,
                       "an export report", MAX_REPORT_BYTES, DataError)  # fmt: skip


def _recommended(rows: Sequence[ExportedFile], target: Device, run_dir: Path) -> str:
    from edgecnn.pipeline.recommend import recommend

    device, latency = target, {}
    if target.speed_measured_here and platform.machine() == target.machine:
        latency = _bench_latency(run_dir)
        latency = latency or {r.file: r.latency_us for r in rows if r.latency_us is not None}
        device = HERE  # as the run picks for this machine: by the speeds measured here
    picks = recommend(rows, latency, (device,))
    if not picks:
        raise DataError(f"no exported file that passed its gate runs on {target.systems}")
    return picks[0].file


def _bench_latency(run_dir: Path) -> dict[str, float]:
    """Single-image p50 per file from the run's bench stage, if it ran."""
    from edgecnn.pipeline.bench_record import read_bench

    try:
        return read_bench(run_dir / BENCH_FILE).latency_by_file()
    except (OSError, DataError):  # no bench stage, or a record it did not write
        return {}


def model_files(
    rows: Sequence[ExportedFile], chosen: list[str], fallback: bool = True
) -> list[str]:
    """The model files to bundle: the chosen ones, and weights.npz too as the fallback.

    Each is copied with its sidecar and reference, and checked, by ``copy_checked``.
    """
    passed = {r.file for r in rows if r.passed}
    names = list(dict.fromkeys(chosen))
    for name in names:
        if name not in {r.file for r in rows}:
            raise ConfigError(f"--model {name}: not a file of this export")
        if name not in passed:
            raise ConfigError(f"--model {name}: it failed its gate; bundle a file that passed")
    if fallback and NUMPY_FILE not in names and NUMPY_FILE in passed:
        names.append(NUMPY_FILE)
    for name in names:
        if not PLAIN_PATH.fullmatch(name) or "/" in name:
            raise DataError(f"{EXPORT_REPORT_FILE} names {name!r}, not a plain file name")
    return names


# --- small helpers --------------------------------------------------------------------


def _template(name: str) -> str:
    return resources.files("edgecnn.pipeline").joinpath(f"templates/{name}").read_text()


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
