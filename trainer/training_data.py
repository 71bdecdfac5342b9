"""Where training data comes from: Fashion-MNIST or MNIST IDX files, an image folder, a .npz.

:func:`inspect` looks at the data cheaply (folders by their file headers) so that the
command can size the network before TensorFlow is imported; :func:`load` reads it,
split, checked and brought to the network's input shape through the runtime's own
preprocessing, and says what it found.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn.errors import ConfigError, DataError
from edgecnn.runtime.contract import shape_text
from edgecnn.runtime.images import border_mean, resize_array
from edgecnn.runtime.labels import LABELS, ordered
from edgecnn.trainer import arrays, folders, splits
from edgecnn.trainer.config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, ModelConfig, TrainConfig
from edgecnn.trainer.dataset import Dataset
from edgecnn.trainer.idx import IMAGE_SIZE, load_dataset, locate_dataset
from edgecnn.trainer.model_source import ModelSource

#: A dataset is light-on-dark when at least this share of its training images has a dark
#: border and a lighter middle; then the runtime inverts pictures with a light border, as
#: for Fashion-MNIST. Otherwise pictures are used as they are.
LIGHT_ON_DARK_SHARE = 0.9
#: How much lighter (out of 255) the middle of an image must be than its border.
LIGHTER_BY = 16


@dataclass(frozen=True)
class DataInfo:
    """What the data is, before it is loaded."""

    kind: str  # "idx", "folder" or "npz"
    name: str
    labels: tuple[str, ...]
    #: ``(height, width, channels)`` shared by every image; None when they differ.
    shape: tuple[int, int, int] | None
    sizes: tuple[tuple[int, int], ...] = ()  # (width, height) of a folder's pictures


def data_kind(data: str | os.PathLike[str]) -> str:
    """``folder`` or ``npz``, from what the path is.

    Raises:
        DataError: neither.
    """
    path = Path(data)
    if path.is_dir():
        return "folder"
    if path.suffix.lower() == ".npz" and path.is_file():
        return "npz"
    if not path.exists():
        raise DataError(f"{path} does not exist")
    raise DataError(f"{path} is neither a folder of class folders nor an .npz of arrays")


def inspect(config: TrainConfig, data_dir: str | os.PathLike[str] | None = None) -> DataInfo:
    """Classes and image shape of the data ``config`` names, without decoding anything.

    Raises:
        DataError: missing, unreadable or unusable data.
    """
    if config.data is None:
        locate_dataset(config.dataset, data_dir)
        size = IMAGE_SIZE  # the IDX files' own: 28x28 greyscale
        return DataInfo("idx", config.dataset, LABELS[config.dataset], (size, size, 1))
    path = Path(config.data)
    if data_kind(path) == "npz":
        loaded, names, _ = arrays.read_arrays(path)
        x = loaded["x_train"]
        channels = x.shape[3] if x.ndim == 4 else 1
        labels = arrays.class_names(loaded, names)
        if len(labels) < 2:
            raise DataError(f"{path} has 1 class; a classifier needs at least two")
        if config.classes is not None:
            labels = ordered(labels, config.classes, str(path), DataError)
        return DataInfo("npz", path.stem, labels, (x.shape[1], x.shape[2], channels))
    found = folders.scan(path, config.classes)
    everything = [item for items in found.files.values() for item in items]
    sizes = folders.native_sizes(path, everything)
    shared = None
    if len(sizes) == 1:
        ((width, height),) = sizes
        shared = (height, width, 1)
    return DataInfo("folder", path.name, found.classes, shared, tuple(sorted(sizes)))


def model_config(
    config: TrainConfig, info: DataInfo, image_size: int | None, channels: int | None
) -> ModelConfig:
    """The network sized to the data: its classes, and an input of the size asked for.

    Without ``image_size``, the data's own size when every image shares one.

    Raises:
        ConfigError: images of different sizes (or a size the network cannot take) and no
            ``--image-size``.
    """
    size = image_size
    if size is None:
        if info.shape is None:
            shown = ", ".join(f"{w}x{h}" for w, h in info.sizes[:3])
            shown += ", ..." if len(info.sizes) > 3 else ""
            raise ConfigError(
                f"the pictures have {len(info.sizes)} different sizes ({shown}); pass "
                f"--image-size S ({MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}) to resize them all"
            )
        height, width = info.shape[:2]
        if height != width or not MIN_IMAGE_SIZE <= height <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"the pictures are {width}x{height}; pass --image-size S ({MIN_IMAGE_SIZE} "
                f"to {MAX_IMAGE_SIZE}) to resize them to S x S"
            )
        size = height
    return replace(
        config.model, img_size=size, channels=channels or 1, num_classes=len(info.labels)
    )


def configure(
    train_options: dict[str, Any],
    model_options: dict[str, Any],
    augment: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
) -> TrainConfig:
    """The configuration of a new training from command options, sized to its data.

    ``model_options`` may hold ``img_size`` and ``channels``; ``augment`` turns on shifts,
    and flips for Fashion-MNIST only (mirrored clothes are clothes; mirrored digits or a
    user's things may not be).

    Raises:
        EdgecnnError: impossible options, or data that is missing or unusable.
    """
    train_options, model_options = dict(train_options), dict(model_options)
    if augment:
        train_options["augment_shift"] = 2
        is_fashion = train_options.get("dataset", "fashion") == "fashion"
        train_options["augment_flip"] = is_fashion and train_options.get("data") is None
    image_size = model_options.pop("img_size", None)
    channels = model_options.pop("channels", None)
    config = TrainConfig(model=ModelConfig(**model_options), **train_options)
    info = inspect(config, data_dir)
    if channels is None and info.shape is not None and info.shape[2] == 3:
        print(f"note: {info.name} holds colour images; they are trained greyscale unless "
              "--channels 3")  # fmt: skip
    return replace(config, model=model_config(config, info, image_size, channels))


def sized(
    config: TrainConfig,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    channels: int | None = None,
) -> TrainConfig:
    """``config`` with its network sized to the data (see :func:`model_config`).

    Raises:
        DataError: the data is missing or unusable.
        ConfigError: the data's images need ``--image-size``.
    """
    return replace(config, model=model_config(config, inspect(config, data_dir), image_size,
                                               channels))  # fmt: skip


def load(
    config: TrainConfig,
    data_dir: str | os.PathLike[str] | None = None,
    record: splits.SplitRecord | None = None,
    stream: TextIO | None = None,
) -> Dataset:
    """The data ``config`` names, split, checked, at the network's input shape.

    ``record`` is a run's ``split.json``: the split it was trained on, used again.

    Raises:
        DataError: the data is missing, unreadable, or does not fit the network.
    """
    stream = stream or sys.stdout
    shape = config.model.input_shape
    if config.data is None:
        data = load_dataset(config.dataset, data_dir, config.train_subset)
        return _reshaped(data, shape)
    path = Path(config.data)
    kind = data_kind(path)
    data = (_load_npz if kind == "npz" else _load_class_folders)(path, config, record, stream)
    if config.train_subset is not None and config.train_subset < len(data.y_train):
        # A user's training images are in class order: the first N would be one class.
        # A stratified, seeded N keeps every class in its share.
        share = config.train_subset / len(data.y_train)
        keep = splits.stratified(data.y_train, config.seed, {"subset": share})["subset"]
        data = replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    if len(data.labels) != config.model.num_classes:
        raise DataError(
            f"{path} has {len(data.labels)} classes; the network was built for "
            f"{config.model.num_classes}"
        )
    return data


def for_model(
    model: Any,
    source: ModelSource,
    data_dir: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    whole_train: bool = False,
    labels: tuple[str, ...] | None = None,
) -> Dataset:
    """The data to measure or calibrate ``model`` on, checked to fit it.

    What its run trained on, split as it was (the run's ``split.json``), unless ``data``
    (a folder or ``.npz``) or ``dataset`` (``fashion``, ``mnist``) names other data; a
    model file without its run's ``config.json`` is taken with the tutorial's data, or
    with ``data`` at the model's own input size. ``whole_train`` keeps all of the
    training split even when the run trained on its first ``train_subset`` images.
    ``labels``, a model file's own class names (its metadata), put ``data``'s classes in
    the model's order when no run says it (``--classes`` may have changed it).

    Raises:
        DataError: the data is missing or unusable, or does not fit the model.
    """
    config = source.config or TrainConfig()
    record = splits.read_record(source.run_dir or source.model_path.parent)
    if data is not None:
        path = str(Path(data).expanduser().resolve())
        record = record if path == config.data else None
        height, _, channels = (int(d) for d in model.input_shape[1:])
        sized_to = replace(
            config.model,
            img_size=height,
            channels=channels,
            num_classes=int(model.output_shape[-1]),
        )
        config = replace(config, data=path, model=sized_to)
        if source.config is None and labels is not None:
            config = replace(config, classes=_model_order(config, data_dir, labels, source))
    elif dataset is not None:
        config, record = replace(config, dataset=dataset, data=None, classes=None), None
    if whole_train:
        config = replace(config, train_subset=None)
    loaded = load(config, data_dir, record, stream=io.StringIO())
    check_fits(model, loaded, source.model_path)
    return loaded


def _model_order(
    config: TrainConfig,
    data_dir: str | os.PathLike[str] | None,
    labels: tuple[str, ...],
    source: ModelSource,
) -> tuple[str, ...]:
    """``labels`` as the order of ``config.data``'s classes, which must be the same names.

    Raises:
        DataError: the data's classes are not the model's.
    """
    found = inspect(replace(config, classes=None), data_dir).labels
    if sorted(found) != sorted(labels):
        raise DataError(
            f"{source.model_path} names the classes {', '.join(labels)[:200]}; "
            f"{config.data} has {', '.join(found)[:200]}"
        )
    return labels


def check_fits(model: Any, data: Dataset, model_path: str | os.PathLike[str]) -> None:
    """``model`` must take ``data``'s images and name as many classes as it has.

    Raises:
        DataError: it does not, as when a model file is given without its run folder.
    """
    takes = tuple(int(d) for d in model.input_shape[1:])
    classes = int(model.output_shape[-1])
    hint = "; give its run folder (whose config.json names its data) or the data it was trained on"
    if takes != data.image_shape:
        raise DataError(
            f"{model_path} takes {shape_text(takes)} images but {data.title}'s are "
            f"{shape_text(data.image_shape)}{hint}"
        )
    if classes != len(data.labels):
        raise DataError(
            f"{model_path} has {classes} classes but {data.title} has {len(data.labels)}{hint}"
        )


def _reshaped(data: Dataset, shape: tuple[int, int, int]) -> Dataset:
    """``data`` with every image brought to ``shape`` (no copy when it already is)."""
    if data.image_shape == shape:
        return data

    def convert(images: np.ndarray) -> np.ndarray:
        converted = np.stack([resize_array(image, shape) for image in images])
        return converted[..., 0] if shape[2] == 1 else converted

    return replace(
        data,
        x_train=convert(data.x_train),
        x_val=convert(data.x_val),
        x_test=convert(data.x_test),
    )


def _light_on_dark(images: np.ndarray) -> tuple[bool, float]:
    """Whether the images are light objects on a dark background, and the share that are.

    An image is when its border is dark and its middle half lighter than the border.
    """
    if not len(images):
        return True, 1.0
    grey = images if images.ndim == 3 else images.mean(axis=3)
    height, width = grey.shape[1:3]
    middle = grey[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
    borders = np.array([border_mean(image) for image in grey])
    lighter = middle.reshape(len(grey), -1).mean(axis=1) > borders + LIGHTER_BY
    share = float(np.mean((borders < 128) & lighter))
    return share >= LIGHT_ON_DARK_SHARE, share


def _summary(
    data: Dataset, source: str, duplicates: int, stream: TextIO, extra: dict[str, Any]
) -> dict[str, Any]:
    """Say what was loaded (counts per class, warnings) and return the record for it."""
    classes = len(data.labels)
    counts = {
        "train": splits.class_counts(data.y_train, classes),
        "val": splits.class_counts(data.y_val, classes),
        "test": splits.class_counts(data.y_test, classes),
    }
    light, share = _light_on_dark(data.x_train)
    stream.write(
        f"{source}: {len(data.labels)} classes, {splits.counts_text(data.labels, counts)}; "
        f"{'light objects on dark' if light else 'not light-on-dark'} "
        f"({100 * share:.0f}% of training images are light in the middle of a dark border)\n"
    )
    warnings = splits.warnings_for(data.labels, counts["train"], duplicates)
    for warning in warnings:
        stream.write(warning + "\n")
    stream.flush()
    return {
        "warnings": [w.removeprefix("warning: ") for w in warnings],
        "classes": list(data.labels),
        "counts": counts,
        "light_on_dark": light,
        "dark_border_share": round(share, 4),
        "test_duplicates_of_train": duplicates,
        **extra,
    }


def _load_class_folders(
    root: Path, config: TrainConfig, recorded: splits.SplitRecord | None, stream: TextIO
) -> Dataset:
    found = folders.scan(root, config.classes)
    parts = folders.assign(found, config.seed, recorded)
    if found.ignored:
        stream.write(
            f"note: {found.ignored} entries in {root}'s class folders are not pictures (other "
            "files, sub-folders, broken links) and were left out\n"
        )
    total = sum(len(items) for items in parts.values())
    progress = folders.Progress(total, stream)
    loaded = {}
    for name, items in parts.items():
        loaded[name] = folders.load(root, items, config.model.input_shape, progress)
        progress.finished_split(len(items))
    bad = [entry for part in loaded.values() for entry in part.bad]
    if bad:
        message = folders.bad_pictures_message(root, bad)
        if not config.skip_bad_images:
            raise DataError(f"{message}; --skip-bad-images leaves them out")
        stream.write(f"warning: {message}; left out (--skip-bad-images)\n")
    seen = set(loaded["train"].digests) | set(loaded["val"].digests)
    duplicates = sum(digest in seen for digest in loaded["test"].digests)
    data = Dataset(
        name=root.name,
        labels=found.classes,
        source=str(root),
        x_train=loaded["train"].images,
        y_train=loaded["train"].labels,
        x_val=loaded["val"].images,
        y_val=loaded["val"].labels,
        x_test=loaded["test"].images,
        y_test=loaded["test"].labels,
    )
    _check_nonempty(data, str(root))
    if bad:  # what is left must still make a dataset
        kept = np.concatenate([data.y_train, data.y_val, data.y_test])
        counts = splits.class_counts(kept, len(data.labels))
        splits.check_classes(data.labels, counts, f"{root} without its unreadable pictures")
    record = _summary(data, str(root), duplicates, stream, {
        "kind": "folder",
        "root": str(root),
        "seed": config.seed,
        "splits": {name: [list(item) for item in items] for name, items in parts.items()},
        "skipped": [list(entry) for entry in bad],
    })  # fmt: skip
    light = bool(record["light_on_dark"])
    return replace(data, light_on_dark=light, record=splits.SplitRecord.from_dict(record))


def _load_npz(
    path: Path, config: TrainConfig, recorded: splits.SplitRecord | None, stream: TextIO
) -> Dataset:
    loaded, names, digest = arrays.read_arrays(path)
    labels = arrays.class_names(loaded, names)
    x, y = loaded["x_train"], loaded["y_train"].astype(np.int64)
    y_test = loaded["y_test"].astype(np.int64)
    if config.classes is not None:  # --classes: the same images, the labels renumbered
        order = ordered(labels, config.classes, str(path), DataError)
        renumbered = np.array([order.index(name) for name in labels], dtype=np.int64)
        labels, y, y_test = order, renumbered[y], renumbered[y_test]
    splits.check_classes(labels, splits.class_counts(y, len(labels)), str(path))
    if recorded is not None:
        val, train = _recorded_rows(path, recorded, digest, len(x))
    else:
        parts = splits.stratified(y, config.seed, {"val": splits.VAL_FRACTION})
        val, train = parts["val"], parts["train"]
    shape = config.model.input_shape
    data = _reshaped(
        Dataset(
            name=path.stem,
            labels=labels,
            source=str(path),
            x_train=_greyscale_axis(x[train]),
            y_train=y[train],
            x_val=_greyscale_axis(x[val]),
            y_val=y[val],
            x_test=_greyscale_axis(loaded["x_test"]),
            y_test=y_test,
        ),
        shape,
    )
    seen = {_digest(image) for image in x}  # training and validation images
    duplicates = sum(_digest(image) in seen for image in loaded["x_test"])
    record = _summary(data, str(path), duplicates, stream, {
        "kind": "npz",
        "path": str(path),
        "sha256": digest,
        "x_train_rows": len(x),
        "seed": config.seed,
        "splits": {"train": train.tolist(), "val": val.tolist()},
    })  # fmt: skip
    light = bool(record["light_on_dark"])
    return replace(data, light_on_dark=light, record=splits.SplitRecord.from_dict(record))


def _recorded_rows(
    path: Path, recorded: splits.SplitRecord, digest: str, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """The validation and training rows ``split.json`` recorded, for the same archive only.

    Raises:
        DataError: the archive changed, or the record does not fit it.
    """
    if (recorded.sha256 or digest) != digest:
        raise DataError(
            f"{path} has changed since the model was trained on it (its SHA-256 is not the "
            "one split.json records); restore it, or train a new model on it"
        )
    try:
        val = np.array(recorded.rows["val"], dtype=np.int64)
        train = np.array(recorded.rows["train"], dtype=np.int64)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: the recorded split in split.json is unreadable") from None
    both = np.concatenate([val, train])
    if val.ndim != 1 or train.ndim != 1 or (len(both) and not 0 <= both.min() <= both.max() < rows):
        raise DataError(f"{path}: the recorded split in split.json does not fit its {rows} images")
    return val, train


def _greyscale_axis(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 1)`` -> ``(N, H, W)``: greyscale images carry no channel axis here."""
    return images[..., 0] if images.ndim == 4 and images.shape[3] == 1 else images


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes(), usedforsecurity=False).hexdigest()


def _check_nonempty(data: Dataset, where: str) -> None:
    for name in ("train", "val", "test"):
        if not len(getattr(data, f"y_{name}")):
            raise DataError(f"{where}: no readable pictures are left in the {name} split")
