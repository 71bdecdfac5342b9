"""What a path given on the command line points at: a run folder, a model, an output folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import ConfigError, EdgecnnError
from edgecnn.run_folder import CONFIG_FILE, MODEL_FILE, RUN_FILE, STATE_FILE
from edgecnn.runtime.contract import C_LIBRARY_STEM
from edgecnn.runtime.errors import ModelError  # one error type for bad models, in every stage
from edgecnn.trainer.config import TrainConfig


@dataclass(frozen=True)
class ModelSource:
    """A Keras model file and, when it came from a run directory, that run's configuration."""

    model_path: Path
    run_dir: Path | None
    config: TrainConfig | None


#: Suffixes of the files ``edgecnn export`` writes, which evaluate runs through the runtime.
EXPORTED_SUFFIXES = (".tflite", ".onnx", ".npz", ".so", ".dylib", ".dll")


def is_exported(target: str | Path) -> bool:
    """Whether ``target`` is an exported file or folder (the C library, the TFLM bundle)."""
    path = Path(target)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return False
        return any(path.glob(f"{C_LIBRARY_STEM}.*")) or (path / "model_data.cc").is_file()
    return path.suffix.lower() in EXPORTED_SUFFIXES


def resolve_model(target: str | Path) -> ModelSource:
    """Accept a run directory (with ``model.keras``) or a ``.keras`` file.

    Raises:
        ModelError: nothing usable at ``target``.
    """
    target = Path(target)
    if target.is_dir():
        model_path, run_dir = target / MODEL_FILE, target
        if not model_path.is_file():
            raise ModelError(
                f"{target} has no {MODEL_FILE}; train one with 'edgecnn train --out {target}'"
            )
    elif target.is_file():
        model_path, run_dir = target, None
    elif target.exists():
        raise ModelError(f"{target} is not a regular file (a device, pipe or socket)")
    else:
        raise ModelError(f"{target} does not exist")
    config = None
    config_path = model_path.parent / CONFIG_FILE
    if config_path.is_file():
        try:
            raw = read_regular_file(config_path, MiB, ConfigError, "a configuration file")
            config = TrainConfig.from_dict(json.loads(raw))
        except (ValueError, OSError, TypeError, RecursionError, EdgecnnError):
            config = None  # an unrelated or older config.json: fall back to the defaults
    return ModelSource(model_path=model_path, run_dir=run_dir, config=config)


def check_out_dir(out: Path, resume: bool, force: bool) -> None:
    """``edgecnn train --out`` never silently replaces a model or touches a pipeline's run.

    Raises:
        ConfigError: ``out`` belongs to ``edgecnn run``; or it holds a trained model or an
            interrupted training and neither ``--resume`` nor ``--force`` was given.
    """
    if (out / RUN_FILE).exists():
        raise ConfigError(
            f"{out} is a run of 'edgecnn run' and edgecnn train does not change it; continue "
            f"it with 'edgecnn run --resume --out {out}', or train into another --out"
        )
    if resume or force:
        return
    if (out / MODEL_FILE).exists():
        raise ConfigError(
            f"{out} already holds a trained {MODEL_FILE}; train into another --out (or leave "
            "--out out for a new runs/<timestamp>), or pass --force to replace it"
        )
    if (out / STATE_FILE).exists():
        raise ConfigError(
            f"{out} holds an interrupted training; continue it with 'edgecnn train --resume "
            f"--out {out}', or pass --force to start over"
        )
