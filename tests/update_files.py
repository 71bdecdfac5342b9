"""A test-side writer of the contract's update file (format 1), signed with runtime.signing.

Kept apart from the pipeline's builder on purpose: the device side is tested against the
contract as written, and ``changes`` lets a test write what a builder never would.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from pathlib import Path

from edgecnn.runtime import signing


def make_key(folder: Path, home: Path | None = None) -> Path:
    """A new owner key in ``folder``; trusted in ``home`` (``keys/allowed_signers``) if given."""
    private = folder / "owner"
    public = signing.make_key(private)
    if home is not None:
        trust(public, home)
    return private


def trust(public: Path, home: Path) -> None:
    """Write ``home/keys/allowed_signers`` trusting ``public``."""
    keys = home / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    line = signing.allowed_signers_line(signing.public_key_text(public))
    (keys / "allowed_signers").write_text(line)


def manifest_for(model: Path, name: str, version: str, **changes: object) -> dict:
    """``update.json`` for ``model`` with its sidecar and reference (``changes`` applied).

    ``created`` is now, as a builder writes it: a device refuses an update made before
    its current model of the same name.
    """
    import time

    from edgecnn.runtime import load_classifier

    files = [model, model.with_name(model.name + ".json"),
             model.with_name(model.name + ".reference.npz")]  # fmt: skip
    clf = load_classifier(model)
    data = {
        "format": "edgecnn-update", "format_version": 1, "name": name, "version": version,
        "target": "generic", "machine": platform.machine(), "model": model.name,
        "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files
                  if f.is_file()},
        "input_shape": list(clf.input_shape), "classes": list(clf.labels),
        "edgecnn_version": "0.1.0",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    data.update(changes)
    return data


def write_update(out: Path, key: Path, model: Path, name: str, version: str,
                 manifest: dict | None = None, extra: dict[str, bytes] | None = None,
                 members: list[tarfile.TarInfo] | None = None,
                 signature: bytes | None = None) -> Path:  # fmt: skip
    """Write the update file ``out`` for ``model``; returns ``out``.

    ``manifest`` replaces the one :func:`manifest_for` makes, ``extra`` adds members (name
    -> bytes), ``members`` adds raw tar entries (links, folders), ``signature`` replaces
    the real one.
    """
    data = manifest if manifest is not None else manifest_for(model, name, version)
    raw = json.dumps(data, indent=2).encode()
    sig = signature if signature is not None else signing.sign(key, raw)
    entries = {"update.json": raw, "update.json.sig": sig}
    for file in data["files"]:
        source = model.with_name(file)
        if source.is_file():
            entries[file] = source.read_bytes()
    entries.update(extra or {})
    with tarfile.open(out, "w:gz") as tar:
        for member_name, content in entries.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in members or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.size else None)
    return out
