"""The tutorial's pictures, drawn with matplotlib's Agg backend and saved atomically."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")  # no display on servers and Raspberry Pis; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from edgecnn import _atomic  # noqa: E402
from edgecnn.runtime.confidence import Reliability  # noqa: E402

#: Class names, file names and titles are the user's text: drawn as written, never read as
#: TeX or mathtext (a class named "$^{$" would otherwise stop every figure with an error).
PLAIN_TEXT: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def plain_text(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """``draw`` with every text it makes taken literally (:data:`PLAIN_TEXT`)."""

    @functools.wraps(draw)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with plt.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG through a temporary file, then close it.

    Its texts are made plain first, whoever drew them; tick labels, made as the figure is
    drawn, are plain by the settings in force while it is saved.
    """
    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)
    try:
        with plt.rc_context(PLAIN_TEXT), _atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def _short(label: str, limit: int = 18) -> str:
    """A label short enough for a tick or a caption."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _show(ax: Any, image: np.ndarray) -> None:
    """Greyscale in the tutorial's inverted map (light objects drawn dark); colour as is."""
    image = np.squeeze(image)
    if image.ndim == 3:
        ax.imshow(image)
    else:
        ax.imshow(image, cmap="binary")


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


@plain_text
def plot_images(
    images: np.ndarray,
    labels: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """A 3x3 grid of images with their true (and predicted) class, as the tutorial draws."""
    fig, axes = plt.subplots(3, 3, figsize=(6.4, 7.2))
    fig.subplots_adjust(hspace=0.6, wspace=0.3)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _show(ax, images[i])
            text = f"True: {_short(labels[y_true[i]])}"
            if y_pred is not None:
                text += f"\nPred: {_short(labels[y_pred[i]])}"
            ax.set_xlabel(text, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


@plain_text
def plot_confusion_matrix(cm: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """Counts of true (rows) vs predicted (columns) classes, with each count written in.

    Up to 25 classes every count is written in its cell; beyond, the colours say it and
    the figure grows with the classes (up to 100).
    """
    cm = np.asarray(cm)
    n = len(labels)
    side = min(max(8.0, 0.3 * n + 4), 34.0)
    fig, ax = plt.subplots(figsize=(side, side * 7 / 8))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    names = [f"({i}) {_short(name)}" for i, name in enumerate(labels)]
    fontsize = 8 if n <= 25 else 6
    ax.set_xticks(ticks, names, rotation=45 if n <= 25 else 90, ha="right", fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    threshold = cm.max() / 2
    for (i, j), value in np.ndenumerate(cm) if n <= 25 else ():
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value > threshold else "black",
        )
    ax.set_title(title)
    return fig


@plain_text
def plot_conv_weights(weights: np.ndarray, title: str, input_channel: int = 0) -> Figure:
    """Filters of a conv layer for one input channel, blue negative, red positive.

    ``weights`` is Keras' ``(height, width, in_channels, filters)``. As in the tutorial,
    the colour range is symmetric around zero and shared by all filters, so colours
    compare across filters.
    """
    w = weights[:, :, input_channel, :]
    limit = float(np.abs(w).max()) or 1.0
    n = w.shape[-1]
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.6))
    for i, ax in enumerate(np.asarray(axes).flat):
        if i < n:
            ax.imshow(w[:, :, i], vmin=-limit, vmax=limit, cmap="seismic", interpolation="nearest")
            ax.set_xlabel(str(i), fontsize=8, labelpad=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}\n(blue < 0 < red, range +/-{limit:.3f})", fontsize=10)
    return fig


@plain_text
def plot_layer_outputs(outputs: np.ndarray, title: str, image: np.ndarray | None = None) -> Figure:
    """Every channel of one image's activation map ``(H, W, channels)``, dark = strong.

    With ``image``, the input picture comes first, so the figure says what it responds to.
    """
    panels = [outputs[:, :, i] for i in range(outputs.shape[-1])]
    names = [str(i) for i in range(len(panels))]
    if image is not None:
        panels.insert(0, np.squeeze(image))
        names.insert(0, "input")
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.6))
    for i, ax in enumerate(np.asarray(axes).flat):
        if i < len(panels):
            if panels[i].ndim == 3:  # a colour input picture
                ax.imshow(panels[i], interpolation="nearest")
            else:
                ax.imshow(panels[i], cmap="binary", interpolation="nearest")
            ax.set_xlabel(
                names[i],
                fontsize=8,
                labelpad=1,
                fontweight="bold" if names[i] == "input" else "normal",
            )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return fig


@plain_text
def plot_reliability(before: Reliability, after: Reliability | None, title: str,
                     temperature: float = 1.0) -> Figure:  # fmt: skip
    """A reliability diagram: accuracy against confidence per bin, before and after.

    Above, each non-empty bin's mean confidence against its accuracy (the diagonal is
    perfect calibration); below, how many pictures fell in each bin (log scale: the top
    bin holds most of them). ``after`` None: the model has no temperature, one curve.
    """
    fig, (ax, counts_ax) = plt.subplots(
        2, 1, figsize=(6.4, 6.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    ax.plot([0, 1], [0, 100], ls="--", color="#888888", lw=1, label="perfect calibration")
    series = [("before (T = 1)", before, "#dd8452", "o")]
    if after is not None:
        series.append((f"after (T = {temperature:.3g})", after, "#4c72b0", "s"))
    edges = np.asarray(before.edges)
    width = np.diff(edges) / (len(series) + 1)
    for i, (name, bins, color, marker) in enumerate(series):
        conf, acc = np.asarray(bins.confidence), np.asarray(bins.accuracy)
        filled = np.asarray(bins.counts) > 0
        ax.plot(conf[filled], 100 * acc[filled], marker=marker, ms=5, color=color,
                label=f"{name}: ECE {100 * bins.ece:.2f}%")  # fmt: skip
        left = edges[:-1] + width * (i + 0.5)
        counts_ax.bar(left, bins.counts, width=width, align="edge", color=color, label=name)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy in the bin (%)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    if any(before.counts):
        counts_ax.set_yscale("log")
    counts_ax.set_xlim(0, 1)
    counts_ax.set_xlabel(f"top-1 confidence ({len(before.counts)} equal-width bins)")
    counts_ax.set_ylabel("pictures")
    counts_ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
