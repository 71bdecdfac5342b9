"""The model files a bundle packs, each checked before it is packed.

A bundle is what a device trusts, so ``edgecnn bundle`` packs only what it has checked:
each file is a regular file of the exports folder (a symlink there could put any file of
this machine in the archive), each model passes the runtime's integrity check on the
very bytes that are packed, and each model, sidecar and verify reference belongs to the
export the report describes (the same source model, the same file).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from edgecnn.errors import DataError
from edgecnn.export.records import ExportReport
from edgecnn.run_folder import EXPORT_REPORT_FILE

#: Suffixes of what ships beside each model: its sidecar and its verify reference.
COMPANIONS = (".json", ".reference.npz")


def copy_checked(exports: Path, names: list[str], report: ExportReport, dest: Path) -> None:
    """Copy each model of ``names`` with its sidecar and reference into ``dest``, checked.

    Raises:
        DataError: a file is missing, a symlink or not a regular file, fails its integrity
            check, or belongs to another export.
    """
    for name in names:
        for suffix in ("", *COMPANIONS):
            source = exports / f"{name}{suffix}"
            write_new(dest / source.name, read_plain(source))
        _check_model(dest / name, exports / name, report)


def read_plain(path: Path) -> bytes:
    """The bytes of ``path``, which must be a regular file and not a symlink.

    Raises:
        DataError: it is missing, a symlink, or not a regular file.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; export again") from None
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise DataError(f"{path} is a symlink; a bundle packs only the files edgecnn "
                            "export wrote, so export again") from None  # fmt: skip
        raise DataError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DataError(f"{path} is not a regular file; export again")
        return f.read()


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, a new file of the bundle being built."""
    with open(path, "xb") as f:
        f.write(data)


def _check_model(packed: Path, source: Path, report: ExportReport) -> None:
    """The packed copy of ``source`` passes the integrity check and is this export's."""
    from edgecnn.runtime.errors import BackendUnavailable, ModelError

    def refuse(why: str) -> DataError:
        return DataError(f"{source}: {why}; export again".replace(str(packed), str(source)))

    try:
        recorded = _load_sources(packed)
    except BackendUnavailable:  # no interpreter here: the bytes alone are checked
        recorded = _check_bytes(packed)
    except ModelError as e:
        message = str(e).replace(str(packed), str(source))
        # The hint for loading a damaged file anyway is not for the bundle.
        message = re.sub(r" \(check_integrity=False.*\)$", "", message.removesuffix("."))
        raise DataError(f"{message}; not bundled") from None
    expected = report.source_sha256
    if expected and any(s not in (None, expected) for s in recorded):
        raise refuse(f"made from another model than the one {EXPORT_REPORT_FILE} records "
                     "(its source SHA-256 differs)")  # fmt: skip
    _check_reference(packed, source, refuse)


def _load_sources(packed: Path) -> list[str | None]:
    """Load ``packed`` with its integrity check; the source digests it and its sidecar record."""
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.metadata import read_sidecar

    with native_stderr_hidden():  # LiteRT's "Created XNNPACK delegate" and the like
        clf = load_classifier(packed)
    sidecar = read_sidecar(packed)
    return [clf.metadata.source_sha256, sidecar.metadata.source_sha256 if sidecar else None]


def _check_bytes(packed: Path) -> list[str | None]:
    """The runtime's checks that need no interpreter; the source digest the sidecar records."""
    from edgecnn.runtime.loading import check_bytes
    from edgecnn.runtime.metadata import read_sidecar

    sidecar = read_sidecar(packed)
    check_bytes(packed.read_bytes(), packed, sidecar)
    return [sidecar.metadata.source_sha256 if sidecar else None]


def _check_reference(packed: Path, source: Path, refuse: Any) -> None:
    """The verify reference names this file, and these bytes when it records them."""
    from edgecnn.runtime.errors import ModelError
    from edgecnn.runtime.verify import read_reference, reference_path

    try:
        gate = read_reference(reference_path(packed))["meta"]
    except ModelError as e:
        message = str(e).replace(str(packed), str(source)).removesuffix(".")
        raise DataError(f"{message}; export again") from None
    if gate.get("file") not in (None, packed.name):
        raise refuse(f"its verify reference was made for {gate.get('file')}")
    digest = gate.get("file_sha256")
    if digest and digest != hashlib.sha256(packed.read_bytes()).hexdigest():
        raise refuse("its verify reference was made for another export of it (its SHA-256 "
                     "differs)")  # fmt: skip
