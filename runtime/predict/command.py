"""``edgecnn predict``: the command, its options, and how results reach the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgecnn.runtime.options import (
    AUTO,
    BackendOption,
    IntegrityOption,
    ModelArg,
)

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier
    from edgecnn.runtime.predict.inputs import Inputs
    from edgecnn.runtime.predict.workers import Workers

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
    from edgecnn.runtime.predict.inputs import NPY_SUFFIX, collect, find_files
    from edgecnn.runtime.predict.lifetime import sigterm_interrupts
    from edgecnn.runtime.predict.workers import start_workers, stop_workers

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
    from edgecnn.runtime.predict.output import escape_text

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

    from edgecnn.runtime.predict.batches import BATCH_SIZE
    from edgecnn.runtime.predict.output import ResultWriter
    from edgecnn.runtime.predict.progress_bar import ProgressBar
    from edgecnn.runtime.predict.workers import classify_batches

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
