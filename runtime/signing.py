"""Signatures that tell a device an update comes from its owner: OpenSSH's ``ssh-keygen -Y``.

No cryptography is written here. ``ssh-keygen -Y sign`` and ``-Y verify`` (OpenSSH 8.1
and newer: Debian bookworm and trixie, Raspberry Pi OS 64- and 32-bit, which all carry
``openssh-client``) sign and check bytes with an Ed25519 key, offline, with nothing for
the bundle to carry. The signature names a namespace, :data:`NAMESPACE`, so a signature
made for anything else with the same key (a git commit, a file) is never taken for an
update's. The device trusts the public keys of its ``allowed_signers`` file, written
once, at the first install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgecnn.runtime.errors import InferenceError

#: What every edgecnn signature is made for; ``ssh-keygen -Y verify`` checks it.
NAMESPACE = "edgecnn-update"
#: The principal the device's ``allowed_signers`` file names the owner's keys by.
IDENTITY = "edgecnn-owner"
#: How long ssh-keygen may take (a few ms normally; generous for a slow Pi under load).
TIMEOUT_SECONDS = 60.0
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$")
_HINT = "sudo apt install openssh-client"


class SignatureError(InferenceError):
    """A signature that does not check out, a key that is unusable, or no ssh-keygen."""


def ssh_keygen() -> str:
    """The path of ``ssh-keygen``.

    Raises:
        SignatureError: it is not installed.
    """
    path = shutil.which("ssh-keygen")
    if path is None:
        raise SignatureError(f"signing and checking updates needs ssh-keygen: {_HINT}")
    return path


def make_key(private: Path, comment: str = IDENTITY) -> Path:
    """Make an Ed25519 key pair: ``private`` (no passphrase, mode 0600) and ``private.pub``.

    Returns the public key's path.

    Raises:
        SignatureError: either file exists already (a key is never overwritten), or
            ssh-keygen fails.
    """
    public = private.with_name(private.name + ".pub")
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise SignatureError(f"{path} exists: a key is never overwritten; name another")
    private.parent.mkdir(parents=True, exist_ok=True)
    _run([ssh_keygen(), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
         f"cannot make a key in {private}")  # fmt: skip
    return public


def sign(private: Path, data: bytes) -> bytes:
    """An armored SSH signature of ``data`` by the key ``private``, for :data:`NAMESPACE`.

    Raises:
        SignatureError: the key is missing or unusable.
    """
    if not private.is_file():
        raise SignatureError(f"{private} is not a key file; make one with edgecnn keys")
    return _run([ssh_keygen(), "-q", "-Y", "sign", "-f", str(private), "-n", NAMESPACE],
                f"cannot sign with {private}", data)  # fmt: skip


def public_key_text(public: Path) -> str:
    """The one-line public key in ``public`` (``ssh-ed25519 AAAA... comment``).

    Raises:
        SignatureError: the file is missing or holds no public key.
    """
    try:
        text = public.read_text(encoding="ascii", errors="strict").strip()
    except (OSError, UnicodeError) as e:
        raise SignatureError(f"cannot read the public key {public}: {_why(e)}") from None
    if "\n" in text or not _PUBLIC_KEY.match(text):
        raise SignatureError(f"{public} is not an OpenSSH public key (one line, ssh-ed25519 ...)")
    return text


def allowed_signers_line(public_key: str) -> str:
    """The ``allowed_signers`` line that trusts ``public_key`` for updates, and only them."""
    kind, blob = public_key.split()[:2]
    return f'{IDENTITY} namespaces="{NAMESPACE}" {kind} {blob}\n'


def verify(data: bytes, signature: bytes, allowed_signers: Path) -> str:
    """Check that ``signature`` is a key of ``allowed_signers`` signing ``data``; its line.

    Returns ssh-keygen's line naming the key (``Good "edgecnn-update" signature for
    edgecnn-owner with ED25519 key SHA256:...``).

    Raises:
        SignatureError: no such file, or the signature is not good (another key, other
            bytes, another namespace, damaged).
    """
    if not allowed_signers.is_file():
        raise SignatureError(
            f"no owner key is installed here ({allowed_signers} is missing): install a "
            "bundle made with edgecnn bundle --key first"
        )
    keygen = ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="edgecnn-signature-") as scratch:
        sig = Path(scratch) / "signature"
        sig.write_bytes(signature)
        command = [keygen, "-Y", "verify", "-f", str(allowed_signers), "-I", IDENTITY,
                   "-n", NAMESPACE, "-s", str(sig)]  # fmt: skip
        try:
            done = subprocess.run(command, input=data, capture_output=True,
                                  timeout=TIMEOUT_SECONDS, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SignatureError(f"ssh-keygen could not check the signature: {_why(e)}") from None
    said = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
    if done.returncode != 0:
        reason = said[-1] if said else f"ssh-keygen exited {done.returncode}"
        raise SignatureError(f"the signature is not good: {reason[:160]}")
    return said[0] if said else "good signature"


def fingerprint(public: Path) -> str:
    """The SHA-256 fingerprint of a public key file (``SHA256:...``), as ssh-keygen shows it.

    Raises:
        SignatureError: the file is not a public key.
    """
    out = _run([ssh_keygen(), "-l", "-f", str(public)], f"cannot read the key {public}")
    fields = out.decode(errors="replace").split()
    if len(fields) < 2:
        raise SignatureError(f"cannot read the key {public}")
    return fields[1]


def _run(command: list[str], what: str, data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(command, input=data, capture_output=True,
                              timeout=TIMEOUT_SECONDS, check=False,
                              env={**os.environ, "LC_ALL": "C"})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SignatureError(f"{what}: {_why(e)}") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise SignatureError(f"{what}: {said[-1][:160] if said else 'ssh-keygen failed'}")
    return done.stdout


def _why(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
