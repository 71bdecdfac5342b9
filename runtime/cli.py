"""``edgecnn predict`` and ``edgecnn bench``: the runtime's commands, free of TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgecnn.runtime.options import (
    AUTO,
    BackendOption,
    IntegrityOption,
    ModelArg,
    ThreadsOption,
)

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier
    from edgecnn.runtime.inputs import Inputs
    from edgecnn.runtime.stream import Workers

FilesArg = Annotated[
    list[Path],
    typer.Argument(
        metavar="FILE...",
        help="Pictures (PNG/JPEG/BMP), .npy arrays (one image or a batch), folders (their "
        "pictures and .npy arrays at any depth, in sorted path order; hidden files skipped) "
        "or quoted glob patterns such as 'shots/**/*.png'.",
    ),
]


def predict_command(
    model: ModelArg,
    files: FilesArg,
    top_k: Annotated[
        int | None,
        typer.Option(
            min=1, help="Classes to list per input. [default: 3, or every class if fewer]"
        ),
    ] = None,
    backend: BackendOption = AUTO,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Interpreter threads, up to 4 per core. [default: the backend's best; with "
            "more than 256 pictures, one in each worker process, a worker per core]",
        ),
    ] = None,
    integrity_check: IntegrityOption = True,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON document on stdout, written as results come."),
    ] = False,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", help="JSON Lines on stdout: one object per input.")
    ] = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Report each picture or array that cannot be read (a 'skipped:' line on "
            'stderr; {"file", "error"} in JSON) and go on. Without it the first one stops '
            "the run with exit code 2, after the results before it.",
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="A progress bar on stderr, when it is a terminal and there is more than "
            "one batch.",
        ),
    ] = True,
) -> None:
    """Classify images with an exported model; one line per input, printed batch by batch.

    Inputs are decoded and classified 256 at a time and written in input order as each
    batch completes, with the results of classifying each alone; memory stays flat for
    any number of files.
    """
    import sys

    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.classifier import DEFAULT_TOP_K, check_threads
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.inputs import NPY_SUFFIX, collect, find_files
    from edgecnn.runtime.lifetime import sigterm_interrupts
    from edgecnn.runtime.stream import start_workers, stop_workers

    check_threads(threads, "--threads")
    if as_json and as_jsonl:
        raise InputError("--json and --jsonl are two output styles: choose one")
    with sigterm_interrupts():  # SIGTERM as Ctrl-C: the workers stopped, one line, 143
        paths, left_out = find_files(str(f) for f in files)
        # Before the model is loaded here: workers are forked while no interpreter thread
        # exists, and each loads its own copy.
        pictures = sum(not p.lower().endswith(NPY_SUFFIX) for p in paths)
        workers = start_workers(pictures, str(model), backend.value, threads, integrity_check)
        try:
            with native_stderr_hidden():
                classifier = load_classifier(
                    model,
                    backend=backend.value,
                    # With workers this copy only describes the model: one thread is plenty.
                    num_threads=(threads or 1) if workers else threads,
                    check_integrity=integrity_check,
                )
            if top_k is None:
                top_k = min(DEFAULT_TOP_K, len(classifier.labels))
            if top_k > len(classifier.labels):
                raise InputError(f"--top-k must be in 1..{len(classifier.labels)}, got {top_k}")
            inputs = collect(paths, classifier.input_shape, skip_bad)
            if left_out:
                sys.stderr.write(_left_out_note(left_out))
            style = "json" if as_json else "jsonl" if as_jsonl else "text"
            _write_results(classifier, model, inputs, workers, style, top_k, skip_bad, progress)
        except BrokenPipeError:
            _stdout_closed()
        finally:
            stop_workers(workers)


def _left_out_note(left_out: list[str]) -> str:
    from edgecnn.runtime.images import SUFFIXES
    from edgecnn.runtime.results import escape_text

    kinds = f"{', '.join(SUFFIXES)} or .npy"
    files = f"{len(left_out):,} file{'s' if len(left_out) != 1 else ''}"
    note = f"note: left out {files} of other kinds than {kinds}: {left_out[0]}"
    return escape_text(note + (", ..." if len(left_out) > 1 else "")) + "\n"


def _write_results(
    classifier: Classifier, model: Path, inputs: Inputs, workers: Workers | None,
    style: str, top_k: int, skip_bad: bool, progress: bool,
) -> None:  # fmt: skip
    """Classify ``inputs`` batch by batch, writing each batch's results and the progress."""
    import sys

    from edgecnn.runtime.batches import BATCH_SIZE
    from edgecnn.runtime.progress import ProgressBar
    from edgecnn.runtime.results import ResultWriter
    from edgecnn.runtime.stream import classify_batches

    out, err = sys.stdout, sys.stderr
    writer = ResultWriter(style, out, err, classifier.labels, top_k, inputs.name_width)
    bar = None
    if progress and inputs.images > BATCH_SIZE and err.isatty():
        bar = ProgressBar(inputs.images, err)
    shared_terminal = bar is not None and out.isatty()
    done = 0
    try:
        writer.start(str(model), classifier.backend_name)
        for batch in classify_batches(classifier, inputs.sources, workers, skip_bad):
            if bar is not None and shared_terminal:
                bar.clear()
            writer.write(batch.names, batch.probs, batch.failed)
            done += len(batch.names)
            if bar is not None:
                bar.update(done)
        writer.finish()
    except BaseException:
        if bar is not None:
            bar.close(summary=False)  # the error line follows on a clean line
        raise
    if bar is not None:
        bar.close(summary=True)
    if writer.skipped:
        err.write(f"note: skipped {writer.skipped:,} of {inputs.images:,} inputs: unreadable\n")


def _stdout_closed() -> None:
    """The reader of stdout went away (``| head``): stop quietly, as a pipeline expects."""
    import os
    import sys

    # Python would complain again when it flushes stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(141)  # 128 + SIGPIPE, what a shell reports for tools the pipe stopped


def verify_command(
    model: ModelArg,
    reference: Annotated[
        Path | None,
        typer.Option(help="The reference to check against. [default: MODEL.reference.npz]"),
    ] = None,
    backend: BackendOption = AUTO,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check an exported file on this device against the outputs it was exported with.

    Runs the reference images saved beside the file at export and applies the same gate
    (top-1 agreement with Keras); also says how far this device's outputs are from the
    exporting machine's. Exit 1 if the file fails (or is not the file that was proven),
    2 if the file or the reference cannot be used (with --json, still one JSON document).
    """
    from edgecnn import _json
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.errors import EdgecnnError
    from edgecnn.runtime.classifier import check_threads
    from edgecnn.runtime.verify import format_result, verify

    error: EdgecnnError | None = None
    with native_stderr_hidden():
        try:  # caught inside: the libraries' chatter is not part of a one-line answer
            check_threads(threads, "--threads")
            result = verify(model, reference, backend=backend.value, num_threads=threads)
        except EdgecnnError as e:
            error = e
    if error is not None:
        if as_json:
            typer.echo(_json.dumps({"model": str(model), "passed": False, "error": str(error)}))
        raise error
    typer.echo(_json.dumps(result) if as_json else format_result(result))
    if not result["passed"]:
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
    """Add ``edgecnn predict``, ``edgecnn bench`` and ``edgecnn serve`` to the app."""
    from edgecnn.runtime.serve.cli import serve_command

    app.command("predict")(predict_command)
    app.command("verify")(verify_command)
    app.command("bench")(bench_command)
    app.command("serve")(serve_command)
