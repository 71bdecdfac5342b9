"""Classification metrics and their text forms, in numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` as an int64 ``(num_classes, num_classes)`` array."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Test accuracy, counts, per-class accuracy and the confusion matrix, JSON-ready."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    correct = int(cm.trace())
    return {
        "test_accuracy": correct / max(len(y_true), 1),
        "test_correct": correct,
        "test_total": int(len(y_true)),
        "per_class_accuracy": {label: float(a) for label, a in zip(labels, per_class, strict=True)},
        "confusion_matrix": cm.tolist(),
    }


def accuracy_line(correct: int, total: int) -> str:
    """The tutorial's summary line: ``Accuracy on Test-Set: 91.2% (9120 / 10000)``."""
    return f"Accuracy on Test-Set: {100 * correct / max(total, 1):.1f}% ({correct} / {total})"


def format_confusion_matrix(cm: np.ndarray, labels: Sequence[str]) -> str:
    """The confusion matrix as aligned text, one row per true class."""
    cm = np.asarray(cm)
    width = max(len(str(cm.max())), 4)
    name_width = max(len(label) for label in labels)
    index_width = len(f"({len(labels) - 1})")
    prefix = index_width + 1 + name_width
    header = " " * prefix + "".join(f" {f'({i})':>{width}}" for i in range(len(labels)))
    rows = [
        f"{f'({i})':<{index_width}} {label.ljust(name_width)}"
        + "".join(f" {v:>{width}d}" for v in row)
        for i, (label, row) in enumerate(zip(labels, cm, strict=True))
    ]
    return "\n".join([header, *rows, " " * prefix + " columns: predicted class"])
