"""A checked-in tiny model with a temperature and an "unknown" threshold, fitted for real.

The files in ``tests/data/tiny`` predate calibration; the fast tests of ``predict``,
``serve`` and the frame classifier need a file that has both. The tiny ``weights.npz``'s
own outputs on real Fashion-MNIST test images are fitted as the exporter fits a file's
validation outputs (:func:`edgecnn.runtime.confidence.fit`), and the result embedded
with the numpy format's ``with_metadata``: numpy only, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared import TINY

#: Images the temperature and threshold are fitted on: the test set's first ones.
FIT_IMAGES = 2000


def calibrated_npz(folder: Path, images, labels) -> Path:
    """``folder/weights.npz``: the tiny numpy model with a fitted ``confidence`` record."""
    from edgecnn.export.formats.numpy import with_metadata
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.confidence import fit

    source = TINY / "weights.npz"
    raw = load_classifier(source, calibrated=False)
    confidence = fit(raw.predict(images[:FIT_IMAGES]), labels[:FIT_IMAGES])
    meta = dataclasses.replace(raw.metadata, confidence=confidence)
    data, _ = with_metadata(source.read_bytes(), meta)
    path = folder / "weights.npz"
    path.write_bytes(data)
    return path
