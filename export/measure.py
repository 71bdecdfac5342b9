"""Measure an exported file through edgecnn.runtime, exactly as a user would run it.

What the file is judged by is :mod:`edgecnn.runtime.gate`: the same comparison and the
same gate on a device (``edgecnn verify``) as here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import ConfigError
from edgecnn.runtime import Classifier, load_classifier
from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.confidence import MIN_FIT_IMAGES, Confidence, fit
from edgecnn.runtime.errors import BackendUnavailable
from edgecnn.runtime.gate import Scores, compare


@dataclass(frozen=True)
class Measured:
    """A file run on the export's images: its scores against Keras, where, how fast."""

    scores: Scores
    backend: str
    latency_us: float
    #: The file's probabilities on every image.
    probs: np.ndarray


def single_image_latency_us(classifier: Classifier, image: np.ndarray, runs: int = 200) -> float:
    """Median wall time of ``classifier.predict`` on one image, in microseconds."""
    for _ in range(20):
        classifier.predict(image)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        classifier.predict(image)
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6)


def verify_file(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray,
    backend: str = "auto",
) -> Measured:
    """Classify uint8 ``images`` with the runtime, exactly as a user would.

    ``labels`` are those of the first images (the test split); see
    :func:`edgecnn.runtime.gate.compare`. ``backend`` is the runtime's choice unless named.
    The file's raw outputs are compared (its temperature is not applied): the gate proves
    the conversion, against the Keras model's own probabilities.
    """
    classifier = load_classifier(path, backend=backend, calibrated=False)
    probs = classifier.predict(images)
    latency = single_image_latency_us(classifier, images[:1])
    return Measured(compare(probs, reference, labels), classifier.backend_name, latency, probs)


def check_runtimes(names: tuple[str, ...]) -> None:
    """Every backend of ``--verify-with`` must be installed, before any work starts.

    Raises:
        ConfigError: one is not, saying what to install.
    """
    for name in names:
        try:
            BACKENDS[name].check_installed()
        except BackendUnavailable as e:
            raise ConfigError(f"--verify-with {name}: {e}") from None


def runtimes_for(path: Path, names: tuple[str, ...], verified_by: str) -> tuple[str, ...]:
    """The backends of ``names`` that run ``path``'s format, but for the one that did."""
    suffix = path.suffix.lower()
    return tuple(n for n in names if suffix in BACKENDS[n].suffixes and n != verified_by)


def fit_confidence(
    path: Path, images: np.ndarray, labels: np.ndarray, backend: str = "auto"
) -> Confidence | None:
    """``path``'s temperature and "unknown" threshold, fitted on its own raw outputs.

    ``images`` and ``labels`` are the validation split; None when it holds fewer than
    :data:`~edgecnn.runtime.confidence.MIN_FIT_IMAGES` pictures (the file is then left
    uncalibrated).
    """
    if len(labels) < MIN_FIT_IMAGES:
        return None
    classifier = load_classifier(path, backend=backend, calibrated=False, check_integrity=False)
    return fit(classifier.predict(images), labels)
