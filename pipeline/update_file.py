"""``edgecnn bundle --model-only``: a signed update file that replaces a device's model.

A device that already runs edgecnn (installed from a full bundle) needs only the new model
file, its sidecar and its verify reference: kilobytes, not the tens of MB of wheels. The
file, ``<name>-<version>-<target>.edgecnn-update``, is a flat gzip'd tar of those files,
``update.json`` (what they are, with their SHA-256) and ``update.json.sig``, the owner's
signature of update.json's exact bytes (:mod:`edgecnn.runtime.signing`). The device's
``edgecnn update`` checks the signature before it reads anything else, then every digest,
then verifies the model on the device before it switches to it.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn import _atomic, _json
from edgecnn.errors import ConfigError
from edgecnn.export.exporter import sha256
from edgecnn.pipeline.bundle import choose_models, model_files
from edgecnn.pipeline.bundle_models import copy_checked
from edgecnn.pipeline.bundle_wheels import BundleError
from edgecnn.pipeline.release import model_name, model_version, owner_key
from edgecnn.runtime.manifest import SIGNATURE, UPDATE_JSON, document

#: The update file's suffix.
UPDATE_SUFFIX = ".edgecnn-update"


def build_update(
    source: Path,
    target_key: str,
    key: Path,
    models: tuple[str, ...] | None = None,
    name: str | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Write the signed update file for ``target_key`` from ``source`` (a run or exports).

    The model is chosen as the full bundle chooses it (``models``: one exported file;
    default, the run's recommendation for the target) and checked as it checks it. ``out``
    is the file to write (default: its contract name beside the exports folder). Returns
    update.json's content with ``out``, ``size_bytes`` and ``sha256`` added.

    Raises:
        ConfigError: an option names something the update cannot hold.
        DataError: the exports are unreadable or their files fail their checks.
        BundleError: the file cannot be written.
    """
    if models is not None and len(models) != 1:
        raise ConfigError("--model-only carries one model: name one file with --model")
    private = owner_key(key, public_too=False).private
    target, exports, report, names = choose_models(source, target_key, models)
    model = model_files(report.files, names, fallback=False)[0]
    name = model_name(report, name)
    with tempfile.TemporaryDirectory(prefix=".edgecnn-update-") as scratch:
        folder = Path(scratch)
        copy_checked(exports, [model], report, folder)
        files = {p.name: sha256(p) for p in sorted(folder.iterdir())}
        version = model_version(exports, files[model])
        shape, classes = _model_facts(folder / model)
        manifest = document(name, version, target.key, target.machine, model, files, shape,
                            classes, datetime.now(timezone.utc))  # fmt: skip
        text = (_json.dumps(manifest) + "\n").encode()
        from edgecnn.runtime.signing import sign

        signature = sign(private, text)
        if out is None:
            out = exports.parent / f"{name}-{version}-{target.key}{UPDATE_SUFFIX}"
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder; name the update file to write")
        members = [(UPDATE_JSON, text), (SIGNATURE, signature)]
        members += [(f, (folder / f).read_bytes()) for f in files]
        _write_tar(out, members)
    return {**manifest, "out": str(out), "size_bytes": out.stat().st_size,
            "sha256": sha256(out)}  # fmt: skip


def _model_facts(model: Path) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The input shape and classes the device compares with its current model's."""
    from edgecnn.runtime.metadata import read_sidecar

    sidecar = read_sidecar(model)
    if sidecar is None:  # copy_checked copied a sidecar, so this is only for safety
        from edgecnn.runtime import load_classifier

        metadata = load_classifier(model).metadata
    else:
        metadata = sidecar.metadata
    return tuple(metadata.input_shape), tuple(metadata.labels)


def _write_tar(out: Path, members: list[tuple[str, bytes]]) -> None:
    """A flat gzip'd tar of regular files (owner root, mode 0644), written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    try:
        with _atomic.atomic_path(out) as tmp:
            with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
                for member, data in members:
                    info = tarfile.TarInfo(member)
                    info.size, info.mode, info.mtime = len(data), 0o644, now
                    tar.addfile(info, io.BytesIO(data))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
    except OSError as e:
        raise BundleError(f"cannot write {out}: {e.strerror or type(e).__name__}") from None
