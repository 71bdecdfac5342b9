"""Training progress: loss, accuracy, speed and ETA while Keras trains."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from edgecnn._format import format_duration
from edgecnn.trainer._tf import import_keras

keras = import_keras()


class ProgressCallback(keras.callbacks.Callback):  # type: ignore[name-defined]
    """Reports progress inside each epoch.

    On a terminal one line is redrawn a few times a second; in a log file (CI, ``nohup``)
    a line is written at every quarter of the epoch so logs stay short.
    """

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        batch_size: int,
        stream: TextIO | None = None,
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.batch_size = batch_size
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self._epoch = 0
        self._start = 0.0
        self._last_print = 0.0
        self._next_quarter = 1

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Start the epoch's clock."""
        self._epoch = epoch
        self._start = self._last_print = time.perf_counter()
        self._next_quarter = 1

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        """Print a progress line when one is due."""
        step = batch + 1
        now = time.perf_counter()
        if self.interactive:
            if now - self._last_print < 0.25 and step < self.steps:
                return
        elif step < self._next_quarter * self.steps / 4 or step == self.steps:
            return
        else:
            self._next_quarter += 1
        self._last_print = now
        logs = logs or {}
        elapsed = now - self._start
        rate = step * self.batch_size / elapsed if elapsed > 0 else 0.0
        epoch_left = elapsed / step * (self.steps - step)
        full_epoch = elapsed / step * self.steps
        run_left = epoch_left + full_epoch * (self.epochs - self._epoch - 1)
        bar = "#" * int(10 * step / self.steps)
        line = (
            f"epoch {self._epoch + 1}/{self.epochs} [{bar:<10s}] {100 * step / self.steps:3.0f}%"
            f"  loss {logs.get('loss', float('nan')):.4f}"
            f"  acc {100 * logs.get('accuracy', float('nan')):5.2f}%"
            f"  {rate:,.0f} img/s  ETA {format_duration(run_left)}"
        )
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Clear the terminal line; the trainer prints the epoch's summary."""
        if self.interactive:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
