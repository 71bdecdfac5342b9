"""Load what :func:`~edgecnn.export.doctor.diagnosis.diagnose` needs from a run's folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn._quiet import native_stderr_hidden
from edgecnn.errors import ConfigError

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
    from edgecnn.trainer import training_data
    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.evaluate import load_keras_model
    from edgecnn.trainer.model_source import resolve_model

    source = resolve_model(patient.run)
    model = load_keras_model(source.model_path)
    dataset = training_data.for_model(model, source, data_dir, data, whole_train=True)
    calibration, seed = _calibration(patient.tflite.parent, dataset.x_train)
    with native_stderr_hidden():
        return diagnose(
            model,
            flatbuffer,
            str(patient.tflite),
            calibration=to_float(calibration),
            train=to_float(dataset.x_train),
            test=to_float(dataset.x_test),
            seed=seed,
            onnx=patient.onnx,
            tensor_images=tensor_images,
            sweep_sizes=SWEEP_SIZES if sweep_sizes is None else sweep_sizes,
        )


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
