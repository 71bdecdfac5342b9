"""A model that plain int8 fails, made honestly: one conv channel scaled, the next layer's
matching input weights divided, so the float function stays the same (checked)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: conv1's channel 3 times 100, conv2's weights from that channel divided by 100.
CRAFTED = {"layer": "conv1", "next": "conv2", "channel": 3, "factor": 100.0}


def craft(model: Any, layer: str, next: str, channel: int, factor: float) -> Any:
    """Scale ``layer``'s output ``channel`` (weights and bias) up by ``factor`` and ``next``'s
    input weights from it down by the same: ReLU and max-pool between them commute with a
    positive scale, so the outputs do not change. Changes ``model`` in place; returns it."""
    first, second = model.get_layer(layer), model.get_layer(next)
    w1, b1 = first.get_weights()
    w2, b2 = second.get_weights()
    w1[..., channel] *= factor
    b1[channel] *= factor
    w2[..., channel, :] /= factor  # Conv2D kernel (h, w, in, out); Dense (in, out) also
    first.set_weights([w1, b1])
    second.set_weights([w2, b2])
    return model


def float_change(before: Any, after: Any, images: np.ndarray) -> float:
    """The largest absolute difference between two models' logits, relative to their span."""
    a = before.predict(images, batch_size=1000, verbose=0)
    b = after.predict(images, batch_size=1000, verbose=0)
    return float(np.abs(a - b).max() / (np.abs(a).max() or 1.0))
