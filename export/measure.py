"""The verification gate: run an exported file through edgecnn.runtime and compare with Keras."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConfigError
from edgecnn.runtime import load_classifier
from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.errors import BackendUnavailable


def compare(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, its change against the reference in points, top-1 agreement, max |dp|.

    ``labels`` belong to the first ``len(labels)`` rows (the test images); accuracy is
    measured on those, agreement and the largest difference on every row, since they
    compare the file with the reference and need no labels. Also the accuracy per true
    class (in class order), which shows where quantization moved the answers even when
    the total barely changed.
    """
    pred, ref_pred = probs.argmax(axis=1), reference.argmax(axis=1)
    tested, ref_tested = pred[: len(labels)], ref_pred[: len(labels)]
    accuracy = float(np.mean(tested == labels))
    reference_accuracy = float(np.mean(ref_tested == labels))
    classes = probs.shape[1]
    correct = np.bincount(labels[tested == labels], minlength=classes)
    totals = np.maximum(np.bincount(labels, minlength=classes), 1)
    return {
        "accuracy": accuracy,
        "reference_accuracy": reference_accuracy,
        "delta_pp": 100 * (accuracy - reference_accuracy),
        "agreement": float(np.mean(pred == ref_pred)),
        "agreement_images": int(len(pred)),
        "max_prob_diff": float(np.abs(probs - reference).max()),
        "per_class_accuracy": (correct / totals).tolist(),
    }


def single_image_latency_us(classifier: Any, image: np.ndarray, runs: int = 200) -> float:
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
) -> tuple[dict[str, Any], np.ndarray]:
    """Classify uint8 ``images`` with the runtime, exactly as a user would.

    ``labels`` are those of the first images (the test split); see :func:`compare`.
    ``backend`` is the runtime's choice unless named. Returns the report row's
    measurements and the file's probabilities.
    """
    classifier = load_classifier(path, backend=backend)
    probs = classifier.predict(images)
    row = {
        **compare(probs, reference, labels),
        "backend": classifier.backend_name,
        "latency_us": single_image_latency_us(classifier, images[:1]),
    }
    return row, probs


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
