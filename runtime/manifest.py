"""``update.json``, format 1: what an update (and each installed version) says it holds.

The same JSON is an update file's ``update.json`` and a store version's
``manifest.json``. :meth:`Manifest.parse` is strict and names the field it rejects;
:meth:`Manifest.for_model` writes one for a model file added by hand.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.runtime.errors import InputError

FORMAT = "edgecnn-update"
FORMAT_VERSION = 1
UPDATE_JSON = "update.json"
SIGNATURE = "update.json.sig"
FILE_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CREATED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_MAX_CLASSES = 1000
_MAX_BYTES = 1 << 20


class ManifestError(InputError):
    """An ``update.json`` that is not format 1 of the contract."""


@dataclass(frozen=True)
class Manifest:
    """A parsed ``update.json``; ``raw`` is its exact bytes (what the signature covers)."""

    name: str
    version: str
    target: str
    machine: str | None
    model: str
    files: dict[str, str]
    input_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    edgecnn_version: str
    created: str
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes, where: str) -> Manifest:
        """Read ``raw`` strictly.

        Raises:
            ManifestError: not JSON, or a field is missing or wrong (named).
        """
        import json

        def bad(field: str, why: str) -> ManifestError:
            return ManifestError(f"{where}: {UPDATE_JSON}'s {field} {why}")

        try:
            if len(raw) > _MAX_BYTES:
                raise ValueError("too large")
            data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ManifestError(f"{where}: {UPDATE_JSON} is not JSON ({e})") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: {UPDATE_JSON} is not a JSON object")
        if data.get("format") != FORMAT:
            raise bad("format", f"is not {FORMAT!r}")
        if data.get("format_version") != FORMAT_VERSION or type(data["format_version"]) is not int:
            raise bad("format_version", f"is {data.get('format_version')!r:.20}, this edgecnn "
                      f"reads {FORMAT_VERSION}: update edgecnn on the device")  # fmt: skip
        for field, pattern in (("name", _NAME), ("version", _NAME), ("model", FILE_NAME),
                               ("created", _CREATED)):  # fmt: skip
            if not isinstance(data.get(field), str) or not pattern.fullmatch(data[field]):
                raise bad(field, "is missing or not allowed")
        for field in ("target", "edgecnn_version"):
            if not isinstance(data.get(field), str) or not 0 < len(data[field]) <= 64:
                raise bad(field, "is missing or not a short string")
        machine = data.get("machine")
        if machine is not None and (not isinstance(machine, str) or not 0 < len(machine) <= 32):
            raise bad("machine", "is neither null nor a machine name")
        files = data.get("files")
        if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and FILE_NAME.fullmatch(k) and k not in (UPDATE_JSON, SIGNATURE)
            and isinstance(v, str) and _SHA256.fullmatch(v) for k, v in files.items()
        ):  # fmt: skip
            raise bad("files", "is not an object of plain file names and SHA-256s")
        if data["model"] not in files or f"{data['model']}.reference.npz" not in files:
            raise bad("files", "does not list the model and its .reference.npz")
        shape = data.get("input_shape")
        if not isinstance(shape, list) or len(shape) != 3 or not all(
            type(n) is int and 0 < n <= 4096 for n in shape
        ):  # fmt: skip
            raise bad("input_shape", "is not [H, W, C] of positive integers")
        classes = data.get("classes")
        if not isinstance(classes, list) or not 0 < len(classes) <= _MAX_CLASSES or not all(
            isinstance(c, str) and 0 < len(c) <= 100 for c in classes
        ):  # fmt: skip
            raise bad("classes", "is not a list of class names")
        return cls(data["name"], data["version"], data["target"], machine, data["model"],
                   dict(files), (shape[0], shape[1], shape[2]), tuple(classes),
                   data["edgecnn_version"], data["created"], raw)  # fmt: skip

    @classmethod
    def for_model(
        cls, model: Path, files: list[Path], name: str, version: str | None,
        input_shape: tuple[int, int, int], classes: tuple[str, ...], verified: bool = True,
    ) -> Manifest:  # fmt: skip
        """The manifest of a model added by hand: made here, for any machine.

        ``version`` defaults to the contract's ``<YYYYmmdd-HHMMSS>-<sha256[:8]>`` (now, UTC).
        ``verified`` False (``models add --no-verify``) is recorded as ``"verified": false``.
        """
        import json

        now = datetime.now(timezone.utc)
        digests = {f.name: file_sha256(f) for f in files}
        version = version or f"{now:%Y%m%d-%H%M%S}-{digests[model.name][:8]}"
        # A version made by edgecnn bundle starts with its export's time: that is when
        # the model was made, not now, so that an update made after that export but
        # before this add (install.sh runs it) is not taken for an older one.
        made = _version_time(version)
        if made is not None and made <= now:
            now = made
        data = document(name, version, "generic", None, model.name, digests, input_shape,
                        classes, now)  # fmt: skip
        if not verified:
            data["verified"] = False
        raw = (json.dumps(data, indent=2) + "\n").encode()
        return cls.parse(raw, str(model))


def document(
    name: str, version: str, target: str, machine: str | None, model: str,
    files: dict[str, str], input_shape: Sequence[int], classes: Sequence[str],
    created: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The manifest's fields, as an update file's ``update.json`` and the store hold them.

    ``edgecnn bundle --model-only`` writes them for an update, ``models add`` for a model
    added by hand: one writer of the format :meth:`Manifest.parse` reads.
    """
    from edgecnn import __version__

    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
        "version": version, "target": target, "machine": machine, "model": model,
        "files": files, "input_shape": list(input_shape), "classes": list(classes),
        "edgecnn_version": __version__, "created": f"{created:%Y-%m-%dT%H:%M:%SZ}",
    }  # fmt: skip


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _version_time(version: str) -> datetime | None:
    """The UTC time a ``YYYYmmdd-HHMMSS-...`` version starts with, or None."""
    try:
        return datetime.strptime(version[:15], "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
