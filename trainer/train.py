"""Train the tutorial network: deterministic, checkpointed every epoch, resumable after Ctrl-C."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import _atomic
from edgecnn._format import format_duration
from edgecnn.errors import ConfigError, EdgecnnError
from edgecnn.run_folder import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SPLIT_FILE,
    STATE_FILE,
)
from edgecnn.runtime.confidence import MIN_FIT_IMAGES, Confidence, fit
from edgecnn.runtime.contract import shape_text
from edgecnn.runtime.preprocess import softmax
from edgecnn.trainer import training_data
from edgecnn.trainer._tf import import_tensorflow
from edgecnn.trainer.augment import augment
from edgecnn.trainer.checkpoints import (
    check_architecture,
    read_checkpoint_state,
    save_checkpoint,
)
from edgecnn.trainer.config import TrainConfig
from edgecnn.trainer.dataset import Dataset, to_float
from edgecnn.trainer.evaluate import predict_classes, predict_logits
from edgecnn.trainer.metrics import accuracy_line, classification_metrics
from edgecnn.trainer.model import build_model
from edgecnn.trainer.outliers import make_outliers
from edgecnn.trainer.progress import ProgressCallback
from edgecnn.trainer.splits import read_record, write_record

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
    """Adam on sparse cross-entropy from logits, optionally with a cosine-decayed rate.

    With outliers (``config.outliers``), the loss and accuracy of
    :mod:`edgecnn.trainer.exposure`.
    """
    learning_rate: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch
        )
    if config.outliers:
        from edgecnn.trainer.exposure import InlierAccuracy, outlier_exposure_loss

        loss: Any = outlier_exposure_loss
        metric: Any = InlierAccuracy()
    else:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(from_logits=True), "accuracy"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=[metric])


def portable(model: Any, config: TrainConfig) -> Any:
    """``model`` as ``model.keras`` keeps it: loadable by Keras without edgecnn.

    Trained with outliers, the model is compiled with edgecnn's loss and metric, which
    ``keras.models.load_model`` cannot find unless edgecnn is imported. The saved model
    is the same network and weights compiled with the plain loss and accuracy; the
    checkpoints, which a resume reads, keep the training compile and its optimizer.
    """
    if not config.outliers:
        return model
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])  # fmt: skip
    return twin


def outlier_count(config: TrainConfig, train_images: int) -> int:
    """How many synthetic outliers each epoch adds to ``train_images`` pictures."""
    return round(config.outliers * train_images)


def _epoch_data(
    x: np.ndarray, y: np.ndarray, config: TrainConfig, epoch: int, pictures: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's float pictures and labels, in order; outliers among them, labelled -1.

    ``pictures`` are ``x`` as uint8, which the outliers are made from.
    """
    # The order, augmentation and outliers of each epoch depend only on (seed, epoch), so
    # a resumed run sees exactly the batches the uninterrupted run would have seen.
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(x))
    xe, ye = x[order], y[order]
    if config.augment_shift or config.augment_flip:
        xe = augment(xe, rng, config.augment_shift, config.augment_flip)
    count = outlier_count(config, len(x))
    if count:
        from edgecnn.trainer.exposure import OUTLIER

        outliers = to_float(make_outliers(pictures, count, rng))
        mixed = rng.permutation(len(xe) + count)
        xe = np.concatenate([xe, outliers])[mixed]
        ye = np.concatenate([ye, np.full(count, OUTLIER, ye.dtype)])[mixed]
    return xe, ye


@dataclass
class Session:
    """One training as it goes: the model, the data it sees, and where it stands."""

    out: Path
    config: TrainConfig
    data: Dataset
    model: Any
    steps_per_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = -1.0
    start_epoch: int = 0
    train_seconds: float = 0.0


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
    stream = stream or sys.stdout

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    with _atomic.exclusive(out, "edgecnn train"):
        state = read_checkpoint_state(out) if resume else None
        # A resumed run trains on the split it started with.
        data = training_data.load(config, data_dir, read_record(out) if resume else None, stream)
        # Seeded before the model is built: its initial weights come from this seed.
        keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
        session = _start(out, config, data, state, say)
        say(
            f"Training on {data.title} from {data.source}: {len(data.x_train):,} train / "
            f"{len(data.x_val):,} validation / {len(data.x_test):,} test images; network "
            f"{shape_text(config.model.input_shape)} in, flatten {config.model.flatten_size:,}, "
            f"{config.model.num_classes} classes, {session.model.count_params():,} parameters; "
            f"{config.epochs} epochs of {session.steps_per_epoch} batches of {config.batch_size}"
        )
        _run_epochs(session, stream, say)
        return _finish(session, say)


def _start(
    out: Path,
    config: TrainConfig,
    data: Dataset,
    state: dict[str, Any] | None,
    say: Callable[[str], None],
) -> Session:
    """A new model (clearing an older run's files), or the checkpoint to resume from."""
    pictures = len(data.x_train) + outlier_count(config, len(data.x_train))
    steps = math.ceil(pictures / config.batch_size)
    if state is None:
        model = build_model(config.model)
        compile_model(model, config, steps)
        # A fresh run must not be mistaken for an older one left in the same folder: its
        # model, checkpoints and results go before the new config.json is written.
        stale = [MODEL_FILE, STATE_FILE, HISTORY_FILE, METRICS_FILE, SPLIT_FILE]
        stale += [p.name for p in out.glob("checkpoint-e*.keras")]
        for name in stale:
            (out / name).unlink(missing_ok=True)
        session = Session(out, config, data, model, steps)
    else:
        checkpoint = out / state["checkpoint"]
        if config.outliers:
            import edgecnn.trainer.exposure  # noqa: F401  (registers the loss the checkpoint names)
        try:
            model = keras.models.load_model(checkpoint)
        except Exception as e:  # Keras raises many types for a damaged archive
            raise ConfigError(
                f"cannot resume: checkpoint {checkpoint} is damaged ({type(e).__name__}); "
                "start over with --force"
            ) from None
        check_architecture(model, config.model, checkpoint)  # before config.json says so
        session = Session(
            out,
            config,
            data,
            model,
            steps,
            history=state["history"],
            best_val=state["best_val_accuracy"],
            start_epoch=state["epoch"],
            train_seconds=state["train_seconds"],
        )
        say(f"Resuming from {checkpoint} (epoch {session.start_epoch} of {config.epochs})")
    _atomic.write_json(out / CONFIG_FILE, config.to_dict())
    if data.record is not None:
        write_record(out, data.record)
    return session


def _run_epochs(session: Session, stream: TextIO, say: Callable[[str], None]) -> None:
    """Train the remaining epochs, saving the best model and a checkpoint after each.

    Raises:
        TrainingInterrupted: Ctrl-C.
    """
    config, data = session.config, session.data
    x_train, y_train = to_float(data.x_train), data.y_train.astype(np.int32)
    validation = (to_float(data.x_val), data.y_val.astype(np.int32))
    progress = ProgressCallback(
        config.epochs, session.steps_per_epoch, config.batch_size, stream=stream
    )
    epoch = session.start_epoch
    try:
        for epoch in range(session.start_epoch, config.epochs):
            xe, ye = _epoch_data(x_train, y_train, config, epoch, data.x_train)
            started = time.perf_counter()
            fit = session.model.fit(
                xe,
                ye,
                batch_size=config.batch_size,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                validation_data=validation,
                verbose=0,
                callbacks=[progress],
            )
            seconds = time.perf_counter() - started
            _record_epoch(session, epoch, fit.history, seconds, len(xe), say)
    except KeyboardInterrupt:
        raise TrainingInterrupted(_interrupted_message(session.out, epoch, config)) from None


def _record_epoch(
    session: Session, epoch: int, logs: dict[str, list[float]], seconds: float, images: int,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """History, best model, checkpoint and one line for a finished epoch."""
    config, out, model = session.config, session.out, session.model
    session.train_seconds += seconds
    last = {k: float(v[-1]) for k, v in logs.items()}
    record = {
        "epoch": epoch + 1,
        "loss": last["loss"],
        "accuracy": last["accuracy"],
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        "seconds": seconds,
        "images_per_second": images / seconds,
    }
    session.history.append(record)
    improved = record["val_accuracy"] > session.best_val
    if improved:
        session.best_val = record["val_accuracy"]
        with _atomic.atomic_path(out / MODEL_FILE) as tmp:
            portable(model, config).save(tmp)
    state = {
        "epoch": epoch + 1,
        "history": session.history,
        "best_val_accuracy": session.best_val,
        "train_seconds": session.train_seconds,
        "config": config.to_dict(),
    }
    save_checkpoint(model, out, state)
    _atomic.write_json(out / HISTORY_FILE, session.history)
    eta = seconds * (config.epochs - epoch - 1)
    say(
        f"epoch {epoch + 1}/{config.epochs}  loss {record['loss']:.4f}  "
        f"acc {100 * record['accuracy']:.2f}%  val_loss {record['val_loss']:.4f}  "
        f"val_acc {100 * record['val_accuracy']:.2f}%  {format_duration(seconds)}  "
        f"{record['images_per_second']:,.0f} img/s  ETA {format_duration(eta)}"
        + ("  * best, saved" if improved else "")
    )


def _finish(session: Session, say: Callable[[str], None]) -> TrainResult:
    """Measure the best epoch's model, write ``metrics.json``, end with the tutorial's line."""
    out, config = session.out, session.config
    best_model = keras.models.load_model(out / MODEL_FILE)
    metrics = _final_metrics(best_model, session.data, session.history, session.train_seconds,
                             config)  # fmt: skip
    fitted = _fit_confidence(best_model, session.data)
    if fitted is not None:
        metrics["confidence"] = fitted.to_dict()
    _atomic.write_json(out / METRICS_FILE, metrics)
    say(
        f"Trained {config.epochs} epochs in {format_duration(session.train_seconds)}; best "
        f"validation accuracy {100 * session.best_val:.2f}% (epoch {metrics['best_epoch']}), "
        f"saved to {out / MODEL_FILE}"
    )
    say(accuracy_line(metrics["test_correct"], metrics["test_total"]))
    if fitted is not None:
        say(confidence_line(fitted))
    return TrainResult(out_dir=out, config=config, metrics=metrics, history=session.history)


def _fit_confidence(model: Any, data: Dataset) -> Confidence | None:
    """The Keras model's temperature and "unknown" threshold on the validation split.

    None when the split is too small to fit them. Every exported file is fitted again on
    its own outputs (an int8 file's differ).
    """
    if len(data.y_val) < MIN_FIT_IMAGES:
        return None
    return fit(softmax(predict_logits(model, data.x_val)), data.y_val)


def confidence_line(fitted: Confidence) -> str:
    """What a fit found, in one line."""
    assert fitted.ece_before is not None and fitted.ece_after is not None
    line = (
        f"Calibration on {fitted.images:,} validation images: temperature "
        f"{fitted.temperature:.3f}, expected calibration error {100 * fitted.ece_before:.2f}% "
        f"-> {100 * fitted.ece_after:.2f}%"
    )
    if fitted.reject_below is not None:
        line += (
            f"; 'unknown' below {100 * fitted.reject_below:.1f}% "
            f"(keeps {100 * fitted.acceptance:.0f}%)"
        )
    return line


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
    val_pred = predict_classes(model, data.x_val)
    test_pred = predict_classes(model, data.x_test)
    best = max(history, key=lambda h: h["val_accuracy"])
    return {
        "dataset": data.name,
        **classification_metrics(data.y_test, test_pred, data.labels),
        "val_accuracy": float(np.mean(val_pred == data.y_val)),
        "train_images": len(data.x_train),
        "val_images": len(data.x_val),
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "train_seconds": train_seconds,
        "images_per_second": float(np.mean([h["images_per_second"] for h in history])),
        "parameters": int(model.count_params()),
        "seed": config.seed,
    }
