"""``edgecnn models list|add|use|rollback|remove`` and ``edgecnn update UPDATE_FILE``.

The device's model store (:mod:`edgecnn.runtime.store`) and signed model-only updates
(:mod:`edgecnn.runtime.update`). Exit codes: 0 switched (or done), 1 the new model failed
verify here and ``current`` is unchanged, 2 refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(
    help="The models installed on this device (HOME/models): list, add, use, roll back.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameOption = Annotated[
    str | None,
    typer.Option("--name", help="The model's name, when several names have this version."),
]


@models_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Every installed version: name, version, model file, size, created, current/previous.

    A version whose model file is missing is marked broken, one added with --no-verify
    unverified.
    """
    from edgecnn import _json
    from edgecnn._files import format_size
    from edgecnn.runtime.store import Store

    store = Store()
    current, previous = store.current(), store.previous()
    broken_link = store.broken_current()
    rows = []
    for v in store.versions():
        size = sum(f.stat().st_size for f in v.folder.iterdir() if f.is_file())
        mark = ""
        if current is not None and v.folder == current.folder:
            mark = "current"
        elif previous is not None and v.folder == previous.folder:
            mark = "previous"
        notes = [n for n, on in (("broken", v.broken), ("unverified", not v.verified)) if on]
        mark = ", ".join(([mark] if mark else []) + notes)
        rows.append((v.name, v.version, v.model.name, size, v.created, mark))
    repair = None
    if broken_link is not None:
        repair = f"current: broken link to {broken_link}; edgecnn models use VERSION repairs it"
    if as_json:
        keys = ("name", "version", "model", "size", "created", "state")
        versions = [dict(zip(keys, row, strict=True)) for row in rows]
        typer.echo(_json.dumps({"store": str(store.root), "versions": versions,
                                "broken_current": broken_link}))  # fmt: skip
        return
    if repair is not None:
        typer.echo(repair)
    if not rows:
        typer.echo(f"no models installed in {store.root}; edgecnn models add MODEL_FILE --name N")
        return
    table = [("NAME", "VERSION", "MODEL", "SIZE", "CREATED", "")] + [
        (name, version, model, format_size(size), created, mark)
        for name, version, model, size, created, mark in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(6)]
    for row in table:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@models_app.command("add")
def add_command(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL_FILE",
            help="A .tflite, .onnx or weights.npz file, with its .json and .reference.npz "
            "beside it.",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="The model's name (e.g. fashion-mnist).")],
    version: Annotated[
        str | None,
        typer.Option(help="The version. [default: <YYYYmmdd-HHMMSS now>-<sha256[:8] of the file>]"),
    ] = None,
    check: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run edgecnn verify before switching.")
    ] = True,
) -> None:
    """Copy a model, its sidecar and reference into the store, verify it, make it current.

    Exit 1 if it fails verify (its folder is removed, current unchanged), 2 on bad input.
    """
    from edgecnn.runtime.update import add_model

    add_model(model, name, version, check, typer.echo)


@models_app.command("use")
def use_command(
    version: Annotated[str, typer.Argument(help="An installed version (edgecnn models list).")],
    name: NameOption = None,
) -> None:
    """Make an installed version current (the current one becomes previous)."""
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.store import Store
    from edgecnn.runtime.update import current_line

    store = Store()
    with store.locked():
        chosen = store.find(version, name)
        if chosen.broken:
            raise InputError(f"{chosen.label} is broken: its model file {chosen.model.name} is "
                             f"missing; edgecnn models remove {chosen.version} --name "
                             f"{chosen.name} removes it")  # fmt: skip
        previous = store.switch(chosen)
        typer.echo(current_line(chosen, previous))


@models_app.command("rollback")
def rollback_command() -> None:
    """Make the previous version current again (and the current one previous)."""
    from edgecnn.runtime.store import Store
    from edgecnn.runtime.update import current_line

    store = Store()
    with store.locked():
        now = store.current()
        back = store.rollback()
        typer.echo(current_line(back, now))


@models_app.command("remove")
def remove_command(
    version: Annotated[str, typer.Argument(help="An installed version (edgecnn models list).")],
    name: NameOption = None,
) -> None:
    """Remove an installed version; the current one is refused."""
    from edgecnn.runtime.store import Store

    store = Store()
    with store.locked():
        chosen = store.find(version, name)
        store.remove(chosen)
        typer.echo(f"removed {chosen.label}")


def update_command(
    update_file: Annotated[
        Path,
        typer.Argument(
            metavar="UPDATE_FILE", help="A signed <name>-<version>-<target>.edgecnn-update file."
        ),
    ],
    allow_older: Annotated[
        bool,
        typer.Option(
            "--allow-older",
            help="Install it even if it was made before the current model of the same name "
            "(a downgrade).",
        ),
    ] = False,
) -> None:
    """Install a signed model-only update, verify it here, and make it current.

    Checks the signature against HOME/keys/allowed_signers, every file's SHA-256, the
    machine, the model's own input shape and classes against update.json, those of the
    current model of the same name, and that it is not older than that one.
    Exit 0 switched, 1 the new model failed verify (current unchanged), 2 refused.
    """
    from edgecnn.runtime.update import apply_update

    apply_update(update_file, typer.echo, allow_older=allow_older)
