"""The options the runtime's commands share (``predict``, ``bench``, ``serve``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.runtime.backends import BACKENDS

#: Backends ``--backend`` accepts: auto and every registered one.
BackendName = Enum(  # type: ignore[misc]
    "BackendName", {name: name for name in ("auto", *BACKENDS)}, type=str
)
AUTO = BackendName("auto")


ModelArg = Annotated[
    Path,
    typer.Argument(
        metavar="MODEL", help=".tflite, .onnx or weights.npz (or a C library with --backend c)"
    ),
]
#: MODEL where it may be left out: the store's current model then (edgecnn models list).
OptionalModelArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="MODEL",
        help=".tflite, .onnx or weights.npz (or a C library with --backend c). "
        "[default: the current model of HOME/models, see edgecnn models list]",
        show_default=False,
    ),
]
BackendOption = Annotated[
    BackendName,
    typer.Option(
        help="Interpreter to use; auto picks the first installed for the file. c loads the "
        "exported C library (exports/c): a library is code that runs with your privileges, "
        "so auto never picks it, and it loads only beside its export's sidecar with a "
        "matching SHA-256."
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="Interpreter threads, up to 4 per core. [default: the backend's best]"
    ),
]
IntegrityOption = Annotated[
    bool,
    typer.Option(
        "--integrity-check/--no-integrity-check",
        help="Refuse a model whose bytes differ from the SHA-256 it records (a damaged or "
        "edited file). A C library is checked either way: it is code.",
    ),
]
