"""A folder of pictures to train on: 12 classes of coloured shapes, drawn here.

    python examples/shapes.py pictures/          # pictures/<class>/*.png, 190 per class
    python examples/shapes.py shapes.npz         # the same as arrays: x_train, y_train, ...

Each picture is a red, green or blue circle, square, triangle or cross on a grey
background, 32x32 pixels, placed and sized at random: colour decides the class as much
as shape does, so train with ``--channels 3``. A stand-in for your own pictures, and the
layout edgecnn reads: one sub-folder per class, named as the class. Needs Pillow only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 70, 220)}
#: Class names, "red circle" to "blue cross".
CLASSES = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)


def draw_shape(shape: str, colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A 32x32 RGB picture of one coloured shape on a grey background, placed at random."""
    background = tuple(int(v) for v in rng.integers(90, 140, 3))
    picture = Image.new("RGB", (32, 32), background)
    draw = ImageDraw.Draw(picture)
    size = int(rng.integers(12, 20))
    x, y = (int(v) for v in rng.integers(2, 30 - size, 2))
    box = (x, y, x + size, y + size)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=colour)
    else:
        third = size // 3
        draw.rectangle((x + third, y, x + 2 * third, y + size), fill=colour)
        draw.rectangle((x, y + third, x + size, y + 2 * third), fill=colour)
    return np.asarray(picture)


def draw_set(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` pictures of every class: uint8 ``(N, 32, 32, 3)`` and class indices."""
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        colour, shape = name.split()
        for _ in range(per_class):
            images.append(draw_shape(shape, COLOURS[colour], rng))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.uint8)


def write_folder(root: Path, per_class: int = 190, seed: int = 3) -> Path:
    """``root/<class>/<n>.png``; edgecnn holds out a test and a validation share itself."""
    images, labels = draw_set(per_class, np.random.default_rng(seed))
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def write_npz(path: Path, per_class: int = 150, test_per_class: int = 40, seed: int = 3) -> Path:
    """``x_train, y_train, x_test, y_test`` and ``class_names`` in one ``.npz``."""
    rng = np.random.default_rng(seed)
    x_train, y_train = draw_set(per_class, rng)
    x_test, y_test = draw_set(test_per_class, rng)
    np.savez(
        path,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=np.array(CLASSES),
    )
    return path


def main(target: str) -> int:
    """Write the folder (or ``.npz``) ``target`` names."""
    path = Path(target)
    if path.suffix == ".npz":
        write_npz(path)
        print(f"wrote {path}: {len(CLASSES)} classes of 32x32 colour pictures")
    else:
        if path.exists() and any(path.iterdir()):
            print(f"{path} is not empty; give a new folder", file=sys.stderr)
            return 2
        write_folder(path)
        print(f"wrote {path}/<class>/*.png: {len(CLASSES)} classes of 32x32 colour pictures")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
