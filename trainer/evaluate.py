"""Evaluate a trained model on the test set and draw the tutorial's pictures."""

from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import _atomic, _json
from edgecnn.errors import ConfigError
from edgecnn.run_folder import FIGURE_FILES, METRICS_FILE, RELIABILITY_FILE
from edgecnn.runtime.confidence import Confidence
from edgecnn.runtime.contract import check_io
from edgecnn.runtime.gate import compare, predicted
from edgecnn.runtime.preprocess import softmax
from edgecnn.trainer import training_data
from edgecnn.trainer._tf import import_keras
from edgecnn.trainer.calibration_metrics import (
    CALIBRATION_KEY,
    CalibrationMetrics,
    calibration_lines,
    fit_and_measure,
    fitted_on,
    measure_calibration,
)
from edgecnn.trainer.dataset import Dataset, to_float
from edgecnn.trainer.metrics import (
    accuracy_line,
    classification_metrics,
    format_confusion_matrix,
)
from edgecnn.trainer.model import LAYER_NAMES
from edgecnn.trainer.model_source import ModelError, resolve_model

keras = import_keras()

#: Up to this many classes the confusion matrix is also printed as text.
TEXT_MATRIX_CLASSES = 20
#: Images per call of a Keras model: bounded memory on any test set.
PREDICT_BATCH = 1000


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
    input_shape = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else ()
    classes = tuple(model.output_shape[1:])
    problem = check_io(input_shape, classes[0] if len(classes) == 1 else 0)
    if problem:
        raise ModelError(f"{path} is not a model edgecnn can export: its {problem}")
    names = {layer.name for layer in model.layers}
    missing = [name for name in LAYER_NAMES if name not in names]
    if missing:
        raise ModelError(
            f"{path} is not an edgecnn network: it has no layer named {missing[0]} "
            f"(edgecnn models have {', '.join(LAYER_NAMES)})"
        )
    return model


def predict_logits(model: Any, images: np.ndarray) -> np.ndarray:
    """The logits ``model`` gives each uint8 image, the model called directly in chunks.

    ``model.predict`` traces a ``tf.function`` for each new model and batch shape, and a
    run loads its model afresh in every stage: TensorFlow then prints a long "retracing"
    warning. Called directly the model runs eagerly, with the same logits bit for bit.
    """
    chunks = [
        np.asarray(model(to_float(images[i : i + PREDICT_BATCH]), training=False))
        for i in range(0, len(images), PREDICT_BATCH)
    ]
    if not chunks:
        return np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
    return np.concatenate(chunks)


def predict_classes(model: Any, images: np.ndarray) -> np.ndarray:
    """The class ``model`` gives each uint8 image (see :func:`predict_logits`)."""
    classes: np.ndarray = predict_logits(model, images).argmax(axis=1)
    return classes


def predict_probs(model: Any, images: np.ndarray) -> np.ndarray:
    """The probabilities ``model`` gives each uint8 image: the softmax of its logits.

    The exporter compares the exported files with these (see :func:`predict_logits`).
    """
    return softmax(predict_logits(model, images))


def _activation(model: Any, layer: str, image: np.ndarray) -> np.ndarray:
    probe = keras.Model(model.inputs[0], model.get_layer(layer).output)
    activation: np.ndarray = np.asarray(probe(image[np.newaxis], training=False))[0]
    return activation


@dataclass
class Evaluation:
    """A model's predictions on the test and validation images, and what they measure."""

    model: Any
    data: Dataset
    predictions: np.ndarray
    metrics: dict[str, Any]
    #: ECE before and after calibration, and the "unknown" rule, on the test images.
    calibration: CalibrationMetrics
    #: Where the temperature came from, in words.
    fitted: str


def evaluate(
    target: str | Path,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    dataset: str | None = None,
    image_index: int = 0,
    data: str | Path | None = None,
    stream: TextIO | None = None,
    sample: Path | None = None,
) -> dict[str, Any]:
    """Measure a model on the test set; write ``metrics.json`` and the PNG figures.

    Calibration too: a temperature and "unknown" threshold fitted on the validation
    split, and the expected calibration error on the test split before and after it
    (``metrics.json``'s ``calibration``, the reliability diagram).

    ``out_dir`` defaults to the run directory (or the model file's folder). If it already
    holds a ``metrics.json`` from training, the evaluation's numbers are merged into it.
    ``sample`` names a PNG to write the first test image to, a picture to try models on.
    """
    stream = stream or sys.stdout
    source = resolve_model(target)
    model = load_keras_model(source.model_path)
    test = training_data.for_model(model, source, data_dir, data, dataset)
    out = _atomic.ensure_writable_dir(out_dir or source.run_dir or source.model_path.parent)
    if not 0 <= image_index < len(test.x_test):
        raise ConfigError(f"--image-index must be in 0..{len(test.x_test) - 1}, got {image_index}")
    result = measure(model, test, str(source.model_path))
    merged = _merge_metrics(out / METRICS_FILE, result.metrics)
    draw_figures(result, out, image_index)
    draw_reliability(result.calibration, out, f"{source.model_path.name}, {test.title}")
    if sample is not None:
        from PIL import Image

        with _atomic.atomic_path(sample) as tmp:
            Image.fromarray(test.x_test[0]).save(tmp, format="PNG")
    labels, cm = test.labels, np.array(result.metrics["confusion_matrix"])
    if len(labels) <= TEXT_MATRIX_CLASSES:
        stream.write(f"Confusion matrix ({test.title} test set, rows: true class)\n")
        stream.write(format_confusion_matrix(cm, labels) + "\n")
    else:
        per_class = result.metrics["per_class_accuracy"]
        worst = sorted(per_class, key=per_class.get)[:5]
        stream.write(
            f"{len(labels)} classes (the matrix is in confusion_matrix.png); least accurate: "
            + ", ".join(f"{label} {100 * per_class[label]:.1f}%" for label in worst)
            + "\n"
        )
    stream.write(accuracy_line(result.metrics["test_correct"], result.metrics["test_total"]) + "\n")
    stream.write(calibration_lines(result.calibration, result.fitted))
    stream.write(f"Wrote {METRICS_FILE} and {len(FIGURE_FILES) + 1} figures to {out}\n")
    return merged


def measure(model: Any, data: Dataset, model_name: str) -> Evaluation:
    """Test and validation accuracy, per class, the confusion matrix, and calibration."""
    logits, val_logits = predict_logits(model, data.x_test), predict_logits(model, data.x_val)
    pred = logits.argmax(axis=1)
    metrics = classification_metrics(data.y_test, pred, data.labels)
    metrics["val_accuracy"] = float(np.mean(val_logits.argmax(axis=1) == data.y_val))
    metrics["dataset"] = data.name
    metrics["model"] = model_name
    calibration, fitted = fit_and_measure(softmax(val_logits), data.y_val, softmax(logits),
                                          data.y_test)  # fmt: skip
    metrics[CALIBRATION_KEY] = calibration.to_dict()
    return Evaluation(model, data, pred, metrics, calibration, fitted)


def draw_reliability(result: CalibrationMetrics, out: Path, name: str) -> None:
    """The reliability diagram, before and after calibration, as ``reliability.png``."""
    from edgecnn.trainer import plots

    after = None if result.confidence is None else result.after
    title = f"{name}: reliability on {result.images:,} {result.split} images"
    fig = plots.plot_reliability(result.before, after, title, result.temperature)
    plots.save_figure(fig, out / RELIABILITY_FILE)


def _merge_metrics(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` written over what ``path`` already holds (training's numbers)."""
    merged: dict[str, Any] = {}
    if path.is_file():
        try:
            merged = _json.loads(path.read_bytes())
        except (OSError, ValueError):
            merged = {}
    if not isinstance(merged, dict):  # edited into something else: rewritten whole
        merged = {}
    merged.update(results)
    _atomic.write_json(path, merged)
    return merged


def _nine(indices: np.ndarray, spread: bool) -> np.ndarray:
    """The first nine of ``indices``, or nine spread evenly over them."""
    if not spread or len(indices) <= 9:
        return indices[:9]
    spread_out: np.ndarray = indices[np.linspace(0, len(indices) - 1, 9).round().astype(np.int64)]
    return spread_out


def draw_figures(result: Evaluation, out: Path, image_index: int) -> None:
    """The tutorial's seven pictures, as PNG files in ``out``."""
    from edgecnn.trainer import plots

    model, data, pred = result.model, result.data, result.predictions
    labels = data.labels
    # A user's test split is in class order: show pictures from across it, not one class.
    spread = data.record is not None
    shown = _nine(np.arange(len(data.y_test)), spread)
    wrong = _nine(np.flatnonzero(pred != data.y_test), spread)
    image = to_float(data.x_test[image_index : image_index + 1])[0]
    caption = f"test image #{image_index} ({labels[data.y_test[image_index]]})"
    accuracy = result.metrics["test_accuracy"]
    figures = {
        "samples.png": plots.plot_images(
            data.x_test[shown], labels, data.y_test[shown], pred[shown], f"{data.title} test images"
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


@dataclass(frozen=True)
class _Shape:
    """What the data checks read from a model: its input and output shapes."""

    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]


def evaluate_exported(
    target: str | Path,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    dataset: str | None = None,
    data: str | Path | None = None,
    stream: TextIO | None = None,
    backend: str = "auto",
    keras_probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Measure an exported file, as ``edgecnn.runtime`` runs it, on the test set.

    Accuracy, per class, the confusion matrix and, when the file sits in a run's
    ``exports/`` beside its ``model.keras``, its top-1 agreement with the Keras model and
    the test images whose answer differs from Keras's, measured by
    :func:`edgecnn.runtime.gate.compare` as the export gate measures them; and its
    calibration: the expected calibration error of its raw outputs and of them at its own
    temperature (from its metadata), the reliability diagram, and the share its "unknown"
    rule rejects. Written to ``<file>.evaluation/`` beside the file unless ``out_dir``.

    ``keras_probs`` are the Keras model's probabilities on the test images, in the test
    set's order (further rows are ignored: the export's agreement images start with the
    test images), for a caller that has them already (``edgecnn run``, from the export
    stage); without them, the Keras model beside ``exports/`` is loaded and run. Given,
    they are compared with the file wherever it sits.

    Raises:
        ValueError: ``keras_probs`` are not one row per test image of the file's classes.
    """
    from edgecnn.runtime import load_classifier
    from edgecnn.trainer import plots
    from edgecnn.trainer.model_source import ModelSource

    stream = stream or sys.stdout
    path = Path(target)
    # Raw outputs, calibrated here as the classifier would: both sides of the diagram.
    clf = load_classifier(path, backend=backend, calibrated=False)
    exports = path.resolve().parent  # the C library's folder sits in exports/ too
    run_dir = exports.parent if (exports.parent / "model.keras").is_file() else None
    source = resolve_model(run_dir) if run_dir else ModelSource(path, None, None)
    shape = _Shape((None, *clf.input_shape), (None, len(clf.labels)))
    # A file away from its run says its class order itself (--classes may have set it).
    labels = None if clf.generic_labels else clf.labels
    test = training_data.for_model(shape, source, data_dir, data, dataset, labels=labels)
    raw = clf.predict(test.x_test)
    calibration = measure_calibration(raw, test.y_test, clf.metadata.confidence)
    pred = predicted(raw)  # a temperature never changes the top class
    metrics = classification_metrics(test.y_test, pred, test.labels)
    metrics.update(file=str(path), backend=clf.backend_name, dataset=test.name)
    metrics[CALIBRATION_KEY] = calibration.to_dict()
    figures = {
        "confusion_matrix.png": plots.plot_confusion_matrix(
            np.array(metrics["confusion_matrix"]), test.labels,
            f"{path.name}: confusion matrix ({100 * metrics['test_accuracy']:.1f}% correct)",
        ),
        "errors.png": _gallery(test, pred, pred != test.y_test, f"{path.name}: misclassified"),
    }  # fmt: skip
    flipped_line = ""
    if keras_probs is not None:
        keras_probs = _test_rows(keras_probs, raw.shape)
    elif source.run_dir is not None:
        keras_probs = predict_probs(load_keras_model(source.model_path), test.x_test)
    if keras_probs is not None:
        agreement = compare(raw, keras_probs, test.y_test).agreement  # as the gate: raw
        flipped = pred != predicted(keras_probs)
        metrics["keras_agreement"] = agreement
        metrics["differs_from_keras"] = [int(i) for i in np.flatnonzero(flipped)]
        figures["differs_from_keras.png"] = _gallery(
            test, pred, flipped, f"{path.name}: answers that differ from Keras"
        )
        keras_name = source.model_path.name if source.run_dir is not None else "Keras"
        flipped_line = (
            f"Top-1 agreement with {keras_name}: {100 * agreement:.2f}% "
            f"({int(flipped.sum()):,} of {len(flipped):,} test images differ)\n"
        )
    out = _atomic.ensure_writable_dir(out_dir or exports / f"{path.name.rstrip('/')}.evaluation")
    _atomic.write_json(out / METRICS_FILE, metrics)
    for name, fig in figures.items():
        plots.save_figure(fig, out / name)
    draw_reliability(calibration, out, path.name)
    if len(test.labels) <= TEXT_MATRIX_CLASSES:
        stream.write(f"Confusion matrix of {path.name} ({test.title} test set, rows: true class)\n")
        stream.write(format_confusion_matrix(np.array(metrics["confusion_matrix"]), test.labels))
        stream.write("\n")
    stream.write(accuracy_line(metrics["test_correct"], metrics["test_total"]) + "\n")
    stream.write(flipped_line)
    stream.write(calibration_lines(calibration, _fitted(clf.metadata.confidence)))
    stream.write(f"Wrote {METRICS_FILE} and {len(figures) + 1} figures to {out}\n")
    return metrics


def _fitted(confidence: Confidence | None) -> str:
    """Where an exported file's temperature came from, in words."""
    if confidence is None:
        return "the file has no temperature in its metadata"
    return f"the file's own, {fitted_on(confidence)}"


def _test_rows(keras_probs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The first ``shape[0]`` rows of ``keras_probs``, checked to be of ``shape[1]`` classes.

    Raises:
        ValueError: fewer rows, or another class count.
    """
    keras_probs = np.asarray(keras_probs)
    if keras_probs.ndim != 2 or keras_probs.shape[1] != shape[1] or len(keras_probs) < shape[0]:
        raise ValueError(
            f"keras_probs of shape {keras_probs.shape} are not the Keras model's "
            f"probabilities on the {shape[0]:,} test images of {shape[1]} classes"
        )
    return keras_probs[: shape[0]]


def _gallery(test: Dataset, pred: np.ndarray, which: np.ndarray, title: str) -> Any:
    """Nine of the test images ``which`` selects, with their class and the file's answer."""
    from edgecnn.trainer import plots

    chosen = _nine(np.flatnonzero(which), test.record is not None)
    return plots.plot_images(test.x_test[chosen], test.labels, test.y_test[chosen],
                             pred[chosen], title)  # fmt: skip
