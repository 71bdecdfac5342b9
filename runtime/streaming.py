"""A video source classified as it plays: decoding on one thread, batches on the caller's.

A reader thread decodes, samples, crops and resizes frames (FFmpeg and Pillow work
without holding the GIL) into a short queue; the caller takes whatever has arrived, up
to :data:`BATCH_FRAMES` at a time, and classifies it in one call to the backend. A file
is read as fast as it decodes and its frames wait in the queue (none is dropped); a
camera or a network stream yields a batch as soon as a frame arrives, so a result is
never held back to fill a batch, and when the caller falls behind, the oldest waiting
frame is dropped for the newest: a live result is at most a queue's worth of frames
old, never minutes behind a camera that outpaces the model. Used by ``edgecnn
predict`` and by ``edgecnn serve --source``, which also shows the latest frame.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edgecnn.runtime.frames import POLARITY_FRAMES, POLARITY_SECONDS, FrameClassifier, FrameResult
from edgecnn.runtime.video import Frame, Sampling, Source, Timing, read_frames

#: The most frames classified in one call: past this a batch only adds latency.
BATCH_FRAMES = 32
#: Interpreter threads for a stream, unless told: FFmpeg's decoding threads and the
#: resize take the cores (docs/benchmarks.md, "`edgecnn predict` on a video").
INTERPRETER_THREADS = 1
#: Frames decoded ahead of classification (each a few KB once resized).
QUEUE_FRAMES = 2 * BATCH_FRAMES
_END = object()


@dataclass(frozen=True)
class _Prepared:
    index: int
    time: float
    image: np.ndarray


class FrameStream:
    """``source``'s sampled frames, classified by ``frames``, batch by batch.

    ``notify`` gets a line for each reconnection. ``keep_latest`` keeps the last decoded
    frame (RGB, full size) in :attr:`latest`, for a page that shows it.
    """

    def __init__(
        self,
        frames: FrameClassifier,
        source: Source,
        sampling: Sampling | None = None,
        timing: Timing | None = None,
        notify: Callable[[str], None] = lambda line: None,
        keep_latest: bool = False,
    ) -> None:
        self.frames, self.source = frames, source
        self.sampling, self.timing = sampling or Sampling(), timing or Timing()
        self.notify = notify
        self.keep_latest = keep_latest
        self.latest: Frame | None = None
        self.dropped = 0  # frames of a live source dropped because the caller fell behind
        # A live source's frames are dropped, oldest first, rather than waited for.
        self._drop_oldest = source.live or self.timing.realtime
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_FRAMES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="edgecnn-frames", daemon=True)

    def __enter__(self) -> FrameStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask the reader to stop; it ends at its next frame or deadline."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def _read(self) -> None:
        try:
            for frame in read_frames(self.source, self.sampling, self.timing,
                                     self.notify, self._stop):  # fmt: skip
                if self.keep_latest:
                    self.latest = frame
                image = self.frames.prepare(frame.pixels)
                self._put(_Prepared(frame.index, frame.time, image))
            self._put(_END)
        except BaseException as e:  # handed to the caller's thread, raised there
            self._put(e)

    def _put(self, item: object) -> None:
        drop = self._drop_oldest and isinstance(item, _Prepared)  # never the end or an error
        while not self._stop.is_set():
            try:
                if drop:
                    self._queue.put_nowait(item)
                else:
                    self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if drop:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()  # only frames are queued before the end
                        self.dropped += 1

    def batches(self) -> Iterator[list[FrameResult]]:
        """Each batch's results, in frame order, until the source ends.

        Raises:
            StreamError: the source failed (after the frames before it were yielded).
            InputError: a frame does not fit the crop.
        """
        first = self.frames.invert is None  # the first batch also settles the polarity
        # Nothing waits for a file's results, so its batches are filled: one call to the
        # backend for many frames costs far less than one a frame.
        fill = not (self.source.live or self.timing.realtime)
        while True:
            pending, end = self._take(first, fill)
            if pending:
                first = False
                yield self._classify(pending)
            if end is _END:
                return
            if isinstance(end, BaseException):
                raise end

    def _get(self) -> object:
        """The next item, waiting for it; the end once :meth:`stop` was called."""
        while not self._stop.is_set():
            try:
                return self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
        return _END

    def _take(self, first: bool, fill: bool) -> tuple[list[_Prepared], object]:
        """The frames of the next batch, and the end (or error) that came after them."""
        pending: list[_Prepared] = []
        warm_until = 0.0
        while len(pending) < BATCH_FRAMES:
            try:
                if not pending or fill:
                    item = self._get()
                elif first and self._warming(pending):
                    # A stream that stalls after its first frames must not hold their
                    # results until its timeout (or lose them to Ctrl-C).
                    item = self._queue.get(timeout=max(0.0, warm_until - time.monotonic()))
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Prepared):
                return pending, item
            if not pending:
                warm_until = time.monotonic() + POLARITY_SECONDS
            pending.append(item)
        return pending, None

    @staticmethod
    def _warming(pending: list[_Prepared]) -> bool:
        """Whether to wait for more frames before deciding the stream's polarity."""
        seconds = pending[-1].time - pending[0].time
        return len(pending) < POLARITY_FRAMES and seconds < POLARITY_SECONDS

    def _classify(self, pending: list[_Prepared]) -> list[FrameResult]:
        images = np.stack([p.image for p in pending])
        return self.frames.classify_prepared(
            images, [p.index for p in pending], [p.time for p in pending]
        )
