"""A ``.npz`` of images as a dataset: ``x_train, y_train, x_test, y_test`` (and ``class_names``).

Images are uint8, ``(N, H, W)`` or ``(N, H, W, C)`` with C 1 or 3; labels are integers
``0..classes-1``. Every array is read through the same checked ``.npy`` reader as model
files, so a damaged or hostile archive is a plain error, never a memory error.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from edgecnn._files import read_regular_file
from edgecnn.errors import DataError
from edgecnn.runtime.metadata import check_labels
from edgecnn.runtime.npy import ARCHIVE_ERRORS, NpyError, read_member
from edgecnn.trainer.config import MAX_CLASSES

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
#: The largest archive read: 4 GiB of images.
MAX_BYTES = 4 << 30


def read_arrays(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None, str]:
    """The four arrays, the class names if the archive has them, and its SHA-256.

    Raises:
        DataError: not a readable archive, a missing array, wrong dtypes or shapes,
            lengths that disagree, labels out of range, unusable class names.
    """
    data = read_regular_file(path, MAX_BYTES, DataError, "an .npz of images")
    digest = hashlib.sha256(data).hexdigest()
    arrays: dict[str, np.ndarray] = {}
    names = None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            missing = [k for k in REQUIRED if f"{k}.npy" not in members]
            if missing:
                needed = ", ".join(REQUIRED)
                raise DataError(f"{path} lacks {', '.join(missing)} (it needs {needed})")
            for key in REQUIRED:
                info = members[f"{key}.npy"]
                kinds = "uif"  # numbers of any kind here; _check says which must be what
                with archive.open(info) as stream:
                    arrays[key] = read_member(stream, info.file_size, MAX_BYTES, kinds)
            if "class_names.npy" in members:
                info = members["class_names.npy"]
                with archive.open(info) as stream:
                    found = read_member(stream, info.file_size, 1000, "U")
                if found.ndim != 1:
                    raise DataError(
                        f"{path}: class_names has shape {found.shape}; expected one name per "
                        "class, (classes,)"
                    )
                names = tuple(str(n) for n in found)
    except DataError:
        raise
    except NpyError as e:
        raise DataError(f"{path}: an array is unreadable ({e})") from None
    except ARCHIVE_ERRORS as e:
        raise DataError(f"{path} is not a readable .npz ({type(e).__name__}: {e})") from None
    _check(path, arrays, names)
    return arrays, names, digest


def _check(path: Path, arrays: dict[str, np.ndarray], names: tuple[str, ...] | None) -> None:
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.ndim == 2 and y.shape[1] == 1:  # (N, 1), as Keras' own datasets have them
            arrays[f"y_{split}"] = y = y[:, 0]
        x = arrays[f"x_{split}"]
        if y.dtype.kind not in "ui":
            raise DataError(f"{path}: y_{split} is {y.dtype}; labels must be integers")
        if x.dtype != np.uint8:
            raise DataError(f"{path}: x_{split} is {x.dtype}; images must be uint8 (0..255)")
        if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] in (1, 3))):
            raise DataError(
                f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) "
                "with C 1 or 3"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{path}: y_{split} has shape {y.shape} for {len(x)} images in x_{split}"
            )
        if not len(x):
            raise DataError(f"{path}: x_{split} holds no images")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{path}: x_train images are {arrays['x_train'].shape[1:]}, x_test images "
            f"{arrays['x_test'].shape[1:]}"
        )
    if names is not None and len(names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(names)} class_names; a model has at most {MAX_CLASSES}")
    # The class count is the names', or else y_train's largest label + 1: bounded first,
    # so that a label of 2**63 never becomes 2**63 names.
    limit = len(names) if names is not None else MAX_CLASSES
    for split in ("train", "test"):
        _check_range(path, split, arrays[f"y_{split}"], limit, names is not None)
    if names is None:
        classes = int(arrays["y_train"].max()) + 1
        _check_range(path, "test", arrays["y_test"], classes, False)
    if names is not None:
        try:
            check_labels(list(names))
        except Exception as e:
            raise DataError(f"{path}: unusable class_names ({e})") from None


def _check_range(path: Path, split: str, y: np.ndarray, classes: int, named: bool) -> None:
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        what = f"{classes} class_names" if named else f"{classes} classes"
        if not named and classes == MAX_CLASSES:
            what = f"at most {MAX_CLASSES} classes"
        raise DataError(f"{path}: y_{split} holds label {high if high >= classes else low}, "
                        f"outside 0..{classes - 1} ({what})")  # fmt: skip


def class_names(arrays: dict[str, np.ndarray], names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The archive's class names, or ``class 0``, ``class 1``... when it has none."""
    if names is not None:
        return names
    return tuple(f"class {i}" for i in range(int(arrays["y_train"].max()) + 1))
