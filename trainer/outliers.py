"""Synthetic outliers for outlier exposure: pictures that are none of the classes.

A network trained only on its classes answers anything with confidence: noise, a blank
picture, a photo of something else. Outlier exposure (Hendrycks et al., 2019) adds
pictures of no class to training with a uniform target (the cross-entropy to the uniform
distribution), so that the network learns to spread its probability over them; the
calibrated top probability then tells them apart (edgecnn.runtime.confidence).

No outlier data set is downloaded: the outliers are made from the training pictures
and from nothing, in four families, none of them a picture of the classes:

* the training pictures' pixels in a random order (their brightness, no shape);
* their quarters, cut into a 4x4 grid of tiles and shuffled (parts, out of place);
* smooth random fields: noise drawn on a coarse grid of 2 to 14 cells a side and
  resized to the picture, at a random brightness range;
* lines, ellipses and rectangles drawn at random.

What the benchmark measures "unknown" on (uniform noise, blank and inverted pictures,
font-drawn letters and digits, held-out classes) is none of these: bench/confidence.py.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

#: The families, in the order their numbers are drawn.
FAMILIES = ("shuffled pixels", "shuffled tiles", "smooth noise", "shapes")
_GRID = 4  # tiles a side
_CELLS = (2, 3, 4, 7, 14)  # a smooth field's coarse grid


def make_outliers(images: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` outlier pictures shaped like ``images`` (uint8 ``(N, H, W[, C])``).

    Deterministic for a given ``rng`` state.
    """
    if images.ndim == 3:  # greyscale without a channel axis
        return make_outliers(images[..., None], count, rng)[..., 0]
    n, height, width, channels = images.shape
    out = np.empty((count, height, width, channels), np.uint8)
    if count == 0:
        return out
    family = rng.integers(0, len(FAMILIES), count)
    sources = images[rng.integers(0, n, count)]
    for i in range(count):
        kind = family[i]
        if kind == 0:
            flat = sources[i].reshape(height * width, channels)
            out[i] = flat[rng.permutation(height * width)].reshape(height, width, channels)
        elif kind == 1:
            out[i] = _shuffled_tiles(sources[i], rng)
        elif kind == 2:
            out[i] = _smooth_noise(height, width, channels, rng)
        else:
            out[i] = _shapes(height, width, channels, rng)
    return out


def _shuffled_tiles(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width, channels = image.shape
    th, tw = height // _GRID, width // _GRID
    picture: np.ndarray = image.copy()
    tiles = (
        image[: th * _GRID, : tw * _GRID]
        .reshape(_GRID, th, _GRID, tw, channels)
        .transpose(0, 2, 1, 3, 4)
        .reshape(_GRID * _GRID, th, tw, channels)
    )[rng.permutation(_GRID * _GRID)]
    picture[: th * _GRID, : tw * _GRID] = (
        tiles.reshape(_GRID, _GRID, th, tw, channels)
        .transpose(0, 2, 1, 3, 4)
        .reshape(th * _GRID, tw * _GRID, channels)
    )
    return picture


def _smooth_noise(height: int, width: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    cells = int(rng.choice(_CELLS))
    low, high = np.sort(rng.random(2))
    planes = []
    for _ in range(channels):
        coarse = Image.fromarray(rng.integers(0, 256, (cells, cells), dtype=np.uint8))
        field = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), np.float32)
        planes.append(np.round(255 * low + (high - low) * field).astype(np.uint8))
    field_planes: np.ndarray = np.stack(planes, axis=-1)
    return field_planes


def _shapes(height: int, width: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    picture = Image.new(mode, (width, height), 0)
    draw = ImageDraw.Draw(picture)
    scale = max(1, min(height, width) // 28)
    for _ in range(int(rng.integers(1, 5))):
        shade = tuple(int(v) for v in rng.integers(80, 256, channels))
        fill = shade[0] if channels == 1 else shade
        xs = rng.integers(2, max(3, width - 2), 4)
        ys = rng.integers(2, max(3, height - 2), 4)
        line_width = int(rng.integers(1, 4)) * scale
        kind = rng.integers(0, 3)
        if kind == 0:
            points = [(int(x), int(y)) for x, y in zip(xs[: rng.integers(2, 5)], ys, strict=False)]
            draw.line(points, fill=fill, width=line_width)
        else:
            box = (int(min(xs[:2])), int(min(ys[:2])), int(max(xs[:2])) + 1, int(max(ys[:2])) + 1)
            shape = draw.ellipse if kind == 1 else draw.rectangle
            shape(box, outline=fill, width=line_width)
    array = np.asarray(picture, np.uint8)
    return array.reshape(height, width, channels)
