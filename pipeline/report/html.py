"""The building blocks of ``report.html``: inlined images, tables, sections, the page.

Images are inlined as data URIs, the styles are inline, there is no script, and a
Content-Security-Policy forbids the page from loading anything at all. Every text that
comes from a run (labels, file names, messages) is escaped.
"""

from __future__ import annotations

import base64
import html
import struct
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn.pipeline.report.style import CSS

FIGURE_CAPTIONS = {
    "samples.png": "Test images with their true and predicted classes",
    "errors.png": "Misclassified test images",
    "confusion_matrix.png": "Confusion matrix (rows: true class, columns: predicted class)",
    "conv1_weights.png": "conv1 filters",
    "conv1_outputs.png": "conv1 outputs for one test image (after max-pool and ReLU)",
    "conv2_weights.png": "conv2 filters (their weights on input channel 0)",
    "conv2_outputs.png": "conv2 outputs for the same image",
}
#: Nothing may be fetched: images only from data: URIs, styles only inline, no scripts.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)
E = html.escape


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG header: the page reserves the space before decoding."""
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def image(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` inlined."""
    data = path.read_bytes()
    width, height = _png_size(data)
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{encoded}" alt="{E(alt)}" width="{width}" '
        f'height="{height}" loading="eager">'
    )


def figure(path: Path, caption: str) -> str:
    """An image with its caption."""
    return f"<figure>{image(path, caption)}<figcaption>{E(caption)}</figcaption></figure>"


def table(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    """A table that scrolls sideways inside its own box on narrow screens.

    Columns from ``numeric_from`` on are right-aligned numbers. Cells are escaped unless
    they are :class:`Markup`.
    """

    def cell(tag: str, value: Any, i: int) -> str:
        cls = ' class="num"' if i >= numeric_from else ""
        text = value if isinstance(value, Markup) else E(str(value))
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


class Markup(str):
    """HTML that :func:`table` inserts as is."""


def bar(fraction: float, text: str) -> Markup:
    """A number with a horizontal bar behind it, drawn in CSS."""
    width = max(0.0, min(1.0, fraction)) * 100
    return Markup(f'<span class="bar" style="--w:{width:.1f}%">{E(text)}</span>')


def pct(x: float, digits: int = 2) -> str:
    """0.9201 -> ``92.01%``."""
    return f"{100 * x:.{digits}f}%"


def section(anchor: str, title: str, *parts: str) -> str:
    """A titled section that the page's navigation links to."""
    return f'<section id="{anchor}"><h2>{E(title)}</h2>{"".join(parts)}</section>'


def key_figure(label: str, value: str, note: str = "") -> str:
    """One of the large numbers at the top of the page."""
    small = f"<small>{E(note)}</small>" if note else ""
    return f'<div class="card"><span>{E(label)}</span><strong>{E(value)}</strong>{small}</div>'


def page(title: str, nav: list[tuple[str, str]], body: str) -> str:
    """The whole document."""
    links = "".join(f'<a href="#{a}">{E(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="referrer" content="no-referrer"><title>{E(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f'<header><h1>{E(title)}</h1><nav aria-label="Sections">{links}</nav></header>'
        f"<main>{body}</main>"
        f"<footer>Written by edgecnn {E(__version__)}. This page is self-contained: it loads "
        "nothing from the network.</footer></body></html>\n"
    )
