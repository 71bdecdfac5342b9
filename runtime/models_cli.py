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
    """Every installed version: name, version, model file, size, created, current/previous."""
    from edgecnn import _json
    from edgecnn._files import format_size
    from edgecnn.runtime.store import Store

    store = Store()
    current, previous = store.current(), store.previous()
    rows = []
    for v in store.versions():
        size = sum(f.stat().st_size for f in v.folder.iterdir() if f.is_file())
        mark = ""
        if current is not None and v.folder == current.folder:
            mark = "current"
        elif previous is not None and v.folder == previous.folder:
            mark = "previous"
        rows.append((v.name, v.version, v.model.name, size, v.created, mark))
    if as_json:
        keys = ("name", "version", "model", "size", "created", "state")
        versions = [dict(zip(keys, row, strict=True)) for row in rows]
        typer.echo(_json.dumps({"store": str(store.root), "versions": versions}))
        return
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
    from edgecnn.runtime.store import Store
    from edgecnn.runtime.update import current_line

    store = Store()
    with store.locked():
        chosen = store.find(version, name)
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
) -> None:
    """Install a signed model-only update, verify it here, and make it current.

    Checks the signature against HOME/keys/allowed_signers, every file's SHA-256, the
    machine, and the input shape and classes of the current model of the same name.
    Exit 0 switched, 1 the new model failed verify (current unchanged), 2 refused.
    """
    from edgecnn.runtime.update import apply_update

    apply_update(update_file, typer.echo)
