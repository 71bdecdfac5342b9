"""Fashion-MNIST and MNIST from their IDX files, found offline first, split as the tutorial does.

Search order for the four files (``train-images-idx3-ubyte.gz`` and friends, gzipped or not):

1. ``data_dir`` (``--data-dir``), else the ``EDGECNN_DATA_DIR`` environment variable;
2. the folder of Debian's ``dataset-fashion-mnist`` package (Fashion-MNIST only);
3. the Keras cache, ``~/.keras/datasets/`` (or ``$KERAS_HOME/datasets/``);
4. a Keras download, for machines with internet (skipped when ``EDGECNN_OFFLINE=1``).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from edgecnn._files import read_regular_file
from edgecnn.errors import DataError
from edgecnn.runtime.contract import DEFAULT_CLASSES, DEFAULT_IMAGE_SIZE
from edgecnn.runtime.labels import LABELS
from edgecnn.trainer.dataset import TITLES, VALIDATION_SIZE, Dataset

IMAGE_SIZE = DEFAULT_IMAGE_SIZE  # the IDX datasets' own: 28x28 greyscale

DEBIAN_DIRS = {"fashion": Path("/usr/share/datasets/fashion-mnist")}
KERAS_SUBDIRS = {"fashion": "fashion-mnist", "mnist": "mnist"}
DEBIAN_PACKAGES = {"fashion": "dataset-fashion-mnist"}

_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_UBYTE = 0x08


#: The largest IDX file read (uncompressed): MNIST-sized sets are 47 MB, EMNIST 0.6 GB.
IDX_MAX_BYTES = 4 << 30


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped or not) into an array of its shape.

    Raises:
        DataError: the file is unreadable, not a regular file, not IDX, not uint8, or
            truncated. The message names the file.
    """
    path = Path(path)
    raw = read_regular_file(path, IDX_MAX_BYTES, DataError, "an IDX file")
    if path.suffix == ".gz":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(IDX_MAX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            # gzip raises EOFError on a cut-off stream and BadGzipFile (an OSError) on garbage.
            reason = "the gzip stream is cut off" if isinstance(e, EOFError) else str(e)
            raise DataError(f"{path}: cannot read: {reason}") from None
        if len(raw) > IDX_MAX_BYTES:
            raise DataError(f"{path}: decompresses to more than {IDX_MAX_BYTES >> 30} GiB")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _UBYTE:
        raise DataError(f"{path}: IDX type code 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated or has no dimensions")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)  # Python integers: an int64 product could wrap to 0
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"{path}: {what}: header {tuple(dims)} needs {expected} data bytes, found {found}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The file for ``stem`` in ``folder``, accepting ``.gz`` or plain, ``-idx`` or ``.idx``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_files(folder: Path) -> dict[str, Path] | None:
    found = {key: _idx_file(folder, stem) for key, stem in _STEMS.items()}
    if all(found.values()):
        return found  # type: ignore[return-value]
    return None


def _missing_idx(folder: Path) -> list[str]:
    """The IDX files ``folder`` lacks, by their usual names."""
    return [f"{stem}[.gz]" for stem in _STEMS.values() if _idx_file(folder, stem) is None]


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def _candidate_dirs(name: str) -> list[Path]:
    dirs = []
    if name in DEBIAN_DIRS:
        dirs.append(DEBIAN_DIRS[name])
    dirs.append(_keras_home() / "datasets" / KERAS_SUBDIRS[name])
    return dirs


def _check_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        expected = f"(N, {IMAGE_SIZE}, {IMAGE_SIZE})"
        raise DataError(f"{image_path}: images have shape {images.shape}, expected {expected}")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{label_path}: {len(labels)} labels for {len(images)} images in {image_path.name}"
        )
    classes = DEFAULT_CLASSES  # Fashion-MNIST's and MNIST's
    if labels.size and labels.max() >= classes:
        raise DataError(f"{label_path}: label {int(labels.max())} is out of range 0..{classes - 1}")


def _read_idx_files(files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    arrays = {key: read_idx(path) for key, path in files.items()}
    _check_pair(
        arrays["train_images"], arrays["train_labels"], files["train_images"], files["train_labels"]
    )
    _check_pair(
        arrays["test_images"], arrays["test_labels"], files["test_images"], files["test_labels"]
    )
    return (
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
    )


def _load_keras_mnist_npz(path: Path) -> tuple[np.ndarray, ...]:
    """Keras caches MNIST digits as one ``mnist.npz`` rather than IDX files."""
    try:
        with np.load(path) as z:
            arrays = tuple(
                np.asarray(z[k], dtype=np.uint8) for k in ("x_train", "y_train", "x_test", "y_test")
            )
    except (OSError, KeyError, ValueError, zlib.error) as e:
        raise DataError(f"{path}: cannot read the Keras MNIST cache: {e}") from None
    _check_pair(arrays[0], arrays[1], path, path)
    _check_pair(arrays[2], arrays[3], path, path)
    return arrays


def _download(name: str) -> tuple[np.ndarray, ...] | None:
    """Ask Keras to download the dataset; ``None`` if it cannot (offline, or no Keras)."""
    if os.environ.get("EDGECNN_OFFLINE", "") not in ("", "0"):
        return None
    try:
        from edgecnn.trainer._tf import import_keras

        keras = import_keras()
        module = keras.datasets.fashion_mnist if name == "fashion" else keras.datasets.mnist
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception:  # no Keras, no network, a proxy error page: all mean "not available"
        return None
    return x_train, y_train, x_test, y_test


def _not_found_message(name: str, data_dir: str | os.PathLike[str] | None) -> str:
    ways = []
    if data_dir is not None:
        missing = _missing_idx(Path(data_dir).expanduser())
        if len(missing) < len(_STEMS):
            ways.append(f"{data_dir} lacks {', '.join(missing)}")
        else:
            ways.append(f"{data_dir} has no IDX files")
    if name in DEBIAN_PACKAGES:
        ways.append(f"install them with 'sudo apt-get install {DEBIAN_PACKAGES[name]}'")
    ways.append(
        "pass --data-dir DIR or set EDGECNN_DATA_DIR to a folder with the four "
        "*-idx?-ubyte[.gz] files"
    )
    ways.append(f"put them in {_keras_home() / 'datasets' / KERAS_SUBDIRS[name]}")
    ways.append("or connect to the internet so Keras can download them")
    return f"{TITLES[name]} not found: " + "; ".join(ways)


def locate_dataset(
    name: str = "fashion", data_dir: str | os.PathLike[str] | None = None
) -> Path | dict[str, Path] | None:
    """Find a dataset's files without reading them.

    Returns the four IDX files, the Keras ``mnist.npz`` cache, or ``None`` when only a
    download is left to try.

    Raises:
        DataError: an unknown dataset, or an explicit folder that lacks the files.
    """
    if name not in LABELS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(LABELS)}")
    if data_dir is None and os.environ.get("EDGECNN_DATA_DIR"):
        data_dir = os.environ["EDGECNN_DATA_DIR"]
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data folder {folder} does not exist")
        files = _idx_files(folder) or _idx_files(folder / KERAS_SUBDIRS[name])
        if files is None:
            raise DataError(_not_found_message(name, data_dir))
        return files
    for folder in _candidate_dirs(name):
        files = _idx_files(folder)
        if files is not None:
            return files
    npz = _keras_home() / "datasets" / "mnist.npz"
    if name == "mnist" and npz.is_file():
        return npz
    return None


def load_arrays(
    name: str = "fashion", data_dir: str | os.PathLike[str] | None = None
) -> tuple[tuple[np.ndarray, ...], str]:
    """Find and read a dataset; return ``(x_train, y_train, x_test, y_test)`` and its source.

    Raises:
        DataError: the dataset is nowhere to be found, or a file found is corrupt.
    """
    found = locate_dataset(name, data_dir)
    if isinstance(found, dict):
        return _read_idx_files(found), str(found["train_images"].parent)
    if isinstance(found, Path):
        return _load_keras_mnist_npz(found), str(found)
    arrays = _download(name)
    if arrays is None:
        raise DataError(_not_found_message(name, data_dir))
    return arrays, "Keras download"


def load_dataset(
    name: str = "fashion",
    data_dir: str | os.PathLike[str] | None = None,
    train_subset: int | None = None,
) -> Dataset:
    """Load ``name`` ("fashion" or "mnist") split as the tutorial: 55,000 / 5,000 / 10,000.

    The first :data:`VALIDATION_SIZE` training images are the validation set and the rest
    train. ``train_subset`` keeps only the first N training images, for quick runs.
    """
    (x_train, y_train, x_test, y_test), source = load_arrays(name, data_dir)
    if len(x_train) <= VALIDATION_SIZE:
        raise DataError(
            f"{source}: {len(x_train)} training images; the split needs more than "
            f"{VALIDATION_SIZE} (the first {VALIDATION_SIZE} are the validation set)"
        )
    x_val, y_val = x_train[:VALIDATION_SIZE], y_train[:VALIDATION_SIZE]
    x_train, y_train = x_train[VALIDATION_SIZE:], y_train[VALIDATION_SIZE:]
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    return Dataset(
        name=name,
        labels=LABELS[name],
        source=source,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
    )
