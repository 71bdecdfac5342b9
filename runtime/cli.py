"""``edgecnn predict`` and ``edgecnn bench``: the runtime's commands, free of TensorFlow."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer


class BackendName(str, Enum):
    """Backends ``--backend`` accepts."""

    auto = "auto"
    litert = "litert"
    tflite = "tflite"
    onnxruntime = "onnxruntime"
    numpy = "numpy"


ModelArg = Annotated[Path, typer.Argument(metavar="MODEL", help=".tflite, .onnx or weights.npz")]
BackendOption = Annotated[
    BackendName, typer.Option(help="Interpreter to use; auto picks the first installed.")
]
ThreadsOption = Annotated[
    int | None, typer.Option(min=1, help="Interpreter threads. [default: the backend's best]")
]


def _inputs(files: list[Path]) -> list[tuple[str, Any]]:
    """``(name, image)`` pairs: pictures as paths, ``.npy`` arrays split into images."""
    import numpy as np

    from edgecnn.runtime.errors import InputError
    from edgecnn.runtime.preprocess import to_batch

    items: list[tuple[str, Any]] = []
    for path in files:
        if path.suffix.lower() != ".npy":
            items.append((str(path), path))
            continue
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{path} does not exist") from None
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"{path} is not a readable .npy array ({e})") from None
        try:
            batch = to_batch(array)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        if len(batch) == 1:
            items.append((str(path), array))
        else:
            items += [(f"{path}[{i}]", array[i]) for i in range(len(batch))]
    return items


def predict_command(
    model: ModelArg,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="Images (PNG/JPEG/BMP) or .npy arrays.")
    ],
    top_k: Annotated[int, typer.Option(min=1, max=10, help="Classes to list per input.")] = 3,
    backend: BackendOption = BackendName.auto,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Classify images with an exported model; one line per input."""
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.errors import InputError

    classifier = load_classifier(model, backend=backend.value, num_threads=threads)
    results = []
    for name, item in _inputs(files):
        try:
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
        typer.echo(
            json.dumps(
                {"model": str(model), "backend": classifier.backend_name, "results": results},
                indent=2,
            )
        )
        return
    width = max(len(r["file"]) for r in results)
    for r in results:
        others = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top_k"])
        typer.echo(
            f"{r['file']:<{width}}  {r['label']:<12s} {100 * r['confidence']:5.1f}%  [{others}]"
        )


def bench_command(
    models: Annotated[list[Path], typer.Argument(metavar="MODEL...", help="Models to measure.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,32,256",
    threads: ThreadsOption = None,
    runs: Annotated[int, typer.Option(min=10, help="Single-image runs per model.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Latency, throughput, load time and memory of each model, beside the raw interpreter."""
    from edgecnn.errors import ConfigError
    from edgecnn.runtime.bench import bench_model, format_bench

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(
            f"--batch-sizes takes integers like 1,32,256; got {batch_sizes}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes must be positive integers; got {batch_sizes}")
    results = [bench_model(m, sizes, threads, runs) for m in models]
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        typer.echo(format_bench(results))


def register(app: typer.Typer) -> None:
    """Add ``edgecnn predict``, ``edgecnn bench`` and ``edgecnn serve`` to the app."""
    from edgecnn.runtime.serve_cli import serve_command

    app.command("predict")(predict_command)
    app.command("bench")(bench_command)
    app.command("serve")(serve_command)
