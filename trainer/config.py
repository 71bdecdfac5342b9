"""Training configuration: one frozen dataclass, saved as ``config.json`` beside the model."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from edgecnn.errors import ConfigError
from edgecnn.runtime.contract import CHANNELS, DEFAULT_CLASSES, DEFAULT_IMAGE_SIZE
from edgecnn.runtime.labels import LABELS

#: Input sizes and class counts the trainer builds networks for.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 96
MIN_CLASSES, MAX_CLASSES = 2, 100
#: The largest seed: NumPy's and Keras' global generators take 32 bits.
MAX_SEED = 2**32 - 1


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is a whole number (not a bool, not 1.0) in ``low..high``.

    Raises:
        ConfigError: it is not; the message names ``name``.
    """
    if type(value) is not int or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ConfigError(f"{name} must be a whole number {span}, got {value!r:.40}")
    return value


def check_type(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is a ``kind`` (``what`` says which, for the message).

    Raises:
        ConfigError: it is not; the message names ``name``.
    """
    if not isinstance(value, kind) or (isinstance(value, bool) and kind not in (bool, (bool,))):
        raise ConfigError(f"{name} must be {what}, got {value!r:.40}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    """The tutorial network's sizes; the defaults are the tutorial's (242,062 parameters).

    The layers never change; the input (``img_size`` square, ``channels``) and the output
    (``num_classes``) follow the data.
    """

    filter_size1: int = 5
    num_filters1: int = 16
    filter_size2: int = 5
    num_filters2: int = 36
    fc_size: int = 128
    num_classes: int = DEFAULT_CLASSES
    img_size: int = DEFAULT_IMAGE_SIZE
    channels: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{f.name} must be a positive integer, got {value!r:.40}")
        if not MIN_IMAGE_SIZE <= self.img_size <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got "
                f"{self.img_size} (--image-size)"
            )
        if self.channels not in CHANNELS:
            raise ConfigError(f"channels must be 1 or 3, got {self.channels} (--channels)")
        if not MIN_CLASSES <= self.num_classes <= MAX_CLASSES:
            raise ConfigError(
                f"a model has {MIN_CLASSES} to {MAX_CLASSES} classes, got {self.num_classes}"
            )
        for name in ("filter_size1", "filter_size2"):
            if getattr(self, name) > self.img_size:
                raise ConfigError(f"{name} {getattr(self, name)} is larger than the image")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image, ``(height, width, channels)``."""
        return (self.img_size, self.img_size, self.channels)

    @property
    def flatten_size(self) -> int:
        """Values after the two 2x2 pools: ``(S/4) x (S/4) x num_filters2``."""
        return (self.img_size // 4) ** 2 * self.num_filters2


#: Outlier exposure's share by default: without it, noise, blank and inverted pictures are
#: mostly accepted as a class (docs/benchmarks.md, "Calibrated confidence and unknown").
DEFAULT_OUTLIERS = 0.25
#: The most synthetic outliers an epoch may add, as a share of its pictures.
MAX_OUTLIERS = 4.0


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained.

    The architecture defaults are the tutorial's. The recipe is not: the tutorial's
    batch 64 and plain Adam 1e-3; this one is batch 128 with Adam 2e-3 decayed to zero on
    a cosine over 10 epochs, which reaches a higher test accuracy in the same time
    (docs/benchmarks.md, "Training").
    """

    dataset: str = "fashion"
    #: An image folder or a .npz file to train on instead of ``dataset`` (absolute path).
    data: str | None = None
    #: The order of ``data``'s classes (``--classes``); None: a folder's sorted, a .npz's own.
    classes: tuple[str, ...] | None = None
    #: Leave out pictures that cannot be read (listed), rather than stop.
    skip_bad_images: bool = False
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 2e-3
    lr_schedule: str = "cosine"
    seed: int = 42
    augment_shift: int = 0
    augment_flip: bool = False
    train_subset: int | None = None
    #: Synthetic outliers added to each epoch, as a share of its pictures, trained towards
    #: "none of the classes" (edgecnn.trainer.outliers), so that pictures of no class are
    #: answered "unknown"; 0 turns outlier exposure off.
    outliers: float = DEFAULT_OUTLIERS
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or self.dataset not in LABELS:
            raise ConfigError(
                f"unknown dataset {self.dataset!r:.40}; choose one of {', '.join(LABELS)}"
            )
        check_type("data", self.data, (str, type(None)), "a path")
        check_type("skip_bad_images", self.skip_bad_images, bool, "true or false")
        check_type("augment_flip", self.augment_flip, bool, "true or false")
        check_type("model", self.model, ModelConfig, "a network configuration")
        for name in ("epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        rate = check_type("learning_rate", self.learning_rate, (int, float), "a number")
        if not 0 < rate < math.inf:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(
                f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r:.40}"
            )
        check_int("augment_shift", self.augment_shift, 0, self.model.img_size // 2 - 1)
        share = check_type("outliers", self.outliers, (int, float), "a number")
        if not 0 <= share <= MAX_OUTLIERS:
            raise ConfigError(f"outliers must be in 0..{MAX_OUTLIERS:g}, got {self.outliers}")
        if self.train_subset is not None:
            check_int("train_subset", self.train_subset, 1)
        check_int("seed", self.seed, 0, MAX_SEED)
        if self.classes is not None:  # a list, as config.json holds it
            if not isinstance(self.classes, list | tuple) or not all(
                isinstance(name, str) for name in self.classes
            ):
                raise ConfigError(f"classes must be a list of names, got {self.classes!r:.40}")
            object.__setattr__(self, "classes", tuple(self.classes))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a configuration saved by :meth:`to_dict`; unknown keys are an error.

        Raises:
            ConfigError: not an object, an unknown or missing key, or a value of the
                wrong type or out of range; the message names the field.
        """
        try:
            check_type("the configuration", data, dict, "an object")
            data = dict(data)
            model = check_type("model", data.pop("model", {}), dict, "an object")
            # Runs from before outlier exposure trained without it (a resume must too).
            data.setdefault("outliers", 0.0)
            return cls(model=ModelConfig(**model), **data)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid training configuration: {e}") from None
