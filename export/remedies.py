"""Weight-space remedies for int8: cross-layer equalization and empirical bias correction.

Both return a new Keras model with the same float function (equalization) or the same
weights and moved biases (bias correction), for the int8 converter to quantize better;
neither changes the model it is given. After Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction".
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from edgecnn.records import JSONObject

#: Equalization sweeps stop when no scale moves further than this (in log) or after
#: MAX_SWEEPS; a pair's scales settle in one sweep, neighbours sharing a layer take a few.
SETTLED = 1e-6
MAX_SWEEPS = 50
#: TFLite's int8 weights: symmetric, zero-point 0, one scale per output channel.
WEIGHT_LEVELS = 127
BATCH = 256


@dataclass(frozen=True)
class Equalization:
    """What :func:`equalize` did."""

    pairs: tuple[tuple[str, str], ...]  # the (first, second) layers equalized
    skipped: tuple[str, ...]  # the pairs left alone, each with why
    scale_range: tuple[float, float]  # least and largest channel scale applied
    #: max |logits after - logits before| / max |logits before| on the images given.
    max_logit_change: float

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {
            "pairs": [list(pair) for pair in self.pairs],
            "skipped": list(self.skipped),
            "scale_range": list(self.scale_range),
            "max_logit_change": self.max_logit_change,
        }


@dataclass(frozen=True)
class BiasCorrection:
    """What :func:`bias_corrected` did."""

    layers: tuple[str, ...]  # the layers whose bias moved
    max_shift: float  # the largest |bias change| of any channel, in the layer's output units

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {"layers": list(self.layers), "max_shift": self.max_shift}


def equalize(model: Any, images: np.ndarray) -> tuple[Any, Equalization]:
    """Cross-layer equalization: a copy of ``model`` with balanced per-channel weight ranges.

    Consecutive weighted layers get equal channel ranges, so one int8 scale fits every
    channel. Output channel i of the first layer is divided by s_i and the second layer's inputs
    from it multiplied by s_i, s_i = sqrt(r1_i * r2_i) / r2_i: both ranges become
    sqrt(r1_i * r2_i). ReLU and pooling between them commute with a positive scale, so the
    float function stays (measured on ``images`` as ``max_logit_change``).
    """
    new = _copy(model)
    pairs, skipped = _pairs(_chain(new))
    weights = {name: new.get_layer(name).get_weights() for pair in pairs for name in pair}
    total = {pair: np.ones(1) for pair in pairs}
    for _ in range(MAX_SWEEPS):
        moved = 0.0
        for first, second in pairs:
            scale = _scales(weights[first][0], weights[second][0])
            _rescale(weights[first], weights[second], scale)
            total[first, second] = total[first, second] * scale
            moved = max(moved, float(np.abs(np.log(scale)).max()))
        if moved < SETTLED:
            break
    for name, values in weights.items():
        new.get_layer(name).set_weights(values)
    applied = np.concatenate([s.ravel() for s in total.values()]) if total else np.ones(1)
    return new, Equalization(
        pairs=tuple(pairs),
        skipped=tuple(skipped),
        scale_range=(float(applied.min()), float(applied.max())),
        max_logit_change=_logit_change(model, new, images),
    )


def bias_corrected(
    model: Any, calibration: np.ndarray, *, layers: Collection[str] | None = None
) -> tuple[Any, BiasCorrection]:
    """Empirical bias correction: a copy of ``model`` with the weight-quantization shift undone.

    The biases absorb the mean output shift quantizing the weights as TFLite does causes.
    For each Conv2D/Dense with a bias (or those named in ``layers``; the plain int8 file
    keeps the last layer in float, so its bias needs no correction there), eps = W_q - W
    and the bias drops by E[layer(x, eps)] per output channel, over the calibration images
    and every position, x being the float model's input to that layer. Only biases change.
    """
    targets = _biased(model, layers)
    if not targets:
        return _copy(model), BiasCorrection(layers=(), max_shift=0.0)
    import keras

    probe = keras.Model(model.inputs, [layer.input for layer in targets])
    inputs = probe.predict(calibration, batch_size=BATCH, verbose=0)
    inputs = inputs if isinstance(inputs, list) else [inputs]
    new = _copy(model)
    largest = 0.0
    for layer, x in zip(targets, inputs, strict=True):
        kernel, bias = layer.get_weights()
        shift = _mean_output(layer, quantized_weights(kernel) - kernel, x)
        new.get_layer(layer.name).set_weights([kernel, (bias - shift).astype(bias.dtype)])
        largest = max(largest, float(np.abs(shift).max()))
    names = tuple(layer.name for layer in targets)
    return new, BiasCorrection(layers=names, max_shift=largest)


def quantized_weights(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` as the int8 file holds it, dequantized.

    Per output channel (last axis), symmetric, scale max|w| / 127, zero-point 0: what the
    converter writes for CONV_2D and FULLY_CONNECTED alike.
    """
    reduce = tuple(range(kernel.ndim - 1))
    scale = (np.abs(kernel).max(axis=reduce) / WEIGHT_LEVELS).astype(np.float32)
    # As TFLite's quantizer does it: times the float32 inverse of the scale, rounded half
    # away from zero (dividing instead, or numpy's round half to even, differs on a few
    # weights in a hundred thousand).
    inverse = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale > 0)
    scaled = (kernel.astype(np.float32) * inverse).astype(np.float64)
    steps = np.clip(np.trunc(scaled + np.copysign(0.5, scaled)), -WEIGHT_LEVELS, WEIGHT_LEVELS)
    dequantized: np.ndarray = (steps * scale).astype(kernel.dtype)
    return dequantized


def _copy(model: Any) -> Any:
    import keras

    new = keras.models.clone_model(model)
    new.set_weights(model.get_weights())
    return new


def _chain(model: Any) -> list[Any]:
    """The model's layers, refused unless each feeds only the next (a Sequential model's)."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for previous, layer in pairwise(layers):
        nodes = layer._inbound_nodes
        parents = [node.operation for node in nodes[0].parent_nodes] if len(nodes) == 1 else []
        if parents != [previous] or len(previous._outbound_nodes) > 1:
            raise ValueError(f"equalize needs a chain of layers; {layer.name!r} breaks it")
    return layers


def _pairs(layers: list[Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """Consecutive Conv2D/Dense pairs: those equalizable, and why the others are not."""
    pairs: list[tuple[str, str]] = []
    skipped: list[str] = []
    first: Any = None
    between: list[Any] = []
    for layer in layers:
        if not _weighted(layer):
            between.append(layer)
            continue
        if first is not None:
            reason = _breaks(first, between, layer)
            if reason:
                skipped.append(f"{first.name} -> {layer.name}: {reason}")
            else:
                pairs.append((first.name, layer.name))
        first, between = layer, []
    return pairs, skipped


def _weighted(layer: Any) -> bool:
    import keras

    return type(layer) in (keras.layers.Conv2D, keras.layers.Dense)


def _breaks(first: Any, between: list[Any], second: Any) -> str | None:
    """Why scaling ``first``'s output channels cannot be undone in ``second``, or None."""
    activation = first.get_config()["activation"]
    if activation not in ("linear", "relu"):
        return f"{first.name}'s own activation {activation!r} is not positively homogeneous"
    for layer in (first, *between, second):
        if layer.get_config().get("data_format", "channels_last") != "channels_last":
            return f"{layer.name} is channels-first"
        if getattr(layer, "groups", 1) != 1:
            return f"{layer.name} is a grouped convolution"
    for layer in between:
        if not _homogeneous(layer):
            return f"{type(layer).__name__} {layer.name!r} is not positively homogeneous"
    return None


def _homogeneous(layer: Any) -> bool:
    """Whether f(s x) = s f(x) per channel for every s > 0."""
    import keras

    kind, config = type(layer), layer.get_config()
    if kind in (
        keras.layers.MaxPooling2D,
        keras.layers.AveragePooling2D,
        keras.layers.Dropout,
        keras.layers.Flatten,
    ):
        return True
    if kind is keras.layers.ReLU:
        return (
            config["max_value"] is None and not config["negative_slope"] and not config["threshold"]
        )
    return kind is keras.layers.Activation and config["activation"] in ("linear", "relu")


def _scales(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """s_i = sqrt(r1_i r2_i) / r2_i; 1 for a channel either side has all zero."""
    channels = w1.shape[-1]
    r1 = np.abs(w1.reshape(-1, channels)).max(axis=0).astype(np.float64)
    r2 = np.abs(_by_input(w2, channels)).max(axis=(0, 2)).astype(np.float64)
    alive = (r1 > 0) & (r2 > 0)
    return np.where(alive, np.sqrt(r1 * r2) / np.where(alive, r2, 1.0), 1.0)


def _by_input(w2: np.ndarray, channels: int) -> np.ndarray:
    """The second kernel as (positions, channels, outputs).

    A Conv2D's (h, w, in, out), a Dense's (in, out), and a Dense after Flatten, whose row
    p * C + c reads channel c at position p (channels-last), all take this view.
    """
    return w2.reshape(-1, channels, w2.shape[-1])


def _rescale(first: list[np.ndarray], second: list[np.ndarray], scale: np.ndarray) -> None:
    """Divide ``first``'s output channels by ``scale``, multiply ``second``'s inputs by it.

    In place; ``first``'s bias too.
    """
    channels = len(scale)
    first[0] = (first[0] / scale).astype(first[0].dtype)
    if len(first) > 1:
        first[1] = (first[1] / scale).astype(first[1].dtype)
    grown = _by_input(second[0], channels) * scale[None, :, None]
    second[0] = grown.reshape(second[0].shape).astype(second[0].dtype)


def _logit_change(before: Any, after: Any, images: np.ndarray) -> float:
    a = before.predict(images, batch_size=BATCH, verbose=0)
    b = after.predict(images, batch_size=BATCH, verbose=0)
    return float(np.abs(a - b).max() / (np.abs(a).max() or 1.0))


def _biased(model: Any, names: Collection[str] | None) -> list[Any]:
    """The Conv2D/Dense layers with a bias, or those of ``names`` (each must be one)."""
    found = [layer for layer in model.layers if _weighted(layer) and layer.use_bias]
    if names is None:
        return found
    unknown = set(names) - {layer.name for layer in found}
    if unknown:
        raise ValueError(f"no Conv2D/Dense layer with a bias named {sorted(unknown)}")
    return [layer for layer in found if layer.name in names]


def _mean_output(layer: Any, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per output channel, the mean of ``layer`` run with ``kernel`` over images and positions.

    No bias and no activation: the shift a kernel error ``kernel`` causes.
    """
    import keras

    config = {**layer.get_config(), "use_bias": False, "activation": "linear"}
    probe = type(layer).from_config({**config, "name": f"{layer.name}_error"})
    probe.build(x.shape)
    probe.set_weights([kernel])
    total = np.zeros(kernel.shape[-1])
    count = 0
    for start in range(0, len(x), BATCH):
        out = keras.ops.convert_to_numpy(probe(x[start : start + BATCH])).astype(np.float64)
        total += out.reshape(-1, out.shape[-1]).sum(axis=0)
        count += out.size // out.shape[-1]
    return total / count
