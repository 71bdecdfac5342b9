"""What names a bundled model on the device, and the key that vouches for it.

A device keeps its models in a store by name and version (``HOME/models/<name>/<version>``),
so the full bundle and the update file carry both. The version is made here, at bundle
time, from the export's time and the model's bytes: two bundles of the same file get the
same version, another export gets another one. The owner's key (``edgecnn keys``) signs
what the device installs; :mod:`edgecnn.runtime.signing` does the signing with OpenSSH.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import ConfigError
from edgecnn.export.records import ExportReport
from edgecnn.run_folder import EXPORT_REPORT_FILE

#: The built-in datasets by the name a store files their models under.
DATASET_NAMES = {"fashion": "fashion-mnist", "mnist": "mnist"}
#: Where ``edgecnn keys`` puts the owner's key pair unless told otherwise.
DEFAULT_KEYS_DIR = Path("~/.config/edgecnn/keys")
#: The key pair's file names: ``owner`` (private) and ``owner.pub``.
KEY_NAME = "owner"


@dataclass(frozen=True)
class OwnerKey:
    """The owner's key pair as ``--key`` names it: the private key and its ``.pub``."""

    private: Path

    @property
    def public(self) -> Path:
        """The public key beside it, ``<private>.pub``."""
        return self.private.with_name(self.private.name + ".pub")


def model_name(report: ExportReport, given: str | None) -> str:
    """``--name``, or the run's dataset by its usual name (``fashion-mnist``), checked.

    The rule is the device store's own (:func:`edgecnn.runtime.store.check_name`).

    Raises:
        InputError: ``--name`` is not a name the device's store takes.
    """
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.store import check_name

    if given is not None:
        return check_name(given, "--name")
    name = DATASET_NAMES.get(report.dataset, report.dataset)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip("._-")[:64]
    try:
        return check_name(name, "the dataset's name")
    except InputError:
        return "model"


def model_version(exports: Path, model_sha256: str) -> str:
    """``<YYYYmmdd-HHMMSS>-<first 8 hex of the model's SHA-256>``.

    The time is the export report's (its file's modification time, in UTC: the report
    records no time of its own), or now when it has none.
    """
    try:
        seconds = (exports / EXPORT_REPORT_FILE).stat().st_mtime
    except OSError:
        seconds = time.time()
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(seconds))}-{model_sha256[:8]}"


def owner_key(key: Path, public_too: bool) -> OwnerKey:
    """``--key``: a private key file (and its ``.pub`` when ``public_too``), checked.

    Raises:
        ConfigError: either is missing, or ``key`` is a public key.
    """
    if key.name.endswith(".pub"):
        raise ConfigError(f"--key {key}: give the private key (without .pub); the bundle "
                          "carries the public one")  # fmt: skip
    found = OwnerKey(key)
    if not key.is_file():
        raise ConfigError(f"--key {key}: no such key file; make one with edgecnn keys")
    if public_too and not found.public.is_file():
        raise ConfigError(f"--key {key}: {found.public} is missing (edgecnn keys writes both)")
    return found


def sign_checked(key: OwnerKey, data: bytes) -> bytes:
    """The owner's signature of ``data``, checked against ``key.public`` before it ships.

    A ``.pub`` that is not the private key's would make a bundle every device refuses.

    Raises:
        SignatureError: the key is unusable, or the two files are not one pair.
    """
    import tempfile

    from edgecnn.runtime.signing import (
        SignatureError,
        allowed_signers_line,
        public_key_text,
        sign,
        verify,
    )

    signature = sign(key.private, data)
    with tempfile.TemporaryDirectory(prefix="edgecnn-key-") as scratch:
        allowed = Path(scratch) / "allowed_signers"
        allowed.write_text(allowed_signers_line(public_key_text(key.public)))
        try:
            verify(data, signature, allowed)
        except SignatureError:
            raise SignatureError(f"{key.public} is not the public key of {key.private}; "
                                 "make a new pair with edgecnn keys") from None  # fmt: skip
    return signature
