"""Train the tutorial network: deterministic, checkpointed every epoch, resumable after Ctrl-C."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import _atomic
from edgecnn._format import format_duration
from edgecnn.errors import ConfigError, EdgecnnError
from edgecnn.trainer._tf import import_tensorflow
from edgecnn.trainer.augment import augment
from edgecnn.trainer.config import TrainConfig
from edgecnn.trainer.data import Dataset, load_dataset, to_float
from edgecnn.trainer.metrics import accuracy_line, classification_metrics
from edgecnn.trainer.model import build_model
from edgecnn.trainer.progress import ProgressCallback
from edgecnn.trainer.runs import MODEL_FILE, STATE_FILE, read_checkpoint_state

tf = import_tensorflow()
keras = tf.keras


class TrainingInterrupted(EdgecnnError):
    """Ctrl-C stopped training; the last completed epoch's checkpoint is intact."""

    exit_code = 130


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced."""

    out_dir: Path
    config: TrainConfig
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


def compile_model(model: Any, config: TrainConfig, steps_per_epoch: int) -> None:
    """Adam on sparse cross-entropy from logits, optionally with a cosine-decayed rate."""
    learning_rate: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch
        )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _epoch_data(
    x: np.ndarray, y: np.ndarray, config: TrainConfig, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    # The order and augmentation of each epoch depend only on (seed, epoch), so a resumed
    # run sees exactly the batches the uninterrupted run would have seen.
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(x))
    xe, ye = x[order], y[order]
    if config.augment_shift or config.augment_flip:
        xe = augment(xe, rng, config.augment_shift, config.augment_flip)
    return xe, ye


def _save_checkpoint(model: Any, out_dir: Path, state: dict[str, Any]) -> None:
    """Write the epoch's checkpoint, then point ``checkpoint.json`` at it, then drop the old one.

    Killed at any moment, ``checkpoint.json`` names a complete checkpoint file.
    """
    name = f"checkpoint-e{state['epoch']:03d}.keras"
    with _atomic.atomic_path(out_dir / name) as tmp:
        model.save(tmp)
    previous = None
    if (out_dir / STATE_FILE).is_file():
        previous = json.loads((out_dir / STATE_FILE).read_text()).get("checkpoint")
    _atomic.write_json(out_dir / STATE_FILE, {**state, "checkpoint": name})
    if previous and previous != name:
        (out_dir / previous).unlink(missing_ok=True)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    resume: bool = False,
    stream: TextIO | None = None,
) -> TrainResult:
    """Train ``config`` into ``out_dir``; with ``resume``, continue from its last checkpoint.

    Writes ``model.keras`` (the epoch with the best validation accuracy), ``config.json``,
    ``history.json`` and ``metrics.json``, each atomically.

    Raises:
        TrainingInterrupted: Ctrl-C; the last completed epoch can be resumed.
        EdgecnnError: bad configuration, missing data, unwritable ``out_dir``.
    """
    out = _atomic.ensure_writable_dir(out_dir)
    with _atomic.exclusive(out, "edgecnn train"):
        return _train_into(out, config, data_dir, resume, stream or sys.stdout)


def _train_into(
    out: Path,
    config: TrainConfig,
    data_dir: str | Path | None,
    resume: bool,
    stream: TextIO,
) -> TrainResult:

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    state = read_checkpoint_state(out) if resume else None
    data = load_dataset(config.dataset, data_dir, config.train_subset)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    x_train, y_train = to_float(data.x_train), data.y_train.astype(np.int32)
    x_val, y_val = to_float(data.x_val), data.y_val.astype(np.int32)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)

    if state is None:
        model = build_model(config.model)
        compile_model(model, config, steps_per_epoch)
        history: list[dict[str, Any]] = []
        best_val, start_epoch, train_seconds = -1.0, 0, 0.0
        # A fresh run must not be mistaken for an older one left in the same folder: its
        # model, checkpoints and results go before the new config.json is written.
        for stale in [
            MODEL_FILE,
            STATE_FILE,
            "history.json",
            "metrics.json",
            *(p.name for p in out.glob("checkpoint-e*.keras")),
        ]:
            (out / stale).unlink(missing_ok=True)
    else:
        checkpoint = out / state["checkpoint"]
        try:
            model = keras.models.load_model(checkpoint)
        except Exception as e:  # Keras raises many types for a damaged archive
            raise ConfigError(
                f"cannot resume: checkpoint {checkpoint} is damaged ({type(e).__name__}); "
                "start over with --force"
            ) from None
        history, best_val = state["history"], state["best_val_accuracy"]
        start_epoch, train_seconds = state["epoch"], state["train_seconds"]
        say(f"Resuming from {out / state['checkpoint']} (epoch {start_epoch} of {config.epochs})")
    _atomic.write_json(out / "config.json", config.to_dict())

    say(
        f"Training on {data.title} from {data.source}: {len(x_train):,} train / "
        f"{len(x_val):,} validation / {len(data.x_test):,} test images, "
        f"{model.count_params():,} parameters, {config.epochs} epochs of {steps_per_epoch} "
        f"batches of {config.batch_size}"
    )
    progress = ProgressCallback(config.epochs, steps_per_epoch, config.batch_size, stream=stream)
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            xe, ye = _epoch_data(x_train, y_train, config, epoch)
            started = time.perf_counter()
            fit = model.fit(
                xe,
                ye,
                batch_size=config.batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                validation_data=(x_val, y_val),
                verbose=0,
                callbacks=[progress],
            )
            seconds = time.perf_counter() - started
            train_seconds += seconds
            logs = {k: float(v[-1]) for k, v in fit.history.items()}
            record = {
                "epoch": epoch + 1,
                "loss": logs["loss"],
                "accuracy": logs["accuracy"],
                "val_loss": logs["val_loss"],
                "val_accuracy": logs["val_accuracy"],
                "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                "seconds": seconds,
                "images_per_second": len(xe) / seconds,
            }
            history.append(record)
            improved = record["val_accuracy"] > best_val
            if improved:
                best_val = record["val_accuracy"]
                with _atomic.atomic_path(out / MODEL_FILE) as tmp:
                    model.save(tmp)
            _save_checkpoint(
                model,
                out,
                {
                    "epoch": epoch + 1,
                    "history": history,
                    "best_val_accuracy": best_val,
                    "train_seconds": train_seconds,
                    "config": config.to_dict(),
                },
            )
            _atomic.write_json(out / "history.json", history)
            eta = seconds * (config.epochs - epoch - 1)
            say(
                f"epoch {epoch + 1}/{config.epochs}  loss {record['loss']:.4f}  "
                f"acc {100 * record['accuracy']:.2f}%  val_loss {record['val_loss']:.4f}  "
                f"val_acc {100 * record['val_accuracy']:.2f}%  {format_duration(seconds)}  "
                f"{record['images_per_second']:,.0f} img/s  ETA {format_duration(eta)}"
                + ("  * best, saved" if improved else "")
            )
    except KeyboardInterrupt:
        raise TrainingInterrupted(_interrupted_message(out, epoch, config)) from None

    best_model = keras.models.load_model(out / MODEL_FILE)
    metrics = _final_metrics(best_model, data, history, train_seconds, config)
    _atomic.write_json(out / "metrics.json", metrics)
    say(
        f"Trained {config.epochs} epochs in {format_duration(train_seconds)}; best validation "
        f"accuracy {100 * best_val:.2f}% (epoch {metrics['best_epoch']}), saved to "
        f"{out / MODEL_FILE}"
    )
    say(accuracy_line(metrics["test_correct"], metrics["test_total"]))
    return TrainResult(out_dir=out, config=config, metrics=metrics, history=history)


def _interrupted_message(out: Path, epoch: int, config: TrainConfig) -> str:
    if not (out / STATE_FILE).is_file():
        return f"interrupted during epoch {epoch + 1}, before any checkpoint: nothing to resume"
    state = json.loads((out / STATE_FILE).read_text())
    return (
        f"interrupted during epoch {epoch + 1}; the last good checkpoint, "
        f"{out / state['checkpoint']} (epoch {state['epoch']} of {config.epochs}), is intact: "
        f"continue with 'edgecnn train --resume --out {out}'"
    )


def _final_metrics(
    model: Any,
    data: Dataset,
    history: list[dict[str, Any]],
    train_seconds: float,
    config: TrainConfig,
) -> dict[str, Any]:
    """Accuracy of the saved (best-validation) model on validation and test data."""
    val_pred = model.predict(to_float(data.x_val), batch_size=1000, verbose=0).argmax(axis=1)
    test_pred = model.predict(to_float(data.x_test), batch_size=1000, verbose=0).argmax(axis=1)
    best = max(history, key=lambda h: h["val_accuracy"])
    return {
        "dataset": data.name,
        **classification_metrics(data.y_test, test_pred, data.labels),
        "val_accuracy": float(np.mean(val_pred == data.y_val)),
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "train_seconds": train_seconds,
        "images_per_second": float(np.mean([h["images_per_second"] for h in history])),
        "parameters": int(model.count_params()),
        "seed": config.seed,
    }
