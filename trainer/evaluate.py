"""Evaluate a trained model on the test set and draw the tutorial's pictures."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import _atomic
from edgecnn.errors import ConfigError
from edgecnn.trainer._tf import import_keras
from edgecnn.trainer.data import load_dataset, to_float
from edgecnn.trainer.metrics import (
    accuracy_line,
    classification_metrics,
    format_confusion_matrix,
)
from edgecnn.trainer.model import LAYER_NAMES
from edgecnn.trainer.runs import ModelError, resolve_model

keras = import_keras()

FIGURES = (
    "samples.png",
    "errors.png",
    "confusion_matrix.png",
    "conv1_weights.png",
    "conv2_weights.png",
    "conv1_outputs.png",
    "conv2_outputs.png",
)


def load_keras_model(path: Path) -> Any:
    """Load a Keras model and check it takes 28x28x1 images and returns 10 scores.

    Raises:
        ModelError: the file is not a loadable Keras model of that shape.
    """
    if not path.is_file():
        raise ModelError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path} is empty")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a Keras model file (.keras)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive; all mean "unusable"
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"cannot load Keras model {path}: {first_line}") from None
    input_shape = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else None
    if input_shape != (28, 28, 1):
        raise ModelError(
            f"{path} takes input of shape {input_shape}; edgecnn models take 28x28x1 images"
        )
    if tuple(model.output_shape[1:]) != (10,):
        raise ModelError(f"{path} outputs shape {model.output_shape[1:]}; expected 10 classes")
    names = {layer.name for layer in model.layers}
    missing = [name for name in LAYER_NAMES if name not in names]
    if missing:
        raise ModelError(
            f"{path} is not an edgecnn network: it has no layer named {missing[0]} "
            f"(edgecnn models have {', '.join(LAYER_NAMES)})"
        )
    return model


def _activation(model: Any, layer: str, image: np.ndarray) -> np.ndarray:
    probe = keras.Model(model.inputs[0], model.get_layer(layer).output)
    return np.asarray(probe(image[np.newaxis], training=False))[0]


def evaluate(
    target: str | Path,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    dataset: str | None = None,
    image_index: int = 0,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Measure a model on the test set; write ``metrics.json`` and the PNG figures.

    ``out_dir`` defaults to the run directory (or the model file's folder). If it already
    holds a ``metrics.json`` from training, the evaluation's numbers are merged into it.
    """
    from edgecnn.trainer import plots

    stream = stream or sys.stdout
    source = resolve_model(target)
    name = dataset or (source.config.dataset if source.config else "fashion")
    out = _atomic.ensure_writable_dir(out_dir or source.run_dir or source.model_path.parent)
    model = load_keras_model(source.model_path)
    data = load_dataset(name, data_dir)
    if not 0 <= image_index < len(data.x_test):
        raise ConfigError(f"--image-index must be in 0..{len(data.x_test) - 1}, got {image_index}")

    x_test = to_float(data.x_test)
    pred = model.predict(x_test, batch_size=1000, verbose=0).argmax(axis=1)
    val_pred = model.predict(to_float(data.x_val), batch_size=1000, verbose=0).argmax(axis=1)
    results = classification_metrics(data.y_test, pred, data.labels)
    results["val_accuracy"] = float(np.mean(val_pred == data.y_val))
    results["dataset"] = name
    results["model"] = str(source.model_path)

    metrics_path = out / "metrics.json"
    merged: dict[str, Any] = {}
    if metrics_path.is_file():
        try:
            merged = json.loads(metrics_path.read_text())
        except ValueError:
            merged = {}
    merged.update(results)
    _atomic.write_json(metrics_path, merged)

    labels = data.labels
    wrong = np.flatnonzero(pred != data.y_test)[:9]
    image = x_test[image_index]
    caption = f"test image #{image_index} ({labels[data.y_test[image_index]]})"
    figures = {
        "samples.png": plots.plot_images(
            data.x_test[:9], labels, data.y_test[:9], pred[:9], f"{data.title} test images"
        ),
        "errors.png": plots.plot_images(
            data.x_test[wrong], labels, data.y_test[wrong], pred[wrong], "Misclassified test images"
        ),
        "confusion_matrix.png": plots.plot_confusion_matrix(
            np.array(results["confusion_matrix"]),
            labels,
            f"Confusion matrix, {data.title} test set "
            f"({100 * results['test_accuracy']:.1f}% correct)",
        ),
        "conv1_weights.png": plots.plot_conv_weights(
            model.get_layer("conv1").get_weights()[0], "conv1 filters (input channel 0)"
        ),
        "conv2_weights.png": plots.plot_conv_weights(
            model.get_layer("conv2").get_weights()[0], "conv2 filters (input channel 0)"
        ),
        # The tutorial shows each conv block's output: after its max-pool and ReLU.
        "conv1_outputs.png": plots.plot_layer_outputs(
            _activation(model, "relu1", image),
            f"conv1 outputs (after pool + ReLU), {caption}",
            image,
        ),
        "conv2_outputs.png": plots.plot_layer_outputs(
            _activation(model, "relu2", image),
            f"conv2 outputs (after pool + ReLU), {caption}",
            image,
        ),
    }
    for filename, fig in figures.items():
        plots.save_figure(fig, out / filename)

    stream.write(f"Confusion matrix ({data.title} test set, rows: true class)\n")
    stream.write(format_confusion_matrix(np.array(results["confusion_matrix"]), labels) + "\n")
    stream.write(accuracy_line(results["test_correct"], results["test_total"]) + "\n")
    stream.write(f"Wrote metrics.json and {len(figures)} figures to {out}\n")
    return merged
