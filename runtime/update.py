"""Model-only updates: read a signed ``.edgecnn-update`` file, install it, verify, switch.

An update file is a gzip'd tar of ``update.json``, its signature ``update.json.sig`` and
the files it lists (the model, its sidecar, its verify reference). It is read with
bounds (:func:`unpack`: regular files with plain names and sizes only, at most
:data:`MAX_MEMBERS` of them and :data:`MAX_UNPACKED` bytes, into a fresh folder inside
the store), the signature is checked on the exact bytes of ``update.json`` before they
are parsed, then every file against its SHA-256, the machine, the model's own input
shape and classes against the manifest's, those of the current model of the same name,
and that it is not older than that one (unless ``allow_older``). The version is
verified on this device by :func:`edgecnn.runtime.verify.verify` while its folder still
has a temporary name, then named and made current; if it fails, its folder is removed
and ``current`` is untouched.
"""

from __future__ import annotations

import gzip
import platform
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from edgecnn._files import MiB, check_regular_file
from edgecnn.errors import EdgecnnError
from edgecnn.runtime import signing
from edgecnn.runtime.errors import InferenceError, InputError
from edgecnn.runtime.manifest import (
    FILE_NAME,
    SIGNATURE,
    UPDATE_JSON,
    Manifest,
    file_sha256,
)
from edgecnn.runtime.store import Store, Version, home

MAX_MEMBERS = 16
MAX_UNPACKED = 64 * MiB
#: A member's name: plain, never hidden, no folder.
#: Room for the tar headers around the members' bytes.
_HEADROOM = 1 * MiB
_CHUNK = 1 << 16

Say = Callable[[str], object]


class UpdateRefused(InputError):
    """An update file that is not installed: damaged, unsigned, or not for this device."""


class VerifyFailed(InferenceError):
    """The new version failed ``edgecnn verify`` here; ``current`` is unchanged."""

    exit_code = 1


def allowed_signers() -> Path:
    """The device's trusted keys: ``HOME/keys/allowed_signers``."""
    return home() / "keys" / "allowed_signers"


def apply_update(path: Path, say: Say, store: Store | None = None,
                 allow_older: bool = False) -> Version:  # fmt: skip
    """Install the update file ``path``, verify it and make it current; returns it.

    ``allow_older`` installs a version made before the current one of the same name (a
    downgrade, refused otherwise).

    Raises:
        UpdateRefused: it is refused (exit 2), nothing installed.
        VerifyFailed: it failed verify (exit 1), its folder removed.
    """
    store = store if store is not None else Store()
    check_regular_file(path, MAX_UNPACKED, UpdateRefused, "an update file")
    keys = allowed_signers()
    if not keys.is_file():
        raise UpdateRefused(f"no owner key is installed here ({keys} is missing): install a "
                            "bundle made with edgecnn bundle --key first")  # fmt: skip
    with store.locked():
        scratch = store.scratch("update")
        try:
            files = unpack(path, scratch)
            if UPDATE_JSON not in files or SIGNATURE not in files:
                raise UpdateRefused(f"{path} is not an update file: no {UPDATE_JSON} and "
                                    f"{SIGNATURE}")  # fmt: skip
            raw = files[UPDATE_JSON].read_bytes()
            try:
                line = signing.verify(raw, files[SIGNATURE].read_bytes(), keys)
            except signing.SignatureError as e:
                raise UpdateRefused(f"{path}: {e}") from None
            say(f"checked the signature: {line}")
            manifest = Manifest.parse(raw, str(path))
            _check_files(path, manifest, files)
            _check_model(path, manifest, files[manifest.model])
            _check_fits(manifest, store.current(), allow_older)
            say(f"checked {len(manifest.files)} files (SHA-256), machine "
                f"{manifest.machine or 'any'}, input {list(manifest.input_shape)}, "
                f"{len(manifest.classes)} classes")  # fmt: skip
            return install_and_switch(store, manifest, files, say, check=True, scratch=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def add_model(model: Path, name: str, version: str | None, check: bool, say: Say,
              store: Store | None = None) -> Version:  # fmt: skip
    """Copy ``model``, its sidecar and its reference into the store, verify, switch.

    Raises:
        InputError: the file, its reference, the name or the version is not usable.
        VerifyFailed: it failed verify (exit 1), its folder removed.
    """
    from edgecnn.runtime.errors import MODEL_MAX_BYTES
    from edgecnn.runtime.metadata import read_sidecar, sidecar_path
    from edgecnn.runtime.store import check_name
    from edgecnn.runtime.verify import reference_path

    store = store if store is not None else Store()
    check_name(name, "--name")
    if version is not None:
        check_name(version, "--version")
    model = check_regular_file(model, MODEL_MAX_BYTES, InputError, "a model file")
    reference = reference_path(model)
    if not reference.is_file():
        raise InputError(f"{model} has no {reference.name} beside it: the store keeps a model "
                         "with the reference edgecnn verify checks it against")  # fmt: skip
    files = [model, reference] + [p for p in (sidecar_path(model),) if p.is_file()]
    sidecar = read_sidecar(model)
    if sidecar is not None:
        metadata = sidecar.metadata
    else:
        from edgecnn.runtime import load_classifier

        metadata = load_classifier(model).metadata
    manifest = Manifest.for_model(model, files, name, version, metadata.input_shape,
                                  metadata.labels, verified=check)  # fmt: skip
    with store.locked():
        return install_and_switch(store, manifest, {f.name: f for f in files}, say, check)


def install_and_switch(store: Store, manifest: Manifest, files: dict[str, Path], say: Say,
                       check: bool, scratch: Path | None = None) -> Version:  # fmt: skip
    """Install ``files`` as a version (verified first when ``check``), switch, prune.

    The version is verified before it gets its name. Files directly in ``scratch`` are
    moved, all others copied.

    Raises:
        VerifyFailed: it failed verify; nothing is installed, ``current`` unchanged.
    """
    listed = {name: files[name] for name in manifest.files}

    def verified(candidate: Version) -> None:
        _verify(store, candidate, say)

    say(f"installing {manifest.name} {manifest.version}"
        + ("" if check else " (not verified: --no-verify)"))  # fmt: skip
    version = store.install(manifest.name, manifest.version, listed, manifest.raw, scratch,
                            verified if check else None)  # fmt: skip
    previous = store.switch(version)
    store.prune(version.name)
    say(current_line(version, previous))
    return version


def current_line(current: Version, previous: Version | None) -> str:
    """``current: NAME VERSION (previous: ..., edgecnn models rollback returns to it)``."""
    if previous is None or previous.folder == current.folder:
        return f"current: {current.label}"
    return (f"current: {current.label} (previous: {previous.label}, edgecnn models rollback "
            "returns to it)")  # fmt: skip


def unpack(path: Path, into: Path) -> dict[str, Path]:
    """The members of the update file ``path``, written into the empty folder ``into``.

    Raises:
        UpdateRefused: it is damaged, or holds anything but regular files with plain
            names, more than :data:`MAX_MEMBERS` of them or more than :data:`MAX_UNPACKED`
            bytes.
    """
    files: dict[str, Path] = {}
    total = 0
    try:
        with gzip.open(path, "rb") as gz:
            bounded = _Bounded(gz, MAX_UNPACKED + _HEADROOM)
            with tarfile.open(fileobj=bounded, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    _check_member(path, member, files)
                    total += member.size
                    if total > MAX_UNPACKED:
                        raise UpdateRefused(
                            f"{path}: unpacks to more than {MAX_UNPACKED // MiB} MiB"
                        )
                    target = into / member.name
                    _copy(tar.extractfile(member), target, member.size)
                    files[member.name] = target
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError,
            OSError) as e:  # fmt: skip
        reason = " ".join(str(e).split()) or "cut short"
        raise UpdateRefused(f"{path} is damaged or not an update file: {reason}") from None
    if not files:
        raise UpdateRefused(f"{path} is an empty archive, not an update file")
    return files


def _check_member(path: Path, member: tarfile.TarInfo, seen: dict[str, Path]) -> None:
    if len(seen) >= MAX_MEMBERS:
        raise UpdateRefused(f"{path}: more than {MAX_MEMBERS} files; not an update file")
    if not FILE_NAME.fullmatch(member.name):
        raise UpdateRefused(f"{path}: the member {member.name[:80]!r} is not a plain file name")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = ("a symlink" if member.issym() else "a hard link" if member.islnk()
                else "a folder" if member.isdir() else "not a regular file")  # fmt: skip
        raise UpdateRefused(f"{path}: the member {member.name} is {kind}; refused")
    if member.size < 0 or member.issparse():
        raise UpdateRefused(f"{path}: the member {member.name} has "
                            f"{'a negative size' if member.size < 0 else 'holes (sparse)'}; "
                            "refused")  # fmt: skip
    if member.name in seen:
        raise UpdateRefused(f"{path}: the member {member.name} is there twice")


def _copy(source: IO[bytes] | None, target: Path, size: int) -> None:
    if source is None:
        raise tarfile.ReadError(f"cannot read {target.name}")
    written = 0
    with open(target, "xb") as out:
        while chunk := source.read(min(_CHUNK, size - written)):
            written += len(chunk)
            out.write(chunk)
            if written >= size:
                break
    if written != size:
        raise tarfile.ReadError(f"{target.name} is cut short")


class _Bounded:
    """A reader that refuses to give more than ``limit`` bytes of ``raw``."""

    def __init__(self, raw: gzip.GzipFile, limit: int) -> None:
        self.raw, self.left = raw, limit

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(self.left + 1 if size < 0 else min(size, self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise tarfile.ReadError(f"it unpacks to more than {MAX_UNPACKED // MiB} MiB")
        return data


def _check_files(path: Path, manifest: Manifest, files: dict[str, Path]) -> None:
    """Every member listed, every listed file there with its SHA-256, the machine."""
    extra = sorted(set(files) - set(manifest.files) - {UPDATE_JSON, SIGNATURE})
    if extra:
        raise UpdateRefused(f"{path}: {extra[0]} is not listed in {UPDATE_JSON}")
    for name, digest in manifest.files.items():
        if name not in files:
            raise UpdateRefused(f"{path}: {name} is listed in {UPDATE_JSON} but missing")
        if file_sha256(files[name]) != digest:
            raise UpdateRefused(f"{path}: {name} is damaged (its SHA-256 differs from "
                                f"{UPDATE_JSON}'s)")  # fmt: skip
    machine = device_machine()
    if manifest.machine is not None and manifest.machine != machine:
        raise UpdateRefused(f"{path} is made for {manifest.machine} ({manifest.target}); "
                            f"this device is {machine}")  # fmt: skip


def device_machine(uname: str | None = None, pointer_bytes: int | None = None) -> str:
    """The machine this Python runs as: ``platform.machine()``, but for its own userland.

    32-bit Raspberry Pi OS on a Pi 4 or 5 boots a 64-bit kernel, so ``uname`` says
    ``aarch64`` while every program, this Python included, is 32-bit ARM: what a pi32
    update is made for (``armv7l``, as pip's wheel tags say). ``uname`` and
    ``pointer_bytes`` are for tests.
    """
    import struct

    machine = platform.machine() if uname is None else uname
    bits32 = (struct.calcsize("P") if pointer_bytes is None else pointer_bytes) == 4
    if bits32 and machine in ("aarch64", "arm64", "armv8l"):
        return "armv7l"
    if bits32 and machine == "x86_64":
        return "i686"
    return machine


def _check_model(path: Path, manifest: Manifest, model: Path) -> None:
    """The model's own metadata (what predict and serve will use) against its manifest.

    A model that cannot be loaded here is left to verify (exit 1).
    """
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier

    try:
        with native_stderr_hidden():
            metadata = load_classifier(model, num_threads=1).metadata
    except EdgecnnError:
        return
    shape, classes = tuple(metadata.input_shape), tuple(metadata.labels)
    if shape != manifest.input_shape:
        raise UpdateRefused(f"{path}: its model {manifest.model} takes input {list(shape)}, "
                            f"{UPDATE_JSON} says {list(manifest.input_shape)}")  # fmt: skip
    if classes != manifest.classes:
        raise UpdateRefused(f"{path}: its model {manifest.model} has other classes than "
                            f"{UPDATE_JSON} says ({len(classes)} against "
                            f"{len(manifest.classes)}, or another order)")  # fmt: skip


def _check_fits(manifest: Manifest, current: Version | None, allow_older: bool) -> None:
    """The current model's input shape and classes, when it has the same name; not older.

    An update made before that model is refused unless ``allow_older``.
    """
    if current is None or current.name != manifest.name:
        return
    if not allow_older and current.created and manifest.created < current.created:
        raise UpdateRefused(f"{manifest.name} {manifest.version} (made {manifest.created}) is "
                            f"older than the current {current.version} (made "
                            f"{current.created}): a downgrade; edgecnn update --allow-older "
                            "installs it")  # fmt: skip
    shape = tuple(current.manifest.get("input_shape") or ())
    classes = tuple(current.manifest.get("classes") or ())
    if shape != manifest.input_shape:
        raise UpdateRefused(f"{manifest.name} {manifest.version} takes input "
                            f"{list(manifest.input_shape)}, the current {current.label} takes "
                            f"{list(shape)}; an app made for it would break")  # fmt: skip
    if classes != manifest.classes:
        raise UpdateRefused(f"{manifest.name} {manifest.version} has other classes than the "
                            f"current {current.label} ({len(manifest.classes)} against "
                            f"{len(classes)}, or another order)")  # fmt: skip


def _verify(store: Store, version: Version, say: Say) -> None:
    """``edgecnn verify`` of the new version here; raises VerifyFailed if it fails."""
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime.verify import verify

    current = store.current()
    stays = f"current stays {current.label}" if current else "nothing is current"
    try:
        with native_stderr_hidden():
            result = verify(version.model)
    except EdgecnnError as e:
        say(f"verify: FAIL: {e}")
        raise VerifyFailed(f"{version.label} cannot be verified here ({e}); not installed, "
                           f"{stays}") from None  # fmt: skip
    if not result.passed:
        reasons = "; ".join(result.failures)
        say(f"verify: FAIL: {reasons}")
        raise VerifyFailed(f"{version.label} failed verify on this device ({reasons}); "
                           f"not installed, {stays}")  # fmt: skip
    scores, gate = result.scores, result.applied
    agreement = ""
    if scores is not None and gate is not None:
        agreement = (f"top-1 agreement with Keras {100 * scores.agreement:.2f}% (gate >= "
                     f"{100 * gate.min_agreement:.2f}%), ")  # fmt: skip
    say(f"verify: PASS: {agreement}{result.images:,} reference images on {result.backend}")
