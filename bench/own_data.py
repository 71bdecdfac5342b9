"""Own data: how fast a folder of pictures loads, how fast it trains, how well it does.

Three datasets, all made here from real Fashion-MNIST images or drawn shapes, each
trained by ``edgecnn.trainer.train`` as ``edgecnn train --data`` would:

* ``fashion folder``: all 70,000 Fashion-MNIST images as PNG files in ``train/<class>/``
  and ``test/<class>/`` folders, as a user with their own 60,000 pictures would have;
* ``test folder``: the image folder of the tests (5,000 real images as PNG and JPEG,
  some colour, some 56x56, four classes renamed with spaces and non-ASCII characters);
* ``colour npz``: ``examples/shapes.py``'s 12 classes of 32x32x3 coloured shapes in an ``.npz``;

and, beside them, Fashion-MNIST from its IDX files, the tutorial's path, so that the
folder's training speed is compared with the same images from arrays in one run.

Loading is timed from the folder scan to the arrays the network takes (decoding,
resizing, colour conversion, the split and its checks, duplicate digests), twice: the
first load also pays for the decoders' imports. The files were just written, so both
read them from the page cache; a cold disk adds its read time (70,000 PNGs are 30 MB).

    python bench/own_data.py [--epochs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecnn.pipeline.environment import cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "examples")]
from own_data import write_folder  # noqa: E402  (the tests' datasets)
from shapes import write_npz  # noqa: E402


def write_fashion_folder(root: Path) -> Path:
    """Fashion-MNIST's 60,000 training and 10,000 test images as PNG class folders."""
    from PIL import Image

    from edgecnn.trainer.idx import LABELS, load_arrays

    if (root / "done").exists():
        return root
    (x_train, y_train, x_test, y_test), _ = load_arrays("fashion")
    labels = [name.replace("/", " or ") for name in LABELS["fashion"]]
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for label in labels:
            (root / split / label).mkdir(parents=True, exist_ok=True)
        for i, (image, y) in enumerate(zip(xs, ys, strict=True)):
            Image.fromarray(image).save(root / split / labels[y] / f"{i:05d}.png")
    (root / "done").touch()
    return root


def write_test_folder(root: Path) -> Path:
    """The tests' folder dataset: the first 5,000 Fashion-MNIST test images."""
    from edgecnn.trainer.idx import load_arrays

    if not root.exists():
        (_, _, x_test, y_test), _ = load_arrays("fashion")
        write_folder(root, x_test[:5000], y_test[:5000])
    return root


def timed_load(config, repeat: int) -> tuple[list[float], int, object]:
    """Seconds for each of ``repeat`` loads, the pictures per load, and the data."""
    from edgecnn.trainer import training_data

    seconds, data = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        # The progress bar goes to stderr, as a user sees it on the terminal.
        data = training_data.load(config, stream=sys.stderr)
        seconds.append(time.perf_counter() - started)
    assert data is not None
    count = len(data.x_train) + len(data.x_val) + len(data.x_test)
    return seconds, count, data


def train_once(config, out: Path) -> dict:
    """Train ``config`` to ``out``: seconds per epoch (first excluded) and test accuracy."""
    from edgecnn.trainer.train import train

    started = time.perf_counter()
    result = train(config, out, stream=io.StringIO())
    total = time.perf_counter() - started
    epochs = [row["seconds"] for row in result.history if "seconds" in row]
    steady = epochs[1:] or epochs
    return {
        "s_per_epoch": float(np.median(steady)) if steady else total / config.epochs,
        "accuracy": result.metrics["test_accuracy"],
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="Epochs for the Fashion runs.")
    parser.add_argument("--keep", type=Path, help="Keep (and reuse) the written datasets here.")
    args = parser.parse_args()

    from edgecnn.trainer.config import ModelConfig, TrainConfig
    from edgecnn.trainer.training_data import sized

    work = args.keep or Path(tempfile.mkdtemp(prefix="edgecnn-own-data-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{cpu_model()}, {os.cpu_count()} cores; datasets in {work}", flush=True)
    print("writing the datasets (not timed) ...", flush=True)
    fashion = write_fashion_folder(work / "fashion")
    folder = write_test_folder(work / "test-folder")
    colour = work / "shapes.npz"
    if not colour.exists():
        write_npz(colour)

    runs = {
        "fashion folder": (
            sized(TrainConfig(data=str(fashion), epochs=args.epochs)),
            2,
        ),
        "test folder": (
            sized(TrainConfig(data=str(folder), epochs=10, batch_size=32), image_size=28),
            2,
        ),
        "colour npz": (
            sized(TrainConfig(data=str(colour), epochs=30, batch_size=32), channels=3),
            2,
        ),
        "fashion IDX": (
            TrainConfig(epochs=args.epochs, model=ModelConfig()),
            1,
        ),
    }
    rows = []
    for name, (config, repeat) in runs.items():
        print(f"\n{name}: loading ...", flush=True)
        seconds, count, data = timed_load(config, repeat)
        print(f"{name}: training {config.epochs} epochs ...", flush=True)
        runs_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
        trained = train_once(config, runs_dir)
        rows.append((name, count, seconds, data, config, trained))

    print(f"\n{'dataset':15s} {'pictures':>9s} {'shape':>9s} {'classes':>7s} "
          f"{'load 1st':>10s} {'load 2nd':>10s} {'img/s 2nd':>11s} "
          f"{'s/epoch':>8s} {'epochs':>6s} {'test acc':>8s}")  # fmt: skip
    for name, count, seconds, data, config, trained in rows:
        shape = "x".join(map(str, data.image_shape))
        warm = min(seconds[1:] or seconds)
        print(f"{name:15s} {count:9,d} {shape:>9s} {len(data.labels):7d} "
              f"{seconds[0]:9.1f}s {warm:9.1f}s {count / warm:11,.0f} "
              f"{trained['s_per_epoch']:7.1f}s {config.epochs:6d} "
              f"{100 * trained['accuracy']:7.2f}%")  # fmt: skip
    by_name = {row[0]: row for row in rows}
    folder_epoch = by_name["fashion folder"][5]["s_per_epoch"]
    idx_epoch = by_name["fashion IDX"][5]["s_per_epoch"]
    cold, warm = by_name["fashion folder"][2][0], min(by_name["fashion folder"][2])
    print(f"\nfashion folder / IDX, s per epoch: {folder_epoch / idx_epoch:.2f}x "
          "(the same 55,000 training images, from PNG files or from arrays)")  # fmt: skip
    print(f"loading the 70,000 PNGs: {cold:.1f}s first, {warm:.1f}s again; "
          f"{warm / folder_epoch:.1f} epochs' worth of training time")  # fmt: skip


if __name__ == "__main__":
    main()
