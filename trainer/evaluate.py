"""Evaluate a trained model on the test set and draw the tutorial's pictures."""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import _atomic
from edgecnn.errors import ConfigError
from edgecnn.run_folder import FIGURE_FILES, METRICS_FILE
from edgecnn.runtime.contract import SUPPORTED_CLASSES, SUPPORTED_INPUT_SHAPES, shape_text
from edgecnn.trainer._tf import import_keras
from edgecnn.trainer.data import Dataset, load_dataset, to_float
from edgecnn.trainer.metrics import (
    accuracy_line,
    classification_metrics,
    format_confusion_matrix,
)
from edgecnn.trainer.model import LAYER_NAMES
from edgecnn.trainer.sources import ModelError, resolve_model

keras = import_keras()


def load_keras_model(path: Path) -> Any:
    """Load a Keras model and check it is an edgecnn network of a shape edgecnn supports.

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
    if input_shape not in SUPPORTED_INPUT_SHAPES:
        supported = " or ".join(map(shape_text, SUPPORTED_INPUT_SHAPES))
        raise ModelError(
            f"{path} takes input of shape {input_shape}; edgecnn models take {supported} images"
        )
    classes = tuple(model.output_shape[1:])
    if len(classes) != 1 or classes[0] not in SUPPORTED_CLASSES:
        supported = " or ".join(map(str, SUPPORTED_CLASSES))
        raise ModelError(f"{path} outputs shape {classes}; expected {supported} classes")
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


@dataclass
class Evaluation:
    """A model's predictions on the test and validation images, and what they measure."""

    model: Any
    data: Dataset
    predictions: np.ndarray
    metrics: dict[str, Any]


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
    stream = stream or sys.stdout
    source = resolve_model(target)
    name = dataset or (source.config.dataset if source.config else "fashion")
    out = _atomic.ensure_writable_dir(out_dir or source.run_dir or source.model_path.parent)
    model = load_keras_model(source.model_path)
    data = load_dataset(name, data_dir)
    if not 0 <= image_index < len(data.x_test):
        raise ConfigError(f"--image-index must be in 0..{len(data.x_test) - 1}, got {image_index}")
    result = measure(model, data, str(source.model_path))
    merged = _merge_metrics(out / METRICS_FILE, result.metrics)
    draw_figures(result, out, image_index)
    labels, cm = data.labels, np.array(result.metrics["confusion_matrix"])
    stream.write(f"Confusion matrix ({data.title} test set, rows: true class)\n")
    stream.write(format_confusion_matrix(cm, labels) + "\n")
    stream.write(accuracy_line(result.metrics["test_correct"], result.metrics["test_total"]) + "\n")
    stream.write(f"Wrote {METRICS_FILE} and {len(FIGURE_FILES)} figures to {out}\n")
    return merged


def measure(model: Any, data: Dataset, model_name: str) -> Evaluation:
    """Test and validation accuracy, per class, and the confusion matrix."""
    pred = model.predict(to_float(data.x_test), batch_size=1000, verbose=0).argmax(axis=1)
    val_pred = model.predict(to_float(data.x_val), batch_size=1000, verbose=0).argmax(axis=1)
    metrics = classification_metrics(data.y_test, pred, data.labels)
    metrics["val_accuracy"] = float(np.mean(val_pred == data.y_val))
    metrics["dataset"] = data.name
    metrics["model"] = model_name
    return Evaluation(model, data, pred, metrics)


def _merge_metrics(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` written over what ``path`` already holds (training's numbers)."""
    merged: dict[str, Any] = {}
    if path.is_file():
        try:
            merged = json.loads(path.read_text())
        except ValueError:
            merged = {}
    merged.update(results)
    _atomic.write_json(path, merged)
    return merged


def draw_figures(result: Evaluation, out: Path, image_index: int) -> None:
    """The tutorial's seven pictures, as PNG files in ``out``."""
    from edgecnn.trainer import plots

    model, data, pred = result.model, result.data, result.predictions
    labels = data.labels
    wrong = np.flatnonzero(pred != data.y_test)[:9]
    image = to_float(data.x_test[image_index : image_index + 1])[0]
    caption = f"test image #{image_index} ({labels[data.y_test[image_index]]})"
    accuracy = result.metrics["test_accuracy"]
    figures = {
        "samples.png": plots.plot_images(
            data.x_test[:9], labels, data.y_test[:9], pred[:9], f"{data.title} test images"
        ),
        "errors.png": plots.plot_images(
            data.x_test[wrong], labels, data.y_test[wrong], pred[wrong], "Misclassified test images"
        ),
        "confusion_matrix.png": plots.plot_confusion_matrix(
            np.array(result.metrics["confusion_matrix"]),
            labels,
            f"Confusion matrix, {data.title} test set ({100 * accuracy:.1f}% correct)",
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
    assert tuple(figures) == FIGURE_FILES
    for filename, fig in figures.items():
        plots.save_figure(fig, out / filename)
