"""How ``edgecnn predict`` writes results, a batch at a time, in one of three styles.

* ``text``: one aligned line per input, ``NAME  LABEL  CONFIDENCE%  [top-k]``;
* ``json``: one JSON document, ``{"model", "backend", "results": [...]}``, written as
  the results come: each result on a line of its own, the document closed at the end
  (a run that fails half-way leaves it unclosed, so no parser mistakes it for whole);
* ``jsonl``: JSON Lines, one object per input and line, as batch tools read them.

A result is ``{"file", "label", "unknown", "top_label", "confidence", "top_k": [{"label",
"probability"}]}``: ``label`` is ``"unknown"`` when the model is not sure enough
(``unknown`` true), else the most likely class, which ``top_label`` always is; the text
style shows ``unknown`` in the label's column, the classes still in the top-k list. An
input skipped with ``--skip-bad`` is ``{"file", "error"}`` in the JSON styles and a
``skipped:`` line on stderr in text.
"""

from __future__ import annotations

from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

import numpy as np

from edgecnn import _json
from edgecnn.errors import one_line
from edgecnn.runtime.confidence import UNKNOWN

STYLES = ("text", "json", "jsonl")


class ResultWriter:
    """Writes each batch's results to ``out`` as soon as it is classified.

    A line is formatted with one ``%`` operation from a template made once: a fraction of
    what f-strings and ``json.dumps`` took, which was a sizeable part of an int8 inference
    (docs/benchmarks.md, "result line formatting").
    """

    def __init__(self, style: str, out: TextIO, err: TextIO, labels: tuple[str, ...],
                 top_k: int, name_width: int) -> None:  # fmt: skip
        self.style, self.out, self.err = style, out, err
        self.labels, self.top_k, self.width = labels, top_k, name_width
        self.written = 0
        self.skipped = 0
        if style == "text":
            self._template = "%-*s  %-12s %5.1f%%  [" + ", ".join(["%s %.3f"] * top_k) + "]"
            self._names: tuple[str, ...] = labels
            self._unknown = UNKNOWN
        else:  # JSON text of each label made once; floats written as json writes them
            self._template = (
                '{"file": %s, "label": %s, "unknown": %s, "top_label": %s, "confidence": %r, '
                '"top_k": [' + ", ".join(['{"label": %s, "probability": %r}'] * top_k) + "]}"
            )
            self._names = tuple(_json.dumps(label) for label in labels)
            self._unknown = _json.dumps(UNKNOWN)

    def start(self, model: str, backend: str) -> None:
        """Open the JSON document (the other styles have no header)."""
        if self.style == "json":
            head = _json.dumps({"model": model, "backend": backend}, indent=None)
            self.out.write(head[:-1] + ', "results": [')

    def write(
        self, names: list[str], probs: np.ndarray | None, failed: dict[int, str],
        unknown: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """The results of one batch: ``probs`` rows for the inputs not in ``failed``.

        ``unknown`` (bool, a row each; ``Classifier.unknown(probs)``) marks the rows
        answered "unknown"; None: none is.
        """
        lines = []
        ranked = self._ranked(probs, unknown)
        text = self.style == "text"
        template, width = self._template, self.width
        for position, name in enumerate(names):
            if position in failed:
                self.skipped += 1
                if text:
                    self.err.write(f"skipped: {escape_text(failed[position])}\n")
                else:
                    lines.append(self._record(_json.dumps({"file": name, "error": failed[position]},
                                                          indent=None)))  # fmt: skip
                continue
            label, flag, top, confidence, pairs = next(ranked)
            if text:
                lines.append(template % (width, escape_text(name), label, 100 * confidence, *pairs))
            else:
                encoded = encode_basestring_ascii(name)  # as json.dumps writes a string
                record = template % (encoded, label, flag, top, confidence, *pairs)
                lines.append(self._record(record))
        if lines:
            # JSON records carry their own separators (see _record); lines end with one.
            self.out.write("".join(lines) if self.style == "json" else "\n".join(lines) + "\n")
            self.out.flush()

    def finish(self) -> None:
        """Close the JSON document."""
        if self.style == "json":
            self.out.write("\n]}\n")
            self.out.flush()

    def _ranked(
        self, probs: np.ndarray | None, unknown: np.ndarray | None
    ) -> Iterator[tuple[str, str, str, float, list[Any]]]:
        """Each row's label, unknown flag (JSON), top label, confidence and ``top_k`` pairs.

        Ranked as ``Classifier.classify`` ranks: a stable sort of the negated row.
        Probabilities are finite (``Classifier.predict`` checks), so ``%r`` writes
        exactly the JSON number ``json.dumps`` would.
        """
        if probs is None:
            return
        order = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        top = np.take_along_axis(probs, order, axis=1).tolist()
        flags = [False] * len(top) if unknown is None else unknown.tolist()
        names, unknown_name = self._names, self._unknown
        for indices, values, flag in zip(order.tolist(), top, flags, strict=True):
            pairs: list[Any] = []
            for i, p in zip(indices, values, strict=True):
                pairs += (names[i], p)
            first = names[indices[0]]
            if flag:
                yield unknown_name, "true", first, values[0], pairs
            else:
                yield first, "false", first, values[0], pairs

    def _record(self, text: str) -> str:
        """A JSON record, with the separator the document needs before it."""
        if self.style == "json":
            text = ("\n" if self.written == 0 else ",\n") + text
        self.written += 1
        return text


def escape_text(text: str) -> str:
    r"""``text`` (a file name, a message naming one) as a text line shows it, on one line.

    Control and format characters are escaped as :func:`~edgecnn.errors.one_line` escapes
    them (a bidirectional control must not reorder the rest of the line), and undecodable
    bytes (``os.fsdecode``'s surrogates) as ``\udcXX``.
    """
    if text.isprintable():
        return text
    return one_line(text).encode("utf-8", "backslashreplace").decode("utf-8")
