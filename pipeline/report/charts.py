"""The report's own charts: training curves, size and latency per file, the doctor's findings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from edgecnn.export.doctor.diagnosis import WEAK_SQNR_DB, Diagnosis
from edgecnn.export.records import ExportedFile
from edgecnn.pipeline.results import Epoch
from edgecnn.trainer import plots  # selects matplotlib's Agg backend before any figure


def plot_history(history: Sequence[Epoch]) -> Figure:
    """Loss and accuracy per epoch, training beside validation."""
    epochs = [h.epoch for h in history]
    fig, axes = plots.plt.subplots(1, 2, figsize=(9, 3.4))
    few = len(epochs) <= 30  # a marker per epoch helps on a short run, smears a long one
    curves = (  # fmt: skip
        (axes[0], "Loss", 1, [h.loss for h in history], [h.val_loss for h in history]),
        (
            axes[1],
            "Accuracy",
            100,
            [h.accuracy for h in history],
            [h.val_accuracy for h in history],
        ),
    )
    for ax, title, scale, training, validation in curves:
        train, val = ("o-", "s-") if few else ("-", "-")
        ax.plot(epochs, [scale * v for v in training], train, label="training", ms=4)
        ax.plot(epochs, [scale * v for v in validation], val, label="validation", ms=4)
        ax.set_title(title + (" (%)" if scale == 100 else ""))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_exports(files: Sequence[ExportedFile], latency_us: dict[str, float]) -> Figure:
    """Two bar charts: file size (KiB) and single-image p50 latency (us) per exported file.

    ``latency_us`` maps file names to the bench stage's p50; files missing from it are
    drawn without a latency bar.
    """
    names = [f.file for f in files]
    sizes = np.array([f.size_bytes / 1024 for f in files])
    latencies = np.array([latency_us.get(n, np.nan) for n in names])
    colors = ["#4c72b0" if f.precision == "float32" else "#dd8452" for f in files]
    fig, axes = plots.plt.subplots(1, 2, figsize=(9, 0.45 * len(names) + 1.4))
    y = np.arange(len(names))
    for ax, values, title, unit in (
        (axes[0], sizes, "File size", "KiB"),
        (axes[1], latencies, "1-image latency, p50", "us"),
    ):
        ax.barh(y, np.nan_to_num(values), color=colors)
        for yi, v in zip(y, values, strict=True):
            if np.isfinite(v):
                ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=8)
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{title} ({unit})")
        ax.set_xlim(0, np.nanmax(values) * 1.25 if np.isfinite(values).any() else 1)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_doctor(diagnosis: Diagnosis) -> Figure:
    """The doctor's findings: SQNR per quantized tensor, and agreement per trial."""
    tensors = diagnosis.test
    trials = [("int8 as exported", diagnosis.agreement)]
    trials += [(f"{t.layer} in float", t.agreement) for t in diagnosis.sensitivity]
    trials += [(f"calibrated on {p.images:,}", p.agreement) for p in diagnosis.sweep]
    rows = max(len(tensors), len(trials))
    fig, axes = plots.plt.subplots(1, 2, figsize=(9, 0.32 * rows + 1.6))
    y = np.arange(len(tensors))
    axes[0].barh(y - 0.2, [t.sqnr_db for t in tensors], 0.4, label="whole tensor")
    axes[0].barh(y + 0.2, [t.median_channel_sqnr_db for t in tensors], 0.4,
                 label="median channel")  # fmt: skip
    axes[0].set_yticks(y, [t.layer for t in tensors], fontsize=8)
    axes[0].axvline(WEAK_SQNR_DB, color="#c44e52", lw=1, ls="--")
    axes[0].set_title("SQNR against Keras (dB)")
    axes[0].legend(fontsize=7, loc="lower right")
    y = np.arange(len(trials))
    values = [100 * a for _, a in trials]
    axes[1].barh(y, values, color=["#dd8452"] + ["#4c72b0"] * (len(trials) - 1))
    for yi, v in zip(y, values, strict=True):
        axes[1].text(v, yi, f" {v:.2f}", va="center", fontsize=8)
    axes[1].set_yticks(y, [name for name, _ in trials], fontsize=8)
    axes[1].set_xlim(min(values) - 1, 100.8)
    axes[1].set_title("Top-1 agreement with Keras (%)")
    for ax in axes:
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
