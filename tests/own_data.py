"""Small datasets of the user's kind, written by the tests from real Fashion-MNIST images.

``write_folder`` makes an image folder: PNG and JPEG files, four classes renamed to words
with spaces and non-ASCII characters, some pictures in colour, some larger than 28x28.
The colour ``.npz`` of 12 classes of drawn shapes is ``examples/shapes.py``'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.runtime.labels import FASHION_MNIST_LABELS

#: Folder names: four classes renamed as a user would name them.
RENAMED = {
    0: "t-shirt top",
    3: "robe d'été",
    5: "Sandale (Ø)",
    9: "ankle boot — high",
}


def folder_name(label: int) -> str:
    """The class folder of a Fashion-MNIST label."""
    return RENAMED.get(label, FASHION_MNIST_LABELS[label].replace("/", " or "))


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> Path:
    """``root/<class>/<n>.png|.jpg``: a mix of formats, modes and sizes."""
    rng = np.random.default_rng(seed)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / folder_name(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        kind = rng.integers(0, 4)
        if kind == 1:  # colour, as a phone would save it
            picture = picture.convert("RGB")
        elif kind == 2:  # larger than the model's input
            picture = picture.resize((56, 56), Image.Resampling.BICUBIC)
        if rng.random() < 0.3:
            picture.convert("RGB").save(folder / f"{i:05d}.jpg", quality=95)
        else:
            picture.save(folder / f"{i:05d}.png")
    return root
