"""Raw camera frames (grey8, RGB888, RGB565) -> a model's input, as the generated C does it.

The C library's ``edgecnn_preprocess`` takes a frame as a microcontroller's camera
delivers it, rows of bytes with a stride, and crops it, converts it to the model's
channels, resizes and inverts it into the pixels ``edgecnn_classify`` takes.
:func:`preprocess_frame` computes the same bytes with numpy, for the same arguments, and
refuses what it refuses with the same error code, so that what a device will compute can
be checked or reproduced on a computer.

Each frame pixel is converted first (grey as Pillow's "L"), then the crop is resized by
an exact area average: each of the model's pixels is the mean of the frame pixels under
it, those cut by its edges counting for the part they cover, rounded half up. That is
integer arithmetic a microcontroller does cheaply; the runtime's picture path
(:func:`edgecnn.runtime.images.resize_array`) resamples with Lanczos instead, so the two
differ by a few levels here and there, and a model's answers agree on most frames but
not all (``bench/camera_frames.py`` measures how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecnn.runtime.contract import CHANNELS, DEFAULT_INPUT_SHAPE
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.frames import Crop, invert_choice
from edgecnn.runtime.images import LIGHT_BORDER, border_mean

#: ``EDGECNN_FRAME_*``: the layouts of a pixel in memory, and their codes in C.
FORMATS = {"grey8": 1, "rgb888": 2, "rgb565": 3, "rgb565_be": 4}
#: Bytes of one pixel of each format.
PIXEL_BYTES = {"grey8": 1, "rgb888": 3, "rgb565": 2, "rgb565_be": 2}
#: ``EDGECNN_INVERT_*``.
INVERT_CODES = {"no": 0, "yes": 1, "auto": 2}
#: ``EDGECNN_ERROR_*``: a bad argument, a bad frame size or stride, a crop outside the frame.
ERROR_ARGUMENT, ERROR_SIZE, ERROR_CROP = -1, -2, -3
#: The widest and tallest frame taken.
MAX_SIDE = 65535
#: Pillow's "L" conversion: ITU-R 601-2 luma in 16-bit fixed point.
LUMA = (19595, 38470, 7471)


class FrameError(InputError):
    """A frame ``edgecnn_preprocess`` refuses; ``code`` is its ``EDGECNN_ERROR_*`` value."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def preprocess_frame(
    frame: Any,
    frame_format: str,
    width: int,
    height: int,
    stride: int | None = None,
    crop: Crop | Sequence[int] | None = None,
    invert: str | bool | None = "auto",
    shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    light_on_dark: bool = True,
) -> np.ndarray:
    """The uint8 image of ``shape`` that ``edgecnn_preprocess`` makes of ``frame``.

    Args:
        frame: the frame's bytes (bytes, a buffer or a uint8 array, read as flat bytes):
            ``height`` rows of ``stride`` bytes, the last of which may end at its pixels.
        frame_format: one of :data:`FORMATS`.
        width: pixels per row.
        height: rows.
        stride: bytes from one row to the next; None for rows without padding.
        crop: ``(x, y, width, height)`` in pixels, or a :class:`Crop`; None (or
            ``Crop()``) for the largest centred square.
        invert: ``"auto"`` (a light-on-dark model inverts a frame whose resized border is
            brighter than mid-grey), ``"yes"``, ``"no"``, or None, True, False.
        shape: the model's input ``(height, width, channels)``, 1 or 3 channels.
        light_on_dark: whether the model takes light objects on a dark background.

    Raises:
        FrameError: what the C function refuses, with its error code; also a buffer
            shorter than the frame it is said to hold.
    """
    if frame_format not in FORMATS:
        raise FrameError(
            f"the frame format must be one of {', '.join(FORMATS)}, got {frame_format!r:.20}",
            ERROR_ARGUMENT,
        )
    try:
        inverted = invert_choice(invert)
    except InputError as e:
        raise FrameError(str(e), ERROR_ARGUMENT) from None
    if shape[2] not in CHANNELS:
        raise FrameError(f"a model takes 1 or 3 channels, not {shape[2]}", ERROR_ARGUMENT)
    size = PIXEL_BYTES[frame_format]
    stride = width * size if stride is None else stride
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise FrameError(
            f"a frame of {width}x{height}: each side must be 1..{MAX_SIDE}", ERROR_SIZE
        )
    if stride < width * size:
        raise FrameError(
            f"a stride of {stride} bytes is shorter than a row of {width} {frame_format} "
            f"pixels ({width * size} bytes)",
            ERROR_SIZE,
        )
    x, y, w, h = _region(crop, width, height)
    data = _flat_bytes(frame)
    needed = (height - 1) * stride + width * size
    if data.size < needed:
        raise FrameError(
            f"{width}x{height} {frame_format} pixels at a stride of {stride} take {needed:,} "
            f"bytes; the frame has {data.size:,}",
            ERROR_SIZE,
        )
    rows = np.lib.stride_tricks.as_strided(
        data[y * stride + x * size :], (h, w * size), (stride, 1), writeable=False
    )
    pixels = _area_mean(_model_channels(_channels(rows, frame_format), shape[2]), shape[:2])
    if inverted is None:
        inverted = light_on_dark and border_mean(pixels) > LIGHT_BORDER
    return 255 - pixels if inverted else pixels


def _flat_bytes(frame: Any) -> np.ndarray:
    """``frame`` as a flat uint8 array, without copying a contiguous one."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8:
            raise FrameError(f"a frame must be uint8 bytes, got {frame.dtype}", ERROR_ARGUMENT)
        return frame.reshape(-1)
    try:
        return np.frombuffer(frame, dtype=np.uint8)
    except (TypeError, ValueError):
        raise FrameError(
            f"a frame must be bytes or a uint8 array, got {type(frame).__name__}", ERROR_ARGUMENT
        ) from None


def _region(crop: Crop | Sequence[int] | None, width: int, height: int) -> tuple[int, ...]:
    """The crop's ``(x, y, width, height)``, once it is known to lie inside the frame."""
    box = crop.box if isinstance(crop, Crop) else crop
    if box is None:
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    x, y, w, h = (int(v) for v in box)
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
        raise FrameError(
            f"the crop {x},{y},{w},{h} is empty or does not fit in a {width}x{height} frame",
            ERROR_CROP,
        )
    return x, y, w, h


def _channels(rows: np.ndarray, frame_format: str) -> np.ndarray:
    """The crop's pixels as ``(h, w, 1)`` grey or ``(h, w, 3)`` RGB, 8 bits each."""
    h = rows.shape[0]
    if frame_format == "grey8":
        return rows[:, :, np.newaxis]
    if frame_format == "rgb888":
        return rows.reshape(h, -1, 3)
    pairs = rows.reshape(h, -1, 2).astype(np.uint32)
    high, low = (1, 0) if frame_format == "rgb565" else (0, 1)
    word = pairs[:, :, high] << 8 | pairs[:, :, low]
    r, g, b = word >> 11, (word >> 5) & 63, word & 31
    # 5 and 6 bits widened by repeating their top bits, so that 0 -> 0 and full -> 255.
    rgb = np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)], axis=-1)
    return rgb.astype(np.uint8)


def area_weights(size: int, source: int) -> np.ndarray:
    """``(size, source)`` weights: how much of source pixel j lies under output pixel i.

    In units of ``1 / size`` of a source pixel, so every weight is a whole number and each
    row adds up to ``source``.
    """
    i = np.arange(size, dtype=np.int64)[:, np.newaxis]
    j = np.arange(source, dtype=np.int64)[np.newaxis, :]
    low = np.maximum(j * size, i * source)
    high = np.minimum((j + 1) * size, (i + 1) * source)
    weights: np.ndarray = np.maximum(high - low, 0)
    return weights


def _area_mean(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` ``(h, w, n)`` resized to ``size`` ``(height, width)`` by exact area means.

    A band of rows at a time, in int64 (sums stay below 2^40), so a large frame never
    becomes one full-size int64 copy.
    """
    h, w, n = pixels.shape
    across, down = area_weights(size[1], w), area_weights(size[0], h)
    total = np.zeros((size[0], size[1], n), dtype=np.int64)
    band = max(1, (1 << 18) // max(w * n, 1))
    for top in range(0, h, band):
        part = pixels[top : top + band].astype(np.int64)
        rows = np.einsum("yxn,ox->yon", part, across)  # each row shrunk across
        total += np.einsum("py,yon->pon", down[:, top : top + band], rows)
    count = w * h
    means: np.ndarray = ((total + count // 2) // count).astype(np.uint8)
    return means


def _model_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Grey or RGB ``pixels`` in the model's ``channels``: Pillow's "L", or grey repeated."""
    if pixels.shape[2] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    r, g, b = (pixels[:, :, i].astype(np.uint32) for i in range(3))
    grey = (r * LUMA[0] + g * LUMA[1] + b * LUMA[2] + 0x8000) >> 16
    return grey.astype(np.uint8)[:, :, np.newaxis]
