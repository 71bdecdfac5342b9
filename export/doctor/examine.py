"""Load what :func:`~edgecnn.export.doctor.diagnosis.diagnose` needs from a run's folder."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn._quiet import native_stderr_hidden
from edgecnn.errors import ConfigError
from edgecnn.runtime.metadata import METADATA_KEY
from edgecnn.runtime.tflite_metadata import read_tflite_metadata

if TYPE_CHECKING:
    from edgecnn.export.doctor.cli import Patient
    from edgecnn.export.doctor.diagnosis import Diagnosis


def examine(
    patient: Patient,
    data_dir: Path | None = None,
    data: Path | None = None,
    tensor_images: int = 1000,
    sweep_sizes: tuple[int, ...] | None = None,
) -> Diagnosis:
    """Diagnose the patient's int8 file on the data its run used.

    Raises:
        ConfigError: the int8 file is not a TFLite model this LiteRT can run.
    """
    flatbuffer = patient.tflite.read_bytes()
    _check_runs(patient.tflite, flatbuffer)  # a corrupt file is said before TensorFlow loads
    from edgecnn.export.doctor.diagnosis import SWEEP_SIZES, diagnose
    from edgecnn.export.exporter import agreement_images
    from edgecnn.trainer import training_data
    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.evaluate import load_keras_model
    from edgecnn.trainer.model_source import resolve_model

    source = resolve_model(patient.run)
    model = load_keras_model(source.model_path)
    dataset = training_data.for_model(model, source, data_dir, data, whole_train=True)
    calibration, seed = _calibration(patient.tflite.parent, dataset.x_train)
    remedy, full_integer = _made_with(read_tflite_metadata(flatbuffer).get(METADATA_KEY))
    scratch = tempfile.TemporaryDirectory(prefix="edgecnn-doctor-")
    with scratch, native_stderr_hidden():
        reference, images = _reference(model, remedy, full_integer, calibration, dataset, seed)
        onnx = _onnx_pair(patient, model, calibration, dataset, seed, Path(scratch.name))
        diagnosis = diagnose(
            reference,
            flatbuffer,
            str(patient.tflite),
            calibration=images,
            train=to_float(dataset.x_train),
            test=to_float(agreement_images(dataset)),
            seed=seed,
            onnx=onnx,
            tensor_images=tensor_images,
            sweep_sizes=SWEEP_SIZES if sweep_sizes is None else sweep_sizes,
        )
    if remedy == "none":
        return diagnosis
    note = (
        f"This file was made with --remedy {remedy}: its tensors are compared with the "
        "model that remedy made, and the sensitivity and sweep are for plain int8 of it. "
    )
    return dataclasses.replace(diagnosis, remedy=remedy, finding=note + diagnosis.finding)


def _onnx_pair(
    patient: Patient,
    model: Any,
    calibration: np.ndarray,
    dataset: Any,
    seed: int,
    scratch: Path,
) -> tuple[Path, Path] | None:
    """The float and int8 ONNX files to compare.

    The float one is made again from the remedied model when the int8 one was made with
    a remedy that changes the weights (their tensors would not be the same otherwise).
    """
    from edgecnn.runtime.onnx_scan import read_onnx_metadata

    if patient.onnx is None:
        return None
    float_path, int8_path = patient.onnx
    try:
        document = read_onnx_metadata(int8_path.read_bytes()).get(METADATA_KEY)
    except ValueError:  # not an ONNX file: diagnose() says it could not be examined
        document = None
    remedy, _ = _made_with(document)
    if remedy not in ("equalize", "bias-correction"):
        return float_path, int8_path
    from edgecnn.export.formats.onnx import convert_float

    reference, _ = _reference(model, remedy, True, calibration, dataset, seed)
    twin = scratch / "model_float32.onnx"
    twin.write_bytes(convert_float(reference))
    return twin, int8_path


def _made_with(document: bytes | str | None) -> tuple[str, bool]:
    """The remedy a file's metadata names ("none" if none) and whether it is full-integer."""
    try:
        quantization = json.loads(document or b"{}").get("quantization") or {}
        remedy = quantization.get("remedy", "none")
        scheme = str(quantization.get("scheme", ""))
    except (ValueError, AttributeError):
        return "none", False
    return (remedy if isinstance(remedy, str) else "none"), scheme.startswith("full integer")


def _reference(
    model: Any, remedy: str, full_integer: bool, calibration: np.ndarray, dataset: Any, seed: int
) -> tuple[Any, np.ndarray]:
    """The Keras model and calibration images (float) ``remedy`` made the file from."""
    from edgecnn.export.auto import remedied_model
    from edgecnn.trainer.dataset import to_float

    images = to_float(calibration)
    if remedy == "none":
        return model, images
    try:
        reference, images, _ = remedied_model(
            model, images, remedy, dataset.x_train, seed, len(calibration), not full_integer
        )
    except ValueError:  # a remedy the export could not make either: the model as it is
        return model, images
    return reference, images


def _check_runs(path: Path, flatbuffer: bytes) -> None:
    """One plain line for a file LiteRT cannot load or run."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_stderr_hidden():
            interpreter = Interpreter(model_content=flatbuffer)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path.name} is not a TFLite model LiteRT can run: {first}") from None


def _calibration(exports: Path, train: np.ndarray) -> tuple[np.ndarray, int]:
    """The training images the export calibrated on (its calibration.json), and its seed."""
    from edgecnn.export.config import ExportConfig
    from edgecnn.run_folder import CALIBRATION_FILE

    record: Any = None
    path = exports / CALIBRATION_FILE
    if path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
    indices = record.get("train_indices") if isinstance(record, dict) else None
    if (
        isinstance(indices, list)
        and indices
        and all(isinstance(i, int) and 0 <= i < len(train) for i in indices)
    ):
        seed = record.get("seed", 0)
        return train[np.asarray(indices)], seed if isinstance(seed, int) else 0
    config = ExportConfig()
    rng = np.random.default_rng(config.seed)
    n = min(config.calib_samples, len(train))
    if n < 1:
        raise ConfigError("the run has no training images to calibrate on")
    return train[np.sort(rng.choice(len(train), size=n, replace=False))], config.seed
