"""Videos the tests make with Debian's ffmpeg: real Fashion-MNIST pictures, each held for
several frames, centred in 640x480 frames, in H.264 (MP4, MKV) and MJPEG (AVI).

Each picture is scaled 17x (476 pixels) with nearest-neighbour and centred, so the
default centre-square crop (480x480) holds it with a 2-pixel margin.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

WIDTH, HEIGHT, RATE = 640, 480, 30
SCALE = 17
CODECS = {
    ".mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast"],
    ".mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast"],
    ".avi": ["-c:v", "mjpeg", "-q:v", "2"],
}


@dataclass(frozen=True)
class Video:
    path: Path
    pictures: np.ndarray  # (N, 28, 28) uint8, in the order shown
    hold: int  # frames each picture is shown

    def picture_of(self, frame: int) -> int:
        """Which picture frame number ``frame`` shows."""
        return frame // self.hold


def frame_of(picture: np.ndarray, background: int = 0) -> np.ndarray:
    """One 640x480 RGB frame with ``picture`` (28x28 greyscale) enlarged in its centre."""
    big = np.kron(picture, np.ones((SCALE, SCALE), np.uint8))
    frame = np.full((HEIGHT, WIDTH), background, np.uint8)
    side = 28 * SCALE
    top, left = (HEIGHT - side) // 2, (WIDTH - side) // 2
    frame[top : top + side, left : left + side] = big
    return np.repeat(frame[:, :, np.newaxis], 3, axis=2)


def make_video(
    path: Path, pictures: np.ndarray, hold: int = 10, dark_on_light: bool = False
) -> Video:
    """Write ``pictures`` as a video at ``path`` (codec from its suffix), ``hold`` frames each.

    ``dark_on_light`` inverts every frame (dark clothes on white, as a camera sees them).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is missing: run 'apt-get install ffmpeg' (tools/bootstrap.sh does)",
                    pytrace=False)  # fmt: skip
    frames = [frame_of(p) for p in pictures]
    raw = b"".join((255 - f if dark_on_light else f).tobytes() for f in frames for _ in range(hold))
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{WIDTH}x{HEIGHT}", "-r", str(RATE), "-i", "-", *CODECS[path.suffix], str(path)],
        input=raw, check=True,
    )  # fmt: skip
    return Video(path, pictures, hold)


def distinct_pictures(
    classifier, images: np.ndarray, labels: np.ndarray, count: int, confidence: float
) -> tuple[np.ndarray, list[str]]:
    """``count`` of ``images`` of distinct classes ``classifier`` gets right with ``confidence``.

    Returns the pictures and their label names, in the order found.
    """
    probs = classifier.predict(images[..., np.newaxis])
    good = (probs.argmax(axis=1) == labels) & (probs.max(axis=1) >= confidence)
    picked: list[int] = []
    for i in np.flatnonzero(good):
        if labels[i] not in {labels[j] for j in picked}:
            picked.append(int(i))
        if len(picked) == count:
            break
    assert len(picked) == count
    return images[picked], [classifier.labels[labels[i]] for i in picked]
