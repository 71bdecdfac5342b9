"""A one-line progress bar on a terminal: ``[######    ] 6,144/10,000  41,230 img/s  ETA 0.1s``.

Drawn only where a person watches (a terminal), never into a pipe or a log file, and at
most ten times a second, so that it costs nothing beside the work it reports.
"""

from __future__ import annotations

import time
from typing import TextIO

from edgecnn._format import format_duration

#: Redraws at most this often (seconds).
INTERVAL = 0.1
_WIDTH = 20


class ProgressBar:
    """Images done out of ``total``, their rate and the time left, redrawn in place."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.started = time.perf_counter()
        self.done = 0
        self.shown = False
        self._drawn = 0.0

    def update(self, done: int) -> None:
        """``done`` images are finished; redraw if it is time to."""
        self.done = done
        now = time.perf_counter()
        if now - self._drawn >= INTERVAL or done >= self.total:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = format_duration((self.total - self.done) / rate) if rate else "?"
        filled = _WIDTH * self.done // max(self.total, 1)
        self.stream.write(
            f"\r[{'#' * filled:<{_WIDTH}s}] {self.done:,}/{self.total:,}  {rate:,.0f} img/s  "
            f"ETA {eta}\x1b[K"
        )
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the bar (before other output reaches the same terminal)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = 0.0  # drawn again at the next update

    def close(self, summary: bool) -> None:
        """Erase the bar; with ``summary``, leave one line of how many and how fast."""
        self.clear()
        if summary and self.shown:
            elapsed = time.perf_counter() - self.started
            self.stream.write(
                f"{self.done:,} images in {format_duration(elapsed)}, "
                f"{self.done / max(elapsed, 1e-9):,.0f} img/s\n"
            )
            self.stream.flush()
