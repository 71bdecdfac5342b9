"""Frames from a camera or a video, classified one after another: crop, polarity, changes.

An app that grabs frames itself (picamera2, OpenCV, a GStreamer appsink) hands each
uint8 array to a :class:`FrameClassifier`, which does what ``edgecnn predict`` does with a
video: take the crop (by default the centred square), read the colour order it was told
(picamera2's ``RGB888`` arrays are BGR in memory; OpenCV's are BGR), resize exactly as a
picture file is resized, and invert dark-on-light frames for a light-on-dark model. The
polarity of a stream is decided once, from its first frames, so it cannot flicker from
frame to frame as the scene's border changes. A frame the model is not sure enough of
is labelled "unknown", as :meth:`~edgecnn.runtime.classifier.Classifier.answer` labels a
picture. :class:`StableLabel` turns the per-frame labels into the events an app acts on:
one when the label that has held for several frames changes ("unknown" is a label of
its own there).

Needs numpy and Pillow (for the resize), never a video library.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.runtime.classifier import Classifier, top_k_count
from edgecnn.runtime.confidence import UNKNOWN
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.images import LIGHT_BORDER, border_mean, resize_array

#: The colour orders of 3- and 4-channel frames (a 4th channel is padding, or alpha,
#: and is dropped); a 2-D or 1-channel frame is greyscale whatever the order says.
ORDERS = ("rgb", "bgr")
#: ``--invert`` and ``FrameClassifier(invert=...)``.
INVERT_CHOICES = ("auto", "yes", "no")
#: Polarity is decided on this many frames at most (the first ones of the stream).
POLARITY_FRAMES = 5
#: ... or on the frames of this many seconds of the stream, if that comes first.
POLARITY_SECONDS = 1.0
#: The largest frame taken (8K); a larger one is an error rather than a memory spike.
MAX_FRAME_PIXELS = 7680 * 4320
_BOX = re.compile(r"^\s*(\d{1,5})\s*,\s*(\d{1,5})\s*,\s*(\d{1,5})\s*,\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class Crop:
    """The part of each frame that is classified.

    ``box`` is ``(x, y, width, height)`` in pixels from the top-left corner, or None for
    the centred square (the largest).
    """

    box: tuple[int, int, int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> Crop:
        """``center`` (or ``centre``) or ``X,Y,W,H``.

        Raises:
            InputError: anything else, or a box of zero width or height.
        """
        if text.strip().lower() in ("center", "centre"):
            return cls()
        match = _BOX.match(text)
        if match is None:
            raise InputError(f"--crop must be 'center' or X,Y,W,H in pixels, got {text!r:.40}")
        x, y, w, h = (int(v) for v in match.groups())
        if not (w and h):
            raise InputError(f"--crop {text.strip()}: the width and height must be at least 1")
        return cls((x, y, w, h))

    def region(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop's ``(x, y, width, height)`` in a frame of ``width`` x ``height``.

        Raises:
            InputError: a box that does not fit inside the frame.
        """
        if self.box is None:
            side = min(width, height)
            return (width - side) // 2, (height - side) // 2, side, side
        x, y, w, h = self.box
        if x + w > width or y + h > height:
            raise InputError(
                f"--crop {x},{y},{w},{h} does not fit in a {width}x{height} frame "
                f"(it ends at {x + w},{y + h})"
            )
        return self.box

    def __str__(self) -> str:
        return "center" if self.box is None else ",".join(map(str, self.box))


def check_frame(frame: Any, order: str = "rgb") -> np.ndarray:
    """``frame`` as a uint8 ``(H, W)`` or ``(H, W, 3)`` RGB array, without copying pixels.

    Takes ``(H, W)``, ``(H, W, 1)``, and ``(H, W, 3)`` or ``(H, W, 4)`` in ``order``
    (``rgb`` or ``bgr``; a 4th channel is dropped).

    Raises:
        InputError: not a uint8 array of one of those shapes, empty, or over 8K.
    """
    if order not in ORDERS:
        raise InputError(f"the colour order must be one of {', '.join(ORDERS)}, got {order!r:.20}")
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(f"a frame must be uint8 (0..255), got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (3, 4))):
        raise InputError(
            f"a frame must have shape (H, W), (H, W, 3) or (H, W, 4); got {frame.shape}"
        )
    height, width = frame.shape[:2]
    if not (height and width):
        raise InputError(f"a frame must not be empty; got shape {frame.shape}")
    if height * width > MAX_FRAME_PIXELS:
        raise InputError(f"a frame of {width}x{height} is larger than 8K (7680x4320)")
    if frame.ndim == 3:
        frame = frame[:, :, 2::-1] if order == "bgr" else frame[:, :, :3]
    checked: np.ndarray = frame
    return checked


def invert_choice(value: Any) -> bool | None:
    """``auto``/``yes``/``no`` (or None/True/False) as None, True or False.

    Raises:
        InputError: any other value.
    """
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, str) and value.lower() in INVERT_CHOICES:
        return {"auto": None, "yes": True, "no": False}[value.lower()]
    raise InputError(f"invert must be one of {', '.join(INVERT_CHOICES)}, got {value!r:.20}")


@dataclass(frozen=True)
class FrameResult:
    """One classified frame: ``top_k`` ``(label, probability)`` pairs, most likely first.

    ``unknown``: the model is not sure enough of it (its top probability is below the
    classifier's ``reject_below``); its label is then "unknown".
    """

    index: int
    time: float
    top_k: tuple[tuple[str, float], ...]
    unknown: bool = False

    @property
    def label(self) -> str:
        """The most likely label, or "unknown"."""
        return UNKNOWN if self.unknown else self.top_k[0][0]

    @property
    def top_label(self) -> str:
        """The most likely label, whatever :attr:`label` says."""
        return self.top_k[0][0]

    @property
    def confidence(self) -> float:
        """The most likely label's probability."""
        return self.top_k[0][1]

    def to_dict(self) -> dict[str, Any]:
        """As ``--jsonl`` writes it."""
        return {
            "frame": self.index,
            "time": round(self.time, 3),
            "label": self.label,
            "unknown": self.unknown,
            "top_label": self.top_label,
            "confidence": self.confidence,
            "top_k": [{"label": label, "probability": p} for label, p in self.top_k],
        }


class FrameClassifier:
    """Classifies the frames of one stream, as ``edgecnn predict`` classifies a video.

    >>> frames = FrameClassifier(load_classifier("model_int8.tflite"), order="bgr")
    >>> result = frames.classify(camera_array)  # FrameResult: label, confidence, top_k

    ``invert`` is ``"auto"`` (decided once, from the first frames: inverted when most of
    them have a light border and the model is light-on-dark), ``"yes"`` or ``"no"``.
    Not for sharing between streams: each has its own polarity and frame count.
    """

    def __init__(
        self,
        classifier: Classifier,
        crop: Crop | str = "center",
        order: str = "rgb",
        invert: str | bool | None = "auto",
        top_k: int | None = None,
    ) -> None:
        self.classifier = classifier
        self.crop = crop if isinstance(crop, Crop) else Crop.parse(crop)
        if order not in ORDERS:
            raise InputError(f"order must be one of {', '.join(ORDERS)}, got {order!r:.20}")
        self.order = order
        self.top_k = top_k_count(top_k, len(classifier.labels))
        self._invert = invert_choice(invert)
        self._seen = 0

    @property
    def invert(self) -> bool | None:
        """Whether frames are inverted; None until ``auto`` has seen the first frames."""
        return self._invert

    def prepare(self, frame: Any) -> np.ndarray:
        """``frame`` cropped and resized to the model's input (uint8), not yet inverted.

        Raises:
            InputError: not a frame (see :func:`check_frame`), or a crop outside it.
        """
        pixels = check_frame(frame, self.order)
        x, y, w, h = self.crop.region(pixels.shape[1], pixels.shape[0])
        return resize_array(pixels[y : y + h, x : x + w], self.classifier.input_shape)

    def decide_polarity(self, images: np.ndarray) -> bool:
        """Settle ``invert`` from prepared ``images`` (the first of the stream), if not yet."""
        if self._invert is None:
            # The rule load_image applies to one picture, by majority over the frames.
            light = sum(border_mean(image) > LIGHT_BORDER for image in images)
            self._invert = self.classifier.metadata.light_on_dark and 2 * light > len(images)
        return self._invert

    def classify_prepared(
        self, images: np.ndarray, indices: Sequence[int], times: Sequence[float]
    ) -> list[FrameResult]:
        """Results of prepared ``images`` (one batch through the backend).

        The stream's first batch settles ``auto`` polarity on its first frames only (at
        most :data:`POLARITY_FRAMES`, within :data:`POLARITY_SECONDS`), whatever the
        batch's length: how many frames a batch holds depends on the reader's timing.
        """
        if self._invert is None and len(images):
            start = times[0]
            voters = sum(t - start < POLARITY_SECONDS for t in times[:POLARITY_FRAMES])
            self.decide_polarity(images[: max(voters, 1)])
        invert = self.decide_polarity(images)
        probs = self.classifier.predict(np.invert(images) if invert else images)
        return self.results(probs, indices, times)

    def results(
        self, probs: np.ndarray, indices: Sequence[int], times: Sequence[float]
    ) -> list[FrameResult]:
        """The :class:`FrameResult` of each row of probabilities, ranked as ``classify`` ranks.

        A row is "unknown" as :meth:`~edgecnn.runtime.classifier.Classifier.unknown` says.
        """
        order = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        top = np.take_along_axis(probs, order, axis=1).tolist()
        unknown = self.classifier.unknown(probs).tolist()
        labels = self.classifier.labels
        rows = zip(indices, times, order.tolist(), top, unknown, strict=True)
        return [
            FrameResult(i, t, tuple((labels[c], p) for c, p in zip(row, values, strict=True)), flag)
            for i, t, row, values, flag in rows
        ]

    def classify(self, frame: Any, time: float | None = None) -> FrameResult:
        """Classify one frame; ``time`` (seconds) defaults to the frame's number.

        With ``invert="auto"`` the first frame decides the polarity alone; to decide on
        several, call :meth:`decide_polarity` with them first.
        """
        image = self.prepare(frame)[np.newaxis]
        index = self._seen
        self._seen += 1
        return self.classify_prepared(image, [index], [float(index) if time is None else time])[0]


@dataclass(frozen=True)
class Change:
    """The stable label changed: ``label`` has held for the last frames, up to ``index``."""

    index: int
    time: float
    label: str
    confidence: float  # the lowest over the frames that made it stable
    previous: str | None

    def to_dict(self) -> dict[str, Any]:
        """As ``--on-change --jsonl`` writes it."""
        return {
            "event": "change",
            "frame": self.index,
            "time": round(self.time, 3),
            "label": self.label,
            "confidence": self.confidence,
            "previous": self.previous,
        }


class StableLabel:
    """The label that held, with ``confidence >= min_confidence``, for ``frames`` frames in a row.

    :meth:`update` with each frame's result returns a :class:`Change` when that label
    changes (the first stable label is a change from None); a frame below the confidence
    breaks a run. "unknown" is a label like the others, whatever its frames' confidence
    (their top class's, below the model's threshold): ``frames`` unknown frames in a
    row make it stable, and a :class:`Change` to it gives the lowest of them.
    """

    def __init__(self, frames: int = 3, min_confidence: float = 0.5) -> None:
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise InputError(f"frames must be an integer of at least 1, got {frames!r:.20}")
        if isinstance(min_confidence, bool) or not (
            isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1
        ):
            raise InputError(f"min_confidence must be in 0..1, got {min_confidence!r:.20}")
        self.frames, self.min_confidence = frames, float(min_confidence)
        self.stable: str | None = None
        self._stable: tuple[str, bool] | None = None  # stable and whether it is unknown
        self._label: tuple[str, bool] | None = None  # the label of the current run, likewise
        self._run: deque[float] = deque(maxlen=frames)  # its last confidences

    def update(self, result: FrameResult) -> Change | None:
        """The change ``result`` completes, if any."""
        if result.confidence < self.min_confidence and not result.unknown:
            self._label = None
            self._run.clear()
            return None
        # A class named "unknown" is not the unknown label: runs are told apart by both.
        key = (result.label, result.unknown)
        if key != self._label:
            self._label = key
            self._run.clear()
        self._run.append(result.confidence)
        if len(self._run) < self.frames or key == self._stable:
            return None
        previous, self.stable, self._stable = self.stable, result.label, key
        return Change(result.index, result.time, result.label, min(self._run), previous)
