"""A ``.npz`` of images as a dataset: ``x_train, y_train, x_test, y_test`` (and ``class_names``).

Images are uint8, ``(N, H, W)`` or ``(N, H, W, C)`` with C 1 or 3; labels are integers
``0..classes-1``. The archive is read through the runtime's :class:`ArchiveReader`: its
directory and every array's ``.npy`` header (dtype, shape, size) are checked against
:data:`BUDGET` before any data is inflated, so a hostile archive (a zip bomb, a lying
directory) is a plain error, never a memory error.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import IO

import numpy as np

from edgecnn._files import check_regular_file
from edgecnn.errors import DataError
from edgecnn.runtime.labels import check_class_names
from edgecnn.runtime.npy import ARCHIVE_ERRORS, NpyError, NpyHeader
from edgecnn.runtime.npz import ArchiveReader, Budget
from edgecnn.trainer.config import MAX_CLASSES

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
#: What a dataset archive may hold: 4 GiB of arrays (Fashion-MNIST's are 55 MB), in at
#: most 64 members. The file itself is no larger than its arrays (np.savez stores them).
BUDGET = Budget(members=64, member_bytes=4 << 30, total_bytes=4 << 30, what="training data")
#: ``class_names``: at most 100 names of 100 characters (4 bytes each as numpy's "U").
NAMES_MAX_BYTES = 1 << 20


def read_arrays(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None, str]:
    """The four arrays, the class names (NFC) if the archive has them, and its SHA-256.

    Raises:
        DataError: not a readable archive, over the budget, a missing array, wrong dtypes
            or shapes, lengths that disagree, labels out of range, unusable class names.
    """
    check_regular_file(path, BUDGET.total_bytes + BUDGET.directory_bytes, DataError,
                       "an .npz of images")  # fmt: skip
    try:
        with _open(path) as file:
            arrays, names = _read(path, file)
            digest = _sha256(file)
    except DataError:
        raise
    except NpyError as e:
        raise DataError(f"{path}: {e}") from None
    except ARCHIVE_ERRORS as e:
        raise DataError(f"{path} is not a readable .npz ({type(e).__name__}: {e})") from None
    except MemoryError:  # within the budget, but more than this machine has free
        raise DataError(f"{path}: its arrays do not fit in this machine's free memory") from None
    _check_values(path, arrays, names)
    return arrays, names, digest


def _read(path: Path, file: IO[bytes]) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """Every header checked first, then the arrays inflated within the budget."""
    with ArchiveReader(file, BUDGET) as archive:
        missing = [k for k in REQUIRED if f"{k}.npy" not in archive.members]
        if missing:
            needed = ", ".join(REQUIRED)
            raise DataError(f"{path} lacks {', '.join(missing)} (it needs {needed})")
        # Numbers of any kind here; _check_headers says which must be what.
        headers = {key: archive.header(f"{key}.npy", "uif") for key in REQUIRED}
        if "class_names.npy" in archive.members:
            headers["class_names"] = archive.header("class_names.npy", "U", NAMES_MAX_BYTES)
        _check_headers(path, headers)
        arrays = {key: archive.read(f"{key}.npy", header) for key, header in headers.items()}
    names = None
    if "class_names" in arrays:
        found = arrays.pop("class_names")
        try:
            names = check_class_names([str(n) for n in found], DataError, "class name")
        except DataError as e:
            raise DataError(f"{path}: unusable class_names: {e}") from None
    for split in ("train", "test"):
        if arrays[f"y_{split}"].ndim == 2:  # (N, 1), as Keras' own datasets have them
            arrays[f"y_{split}"] = arrays[f"y_{split}"][:, 0]
    return arrays, names


def _open(path: Path) -> IO[bytes]:
    """``path`` opened for reading, without blocking and only as a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was checked
        os.close(fd)
        raise DataError(f"{path} is not a regular file, not an .npz of images")
    return os.fdopen(fd, "rb")


def _sha256(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    while chunk := file.read(1 << 22):
        digest.update(chunk)
    return digest.hexdigest()


def _check_headers(path: Path, headers: dict[str, NpyHeader]) -> None:
    """Dtypes and shapes, from the headers alone: nothing is inflated before they pass."""
    for split in ("train", "test"):
        x, y = headers[f"x_{split}"], headers[f"y_{split}"]
        if y.dtype.kind not in "ui":
            raise DataError(f"{path}: y_{split} is {y.dtype}; labels must be integers")
        if x.dtype != np.uint8:
            raise DataError(f"{path}: x_{split} is {x.dtype}; images must be uint8 (0..255)")
        if not (len(x.shape) == 3 or (len(x.shape) == 4 and x.shape[3] in (1, 3))):
            raise DataError(
                f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) "
                "with C 1 or 3"
            )
        column = len(y.shape) == 2 and y.shape[1] == 1  # (N, 1), as Keras' datasets have
        if not (len(y.shape) == 1 or column) or y.shape[0] != x.shape[0]:
            raise DataError(
                f"{path}: y_{split} has shape {y.shape} for {x.shape[0]} images in x_{split}"
            )
    if headers["x_train"].shape[1:] != headers["x_test"].shape[1:]:
        raise DataError(
            f"{path}: x_train images are {headers['x_train'].shape[1:]}, x_test images "
            f"{headers['x_test'].shape[1:]}"
        )
    names = headers.get("class_names")
    if names is not None and len(names.shape) != 1:
        raise DataError(
            f"{path}: class_names has shape {names.shape}; expected one name per class, (classes,)"
        )
    if names is not None and names.shape[0] > MAX_CLASSES:
        raise DataError(f"{path}: {names.shape[0]} class_names; a model has at most {MAX_CLASSES}")


def _check_values(path: Path, arrays: dict[str, np.ndarray], names: tuple[str, ...] | None) -> None:
    # The class count is the names', or else y_train's largest label + 1: bounded first,
    # so that a label of 2**63 never becomes 2**63 names.
    limit = len(names) if names is not None else MAX_CLASSES
    for split in ("train", "test"):
        _check_range(path, split, arrays[f"y_{split}"], limit, names is not None)
    if names is None:
        classes = int(arrays["y_train"].max()) + 1
        _check_range(path, "test", arrays["y_test"], classes, False)


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
