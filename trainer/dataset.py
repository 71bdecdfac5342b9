"""The record every data source gives the trainer and the exporter: :class:`Dataset`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgecnn.trainer.splits import SplitRecord

#: The tutorial takes the first 5,000 training images as its validation set.
VALIDATION_SIZE = 5000
#: The built-in datasets' usual names.
TITLES = {"fashion": "Fashion-MNIST", "mnist": "MNIST"}


@dataclass(frozen=True)
class Dataset:
    """Images split into train, validation and test, and the names of their classes.

    Images are uint8: ``(N, H, W)`` greyscale or ``(N, H, W, 3)`` colour; labels are
    class indices. ``light_on_dark`` says whether the objects are light on a dark
    background (Fashion-MNIST's are), which the runtime's picture handling follows.
    """

    name: str
    labels: tuple[str, ...]
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    light_on_dark: bool = True
    #: How an image folder or an array file was split and checked (``split.json``).
    record: SplitRecord | None = None

    @property
    def title(self) -> str:
        """The dataset's usual name, such as ``Fashion-MNIST``, or the folder's."""
        return TITLES.get(self.name, self.name)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """One image, ``(height, width, channels)``."""
        shape = self.x_train.shape[1:]
        return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 ``(N, H, W, C)`` in [0, 1], the model's input.

    Greyscale ``(N, H, W)`` gains its channel axis.
    """
    scaled = images.astype(np.float32) / 255.0
    return scaled[..., np.newaxis] if images.ndim == 3 else scaled
