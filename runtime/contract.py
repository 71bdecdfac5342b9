"""The model's input and output, as every stage names them: one place for names and shapes.

Every exported model takes ``image``, a batch ``(N, height, width, channels)`` of pixels
scaled to [0, 1] (NHWC), and returns ``probabilities`` ``(N, classes)``. The sizes are
the model's own, read from its metadata wherever a model is at hand; the values here are
the defaults of the tutorial's network, used where none is (a new training).
"""

from __future__ import annotations

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
LAYOUT = "NHWC"
#: The tutorial's Fashion-MNIST input and classes.
DEFAULT_IMAGE_SIZE = 28
DEFAULT_CHANNELS = 1
DEFAULT_CLASSES = 10
DEFAULT_INPUT_SHAPE = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, DEFAULT_CHANNELS)
#: Pixels in [0, 255] become model input in [0, 1].
PIXEL_SCALE = 1 / 255
#: The shapes this version's backends and exporter support.
SUPPORTED_INPUT_SHAPES = (DEFAULT_INPUT_SHAPE,)
SUPPORTED_CLASSES = (DEFAULT_CLASSES,)


def shape_text(shape: tuple[int, ...]) -> str:
    """``(28, 28, 1)`` -> ``"28x28x1"``."""
    return "x".join(str(d) for d in shape)
