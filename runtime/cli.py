"""``edgecnn predict`` and ``edgecnn bench``: the runtime's commands, free of TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.runtime.options import (
    AUTO,
    BackendOption,
    IntegrityOption,
    ModelArg,
    ThreadsOption,
)

#: A .npy batch is memory-mapped, so it may be large; this only refuses absurd headers.
NPY_MAX_BYTES = 64 << 30


def _inputs(files: list[Path], shape: tuple[int, int, int]) -> list[tuple[str, Any]]:
    """``(name, image)`` pairs: pictures as paths, ``.npy`` arrays split into images."""
    from edgecnn._files import check_regular_file
    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.npy import NpyError, open_npy
    from edgecnn.runtime.preprocess import shape_hint, single_image_shapes

    items: list[tuple[str, Any]] = []
    for path in files:
        if path.suffix.lower() != ".npy":
            items.append((str(path), path))
            continue
        check_regular_file(path, NPY_MAX_BYTES, InputError, "a .npy array")
        try:
            array = open_npy(path, NPY_MAX_BYTES)
        except NpyError as e:
            raise InputError(f"{path} is not a readable .npy array ({e})") from None
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror}") from None
        # One image, or a batch of them (split, so that each gets its own line).
        if array.shape in single_image_shapes(shape):
            items.append((str(path), array))
        elif array.ndim in (3, 4) and array.shape[1:] in single_image_shapes(shape):
            items += [(f"{path}[{i}]", array[i]) for i in range(len(array))]
        else:
            raise InputError(
                f"{path}: images must have shape {shape_hint(shape)}; got {array.shape}"
            )
    return items


def predict_command(
    model: ModelArg,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="Images (PNG/JPEG/BMP) or .npy arrays.")
    ],
    top_k: Annotated[
        int | None,
        typer.Option(
            min=1, help="Classes to list per input. [default: 3, or every class if fewer]"
        ),
    ] = None,
    backend: BackendOption = AUTO,
    threads: ThreadsOption = None,
    integrity_check: IntegrityOption = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Classify images with an exported model; one line per input."""
    from edgecnn import _json
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.classifier import DEFAULT_TOP_K, check_threads
    from edgecnn.runtime.errors import InputError

    check_threads(threads, "--threads")
    with native_stderr_hidden():
        classifier = load_classifier(
            model, backend=backend.value, num_threads=threads, check_integrity=integrity_check
        )
    if top_k is None:
        top_k = min(DEFAULT_TOP_K, len(classifier.labels))
    if top_k > len(classifier.labels):
        raise InputError(f"--top-k must be in 1..{len(classifier.labels)}, got {top_k}")
    results: list[dict[str, Any]] = []
    for name, item in _inputs(files, classifier.input_shape):
        try:
            with native_stderr_hidden():
                ranked = classifier.classify(item, top_k=top_k)
        except InputError as e:
            raise InputError(e if str(e).startswith(name) else f"{name}: {e}") from None
        results.append(
            {
                "file": name,
                "label": ranked[0][0],
                "confidence": ranked[0][1],
                "top_k": [{"label": lab, "probability": p} for lab, p in ranked],
            }
        )
    if as_json:
        document = {"model": str(model), "backend": classifier.backend_name, "results": results}
        typer.echo(_json.dumps(document))
        return
    width = max(len(str(r["file"])) for r in results)
    for r in results:
        others = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top_k"])
        typer.echo(
            f"{r['file']:<{width}}  {r['label']:<12s} {100 * r['confidence']:5.1f}%  [{others}]"
        )


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
    exporting machine's. Exit 1 if the file fails (or is not the file that was proven).
    """
    from edgecnn import _json
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime.classifier import check_threads
    from edgecnn.runtime.verify import format_result, verify

    check_threads(threads, "--threads")
    with native_stderr_hidden():
        result = verify(model, reference, backend=backend.value, num_threads=threads)
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
    runs: Annotated[int, typer.Option(min=10, help="Single-image runs per model.")] = 500,
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
