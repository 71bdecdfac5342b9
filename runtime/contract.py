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
#: Greyscale or colour.
CHANNELS = (1, 3)
#: What a model may take and give, for the runtime: square or not, any sensible size.
MAX_IMAGE_SIDE = 1024
MIN_CLASSES, MAX_CLASSES = 2, 1000


#: The exported C library's file name without its suffix (``exports/c/libedgecnn_model.so``).
C_LIBRARY_STEM = "libedgecnn_model"
#: What a shared library is called on each platform; ``.so`` elsewhere.
SHARED_LIBRARY_SUFFIXES = {"darwin": ".dylib", "win32": ".dll"}


def c_library_name(platform: str) -> str:
    """The exported C library's file name on ``platform`` (a ``sys.platform`` value)."""
    return C_LIBRARY_STEM + SHARED_LIBRARY_SUFFIXES.get(platform, ".so")


def shape_text(shape: tuple[int, ...]) -> str:
    """``(28, 28, 1)`` -> ``"28x28x1"``."""
    return "x".join(str(d) for d in shape)


def check_io(input_shape: tuple[int, ...], classes: int) -> str | None:
    """Why a model of this input shape and class count cannot be run here; None if it can."""
    if len(input_shape) != 3:
        return f"input has shape {input_shape}; expected (height, width, channels)"
    height, width, channels = input_shape
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        return f"input is {height}x{width}; images may be at most {MAX_IMAGE_SIDE} pixels a side"
    if channels not in CHANNELS:
        return f"input has {channels} channels; expected 1 (greyscale) or 3 (colour)"
    if not MIN_CLASSES <= classes <= MAX_CLASSES:
        return f"output has {classes} classes; expected {MIN_CLASSES} to {MAX_CLASSES}"
    return None
