"""Run directories and model files: what a path given on the command line points at."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError, EdgecnnError
from edgecnn.runtime.errors import ModelError  # one error type for bad models, in every stage
from edgecnn.trainer.config import TrainConfig

MODEL_FILE = "model.keras"
#: Written after every completed epoch; names that epoch's checkpoint file.
STATE_FILE = "checkpoint.json"


@dataclass(frozen=True)
class ModelSource:
    """A Keras model file and, when it came from a run directory, that run's configuration."""

    model_path: Path
    run_dir: Path | None
    config: TrainConfig | None


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
    else:
        raise ModelError(f"{target} does not exist")
    config = None
    config_path = model_path.parent / "config.json"
    if config_path.is_file():
        try:
            config = TrainConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, OSError, EdgecnnError):
            config = None  # an unrelated or older config.json: fall back to the defaults
    return ModelSource(model_path=model_path, run_dir=run_dir, config=config)


def read_checkpoint_state(out_dir: Path) -> dict[str, Any]:
    """The state saved after the last completed epoch in ``out_dir``.

    Raises:
        ConfigError: there is no usable checkpoint to resume from.
    """
    path = out_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
        checkpoint = out_dir / state["checkpoint"]
    except FileNotFoundError:
        raise ConfigError(f"nothing to resume: {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot resume: {path} is unreadable ({e})") from None
    if not checkpoint.is_file():
        raise ConfigError(f"cannot resume: checkpoint {checkpoint} is missing")
    return state
