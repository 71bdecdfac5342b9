"""The options the runtime's commands share (``predict``, ``bench``, ``serve``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.errors import InputError

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

#: The help panel of the options below, in every command that has them.
CONFIDENCE_PANEL = "Confidence and unknown"
RawConfidenceOption = Annotated[
    bool,
    typer.Option(
        "--raw-confidence",
        help="Show the model's own probabilities, without the temperature fitted at export "
        "(and without the file's 'unknown' threshold, fitted on calibrated ones).",
        rich_help_panel=CONFIDENCE_PANEL,
    ),
]
RejectBelowOption = Annotated[
    float | None,
    typer.Option(
        "--reject-below",
        metavar="P",
        help="Answer 'unknown' when the top probability is below P (0..1), in place of the "
        "threshold fitted at export; 0 never, 1 always (short of certainty). [default: the "
        "file's]",
        show_default=False,
        rich_help_panel=CONFIDENCE_PANEL,
    ),
]
NoRejectOption = Annotated[
    bool,
    typer.Option(
        "--no-reject",
        help="Never answer 'unknown': always the most likely class.",
        rich_help_panel=CONFIDENCE_PANEL,
    ),
]


def reject_option(reject_below: float | None, no_reject: bool) -> bool | float:
    """``load_classifier``'s ``reject`` from ``--reject-below`` and ``--no-reject``.

    True (the file's threshold) when neither is given.

    Raises:
        InputError: both given, or a threshold outside 0..1.
    """
    if reject_below is None:
        return not no_reject
    if no_reject:
        raise InputError("--reject-below and --no-reject contradict each other: choose one")
    if not 0 <= reject_below <= 1:  # NaN too
        raise InputError(f"--reject-below must be in 0..1, got {reject_below:g}")
    return float(reject_below)
