"""The runtime's commands: ``verify`` and ``bench`` (``predict`` and ``serve`` live apart)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgecnn.runtime.options import (
    AUTO,
    BackendOption,
    OptionalModelArg,
    ThreadsOption,
)

if TYPE_CHECKING:
    pass


def verify_command(
    model: OptionalModelArg = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="The reference to check against. [default: MODEL.reference.npz]"),
    ] = None,
    backend: BackendOption = AUTO,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check an exported file on this device against the outputs it was exported with.

    Runs the reference images saved beside the file at export and applies the export's
    gate (top-1 agreement with Keras, accuracy drop, probability difference) as it holds
    on those images; also says how far this device's outputs are from the exporting
    machine's. Exit 1 if the file fails (or is not the file that was proven),
    2 if the file or the reference cannot be used (with --json, still one JSON document).
    Without MODEL, the store's current model (edgecnn models list).
    """
    from edgecnn import _json
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.errors import EdgecnnError
    from edgecnn.runtime.classifier import check_threads
    from edgecnn.runtime.store import resolve_model
    from edgecnn.runtime.verify import format_result, verify

    error: EdgecnnError | None = None
    with native_stderr_hidden():
        try:  # caught inside: the libraries' chatter is not part of a one-line answer
            check_threads(threads, "--threads")
            model = resolve_model(model)
            result = verify(model, reference, backend=backend.value, num_threads=threads)
        except EdgecnnError as e:
            error = e
    if error is not None:
        if as_json:
            shown = str(model) if model is not None else None
            typer.echo(_json.dumps({"model": shown, "passed": False, "error": str(error)}))
        raise error
    typer.echo(_json.dumps(result.to_dict()) if as_json else format_result(result))
    if not result.passed:
        raise typer.Exit(1)


#: The largest batch ``bench`` builds: beyond it a benchmark measures memory, not speed.
MAX_BENCH_BATCH = 4096


def bench_command(
    models: Annotated[list[Path], typer.Argument(metavar="MODEL...", help="Models to measure.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32,256",
    backend: BackendOption = AUTO,
    threads: ThreadsOption = None,
    runs: Annotated[
        int,
        typer.Option(
            min=10,
            help="Single-image runs per model. The p99 rests on the slowest 1% of them: "
            "take 10,000 or more to compare p99s.",
        ),
    ] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Latency, throughput, load time and memory of each model, beside the bare interpreter.

    The bare interpreter does the same work from the same pixels (converting them to the
    model's input type, reading the output back), without edgecnn's checks; the two run
    interleaved, on the test images saved beside the model at export.
    """
    from edgecnn import _json
    from edgecnn.errors import ConfigError
    from edgecnn.runtime.benchmark import bench_model, format_bench
    from edgecnn.runtime.classifier import check_threads

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(
            f"--batch-sizes takes integers like 1,32,256; got {batch_sizes}"
        ) from None
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_BENCH_BATCH:
        raise ConfigError(
            f"--batch-sizes must be integers in 1..{MAX_BENCH_BATCH}; got {batch_sizes}"
        )
    check_threads(threads, "--threads")
    results = [bench_model(m, sizes, threads, runs, backend=backend.value) for m in models]
    if as_json:
        typer.echo(_json.dumps(results))
    else:
        typer.echo(format_bench(results))


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``verify``, ``bench``, ``serve``, ``models`` and ``update`` to the app."""
    from edgecnn.runtime.models_cli import models_app, update_command
    from edgecnn.runtime.predict.command import predict_command
    from edgecnn.runtime.serve.cli import serve_command

    app.command("predict")(predict_command)
    app.command("verify")(verify_command)
    app.command("bench")(bench_command)
    app.command("serve")(serve_command)
    app.add_typer(models_app, name="models")
    app.command("update")(update_command)
