"""README.txt: what a bundle holds and how to install it, every claim read from its manifest.

Nothing here says what a target's bundles usually carry: a bundle made with ``--model``,
``--python`` or without ``--video`` carries less, so each line about wheels, models,
the sample picture and the signature comes from bundle.json's own fields.
"""

from __future__ import annotations

from typing import Any

#: The wheel that plays videos, cameras and streams (edgecnn[video]).
VIDEO_WHEEL = "av"


def readme(manifest: dict[str, Any]) -> str:
    """README.txt for the bundle ``manifest`` (bundle.json's content) describes."""
    name, version = manifest.get("name", "model"), manifest.get("version", "")
    lines = [
        f"edgecnn {manifest['edgecnn_version']} for {manifest['target_name']}",
        "",
        "Install (offline, into a venv):",
        "",
        "    sh install.sh [VENV] [--service] [--allow-unsigned]    # default VENV: ~/edgecnn",
        "",
        "It first checks every file against SHA256SUMS and installs nothing if one differs,",
        "is missing or extra. It cannot check itself: before running it, compare the",
        "archive's SHA-256 with the one edgecnn bundle printed (sha256sum ARCHIVE).",
        "It needs GNU coreutils' sha256sum, as Debian and Raspberry Pi OS have (BusyBox's",
        "has no --strict), and runs Python isolated (python3 -I): a json.py or edgecnn/ in",
        "the current folder is never imported.",
        "",
        f"Then it puts the model into the venv's store as {name} {version},",
        "",
        f"    VENV/models/{name}/{version}",
        "",
        "checks it there with edgecnn verify, makes it the current model, and links",
        "edgecnn into ~/.local/bin. --service also writes a systemd user unit that runs",
        "edgecnn serve on the current model; serve follows edgecnn update by itself.",
        "The store and keys are the venv's (install.sh and the unit set EDGECNN_HOME=VENV).",
        "",
        *_signature_lines(manifest),
        "",
        f"Model: model/{manifest['model']}",
    ]
    others = [m for m in manifest.get("models", []) if m != manifest["model"]]
    if others:
        lines.append(f"Also: {', '.join('model/' + m for m in others)} (run where the first "
                     "has no interpreter)")  # fmt: skip
    if manifest.get("sample"):
        lines += ["", f"Sample picture: {manifest['sample']}, a test picture of the class its",
                  "name says; after installing, from this folder:", "",
                  f"    edgecnn predict {manifest['sample']}"]  # fmt: skip
    lines += ["", *_wheel_lines(manifest), "", manifest["notes"], ""]
    return "\n".join(lines)


def _signature_lines(manifest: dict[str, Any]) -> list[str]:
    if manifest.get("signed"):
        return [
            "Signed: SHA256SUMS.sig is the owner's signature of SHA256SUMS, and",
            "keys/owner.pub the owner's public key; install.sh checks it before it makes or",
            "installs anything. On a venv without VENV/keys/allowed_signers, install.sh",
            "makes it trust this key (edgecnn update then takes only update files this key",
            "signed); on one that trusts a key already, it refuses a bundle signed by another.",
        ]
    return [
        "Not signed (made without edgecnn bundle --key). On a venv that trusts an owner",
        "key (VENV/keys/allowed_signers), install.sh refuses it (exit 2) unless run as",
        "sh install.sh VENV --allow-unsigned, and then leaves the trusted key as it is. On",
        "a venv that trusts none, it installs it and installs no owner key, so edgecnn",
        "update there takes no update file until a signed bundle is installed.",
    ]


def _wheel_lines(manifest: dict[str, Any]) -> list[str]:
    pythons: dict[str, dict[str, Any]] = manifest["pythons"]
    if not pythons:
        return ["Wheels: edgecnn's only; its requirements come from the system or the "
                "package index."]  # fmt: skip
    lines = ["Wheels carried, by Python version (with their own requirements):"]
    for version, entry in pythons.items():
        extra = f" (no {entry['missing']} wheel)" if entry.get("missing") else ""
        lines.append(f"  {version}: {' '.join(entry['requirements'])}; runs "
                     f"model/{entry['model']}{extra}")  # fmt: skip
    video = [v for v, e in pythons.items() if VIDEO_WHEEL in e["requirements"]]
    if video:
        lines += [
            "",
            f"Videos, cameras and streams (edgecnn predict clip.mp4) need PyAV ({VIDEO_WHEEL})",
            f"and Pillow: PyAV is carried for Python {', '.join(video)}; install.sh names",
            "the system's package for what is missing (on Raspberry Pi OS 32-bit: sudo apt",
            "install python3-pil).",
        ]
    else:
        lines += ["", "No PyAV: for videos, cameras and streams make the bundle with "
                  "edgecnn bundle --video."]  # fmt: skip
    return lines
