"""``edgecnn bundle`` and ``edgecnn keys``: what a device installs, and the key that signs it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.errors import ConfigError
from edgecnn.pipeline.release import DEFAULT_KEYS_DIR


def bundle_command(
    source: Annotated[
        Path, typer.Argument(help="A run folder, or its exports/ folder.", show_default=False)
    ],
    target: Annotated[
        str,
        typer.Option(help="The device: pi64, pi32, linux-x86 or generic.", show_default=False),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="An archive (.tar.gz, .tgz) or a folder; with --model-only, the update "
            "file. [default: edgecnn-<target>.tar.gz beside exports/; with --model-only, "
            "<name>-<version>-<target>.edgecnn-update]"
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="The exported file to bundle. [default: the run's recommendation for the target]"
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated Python versions to carry wheels for. "
            "[default: pi64, pi32: 3.11,3.13 (bookworm, trixie); linux-x86: 3.10 to 3.13]"
        ),
    ] = None,
    wheels: Annotated[
        Path | None,
        typer.Option(
            help="Take wheels from this folder instead of the package index (an offline "
            "build machine)."
        ),
    ] = None,
    video: Annotated[
        bool,
        typer.Option(
            "--video",
            help="Carry PyAV's wheel (33 to 39 MB a Python) for videos, cameras and streams.",
        ),
    ] = False,
    model_only: Annotated[
        bool,
        typer.Option(
            "--model-only",
            help="Write only a signed update file (the model, its sidecar and reference: "
            "kilobytes) for a device that runs edgecnn already: edgecnn update FILE there. "
            "Needs --key.",
        ),
    ] = False,
    key: Annotated[
        Path | None,
        typer.Option(
            help="The owner's private key (edgecnn keys makes it): signs the bundle and "
            "carries its public key, which the device then trusts for updates.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="The model's name in the device's store. [default: the dataset's, e.g. "
            "fashion-mnist]"
        ),
    ] = None,
) -> None:
    """Pack edgecnn, its wheels for a device and a verified model into one archive.

    On the device, with no network: tar xzf edgecnn-pi64.tar.gz && sh edgecnn-pi64/install.sh
    installs into ~/edgecnn, checks the model with edgecnn verify and makes it the current
    one. With --model-only --key, only a signed update file for edgecnn update.
    """
    models = None
    if model is not None:
        models = tuple(m.strip() for m in model.split(",") if m.strip())
        if not models:
            raise ConfigError("--model takes exported file names, comma-separated")
    if model_only:
        _model_only(source, target, key, models, name, out, python, wheels, video)
        return
    from edgecnn.pipeline.bundle import build_bundle

    pythons = None
    if python is not None:
        pythons = tuple(v.strip() for v in python.split(",") if v.strip())
        if not pythons:
            raise ConfigError("--python takes versions such as 3.11,3.13")
    if wheels is not None and not wheels.is_dir():
        raise ConfigError(f"--wheels {wheels}: not a folder")
    typer.echo(f"Bundling for {target} ...")
    manifest = build_bundle(source, target, out, models, pythons, wheels, log=typer.echo,
                            video=video, name=name, key=key)  # fmt: skip
    size = manifest["size_bytes"] / 1e6
    path = Path(manifest["out"])
    folder = f"edgecnn-{manifest['target']}"
    typer.echo(f"Wrote {path} ({size:,.1f} MB): model/{manifest['model']} as "
               f"{manifest['name']} {manifest['version']}, "
               f"Python {', '.join(manifest['pythons']) or 'any'}"
               f"{', signed' if manifest['signed'] else ''}")  # fmt: skip
    if path.is_file():
        typer.echo(f"On the device: tar xzf {path.name} && sh {folder}/install.sh")
    else:
        typer.echo(f"On the device: sh {path.name}/install.sh")


def _model_only(
    source: Path,
    target: str,
    key: Path | None,
    models: tuple[str, ...] | None,
    name: str | None,
    out: Path | None,
    python: str | None,
    wheels: Path | None,
    video: bool,
) -> None:
    """``--model-only``: the signed update file, its size and SHA-256."""
    if key is None:
        raise ConfigError("--model-only needs --key: a device takes only signed updates "
                          "(edgecnn keys makes a key)")  # fmt: skip
    for given, option in ((python, "--python"), (wheels, "--wheels"), (video, "--video")):
        if given:
            raise ConfigError(f"{option} is for full bundles: --model-only carries no wheels")
    from edgecnn.pipeline.update_file import build_update

    update = build_update(source, target, key, models, name, out)
    path = Path(update["out"])
    typer.echo(f"Wrote {path} ({update['size_bytes'] / 1e3:,.1f} kB): {update['model']} as "
               f"{update['name']} {update['version']}, signed")  # fmt: skip
    typer.echo(f"  SHA-256: {update['sha256']}")
    typer.echo(f"On the device: edgecnn update {path.name}")


def keys_command(
    out: Annotated[
        Path,
        typer.Option(help="The folder for the key pair, owner and owner.pub."),
    ] = DEFAULT_KEYS_DIR,
) -> None:
    """Make the owner's key pair, which signs bundles and update files (edgecnn bundle --key).

    A device trusts the public key from the first signed bundle installed on it, and then
    takes only updates signed by its private key. Keep the private key off the devices.
    """
    from edgecnn.pipeline.release import KEY_NAME
    from edgecnn.runtime.signing import fingerprint, make_key

    private = out.expanduser() / KEY_NAME
    public = make_key(private)
    typer.echo(f"Made the owner's key: {fingerprint(public)}")
    typer.echo(f"  private key: {private} (keep it here, and a copy somewhere safe: a device "
               "takes updates signed by it only)")  # fmt: skip
    typer.echo(f"  public key:  {public} (bundles made with --key {private} carry it)")
    typer.echo(f"Sign with: edgecnn bundle RUN --target TARGET --key {private}")
