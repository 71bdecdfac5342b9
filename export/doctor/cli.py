"""``edgecnn doctor``: why an int8 file disagrees with Keras, and what to try.

TensorFlow is imported inside the command; bad targets are answered before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.errors import ConfigError

INT8_TFLITE = "model_int8.tflite"
FLOAT_ONNX = "model_float32.onnx"
INT8_ONNX = "model_int8.onnx"
REJECTED = ".rejected"


@dataclass(frozen=True)
class Patient:
    """What the doctor examines: the run, its int8 file and the ONNX pair if any."""

    run: Path
    tflite: Path
    onnx: tuple[Path, Path] | None


def doctor_command(
    target: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_OR_MODEL",
            help="A run folder, its exports/ folder, or an int8 .tflite in it (a rejected "
            "one too: model_int8.tflite.rejected).",
        ),
    ],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder with the dataset's IDX files.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Your own pictures (a folder or .npz) the run used."),
    ] = None,
    images: Annotated[
        int, typer.Option(help="Test and calibration images the per-tensor errors use.")
    ] = 1000,
    sweep: Annotated[
        str,
        typer.Option(
            help="Calibration sizes the sweep tries, comma-separated, or none.",
        ),
    ] = "100,500,2000,10000",
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")] = False,
) -> None:
    """Per-tensor int8 error, per-layer sensitivity and a calibration sweep, then a verdict.

    Each quantized tensor of the int8 .tflite (and of the int8 ONNX beside it) is compared
    with the Keras model's on test and calibration images: SQNR (whole and median
    channel), error in quantization steps, share clipped. Each layer is then kept in
    float in turn (with the tensor it makes), and the calibration redone with 100 to
    10,000 images; agreement with Keras is measured on the test images each time.
    """
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    sizes = sweep_sizes(sweep)
    patient = find_patient(target)
    from edgecnn import _json
    from edgecnn.export.doctor.examine import examine

    diagnosis = examine(
        patient, data_dir=data_dir, data=data, tensor_images=images, sweep_sizes=sizes
    )
    if as_json:
        typer.echo(_json.dumps(diagnosis.to_dict()))
        return
    from edgecnn.export.doctor.show import format_diagnosis

    typer.echo(format_diagnosis(diagnosis))


def sweep_sizes(text: str) -> tuple[int, ...]:
    """``--sweep``: whole numbers of at least 1 separated by commas, or ``none``."""
    if text.strip().lower() == "none":
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(
            f"--sweep takes image counts separated by commas (100,500) or none, got {text!r:.40}"
        )
    return sizes


def find_patient(target: Path) -> Patient:
    """The run folder and int8 files ``target`` names; one plain line when there are none.

    Raises:
        ConfigError: no such path, no run (model.keras) around it, or no int8 files.
    """
    from edgecnn.run_folder import EXPORTS_DIR, MODEL_FILE

    if not target.exists():
        raise ConfigError(f"{target} does not exist")
    if target.is_file():
        if not target.name.startswith(INT8_TFLITE):
            raise ConfigError(
                f"{target.name} is not an int8 .tflite: give the run folder, its "
                f"exports/ or its {INT8_TFLITE}"
            )
        exports, tflite = target.parent, target
    else:
        exports = target / EXPORTS_DIR if (target / MODEL_FILE).is_file() else target
        tflite = _either(exports / INT8_TFLITE)
    run = exports.parent
    if not (run / MODEL_FILE).is_file():
        where = f"{target} or {run}" if target.is_dir() else f"{run}"
        raise ConfigError(
            f"the doctor compares with the float Keras model: no {MODEL_FILE} in {where}; "
            "give the run folder"
        )
    if not tflite.is_file():
        raise ConfigError(
            f"{run} has no int8 files: export them first with 'edgecnn export {run} --int8'"
        )
    float_onnx, int8_onnx = exports / FLOAT_ONNX, _either(exports / INT8_ONNX)
    onnx = (float_onnx, int8_onnx) if float_onnx.is_file() and int8_onnx.is_file() else None
    return Patient(run, tflite, onnx)


def _either(path: Path) -> Path:
    """``path``, or its ``.rejected`` twin when only that one exists."""
    rejected = path.with_name(path.name + REJECTED)
    return rejected if not path.is_file() and rejected.is_file() else path


def register(app: typer.Typer) -> None:
    """Add ``edgecnn doctor`` to the app."""
    app.command("doctor")(doctor_command)
