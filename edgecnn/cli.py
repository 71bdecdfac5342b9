"""The ``edgecnn`` command: a thin Typer app; each stage registers its own commands.

Nothing heavy is imported here: ``edgecnn --help`` must stay fast and TensorFlow-free.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

from edgecnn import __version__
from edgecnn.errors import EdgecnnError, Interrupted, one_line, plain_os_error


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


class EdgecnnGroup(TyperGroup):
    """Answers every failure with one plain line on stderr and a meaningful exit code.

    0 success, 2 bad input (usage errors and :class:`EdgecnnError`), 130 Ctrl-C,
    1 anything unexpected (``EDGECNN_DEBUG=1`` shows its traceback).
    """

    def invoke(self, ctx: Any) -> Any:  # noqa: D102
        # Typer turns Ctrl-C into a silent exit code 130 before main() could say so.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        kwargs["standalone_mode"] = False  # errors come here, to be said in one line
        try:
            rv = super().main(*args, **kwargs)
        except EdgecnnError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as e:
            if type(e).__name__ == "Abort":  # older Click turns Ctrl-C into Abort
                _fail("interrupted", 130)
            # Click's usage errors (vendored by newer Typer, so matched by shape, not type).
            code = getattr(e, "exit_code", None)
            if hasattr(e, "format_message") and isinstance(code, int):
                hint = ""
                ctx = getattr(e, "ctx", None)
                if ctx is not None:
                    hint = f" (see '{ctx.command_path} --help')"
                _fail(f"{e.format_message()}{hint}", code)
            plain = plain_os_error(e)
            if plain is not None:
                _fail(str(plain), plain.exit_code)
            if os.environ.get("EDGECNN_DEBUG"):
                traceback.print_exc()
            first = (str(e).strip().splitlines() or [""])[0]
            _fail(
                f"unexpected {type(e).__name__}: {first} (EDGECNN_DEBUG=1 shows the traceback)", 1
            )
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=EdgecnnGroup,
    help="Train the tutorial CNN, export verified edge models, and run them anywhere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train the tutorial CNN, export verified edge models, and run them anywhere."""


def _register() -> None:
    from edgecnn.export import cli as export_cli
    from edgecnn.pipeline import cli as pipeline_cli
    from edgecnn.runtime import cli as runtime_cli
    from edgecnn.trainer import cli as trainer_cli

    pipeline_cli.register(app)
    trainer_cli.register(app)
    export_cli.register(app)
    runtime_cli.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
