"""Splitting a user's data into train, validation and test, and checking what it holds.

Splits are stratified (each class in the same proportions) and depend only on the seed
and the sorted file names, so a rerun gets the same split; the split actually used is
also recorded in ``split.json`` beside the model, which export and ``--resume`` read
back, so a folder that gained files later cannot change a trained model's test set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgecnn import _json
from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import DataError
from edgecnn.records import Fields, check_schema
from edgecnn.run_folder import CONFIG_FILE, SPLIT_FILE
from edgecnn.trainer.config import MAX_CLASSES

#: Held out for testing, then for validation, when the data has no such split.
TEST_FRACTION = 1 / 6
VAL_FRACTION = 1 / 12
#: Fewer images than this in a class cannot be split into train, validation and test.
MIN_PER_CLASS = 5
#: Largest class over smallest above this: the classes are heavily imbalanced.
IMBALANCE_RATIO = 10


#: The newest ``split.json`` schema this edgecnn reads (the layout it writes has none: 1).
SCHEMA = 1


def stratified(
    classes: Sequence[int] | np.ndarray, seed: int, fractions: dict[str, float]
) -> dict[str, np.ndarray]:
    """Item indices per split: each split of ``fractions``, and ``train`` for the rest.

    ``classes`` holds one class index per item; every class is split in the same
    proportions. Each class is shuffled with its own seeded generator, so adding a class leaves the
    others' splits as they were. Every split gets at least one item of every class.
    """
    per_item = np.asarray(classes)
    out: dict[str, list[int]] = {name: [] for name in [*fractions, "train"]}
    for c in np.unique(per_item):
        items = np.flatnonzero(per_item == c)
        order = items[np.random.default_rng([seed, int(c)]).permutation(len(items))]
        start = 0
        for name, fraction in fractions.items():
            n = max(1, round(len(items) * fraction))
            out[name] += order[start : start + n].tolist()
            start += n
        out["train"] += order[start:].tolist()
    return {name: np.array(sorted(indices), dtype=np.int64) for name, indices in out.items()}


def class_counts(labels: np.ndarray, classes: int) -> list[int]:
    """Items per class."""
    counts: list[int] = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes).tolist()
    return counts


def check_classes(names: Sequence[str], counts: Sequence[int], where: str) -> None:
    """At least two classes, each with enough images to be split.

    Raises:
        DataError: one class only, or a class too small.
    """
    if len(names) < 2:
        raise DataError(f"{where}: {len(names)} class found; a classifier needs at least two")
    small = [(name, n) for name, n in zip(names, counts, strict=True) if n < MIN_PER_CLASS]
    if small:
        name, n = small[0]
        others = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
        raise DataError(
            f"{where}: class {name!r} has {n} image{'s' if n != 1 else ''}{others}; each class "
            f"needs at least {MIN_PER_CLASS} to be split into train, validation and test"
        )


def warnings_for(labels: Sequence[str], train_counts: Sequence[int], duplicates: int) -> list[str]:
    """What the user should know before trusting the numbers: imbalance, leaked duplicates."""
    out = []
    low, high = min(train_counts), max(train_counts)
    if low and high > IMBALANCE_RATIO * low:
        big = labels[int(np.argmax(train_counts))]
        small = labels[int(np.argmin(train_counts))]
        out.append(
            f"warning: classes are heavily imbalanced ({big!r} has {high} training images, "
            f"{small!r} {low}); look at the per-class accuracy, not only the total"
        )
    if duplicates:
        out.append(
            f"warning: {duplicates} test image{'s are' if duplicates != 1 else ' is'} "
            "byte-for-byte the same as a training or validation image; test accuracy will "
            "be too high"
        )
    return out


def counts_text(labels: Sequence[str], counts: dict[str, list[int]], limit: int = 12) -> str:
    """Images per class and split, as one line (a summary for many classes)."""
    splits = [s for s in ("train", "val", "test") if s in counts]
    if len(labels) <= limit:
        parts = [
            f"{label} {'/'.join(str(counts[s][i]) for s in splits)}"
            for i, label in enumerate(labels)
        ]
        return f"images per class ({'/'.join(splits)}): " + ", ".join(parts)
    ranges = [f"{s} {min(counts[s])}..{max(counts[s])}" for s in splits]
    return f"{len(labels)} classes; images per class: " + ", ".join(ranges)


@dataclass(frozen=True)
class SplitRecord:
    """``split.json``: which images went where, the counts and the warnings, checked.

    A folder's record lists each split's ``(relative path, class)`` pairs (``files``); an
    ``.npz``'s the row numbers of its ``x_train`` that went to training and validation
    (``rows``). ``document`` is the whole record as written, which :meth:`to_dict` gives
    back (with keys only the report reads, such as ``dark_border_share``).
    """

    kind: str
    classes: tuple[str, ...]
    #: The data folder (``root``) or archive (``path``) the split is of.
    source: str
    files: Mapping[str, tuple[tuple[str, int], ...]]
    rows: Mapping[str, tuple[int, ...]]
    counts: Mapping[str, tuple[int, ...]]
    warnings: tuple[str, ...]
    light_on_dark: bool | None
    sha256: str | None
    document: Mapping[str, object]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: the record as it was made or read."""
        return dict(self.document)

    @classmethod
    def from_dict(cls, record: object, data: str | None = None) -> SplitRecord:
        """The record, every field checked (:func:`check_record`).

        Raises:
            ValueError: a field no training writes (named), or a record of other data.
        """
        check_record(record, data)
        assert isinstance(record, dict)
        splits = record["splits"]
        folder = record["kind"] == "folder"
        light = record.get("light_on_dark")
        return cls(
            kind=record["kind"],
            classes=tuple(record["classes"]),
            source=record["root" if folder else "path"],
            files={n: tuple((p, c) for p, c in splits[n]) for n in splits} if folder else {},
            rows={} if folder else {n: tuple(splits[n]) for n in ("train", "val")},
            counts={str(k): tuple(v) for k, v in record.get("counts", {}).items()},
            warnings=tuple(record.get("warnings", ())),
            light_on_dark=light if isinstance(light, bool) else None,
            sha256=record.get("sha256"),
            document=record,
        )


def write_record(out_dir: Path, record: SplitRecord) -> None:
    """``split.json``: which images went where, the counts, what was skipped.

    Checked as it will be read back, so that a run whose record could not be resumed or
    evaluated stops before training rather than after.

    Raises:
        DataError: the record is not one that can be read back.
    """
    from edgecnn import _atomic

    try:
        check_record(record.to_dict())
    except ValueError as e:
        raise DataError(f"cannot record the split: {e}") from None
    _atomic.write_json(out_dir / SPLIT_FILE, record.to_dict())


@dataclass(frozen=True)
class SplitCounts:
    """What a report shows of ``split.json``: images per class in each split, and warnings."""

    #: Split name -> images per class, in class order.
    counts: Mapping[str, tuple[int, ...]]
    warnings: tuple[str, ...] = ()

    def per_class(self, index: int) -> str:
        """Class ``index``'s images as ``train/val/test``."""
        return "/".join(f"{self.counts[s][index]:,}" for s in ("train", "val", "test")
                        if s in self.counts)  # fmt: skip


def read_counts(out_dir: Path | None) -> SplitCounts | None:
    """The counts and warnings of a run folder's ``split.json`` (:func:`read_record`), if any.

    Raises:
        DataError: the record is unreadable or not one a training writes (named).
    """
    record = read_record(out_dir)
    if record is None:
        return None
    return SplitCounts(counts=record.counts, warnings=record.warnings)


def read_record(out_dir: Path | None) -> SplitRecord | None:
    """The ``split.json`` of a run folder, if it has one, every field checked.

    It is plain text beside the model: each field is checked for type and range, the
    pictures it names must lie inside the data folder (no absolute path, no ``..``), and its data
    folder must be the one the run's ``config.json`` names.

    Raises:
        DataError: it is there but unreadable; the message names the field.
    """
    if out_dir is None or not (out_dir / SPLIT_FILE).exists():
        return None
    path = out_dir / SPLIT_FILE
    raw = read_regular_file(path, 256 * MiB, DataError, "a split record")
    try:
        return SplitRecord.from_dict(_json.loads(raw), _config_data(out_dir))
    except ValueError as e:
        raise DataError(f"{path} is unreadable: {e}") from None


def _config_data(out_dir: Path) -> str | None:
    """The data the run's ``config.json`` names, if it can be read (it is checked later)."""
    try:
        raw = read_regular_file(out_dir / CONFIG_FILE, MiB, DataError, "a configuration")
        data = _json.loads(raw).get("data")
    except (DataError, ValueError, AttributeError):
        return None
    return data if isinstance(data, str) else None


def check_record(record: Any, data: str | None = None) -> None:
    """Raise ``ValueError`` naming the first field of a split record that is wrong.

    ``data`` is the data folder or ``.npz`` the record must be of, when known.
    """
    if not isinstance(record, dict):
        raise ValueError("it is not an object")
    check_schema(Fields(record), SCHEMA, "the split record")
    kind = record.get("kind")
    if kind not in ("folder", "npz"):
        raise ValueError(f"kind must be 'folder' or 'npz', got {kind!r:.40}")
    classes = record.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError("classes must be a list of class names")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise ValueError(f"classes must name 2 to {MAX_CLASSES} classes, got {len(classes)}")
    where = "root" if kind == "folder" else "path"
    source = record.get(where)
    if not isinstance(source, str) or not Path(source).is_absolute():
        raise ValueError(f"{where} must be an absolute path, got {source!r:.60}")
    if data is not None and source != data:
        raise ValueError(f"{where} {source!r:.60} is not the data config.json names")
    splits = record.get("splits")
    if not isinstance(splits, dict):
        raise ValueError("splits must be an object")
    if kind == "folder":
        _check_folder_splits(splits, len(classes), Path(source))
    else:
        _check_rows(splits, record)
    _check_counts(record.get("counts", {}), len(classes))
    warnings = record.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ValueError("warnings must be a list of text")


def _check_folder_splits(splits: dict[str, Any], classes: int, root: Path) -> None:
    """Each split a list of ``[relative path, class]`` pairs, each picture inside ``root``.

    Inside by name: no absolute path, no ``..``. Links the user put in the folder (a class
    folder linked to where the photos are stored) are part of it, as the scan takes them.
    """
    for name in ("train", "val", "test"):
        items = splits.get(name)
        if not isinstance(items, list):
            raise ValueError(f"splits.{name} must be a list")
        for i, item in enumerate(items):
            at = f"splits.{name}[{i}]"
            if not isinstance(item, list) or len(item) != 2:
                raise ValueError(f"{at} must be a [path, class] pair, got {item!r:.60}")
            path, label = item
            if type(label) is not int or not 0 <= label < classes:
                raise ValueError(f"{at}: class must be 0 to {classes - 1}, got {label!r:.40}")
            if not isinstance(path, str) or not path or "\x00" in path:
                raise ValueError(f"{at}: path must be a file name, got {path!r:.60}")
            relative = PurePosixPath(path)
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"{at}: {path!r:.60} is not inside the data folder")


def _check_rows(splits: dict[str, Any], record: dict[str, Any]) -> None:
    """``train`` and ``val`` lists of row numbers of the ``.npz``'s ``x_train``."""
    rows = record.get("x_train_rows")
    if rows is not None and (type(rows) is not int or rows < 0):
        raise ValueError(f"x_train_rows must be a count of rows, got {rows!r:.40}")
    sha = record.get("sha256")
    if sha is not None and not isinstance(sha, str):
        raise ValueError(f"sha256 must be text, got {sha!r:.40}")
    for name in ("train", "val"):
        items = splits.get(name)
        if not isinstance(items, list):
            raise ValueError(f"splits.{name} must be a list")
        for i, row in enumerate(items):
            if type(row) is not int or row < 0 or (rows is not None and row >= rows):
                raise ValueError(f"splits.{name}[{i}] must be a row number, got {row!r:.40}")


def _check_counts(counts: Any, classes: int) -> None:
    """Images per split and class, as the report shows them."""
    if not isinstance(counts, dict):
        raise ValueError("counts must be an object")
    for name, values in counts.items():
        if (
            not isinstance(values, list)
            or len(values) != classes
            or not all(type(v) is int and v >= 0 for v in values)
        ):
            raise ValueError(f"counts.{name!s:.20} must be {classes} image counts")
