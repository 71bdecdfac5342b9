"""The doctor's findings: per-tensor errors, per-layer sensitivity, a calibration sweep.

:func:`diagnose` measures; :class:`Diagnosis` is the typed record ``doctor --json``
prints and the report reads. "A layer in float" means the layer's operators and every
operator up to and including the next weighted layer, which reads its output: the
tensor the layer makes is then never quantized. (With the layer alone in float, its
output is quantized all the same where the next int8 operator takes it, and a layer
whose output range is the trouble would look harmless.)
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.export.doctor.tensors import TensorError
from edgecnn.records import Fields, JSONObject

#: Calibration sizes the sweep tries (capped at the training split).
SWEEP_SIZES = (100, 500, 2_000, 10_000)
#: A tensor whose median channel keeps less than this SQNR has lost most of its signal.
WEAK_SQNR_DB = 20.0
#: Keras layer types that carry weights the converter quantizes.
WEIGHTED = ("Conv2D", "Dense", "DepthwiseConv2D")


@dataclass(frozen=True)
class LayerTrial:
    """Agreement with Keras when one layer (and the tensor it makes) stays in float."""

    layer: str
    float_layers: tuple[str, ...]
    agreement: float

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {
            "layer": self.layer,
            "float_layers": list(self.float_layers),
            "agreement": self.agreement,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> LayerTrial:
        """The record :meth:`to_dict` wrote."""
        return cls(f.text("layer"), f.texts("float_layers"), f.number("agreement"))


@dataclass(frozen=True)
class SweepPoint:
    """Agreement of the int8 file calibrated on ``images`` training images."""

    images: int
    agreement: float

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {"images": self.images, "agreement": self.agreement}

    @classmethod
    def from_fields(cls, f: Fields) -> SweepPoint:
        """The record :meth:`to_dict` wrote."""
        return cls(f.integer("images", least=1), f.number("agreement"))


@dataclass(frozen=True)
class Diagnosis:
    """What ``edgecnn doctor`` found for one int8 file (and its ONNX twin)."""

    file: str
    file_sha256: str  # which file it examined: a later export's findings are not its
    agreement: float  # the file's top-1 agreement with Keras on the test images
    test: tuple[TensorError, ...]  # each quantized tensor, on test images
    calibration: tuple[TensorError, ...]  # the same on the calibration images
    onnx_file: str | None
    onnx: tuple[TensorError, ...]
    sensitivity: tuple[LayerTrial, ...]
    sweep: tuple[SweepPoint, ...]
    culprit: str | None  # the layer the doctor names, if any
    finding: str  # one paragraph: what is wrong and what to try
    seconds: float
    remedy: str = "none"  # the --remedy the file was made with (its metadata's)

    def to_dict(self) -> JSONObject:
        """JSON-ready form (``edgecnn doctor --json``)."""
        return {
            "file": self.file,
            "file_sha256": self.file_sha256,
            "agreement": self.agreement,
            "test": [t.to_dict() for t in self.test],
            "calibration": [t.to_dict() for t in self.calibration],
            "onnx_file": self.onnx_file,
            "onnx": [t.to_dict() for t in self.onnx],
            "sensitivity": [t.to_dict() for t in self.sensitivity],
            "sweep": [p.to_dict() for p in self.sweep],
            "culprit": self.culprit,
            "finding": self.finding,
            "seconds": self.seconds,
            "remedy": self.remedy,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> Diagnosis:
        """The record :meth:`to_dict` wrote."""
        return cls(
            file=f.text("file"),
            file_sha256=f.text("file_sha256"),
            agreement=f.number("agreement"),
            test=tuple(TensorError.from_fields(r) for r in f.objects("test")),
            calibration=tuple(TensorError.from_fields(r) for r in f.objects("calibration")),
            onnx_file=f.optional_text("onnx_file"),
            onnx=tuple(TensorError.from_fields(r) for r in f.objects("onnx")),
            sensitivity=tuple(LayerTrial.from_fields(r) for r in f.objects("sensitivity")),
            sweep=tuple(SweepPoint.from_fields(r) for r in f.objects("sweep")),
            culprit=f.optional_text("culprit"),
            finding=f.text("finding"),
            seconds=f.number("seconds"),
            remedy=f.text("remedy", "none"),
        )


def weighted_layers(model: Any) -> list[str]:
    """Names of the layers whose weights int8 quantizes, in order."""
    return [layer.name for layer in model.layers if type(layer).__name__ in WEIGHTED]


def float_group(model: Any, layer: str) -> tuple[str, ...]:
    """``layer``, what follows it, and the next weighted layer: kept in float together."""
    names = [each.name for each in model.layers]
    weighted = set(weighted_layers(model))
    start = names.index(layer)
    group = [layer]
    for name in names[start + 1 :]:
        group.append(name)
        if name in weighted:
            break
    return tuple(group)


def layer_trials(
    model: Any, calibrated: bytes, images: np.ndarray, reference: np.ndarray
) -> list[LayerTrial]:
    """Each weighted layer's output kept in float in turn, and the agreement on ``images``.

    ``calibrated``: ``model``'s calibrated flatbuffer; ``reference``: the Keras classes
    of ``images``. The logits layer is float in the int8 file already: not tried.
    """
    from edgecnn.export.formats.tflite import layer_operators, quantize_calibrated

    trials = []
    for layer in weighted_layers(model)[:-1]:
        group = float_group(model, layer)
        data = quantize_calibrated(calibrated, layer_operators(calibrated, model, group))
        trials.append(LayerTrial(layer, group, top1_agreement(data, images, reference)))
    return trials


def top1_agreement(flatbuffer: bytes, images: np.ndarray, reference: np.ndarray) -> float:
    """The file's top-1 agreement with ``reference`` (the Keras classes) on ``images``."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.export.doctor.tflite_tensors import feed

    interpreter = Interpreter(model_content=flatbuffer)
    answers = []
    for start in range(0, len(images), 1000):
        feed(interpreter, images[start : start + 1000])
        output = interpreter.get_output_details()[0]["index"]
        answers.append(interpreter.get_tensor(output).argmax(axis=1))
    return float(np.mean(np.concatenate(answers) == reference))


def diagnose(
    model: Any,
    flatbuffer: bytes,
    file: str,
    calibration: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int = 0,
    onnx: tuple[Any, Any] | None = None,
    tensor_images: int = 1000,
    sweep_sizes: tuple[int, ...] = SWEEP_SIZES,
) -> Diagnosis:
    """Measure why ``flatbuffer`` (the int8 ``.tflite`` of ``model``) differs from Keras.

    ``calibration``: the images it was calibrated on; ``train``: the training images
    the sweep draws from (with ``seed``); ``test``: the images agreement is measured on
    (float32, [0, 1]); ``onnx``: the float and int8 ONNX files' paths, if any;
    ``sweep_sizes``: the calibration sizes the sweep tries (none: no sweep).
    """
    from edgecnn.export.doctor.tflite_tensors import tflite_tensor_errors
    from edgecnn.export.formats.tflite import calibrate, quantize_calibrated

    started = time.perf_counter()
    reference = model.predict(test, batch_size=1000, verbose=0).argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LiteRT's "for debugging purposes" about keeping tensors
        on_test = tflite_tensor_errors(model, flatbuffer, test[:tensor_images])
        on_calibration = tflite_tensor_errors(model, flatbuffer, calibration[:tensor_images])
    calibrated = calibrate(model, calibration)
    trials = layer_trials(model, calibrated, test, reference)
    sweep = []
    for size in sorted({min(n, len(train)) for n in sweep_sizes}):
        rng = np.random.default_rng(seed)
        chosen = train[np.sort(rng.choice(len(train), size=size, replace=False))]
        data = quantize_calibrated(calibrate(model, chosen))
        sweep.append(SweepPoint(size, top1_agreement(data, test, reference)))
    onnx_errors: list[TensorError] = []
    onnx_note = ""
    if onnx is not None:
        from edgecnn.export.doctor.onnx_tensors import onnx_tensor_errors

        names = [layer.name for layer in model.layers]
        try:
            onnx_errors = onnx_tensor_errors(onnx[0], onnx[1], test[:tensor_images], names)
        except (ValueError, RuntimeError, OSError) as e:  # onnxruntime's are RuntimeErrors
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            onnx_note = f"The int8 ONNX file could not be examined: {first}"
    agreement = top1_agreement(flatbuffer, test, reference)
    culprit, finding = verdict(model, agreement, on_test, trials, sweep)
    finding = f"{finding} {onnx_note}".strip()
    return Diagnosis(
        file=file,
        file_sha256=hashlib.sha256(flatbuffer).hexdigest(),
        agreement=agreement,
        test=tuple(on_test),
        calibration=tuple(on_calibration),
        onnx_file=str(onnx[1]) if onnx else None,
        onnx=tuple(onnx_errors),
        sensitivity=tuple(trials),
        sweep=tuple(sweep),
        culprit=culprit,
        finding=finding,
        seconds=time.perf_counter() - started,
    )


def verdict(
    model: Any,
    agreement: float,
    tensors: list[TensorError],
    trials: list[LayerTrial],
    sweep: list[SweepPoint],
) -> tuple[str | None, str]:
    """The layer to blame (if any) and a paragraph saying why and what to try."""
    weighted = weighted_layers(model)
    owner = _owners(model)
    weak = [t for t in tensors if t.median_channel_sqnr_db < WEAK_SQNR_DB]
    best_trial = max(trials, key=lambda t: t.agreement, default=None)
    best_sweep = max(sweep, key=lambda p: p.agreement, default=None)
    lines = [f"Top-1 agreement with Keras: {100 * agreement:.2f}%."]
    culprit = None
    if weak:
        first = weak[0]
        culprit = owner.get(first.layer, first.layer)
        lines.append(
            f"The first tensor to lose its signal is {first.layer}'s output ({culprit}): its "
            f"median channel keeps {first.median_channel_sqnr_db:.1f} dB SQNR, and its "
            f"widest channel spans {first.channel_range_ratio:.0f}x the median channel's "
            "range, so one int8 scale for the whole tensor leaves the other channels a "
            "few steps."
        )
    elif best_trial is not None and best_trial.agreement > agreement + 0.005:
        culprit = best_trial.layer
        lines.append(f"No tensor stands out; {culprit} matters most (see the sensitivity).")
    if best_trial is not None:
        lines.append(
            f"With {best_trial.layer}'s output kept in float, agreement is "
            f"{100 * best_trial.agreement:.2f}%."
        )
    if best_sweep is not None:
        lines.append(
            f"The best calibration size tried, {best_sweep.images} images, gives "
            f"{100 * best_sweep.agreement:.2f}%."
        )
    if culprit is not None and culprit in weighted[:-1]:
        lines.append(
            "Try 'edgecnn export RUN --remedy auto': cross-layer equalization rescales "
            f"{culprit} and the layer after it without changing the float model."
        )
    return culprit, " ".join(lines)


def _owners(model: Any) -> dict[str, str]:
    """Each layer's name -> the weighted layer whose block it is in (itself if weighted)."""
    weighted = set(weighted_layers(model))
    owner, current = {}, None
    for layer in model.layers:
        if layer.name in weighted:
            current = layer.name
        owner[layer.name] = current or layer.name
    return owner
