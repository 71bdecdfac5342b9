"""``edgecnn predict`` on a video, a camera or a network stream: a line per frame, or events.

Text: ``frame N  SECONDSs  LABEL  CONFIDENCE%  [top-k]``. ``--jsonl``:
``{"frame", "time", "label", "unknown", "top_label", "confidence", "top_k": [{"label",
"probability"}]}`` per frame; LABEL is "unknown" for a frame the model is not sure
enough of, its classes still listed. With ``--on-change`` only the changes of the stable
label ("unknown" one of them) are written (text
``frame N  SECONDSs  LABEL  CONFIDENCE%  (was PREVIOUS)``; JSON ``{"event": "change", "frame",
"time", "label", "confidence", "previous"}``), each as soon as it happens, which is what a
script reading the pipe acts on. Lines are flushed as written, so Ctrl-C (or the end of a
stream) leaves every result so far on stdout.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from edgecnn import _json
from edgecnn.runtime.classifier import Classifier
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.frames import (
    INVERT_CHOICES,
    Change,
    Crop,
    FrameClassifier,
    FrameResult,
    StableLabel,
)
from edgecnn.runtime.predict.output import escape_text
from edgecnn.runtime.streaming import FrameStream
from edgecnn.runtime.video import Sampling, Source, Timing


@dataclass(frozen=True)
class StreamOptions:
    """What ``predict`` was told about a stream: sampling, crop, polarity, events."""

    sampling: Sampling
    timing: Timing
    crop: Crop
    invert: str
    on_change: bool
    stable_frames: int
    min_confidence: float

    @classmethod
    def from_cli(
        cls, fps: float | None, every: int | None, frames: int | None, seconds: float | None,
        crop: str | None, invert: str | None, on_change: bool | None, stable: int | None,
        min_confidence: float | None, timeout: float | None, retries: int | None,
    ) -> StreamOptions:  # fmt: skip
        """The options as ``predict`` was given them (None: not given).

        Raises:
            InputError: an impossible value or combination.
        """
        invert = ("auto" if invert is None else invert).lower()
        if invert not in INVERT_CHOICES:
            raise InputError(
                f"--invert must be one of {', '.join(INVERT_CHOICES)}, got {invert!r:.20}"
            )
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise InputError(f"--min-confidence must be in 0..1, got {min_confidence:g}")
        if (stable is not None or min_confidence is not None) and not on_change:
            raise InputError("--stable and --min-confidence apply with --on-change")
        if timeout is not None and not 0 < timeout <= 3600:
            raise InputError(f"--timeout must be in (0, 3600] seconds, got {timeout:g}")
        return cls(
            sampling=Sampling(every or 1, fps, frames, seconds),
            timing=Timing(
                timeout or Timing.timeout, Timing.retries if retries is None else retries
            ),
            crop=Crop.parse("center" if crop is None else crop),
            invert=invert,
            on_change=bool(on_change),
            stable_frames=stable or 3,
            min_confidence=0.5 if min_confidence is None else min_confidence,
        )


def predict_stream(
    classifier: Classifier, source: Source, options: StreamOptions, jsonl: bool,
    top_k: int | None,
    out: TextIO | None = None, err: TextIO | None = None,
) -> None:  # fmt: skip
    """Classify ``source`` frame by frame, writing results (or changes) as they come.

    Raises:
        StreamError: the source cannot be opened or read, or stopped answering.
        InputError: a crop that does not fit the frames.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    frames = FrameClassifier(classifier, options.crop, invert=options.invert, top_k=top_k)
    stable = StableLabel(options.stable_frames, options.min_confidence)

    def notify(line: str) -> None:
        err.write(f"edgecnn: {escape_text(line)}\n")
        err.flush()

    stream = FrameStream(frames, source, options.sampling, options.timing, notify)
    with stream:
        for batch in stream.batches():
            if options.on_change:
                lines = [_change_line(c, jsonl) for c in map(stable.update, batch) if c]
            else:
                lines = [_result_line(r, jsonl) for r in batch]
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()


def _result_line(result: FrameResult, jsonl: bool) -> str:
    if jsonl:
        return _json.dumps(result.to_dict(), indent=None)
    top = ", ".join(f"{label} {p:.3f}" for label, p in result.top_k)
    return (f"frame {result.index:<6d} {result.time:8.3f}s  {result.label:<12s} "
            f"{100 * result.confidence:5.1f}%  [{top}]")  # fmt: skip


def _change_line(change: Change, jsonl: bool) -> str:
    if jsonl:
        return _json.dumps(change.to_dict(), indent=None)
    was = f"  (was {change.previous})" if change.previous is not None else ""
    return (f"frame {change.index:<6d} {change.time:8.3f}s  {change.label:<12s} "
            f"{100 * change.confidence:5.1f}%{was}")  # fmt: skip
