"""Label-preserving augmentation that leaves the architecture unchanged: shifts and flips."""

from __future__ import annotations

import numpy as np


def augment(x: np.ndarray, rng: np.random.Generator, shift: int, flip: bool) -> np.ndarray:
    """Return a randomly shifted (up to ``shift`` pixels each way) and flipped copy of ``x``.

    ``x`` is ``(N, H, W, C)``. Shifts fill with zeros, the background of (Fashion-)MNIST.
    Horizontal flips suit clothing, not digits; the caller decides.
    """
    n, h, w = x.shape[:3]
    if flip:  # a random half of the images, mirrored left to right
        mirrored = np.less(rng.random(n), 0.5)
        x = np.where(mirrored[:, None, None, None], x[:, :, ::-1], x)
    if shift:
        padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
        dy = rng.integers(0, 2 * shift + 1, n)
        dx = rng.integers(0, 2 * shift + 1, n)
        out = np.empty_like(x)
        # One slice per offset pair rather than per image: 25 vectorised copies for shift 2.
        for oy in range(2 * shift + 1):
            for ox in range(2 * shift + 1):
                idx = np.flatnonzero((dy == oy) & (dx == ox))
                out[idx] = padded[idx, oy : oy + h, ox : ox + w]
        x = out
    return x
