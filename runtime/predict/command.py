"""``edgecnn predict``: the command, its options, and how results reach the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgecnn.runtime.options import (
    AUTO,
    BackendOption,
    IntegrityOption,
    NoRejectOption,
    RawConfidenceOption,
    RejectBelowOption,
    reject_option,
)

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier
    from edgecnn.runtime.predict.inputs import Inputs
    from edgecnn.runtime.predict.stream import StreamOptions
    from edgecnn.runtime.predict.workers import Workers
    from edgecnn.runtime.video import Source

ModelOrFileArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL|FILE",
        help="The model (.tflite, .onnx or weights.npz, or a C library with --backend c), "
        "or the first FILE: with no model named, the current model of the store "
        "(edgecnn models list) classifies every FILE.",
        show_default=False,
    ),
]
FilesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="FILE...",
        show_default=False,
        help="Pictures (PNG/JPEG/BMP), .npy arrays (one image or a batch), folders (their "
        "pictures and .npy arrays at any depth, in sorted path order; hidden files skipped) "
        "or quoted glob patterns such as 'shots/**/*.png'. Or one video source alone: a "
        "video file (.mp4, .mkv, .avi, ...), a camera (/dev/video0 or camera:0) or a "
        "stream (rtsp://, http(s):// MJPEG), classified frame by frame (edgecnn[video]).",
    ),
]
_VIDEO = "Video, camera and stream"


def predict_command(
    first: ModelOrFileArg,
    files: FilesArg = None,
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
    raw_confidence: RawConfidenceOption = False,
    reject_below: RejectBelowOption = None,
    no_reject: NoRejectOption = False,
    fps: Annotated[
        float | None,
        typer.Option(help="Take at most this many frames a second.", rich_help_panel=_VIDEO),
    ] = None,
    every: Annotated[
        int | None,
        typer.Option(min=1, help="Take every Nth frame. [default: 1]", rich_help_panel=_VIDEO),
    ] = None,
    frames: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many frames.", rich_help_panel=_VIDEO),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds of the stream.", rich_help_panel=_VIDEO),
    ] = None,
    crop: Annotated[
        str | None,
        typer.Option(
            help="The part of each frame to classify: center (the centred square) or "
            "X,Y,W,H in pixels. [default: center]",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
    invert: Annotated[
        str | None,
        typer.Option(
            help="yes, no, or auto: for a light-on-dark model, invert when most of the first "
            "frames have a light border; decided once per stream. [default: auto]",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
    on_change: Annotated[
        bool | None,
        typer.Option(
            "--on-change",
            help="Write only changes of the stable label: the same label, at --min-confidence "
            "or more, for --stable frames in a row.",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
    stable: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Frames in a row that make a label stable. [default: 3]",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            help="The confidence a frame needs to count towards a stable label. [default: 0.5]",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for a source to open and for each frame. [default: 10]",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=1000,
            help="Times a network stream that fails, stalls or ends is "
            "opened again, after 1, 2, 4, 8, 15 s. [default: 5]",
            rich_help_panel=_VIDEO,
        ),
    ] = None,
) -> None:
    """Classify images with an exported model; one line per input, printed batch by batch.

    Inputs are decoded and classified 256 at a time and written in input order as each
    batch completes, with the results of classifying each alone; memory stays flat for
    any number of files. Confidences are calibrated with the temperature fitted at
    export, and an input whose top probability is below the threshold fitted with it is
    answered "unknown" (its most likely class still listed).
    """
    import sys

    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.classifier import DEFAULT_TOP_K, check_threads
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.predict.inputs import NPY_SUFFIX, collect, find_files
    from edgecnn.runtime.predict.lifetime import sigterm_interrupts
    from edgecnn.runtime.predict.workers import start_workers, stop_workers

    model, files = _model_and_inputs(first, files or [])
    check_threads(threads, "--threads")
    calibrated, reject = not raw_confidence, reject_option(reject_below, no_reject)
    if as_json and as_jsonl:
        raise InputError("--json and --jsonl are two output styles: choose one")
    video: dict[str, object] = {
        "--fps": fps, "--every": every, "--frames": frames, "--seconds": seconds,
        "--crop": crop, "--invert": invert, "--on-change": on_change, "--stable": stable,
        "--min-confidence": min_confidence, "--timeout": timeout, "--retries": retries,
    }  # fmt: skip
    source = _video_source(files, as_json, video)
    if source is not None:
        from edgecnn.runtime.predict.stream import StreamOptions

        options = StreamOptions.from_cli(
            fps, every, frames, seconds, crop, invert, on_change, stable, min_confidence,
            timeout, retries,
        )  # fmt: skip
        with sigterm_interrupts():
            _predict_video(model, source, options, backend.value, threads, integrity_check,
                           calibrated, reject, as_jsonl, top_k)  # fmt: skip
        return
    with sigterm_interrupts():  # SIGTERM as Ctrl-C: the workers stopped, one line, 143
        paths, left_out = find_files(files)
        # Before the model is loaded here: workers are forked while no interpreter thread
        # exists, and each loads its own copy.
        pictures = sum(not p.lower().endswith(NPY_SUFFIX) for p in paths)
        workers = start_workers(pictures, str(model), backend.value, threads, integrity_check,
                                calibrated, reject)  # fmt: skip
        try:
            with native_stderr_hidden():
                classifier = load_classifier(
                    model,
                    backend=backend.value,
                    # With workers this copy only describes the model: one thread is plenty.
                    num_threads=(threads or 1) if workers else threads,
                    check_integrity=integrity_check,
                    calibrated=calibrated,
                    reject=reject,
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


def _model_and_inputs(first: str, rest: list[str]) -> tuple[Path, list[str]]:
    """The model and the inputs: ``first`` is the model if it names one, else an input.

    A model is a file with a model suffix (.tflite, .onnx, .npz, ...) or a folder
    holding a C library; anything else is an input when the store has a current model.
    With no current model and more arguments, ``first`` is taken as the model, as before
    the store, so that the loader says what is wrong with it.

    Raises:
        InputError: no input is given, or no model and none installed.
    """
    from edgecnn.runtime.backends import folder_file, suffixes
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.store import current_model, resolve_model

    path = Path(first)
    named = path.suffix.lower() in suffixes() or (path.is_dir() and folder_file(path))
    if (named and "://" not in first) or (rest and current_model() is None):
        if not rest:
            raise InputError("give the pictures, arrays, folders or video to classify after MODEL")
        return path, rest
    return resolve_model(None), [first, *rest]


def _video_source(files: list[str], as_json: bool, video: dict[str, object]) -> Source | None:
    """The video source among ``files``, which must then be alone; None for pictures.

    Raises:
        InputError: a video source with other inputs or with --json, or a video option
            given for pictures.
    """
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.video import stream_source

    sources = [s for s in map(stream_source, files) if s is not None]
    if not sources:
        given = [name for name, value in video.items() if value is not None]
        if given:
            raise InputError(f"{given[0]} applies to a video, camera or stream, not to pictures")
        return None
    if len(files) > 1:
        raise InputError(
            f"{sources[0].shown} is a video source: it is read alone, not with other inputs"
        )
    if as_json:
        raise InputError("a stream has no end for one JSON document: use --jsonl")
    return sources[0]


def _predict_video(
    model: Path, source: Source, options: StreamOptions, backend: str, threads: int | None,
    integrity_check: bool, calibrated: bool, reject: bool | float, as_jsonl: bool,
    top_k: int | None,
) -> None:  # fmt: skip
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.predict.stream import predict_stream
    from edgecnn.runtime.streaming import INTERPRETER_THREADS
    from edgecnn.runtime.video import check_support

    check_support(source)  # one line before the model loads
    with native_stderr_hidden():
        classifier = load_classifier(
            model,
            backend=backend,
            num_threads=threads or INTERPRETER_THREADS,
            check_integrity=integrity_check,
            calibrated=calibrated,
            reject=reject,
        )
    if top_k is not None and top_k > len(classifier.labels):
        raise InputError(f"--top-k must be in 1..{len(classifier.labels)}, got {top_k}")
    try:
        predict_stream(classifier, source, options, as_jsonl, top_k)
    except BrokenPipeError:
        _stdout_closed()


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
            unknown = None if batch.probs is None else classifier.unknown(batch.probs)
            writer.write(batch.names, batch.probs, batch.failed, unknown)
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
