"""Batches and threads: classify many images fast, and share one classifier safely.

    python examples/batch_and_threads.py runs/latest/exports/model_int8.tflite images.npy

``images.npy`` holds N uint8 images of the model's input size (``classifier.input_shape``,
28x28 for Fashion-MNIST), as the model's training data was.
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgecnn.runtime import load_classifier


def main(model_path: str, images_path: str) -> int:
    """Classify every image as one batch, then one by one from 4 threads; compare."""
    images = np.load(images_path)  # (N, height, width) or (N, height, width, 3) uint8
    # One interpreter thread each: the app's own threads are the parallelism here.
    classifier = load_classifier(model_path, num_threads=1)

    start = time.perf_counter()
    batch = classifier.predict(images)  # (N, classes) probabilities, one call
    batch_s = time.perf_counter() - start

    # A Classifier may be shared: each thread gets its own interpreter behind the scenes.
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        singles = np.concatenate(list(pool.map(classifier.predict, images[:, None])))
    threads_s = time.perf_counter() - start

    same = np.array_equal(batch.argmax(1), singles.argmax(1))
    print(
        f"{len(images)} images: one batch {batch_s * 1e3:.1f} ms, one at a time from 4 threads "
        f"{threads_s * 1e3:.1f} ms; same answers: {same}"
    )
    # "unknown" where the calibrated top probability is below the file's fitted threshold.
    best, unknown = batch.argmax(1)[:5], classifier.unknown(batch)
    labels = ["unknown" if unknown[k] else classifier.labels[i] for k, i in enumerate(best)]
    print(f"first five: {', '.join(labels)}; unknown: {unknown.sum()} of {len(batch)}")
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
