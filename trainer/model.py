"""The tutorial's convolutional network, built with Keras."""

from __future__ import annotations

from typing import Any

from edgecnn.runtime.contract import INPUT_NAME
from edgecnn.trainer._tf import import_keras
from edgecnn.trainer.config import ModelConfig

#: Layer names the evaluator and the exporter look up; a model without them is not ours.
LAYER_NAMES = ("conv1", "relu1", "conv2", "relu2", "fc1", "logits")


def build_model(config: ModelConfig | None = None) -> Any:
    """Build the tutorial network; it outputs logits (softmax lives in the loss and the exports).

    conv 5x5x16 'same' -> 2x2 max-pool -> ReLU -> conv 5x5x36 'same' -> 2x2 max-pool -> ReLU
    -> flatten (S/4 x S/4 x 36: 1764 for 28x28) -> dense 128 ReLU -> dense classes.

    ReLU comes after pooling as in the tutorial: max-pool and ReLU commute, so the result
    is the same as ReLU first, for a quarter of the work.
    """
    config = config or ModelConfig()
    keras = import_keras()
    layers = keras.layers
    size = config.img_size
    return keras.Sequential(
        [
            keras.Input(shape=(size, size, config.channels), name=INPUT_NAME),
            layers.Conv2D(config.num_filters1, config.filter_size1, padding="same", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(config.num_filters2, config.filter_size2, padding="same", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.ReLU(name="relu2"),
            layers.Flatten(name="flatten"),
            layers.Dense(config.fc_size, activation="relu", name="fc1"),
            layers.Dense(config.num_classes, name="logits"),
        ],
        name="edgecnn",
    )
