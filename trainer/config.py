"""Training configuration: one frozen dataclass, saved as ``config.json`` beside the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgecnn.errors import ConfigError
from edgecnn.runtime.contract import CHANNELS, DEFAULT_CLASSES, DEFAULT_IMAGE_SIZE
from edgecnn.runtime.labels import LABELS

#: Input sizes and class counts the trainer builds networks for.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 96
MIN_CLASSES, MAX_CLASSES = 2, 100


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
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{f.name} must be a positive integer, got {value!r}")
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


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained.

    The architecture defaults are the tutorial's. The recipe is not: the tutorial's
    batch 64 and plain Adam 1e-3; this one is batch 128 with Adam 2e-3 decayed to zero on
    a cosine over 10 epochs, which reaches about 2.5 points more in the same time
    (docs/benchmarks.md, "Training").
    """

    dataset: str = "fashion"
    #: An image folder or a .npz file to train on instead of ``dataset`` (absolute path).
    data: str | None = None
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
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.dataset not in LABELS:
            raise ConfigError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(LABELS)}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(
                f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}"
            )
        if not 0 <= self.augment_shift < self.model.img_size // 2:
            raise ConfigError(
                f"augment_shift must be in 0..{self.model.img_size // 2 - 1}, "
                f"got {self.augment_shift}"
            )
        if self.train_subset is not None and self.train_subset < 1:
            raise ConfigError(f"train_subset must be at least 1, got {self.train_subset}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a configuration saved by :meth:`to_dict`; unknown keys are an error."""
        try:
            data = dict(data)
            return cls(model=ModelConfig(**data.pop("model", {})), **data)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid training configuration: {e}") from None
