"""Splitting a user's data into train, validation and test, and checking what it holds.

Splits are stratified (each class in the same proportions) and depend only on the seed
and the sorted file names, so a rerun gets the same split; the split actually used is
also recorded in ``split.json`` beside the model, which export and ``--resume`` read
back, so a folder that gained files later cannot change a trained model's test set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import DataError
from edgecnn.run_folder import SPLIT_FILE

#: Held out for testing, then for validation, when the data has no such split.
TEST_FRACTION = 1 / 6
VAL_FRACTION = 1 / 12
#: Fewer images than this in a class cannot be split into train, validation and test.
MIN_PER_CLASS = 5
#: Largest class over smallest above this: the classes are heavily imbalanced.
IMBALANCE_RATIO = 10


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
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes).tolist()


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


def write_record(out_dir: Path, record: dict[str, Any]) -> None:
    """``split.json``: which images went where, the counts, what was skipped."""
    from edgecnn import _atomic

    _atomic.write_json(out_dir / SPLIT_FILE, record)


def read_record(out_dir: Path | None) -> dict[str, Any] | None:
    """The ``split.json`` of a run folder, if it has one.

    Raises:
        DataError: it is there but unreadable.
    """
    if out_dir is None or not (out_dir / SPLIT_FILE).exists():
        return None
    path = out_dir / SPLIT_FILE
    raw = read_regular_file(path, 256 * MiB, DataError, "a split record")
    try:
        record = json.loads(raw)
        if not isinstance(record, dict) or not isinstance(record.get("splits"), dict):
            raise ValueError("no splits")
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path} is unreadable ({e})") from None
    return record
