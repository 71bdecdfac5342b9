"""A folder of pictures as a dataset: one sub-folder per class, split as the user did or for them.

Two layouts are read:

* ``DIR/<class>/*.png`` (``.jpg``, ``.jpeg``, ``.bmp``): a stratified 1/6 is held out for
  testing and 1/12 for validation, seeded;
* ``DIR/train/<class>/...`` and ``DIR/test/<class>/...`` (and optionally ``DIR/val/``):
  the user's split is kept; validation comes from train when there is no ``val/``.

Class names are the folder names in Unicode NFC, sorted unless an order is given
(``--classes``); names that print alike (invisible or direction-changing characters, two
spellings of one name) are refused. Every picture goes through the runtime's
:func:`~edgecnn.runtime.images.load_image`, the function that serves the model later, so
training and serving see the same pixels.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn._files import read_regular_file
from edgecnn._format import format_duration
from edgecnn.errors import DataError
from edgecnn.runtime.errors import IMAGE_MAX_BYTES, InputError
from edgecnn.runtime.images import load_image, picture_header
from edgecnn.runtime.labels import check_class_names, ordered
from edgecnn.trainer import splits
from edgecnn.trainer.config import MAX_CLASSES
from edgecnn.trainer.splits import SplitRecord

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SPLIT_NAMES = ("train", "val", "test")
#: Bad pictures listed by name in an error or warning; the rest are counted.
LISTED = 10


@dataclass
class FolderScan:
    """What a folder holds: its classes and, per split, each class's pictures."""

    root: Path
    classes: tuple[str, ...]
    #: split -> list of (relative path, class index); "all" when the folder has no splits.
    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    ignored: int = 0  # files that are not pictures


def _pictures(folder: Path) -> tuple[list[Path], int]:
    """The pictures directly in ``folder`` (sorted), and how many other files it holds."""
    pictures, others = [], 0
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.suffix.lower() in EXTENSIONS and entry.is_file():
            pictures.append(entry)
        else:
            others += 1
    return pictures, others


def _class_folders(folder: Path) -> dict[str, str]:
    """The class folders in ``folder``: each name in NFC -> the name on disk.

    Raises:
        DataError: names that are invisible in part, or print alike.
    """
    on_disk = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    try:
        names = check_class_names(on_disk, DataError, "class folder")
    except DataError as e:
        raise DataError(f"{folder}: {e}") from None
    return dict(zip(names, on_disk, strict=True))


def scan(root: Path, order: tuple[str, ...] | None = None) -> FolderScan:
    """Find the classes and pictures of an image folder.

    ``order`` (``--classes``) gives the classes' order; else they are sorted.

    Raises:
        DataError: no class folders, an empty class, one class only, a class named
            differently in test than in train, an unusable class name, an ``order`` that
            does not name each class once, or a folder that cannot be read.
    """
    try:
        return _scan(root, order)
    except OSError as e:
        where = e.filename or root
        raise DataError(f"cannot read {where}: {e.strerror or type(e).__name__}") from None


def _scan(root: Path, order: tuple[str, ...] | None) -> FolderScan:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of class folders")
    split_dirs = {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"{root} has {', '.join(split_dirs)}/ but no train/ folder")
    layout = split_dirs or {"all": root}
    base = layout.get("train", root)
    base_folders = _class_folders(base)
    classes = tuple(sorted(base_folders))
    if not classes:
        raise DataError(
            f"{base} has no class folders; put each class's pictures in a folder of its own "
            f"({base}/<class>/*.png)"
        )
    if len(classes) < 2:
        raise DataError(f"{base} has one class folder ({classes[0]}); a classifier needs two")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{base} has {len(classes)} class folders; a model has at most "
                        f"{MAX_CLASSES} classes")  # fmt: skip
    if order is not None:
        classes = ordered(classes, order, str(base), DataError)
    result = FolderScan(root=root, classes=classes)
    for split, folder in layout.items():
        present = base_folders if folder == base else _class_folders(folder)
        foreign = sorted(set(present) - set(classes))
        if foreign:
            raise DataError(f"{folder} has class {foreign[0]!r}, which {base} does not have")
        items: list[tuple[str, int]] = []
        for index, name in enumerate(classes):
            if name not in present:
                if split == "train" or split == "all":
                    raise DataError(f"{folder / name} is missing")
                continue
            pictures, others = _pictures(folder / present[name])
            result.ignored += others
            if not pictures and split in ("train", "all"):
                raise DataError(
                    f"class folder {folder / present[name]} has no .png, .jpg or .bmp pictures"
                )
            items += [(p.relative_to(root).as_posix(), index) for p in pictures]
        result.files[split] = items
    return result


def assign(
    found: FolderScan, seed: int, recorded: SplitRecord | None
) -> dict[str, list[tuple[str, int]]]:
    """``train``, ``val`` and ``test`` lists of ``(relative path, class)``.

    A recorded split (``split.json``) is used as it is; otherwise the folder's own
    splits are kept and what is missing is held out, stratified and seeded.

    Raises:
        DataError: a class too small to split, or a recorded file that is gone.
    """
    if recorded is not None:
        return _recorded(found, recorded)
    files = dict(found.files)
    if "all" in files:
        items = files.pop("all")
        counts = splits.class_counts(np.array([c for _, c in items]), len(found.classes))
        splits.check_classes(found.classes, counts, str(found.root))
        parts = splits.stratified(
            [c for _, c in items], seed, {"test": splits.TEST_FRACTION, "val": splits.VAL_FRACTION}
        )
        return {name: [items[i] for i in parts[name]] for name in ("train", "val", "test")}
    if "test" not in files:
        raise DataError(f"{found.root} has train/ but no test/ folder")
    if "val" in files:  # the user's own three splits: each class must still be usable
        every = [c for items in files.values() for _, c in items]
        counts = splits.class_counts(np.array(every), len(found.classes))
        splits.check_classes(found.classes, counts, str(found.root))
    else:
        train = files["train"]
        counts = splits.class_counts(np.array([c for _, c in train]), len(found.classes))
        splits.check_classes(found.classes, counts, str(found.root / "train"))
        parts = splits.stratified([c for _, c in train], seed, {"val": splits.VAL_FRACTION})
        files["val"] = [train[i] for i in parts["val"]]
        files["train"] = [train[i] for i in parts["train"]]
    return {name: files[name] for name in ("train", "val", "test")}


def _recorded(found: FolderScan, recorded: SplitRecord) -> dict[str, list[tuple[str, int]]]:
    # Names as they are compared everywhere: NFC (a record may predate normalisation).
    names = [_nfc(c) for c in recorded.classes]
    if tuple(names) != found.classes:
        raise DataError(
            f"{found.root} no longer has the classes the model was trained on "
            f"({', '.join(recorded.classes)})"
        )
    out = {}
    for name in ("train", "val", "test"):
        items = list(recorded.files[name])
        missing = [path for path, _ in items if not (found.root / path).is_file()]
        if missing:
            raise DataError(
                f"{found.root / missing[0]} was in the recorded split and is gone "
                f"({len(missing)} file(s) missing)"
            )
        out[name] = items
    return out


def _nfc(name: object) -> object:
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


def native_sizes(root: Path, items: list[tuple[str, int]]) -> set[tuple[int, int]]:
    """The ``(width, height)`` of every picture, read from headers only."""
    sizes = set()
    for path, _ in items:
        try:
            with open(root / path, "rb") as f:
                header = picture_header(f.read(1 << 16))
        except OSError:
            continue  # reported when the picture is loaded
        if header is not None:
            sizes.add((header[1], header[2]))
    return sizes


@dataclass
class Loaded:
    """One split's pictures as arrays, and what could not be read."""

    images: np.ndarray
    labels: np.ndarray
    digests: list[str]
    bad: list[tuple[str, str]]  # (relative path, why)


def _load_one(root: Path, path: str, side: int, channels: int) -> tuple[Any, str, str]:
    """``(pixels or None, digest of the file, error)`` for one picture."""
    try:
        data = read_regular_file(root / path, IMAGE_MAX_BYTES, InputError, "an image")
        pixels = load_image(data, invert=False, side=side, channels=channels)
    except InputError as e:
        why = str(e)
        for prefix in ("image bytes is ", f"{root / path} is ", "image bytes "):
            why = why.removeprefix(prefix)
        return None, "", why
    return pixels, hashlib.sha1(data, usedforsecurity=False).hexdigest(), ""


def load(
    root: Path,
    items: list[tuple[str, int]],
    shape: tuple[int, int, int],
    progress: Callable[[int], None] | None = None,
) -> Loaded:
    """Decode ``items`` to ``shape`` on every core (Pillow decodes outside the GIL)."""
    side, _, channels = shape
    images, labels, digests, bad = [], [], [], []
    workers = max(1, min(os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda item: _load_one(root, item[0], side, channels), items)
        for done, ((path, label), (pixels, digest, error)) in enumerate(
            zip(items, results, strict=True), 1
        ):
            if pixels is None:
                bad.append((path, error))
            else:
                images.append(pixels)
                labels.append(label)
                digests.append(digest)
            if progress is not None and done % 256 == 0:
                progress(done)
    empty = np.zeros((0, side, side) if channels == 1 else (0, side, side, channels), np.uint8)
    array = np.stack(images) if images else empty
    return Loaded(array, np.array(labels, dtype=np.int64), digests, bad)


class Progress:
    """``loading pictures [####      ] 40%  3,210 img/s  ETA 9s``, about once a second."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.stream = total, stream or sys.stdout
        self.started = self.shown = time.perf_counter()
        self.done = 0

    def __call__(self, done_in_split: int) -> None:
        """``done_in_split`` pictures of the current split are loaded."""
        now = time.perf_counter()
        if now - self.shown < 1.0:
            return
        self.shown = now
        done = self.done + done_in_split
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * int(10 * done / self.total)
        eta = format_duration((self.total - done) / rate) if rate else "?"
        self.stream.write(
            f"loading pictures [{bar:<10s}] {100 * done / self.total:3.0f}%  "
            f"{rate:,.0f} img/s  ETA {eta}\n"
        )
        self.stream.flush()

    def finished_split(self, count: int) -> None:
        """A split is loaded: later splits count on from it."""
        self.done += count


def bad_pictures_message(root: Path, bad: list[tuple[str, str]]) -> str:
    """The first :data:`LISTED` unreadable pictures by name, then a count."""
    named = "; ".join(f"{root / path} ({why})" for path, why in bad[:LISTED])
    more = f"; and {len(bad) - LISTED} more" if len(bad) > LISTED else ""
    return f"{len(bad)} picture{'s' if len(bad) != 1 else ''} cannot be read: {named}{more}"
