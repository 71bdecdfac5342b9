"""The report's sections about the run itself: summary, training, accuracy, the network."""

from __future__ import annotations

import math
from typing import Any

from edgecnn._format import format_duration
from edgecnn.pipeline.recommend import best_file
from edgecnn.pipeline.report.html import FIGURE_CAPTIONS, E, bar, figure, key_figure, pct, table
from edgecnn.pipeline.results import Metrics, RunData
from edgecnn.pipeline.state import STAGES, StageRecord
from edgecnn.run_folder import CHART_FILES
from edgecnn.trainer.config import ModelConfig, TrainConfig


def summary(run: RunData) -> str:
    """Key figures, configuration, machine, versions, time per stage."""
    m, state = run.metrics, run.state
    best = best_file(run.export.files, run.latency_by_file())
    total = sum(state.seconds(s) for s in STAGES)
    cards = [
        key_figure(
            "Test accuracy",
            pct(m.test_accuracy, _digits(m.test_total)),
            f"{m.test_correct:,} of {m.test_total:,} test images",
        ),
        _validation_card(m),
    ]
    if best:
        cards.append(
            key_figure(
                "Recommended here",
                best.file,
                f"{best.size_ratio:.2f}x float32 size, {pct(best.agreement)} agreement",
            )
        )
    cards.append(key_figure("Run time", format_duration(total), "all stages before this page"))
    config = run.config
    augment = "none"
    if config.augment_shift:
        augment = f"shifts up to {config.augment_shift} px"
        augment += " and flips" if config.augment_flip else ""
    settings = {
        "Dataset": f"{run.export.dataset} ({m.test_total:,} test images)",
        "Epochs": config.epochs,
        "Batch size": config.batch_size,
        "Optimizer": f"Adam, learning rate {config.learning_rate:g} ({config.lr_schedule})",
        "Seed": config.seed,
        "Augmentation": augment,
        "Training images": _training_images(config, m),
        "Network": _network(config.model),
        "Best epoch": "?" if m.best_epoch is None else m.best_epoch,
    }
    machine_rows = state.environment.rows()
    durations = []
    for s in STAGES:
        record = state.stage(s)
        durations.append([s, record.status if record else "?", _seconds(record, s)])
    rejected = [f for f in run.export.files if not f.passed]
    warning = ""
    if rejected:
        items = "".join(
            f"<li><code>{E(f.file)}</code>: {E('; '.join(f.failures))}</li>" for f in rejected
        )
        warning = (
            '<div class="warning"><strong>Rejected by the verification gate</strong> '
            "(moved aside as <code>*.rejected</code>; the run exited with 1):"
            f"<ul>{items}</ul>Try a longer training, more calibration images "
            "(<code>edgecnn export --calib-samples 2000</code>), or knowingly a looser gate "
            "(<code>--min-agreement</code>, <code>--max-accuracy-drop</code>).</div>"
        )
    return (
        warning + f'<div class="cards">{"".join(cards)}</div>'
        '<div class="grid"><div><h3>Configuration</h3>'
        + _kv(settings)
        + "</div><div><h3>Machine and versions</h3>"
        + _kv(machine_rows)
        + "</div></div><h3>Time per stage</h3>"
        + table(["stage", "status", "wall time"], durations, numeric_from=2)
    )


def _validation_card(m: Metrics) -> str:
    """Validation accuracy with the count it was measured on (older runs: without)."""
    total = m.val_images
    if total is None or total <= 0:
        return key_figure("Validation accuracy", pct(m.val_accuracy))
    correct = round(m.val_accuracy * total)
    return key_figure(
        "Validation accuracy",
        pct(m.val_accuracy, _digits(total)),
        f"{correct:,} of {total:,} validation images",
    )


def _digits(images: int) -> int:
    """Just enough decimals to show one image: 1 on 149 images, 2 on 5,000 or 10,000."""
    return max(0, min(2, math.ceil(math.log10(max(images, 1)) - 2)))


def _training_images(config: TrainConfig, metrics: Metrics) -> str:
    """How many training images the model saw, as the run recorded it."""
    count = metrics.train_images
    counted = f" ({count:,})" if count is not None else ""
    return f"first {config.train_subset:,}" if config.train_subset else f"all{counted}"


def _network(m: ModelConfig) -> str:
    """The tutorial's layers, as sizes."""
    size, channels = m.img_size, m.channels
    return (
        f"{size}x{size}x{channels} in; "
        f"conv {m.filter_size1}x{m.filter_size1}x{m.num_filters1}, pool, ReLU; "
        f"conv {m.filter_size2}x{m.filter_size2}x{m.num_filters2}, pool, ReLU; "
        f"dense {m.fc_size}, ReLU; dense {m.num_classes}"
    )


def _seconds(record: StageRecord | None, stage: str) -> str:
    if stage == "report" and (record is None or record.status != "done"):
        return "writing this page"
    seconds = record.seconds if record is not None else None
    return format_duration(seconds) if seconds is not None else "-"


def _kv(items: dict[str, Any]) -> str:
    rows = "".join(f"<dt>{E(str(k))}</dt><dd>{E(str(v))}</dd>" for k, v in items.items())
    return f'<dl class="kv">{rows}</dl>'


#: Above this many epochs the table shows about this many and folds the full one away.
MAX_EPOCH_ROWS = 12


def training(run: RunData) -> str:
    """Loss and accuracy curves, and the numbers per epoch: all of them, or a sample."""
    best = run.metrics.best_epoch
    headers = ["epoch", "loss", "accuracy", "val loss", "val accuracy", "time", "img/s"]
    rows = [
        [
            f"{h.epoch} (best)" if h.epoch == best else h.epoch,
            f"{h.loss:.4f}",
            pct(h.accuracy),
            f"{h.val_loss:.4f}",
            pct(h.val_accuracy),
            format_duration(h.seconds),
            f"{h.images_per_second:,.0f}",
        ]
        for h in run.history
    ]
    chart = figure(run.run_dir / CHART_FILES[0], "Loss and accuracy per epoch")
    if len(rows) <= MAX_EPOCH_ROWS:
        return chart + table(headers, rows)
    step = math.ceil(len(rows) / (MAX_EPOCH_ROWS - 2))
    epochs = [h.epoch for h in run.history]
    shown = sorted({0, len(rows) - 1, *range(step - 1, len(rows), step)}
                   | {i for i, e in enumerate(epochs) if e == best})  # fmt: skip
    note = (
        f"<p>{len(shown)} of the {len(rows)} epochs: one in {step}, the first, the last and "
        "the best (the model saved); all of them under the table.</p>"
    )
    every = f"<details><summary>All {len(rows)} epochs</summary>{table(headers, rows)}</details>"
    return chart + note + table(headers, [rows[i] for i in shown]) + every


def accuracy(run: RunData) -> str:
    """Test accuracy per class, the confusion matrix and examples."""
    m = run.metrics
    cm = m.confusion_matrix
    rows: list[list[Any]] = []
    for i, (label, acc) in enumerate(m.per_class_accuracy.items()):
        confused = ""
        if cm:
            others = [(n, j) for j, n in enumerate(cm[i]) if j != i]
            count, j = max(others)
            confused = f"{run.labels[j]} ({count})" if count else "-"
        rows.append([label, bar(acc, pct(acc, 1)), confused])
    headers = ["class", "accuracy", "most often mistaken for"]
    warnings = ""
    if run.split is not None:  # the user's own data: how many images each class had
        for i, row in enumerate(rows):
            row.append(run.split.per_class(i))
        headers.append("images (train/val/test)")
        warnings = "".join(f"<p><strong>Warning:</strong> {E(w)}</p>" for w in run.split.warnings)
    per_class = table(headers, rows, numeric_from=1)
    figures = [
        figure(run.run_dir / name, FIGURE_CAPTIONS[name])
        for name in ("confusion_matrix.png", "errors.png", "samples.png")
    ]
    return (
        f"<p>{m.test_correct:,} of {m.test_total:,} test images classified correctly "
        f"({pct(m.test_accuracy)}) by the Keras model.</p>"
        + warnings
        + per_class
        + f'<div class="grid">{"".join(figures)}</div>'
    )


def network(run: RunData) -> str:
    """What the two convolutional layers learned and what they output."""
    names = ("conv1_weights.png", "conv1_outputs.png", "conv2_weights.png", "conv2_outputs.png")
    figures = "".join(figure(run.run_dir / n, FIGURE_CAPTIONS[n]) for n in names)
    return f'<div class="grid">{figures}</div>'
