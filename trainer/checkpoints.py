"""Checkpoints: the model after every completed epoch, and the record that names the last one.

Killed at any moment, ``checkpoint.json`` names a complete checkpoint file, so
``edgecnn train --resume`` continues from the last completed epoch.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from edgecnn import _atomic, _json
from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import ConfigError
from edgecnn.run_folder import STATE_FILE
from edgecnn.runtime.contract import shape_text
from edgecnn.trainer.config import ModelConfig

#: What ``checkpoint.json`` may name: a checkpoint file inside the run folder, no path.
CHECKPOINT_NAME = re.compile(r"checkpoint-e\d{3,6}\.keras")


def checkpoint_name(epoch: int) -> str:
    """``checkpoint-e007.keras`` for epoch 7."""
    return f"checkpoint-e{epoch:03d}.keras"


def save_checkpoint(model: Any, out_dir: Path, state: dict[str, Any]) -> None:
    """Write the epoch's checkpoint, then point ``checkpoint.json`` at it, then drop the old one.

    Killed at any moment, ``checkpoint.json`` names a complete checkpoint file.
    """
    name = checkpoint_name(state["epoch"])
    with _atomic.atomic_path(out_dir / name) as tmp:
        model.save(tmp)
    previous = None
    if (out_dir / STATE_FILE).is_file():
        previous = json.loads((out_dir / STATE_FILE).read_text()).get("checkpoint")
    _atomic.write_json(out_dir / STATE_FILE, {**state, "checkpoint": name})
    if previous and previous != name and CHECKPOINT_NAME.fullmatch(previous):
        (out_dir / previous).unlink(missing_ok=True)


def read_checkpoint_state(out_dir: Path) -> dict[str, Any]:
    """The state saved after the last completed epoch in ``out_dir``, checked.

    Raises:
        ConfigError: there is no usable checkpoint to resume from.
    """
    path = out_dir / STATE_FILE
    if not path.exists():
        raise ConfigError(f"nothing to resume: {path} does not exist")
    raw = read_regular_file(path, MiB, ConfigError, "a checkpoint record")
    try:
        state: dict[str, Any] = _json.loads(raw)
        name = state["checkpoint"]
        epoch = state["epoch"]
        if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
            raise ValueError(f"checkpoint {name!r:.60} is not a checkpoint file of this folder")
        if type(epoch) is not int or epoch < 1:
            raise ValueError(f"epoch {epoch!r:.20} is not a completed epoch")
        if not isinstance(state.get("history"), list) or len(state["history"]) != epoch:
            raise ValueError("its history does not match its epoch")
        if not isinstance(state.get("best_val_accuracy"), (int, float)):
            raise ValueError("no best validation accuracy")
        if not isinstance(state.get("train_seconds"), (int, float)):
            raise ValueError("no training time")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise ConfigError(f"cannot resume: {path} is unreadable ({e})") from None
    checkpoint = out_dir / name
    if not checkpoint.is_file():
        raise ConfigError(f"cannot resume: checkpoint {checkpoint} is missing")
    return state


def architecture(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    """What a network's configuration decides: its input shape, then each weight's shape.

    Every field of :class:`ModelConfig` shows here: filter sizes and counts in the
    kernels, ``fc_size`` and ``num_classes`` in the dense layers, ``img_size`` and
    ``channels`` in the input (29 pixels pool to the same weights as 28).
    """
    shapes = [("input", tuple(int(d) for d in model.input_shape[1:]))]
    return shapes + [(w.path, tuple(int(d) for d in w.shape)) for w in model.weights]


def check_architecture(model: Any, config: ModelConfig, checkpoint: Path) -> None:
    """The checkpoint's network must be the one its recorded configuration builds.

    ``checkpoint.json`` is plain text: an edited architecture (16 filters made 7) would
    otherwise be written to ``config.json`` beside a model that still has 16.

    Raises:
        ConfigError: the two differ; the message names the first difference.
    """
    from edgecnn.trainer.model import build_model

    saved, expected = architecture(model), architecture(build_model(config))
    if [s for _, s in saved] == [s for _, s in expected]:
        return
    missing = ("", ())
    name, has, wants = next(
        (e[0] or s[0], s[1], e[1])
        for s, e in itertools.zip_longest(saved, expected, fillvalue=missing)
        if s[1] != e[1]
    )
    raise ConfigError(
        f"cannot resume: the configuration in {checkpoint.parent / STATE_FILE} does not match "
        f"{checkpoint.name} ({name}: {_shape(has)} in the checkpoint, {_shape(wants)} by the "
        "configuration); restore checkpoint.json, or start over with --force"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return shape_text(shape) if shape else "none"
