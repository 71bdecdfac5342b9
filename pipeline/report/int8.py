"""The report's section on what int8 changed: a line per int8 file, one table per class.

A file that answers every image as Keras does gets one line and no table; files whose
per-class accuracies are equal share one column of the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.pipeline.report.html import E, Markup, figure, pct, table
from edgecnn.pipeline.results import RunData
from edgecnn.run_folder import EXPORTS_DIR

#: Above this many classes the per-class table keeps the ones that moved most.
MAX_CLASS_ROWS = 20


def int8_changes(run: RunData) -> str:
    """For each int8 file kept: what it changed against Keras, per class, and the flips.

    The per-class figures are the export gate's; the gallery comes from ``edgecnn
    evaluate`` on the file (``<file>.evaluation/``), which the run's export stage writes.
    """
    kept = [f for f in run.export.files
            if f.precision == "int8" and f.passed and f.scores.per_class_accuracy]  # fmt: skip
    if not kept:
        return "<p>No int8 file was kept in this run.</p>"
    keras = _keras_per_class(run)
    lines, galleries = [], []
    columns: dict[tuple[float, ...], list[str]] = {}  # equal results share a column
    for f in kept:
        checked = f.scores.agreement_images or run.export.test_images
        changed = round((1 - f.agreement) * checked)
        ours = f.scores.per_class_accuracy
        name = f"<code>{E(f.file)}</code>"
        if changed == 0:
            lines.append(f"<li>{name}: the same top-1 class as Keras on all {checked:,} "
                         "images; nothing changed.</li>")  # fmt: skip
            continue
        same = ours == tuple(keras)
        lines.append(f"<li>{name}: {changed:,} of {checked:,} images get another top-1 class "
                     f"than from Keras; accuracy {f.scores.delta_pp:+.2f} points overall"
                     + ("; test accuracy unchanged in every class" if same else "")
                     + ".</li>")  # fmt: skip
        if not same:
            columns.setdefault(ours, []).append(f.file)
        galleries.append(_gallery(run, f.file))
    return (
        f"<ul>{''.join(lines)}</ul>"
        + (_per_class(run.labels, keras, columns) if columns else "")
        + f'<div class="grid">{"".join(galleries)}</div>'
    )


def _keras_per_class(run: RunData) -> list[float | None]:
    """The Keras model's test accuracy per class, as the gate measured it (or unknowns)."""
    keras = run.export.keras_per_class_accuracy
    if len(keras) == len(run.labels):
        return list(keras)
    return [None] * len(run.labels)


def _per_class(
    labels: list[str], keras: list[float | None], columns: dict[tuple[float, ...], list[str]]
) -> str:
    """Test accuracy per class: Keras, then one column per distinct int8 result."""

    def moved(i: int) -> float:
        k = keras[i]
        return 0.0 if k is None else max(abs(c[i] - k) for c in columns)

    order = list(range(len(labels)))
    note = ""
    if len(labels) > MAX_CLASS_ROWS:
        order = sorted(order, key=moved, reverse=True)[:MAX_CLASS_ROWS]
        note = f" The {MAX_CLASS_ROWS} classes whose accuracy moved most."
    rows = [[labels[i], _cell(None, keras[i])] + [_cell(keras[i], c[i]) for c in columns]
            for i in order]  # fmt: skip
    headers = ["class", "Keras", *(", ".join(files) for files in columns.values())]
    return (
        "<p>Test accuracy per class, and its change in points; files with the same "
        f"accuracies share a column.{note}</p>" + table(headers, rows, numeric_from=1)
    )


def _cell(keras: float | None, ours: float | None) -> Markup | str:
    """An accuracy, with its change from Keras's in points when that is known."""
    if ours is None:
        return "-"
    if keras is None:
        return pct(ours, 1)
    css = "up" if ours > keras else "down" if ours < keras else "muted"
    return Markup(f'{pct(ours, 1)} <span class="{css}">{100 * (ours - keras):+.1f}</span>')


def _gallery(run: RunData, file: str) -> str:
    """The test images ``file`` answers otherwise than Keras, if its evaluation drew them."""
    evaluation = run.run_dir / EXPORTS_DIR / f"{file.rstrip('/')}.evaluation"
    flipped = _flipped_count(evaluation)
    if not (evaluation / "differs_from_keras.png").is_file() or not flipped:
        return ""
    return figure(
        evaluation / "differs_from_keras.png",
        f"{min(flipped, 9)} of the {flipped:,} test images whose top-1 class from "
        f"{file} differs from the Keras model's: true class, then the file's answer",
    )


def _flipped_count(evaluation: Path) -> int:
    """How many test images the file answers otherwise than Keras (its evaluation's)."""
    try:
        metrics: dict[str, Any] = json.loads((evaluation / "metrics.json").read_text())
        return len(metrics.get("differs_from_keras") or [])
    except (OSError, ValueError, AttributeError):
        return 0
