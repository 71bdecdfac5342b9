"""``edgecnn serve --source``: a video source classified as it plays, for the live page.

One thread runs the source's :class:`~edgecnn.runtime.streaming.FrameStream` and keeps
what the page shows: the latest result, the changes of the stable label (numbered, the
last few only), the source's state, and the latest frame (as a JPEG with the crop box
drawn, encoded once per frame however many viewers ask). The event loop reads these; no
viewer has a queue of its own, so a slow viewer skips results instead of piling them up.

A file is played at its own speed and looped, as a stand-in camera; a network stream is
reopened whenever it fails (the page says "reconnecting"); a camera or file failing for
good leaves the error on the page while ``/classify`` keeps answering.

Given a function for the model in place of a model, the feed follows serve's reloads:
each batch of frames is classified wholly by the model served when the batch starts.
"""

from __future__ import annotations

import io
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.runtime.classifier import Classifier
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.frames import Change, Crop, FrameClassifier, FrameResult, StableLabel
from edgecnn.runtime.streaming import FrameStream
from edgecnn.runtime.video import Sampling, Source, StreamError, Timing, read_frames

#: Reopenings of a failing network stream: a server keeps trying (a day at the longest pause).
NETWORK_RETRIES = 10_000
#: Changes kept for viewers that have not seen them yet.
KEPT_CHANGES = 16
#: JPEG quality of the frame the page shows (a phone on Wi-Fi reads it several times a second).
JPEG_QUALITY = 75
_BOX_COLOUR = (255, 64, 32)


@dataclass(frozen=True)
class Snapshot:
    """What a viewer is sent: the state, the latest result, and the changes after ``seen``."""

    state: dict[str, Any]
    result: FrameResult | None
    changes: list[tuple[int, Change]]


class FollowingFrames(FrameClassifier):
    """A :class:`FrameClassifier` that takes ``current()``'s model at each batch.

    The model served may change between two batches (a reload); the input shape stays
    (a reload refuses another), so frames prepared for the one suit the other.
    """

    def __init__(self, current: Callable[[], Classifier], crop: Crop, invert: str) -> None:
        super().__init__(current(), crop, invert=invert)
        self._current = current

    def classify_prepared(
        self, images: np.ndarray, indices: Sequence[int], times: Sequence[float]
    ) -> list[FrameResult]:
        """Results of prepared ``images``, all from the model served now."""
        classifier = self._current()
        if classifier is self.classifier:
            return super().classify_prepared(images, indices, times)
        from edgecnn._quiet import banners_hidden
        from edgecnn.runtime.backends import BANNERS

        self.classifier = classifier  # the old one's interpreter here goes with it
        with banners_hidden(BANNERS):  # this thread's first interpreter of the new model
            return super().classify_prepared(images, indices, times)


class LiveFeed:
    """``source`` classified frame by frame on a thread of its own, its latest state kept."""

    def __init__(
        self,
        classifier: Classifier | Callable[[], Classifier],
        source: Source,
        crop: Crop,
        invert: str = "auto",
        timeout: float = 10.0,
        notify: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.source = source
        self.crop = crop
        self.timeout = timeout
        self.notify = notify
        self.frames = (
            FrameClassifier(classifier, crop, invert=invert)
            if isinstance(classifier, Classifier)
            else FollowingFrames(classifier, crop, invert)
        )
        self.stable = StableLabel()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"state": "starting", "source": source.shown}
        self._result: FrameResult | None = None
        self._changes: deque[tuple[int, Change]] = deque(maxlen=KEPT_CHANGES)
        self._numbered = 0
        self._frames_done = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._jpeg_lock = threading.Lock()
        self._stream: FrameStream | None = None
        self._thread = threading.Thread(target=self._run, name="edgecnn-live", daemon=True)

    # -- startup -------------------------------------------------------------------------

    def start(self) -> None:
        """Start reading and classifying."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the reader to stop (the thread is a daemon: nothing waits for it)."""
        stream = self._stream
        if stream is not None:
            stream.stop()

    # -- the frame loop (its own thread) -------------------------------------------------

    def _run(self) -> None:
        live = self.source.kind == "network"
        timing = Timing(
            timeout=self.timeout,
            retries=NETWORK_RETRIES if live else 0,
            realtime=not self.source.live,
            loop=not self.source.live,
        )
        stream = self._stream = FrameStream(
            self.frames, self.source, Sampling(), timing, self._reconnecting, keep_latest=True
        )
        try:
            with stream:
                for batch in stream.batches():
                    self._publish(batch)
                if stream.stopped:  # the server is stopping: nothing ended
                    return
            self._set_state("ended", f"{self.source.shown} ended")
        except (StreamError, InputError) as e:
            self._set_state("error", str(e))
        except Exception as e:  # a bug here must leave /classify serving
            self._set_state("error", f"unexpected {type(e).__name__}: {e}")

    def _reconnecting(self, line: str) -> None:
        self._set_state("reconnecting", line)

    def _set_state(self, state: str, message: str = "") -> None:
        with self._lock:
            if self._state.get("state") == state and self._state.get("message") == message:
                return
            self._state = {"state": state, "source": self.source.shown, "message": message}
        if message:
            self.notify(message)

    def _publish(self, batch: list[FrameResult]) -> None:
        changes = [(r, self.stable.update(r)) for r in batch]
        with self._lock:
            if self._state["state"] != "playing":
                self._state = {"state": "playing", "source": self.source.shown}
            self._result = batch[-1]
            self._frames_done += len(batch)
            for _, change in changes:
                if change is not None:
                    self._numbered += 1
                    self._changes.append((self._numbered, change))

    # -- what the event loop reads -------------------------------------------------------

    def snapshot(self, seen: int) -> Snapshot:
        """The state, the latest result, and the changes numbered above ``seen``."""
        with self._lock:
            return Snapshot(
                dict(self._state), self._result, [(n, c) for n, c in self._changes if n > seen]
            )

    @property
    def last_change(self) -> int:
        """The number of the latest change (0 before the first)."""
        with self._lock:
            return self._numbered

    def health(self) -> dict[str, Any]:
        """The source's part of ``/health``."""
        with self._lock:
            result = self._result
            return {
                **self._state,
                "frames": self._frames_done,
                "label": None if result is None else result.label,
                "stable_label": self.stable.stable,
            }

    @property
    def frame_index(self) -> int | None:
        """The index of the latest decoded frame (None before the first)."""
        stream = self._stream
        frame = stream.latest if stream is not None else None
        return None if frame is None else frame.index

    def jpeg(self) -> bytes | None:
        """The latest frame as a JPEG with the crop box drawn (None before the first).

        Encoded once per frame: viewers asking for the same frame share the bytes.
        """
        stream = self._stream
        frame = stream.latest if stream is not None else None
        if frame is None:
            return None
        with self._jpeg_lock:
            if self._jpeg is not None and self._jpeg[0] == frame.index:
                return self._jpeg[1]
            data = _encode(frame.pixels, self.crop)
            self._jpeg = (frame.index, data)
            return data


def check_source(source: Source, crop: Crop, timeout: float) -> tuple[int, int]:
    """Open ``source`` once and read one frame: its ``(width, height)``.

    Called before the server listens, so that a missing file, an absent camera or a
    stream that does not answer is one line and exit 2, not a page showing an error.

    Raises:
        StreamError: the source cannot be opened or sends no frame in time.
        InputError: the crop does not fit its frames.
    """
    for frame in read_frames(source, Sampling(frames=1), Timing(timeout=timeout, retries=0)):
        height, width = frame.pixels.shape[:2]
        crop.region(width, height)
        return width, height
    raise StreamError(f"{source.shown} has no frame")


def _encode(pixels: Any, crop: Crop) -> bytes:
    """``pixels`` (RGB) as a JPEG, with the crop's box drawn on them."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(pixels).convert("RGB")
    width, height = image.size
    try:
        x, y, w, h = crop.region(width, height)
    except InputError:  # a frame of another size: shown without the box
        pass
    else:
        line = max(2, min(width, height) // 160)
        ImageDraw.Draw(image).rectangle((x, y, x + w - 1, y + h - 1), outline=_BOX_COLOUR,
                                        width=line)  # fmt: skip
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def print_note(line: str) -> None:
    """A source's notice (a reconnection, a failure) on stderr, one line."""
    print(f"edgecnn: {line}", file=sys.stderr, flush=True)
