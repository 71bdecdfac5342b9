"""``load_classifier``: pick a backend for a model file and wrap it in a small, safe API."""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn._files import as_path, read_regular_file
from edgecnn.runtime.backends import BACKENDS, Backend
from edgecnn.runtime.confidence import UNKNOWN, calibrate, check_probability, rejected
from edgecnn.runtime.errors import MODEL_MAX_BYTES, InputError, ModelError
from edgecnn.runtime.images import is_image_source, load_image
from edgecnn.runtime.loading import (
    SUM_TOLERANCE,
    check_backend_name,
    check_bytes,
    check_contract,
    check_format,
    check_output_kind,
    check_records,
    describe,
    generic_metadata,
    library_in,
    open_backend,
)
from edgecnn.runtime.metadata import ModelMetadata, read_sidecar
from edgecnn.runtime.preprocess import softmax, to_batch

#: Up to this many rows, outputs are checked in Python rather than with numpy reductions.
_SMALL_BATCH = 4


#: How many classes ``classify`` lists when not told.
DEFAULT_TOP_K = 3


def max_threads() -> int:
    """The most interpreter threads a model may be given: 4 per core, at most 64.

    More threads than that only slow this small network down; far more crash
    interpreters or stall the machine.
    """
    return min(64, 4 * (os.cpu_count() or 1))


def check_threads(value: Any, what: str = "num_threads") -> int | None:
    """``value`` as a thread count in 1..:func:`max_threads`, or None (the backend's choice).

    Raises:
        InputError: not an integer, or out of range.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be an integer, got {type(value).__name__} {value!r:.20}")
    cap = max_threads()
    if not 1 <= value <= cap:
        raise InputError(f"{what} must be in 1..{cap} (4 per CPU core, at most 64), got {value}")
    return int(value)


@dataclass(frozen=True)
class Classifier:
    """A loaded model: ``predict`` for probabilities, ``classify`` for labelled top-k.

    Safe to share between threads: every backend either is stateless, keeps one
    interpreter per thread, or (onnxruntime) is documented thread-safe.

    ``generic_labels`` is True for a file without edgecnn metadata: its classes are then
    named ``class_0`` .. ``class_<n-1>`` after its outputs, and its input taken from the
    model itself.

    ``temperature`` is applied to every output (1.0: the model's raw probabilities);
    ``reject_below`` is the least top probability a picture needs not to be "unknown"
    (None: never). :func:`load_classifier` takes both from the file's metadata.
    """

    path: Path
    backend_name: str
    metadata: ModelMetadata
    backend: Backend
    generic_labels: bool = False
    temperature: float = 1.0
    reject_below: float | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, in output order."""
        return self.metadata.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's shape, ``(height, width, channels)``: ``(28, 28, 1)`` by default."""
        return self.metadata.input_shape

    def predict(self, images: Any, invert: bool | None = None) -> np.ndarray:
        """Class probabilities, float32 ``(N, classes)``, calibrated by :attr:`temperature`.

        ``images`` is a uint8 [0, 255] or float [0, 1] array of one or more images of
        :attr:`input_shape`, or a picture (path or encoded bytes), or a list of pictures.
        Pictures are greyscaled, resized and, for a light-on-dark model, inverted when
        dark-on-light (``invert`` forces it either way). Arrays are taken as they are
        unless ``invert=True`` (uint8 ``255 - x``, float ``1 - x``).

        Raises:
            InputError: the input cannot be images for this model.
            ModelError: the model computed NaN, infinity, or no probability distribution.
        """
        if (
            (invert is None or invert is False)
            and type(images) is np.ndarray
            and images.dtype == np.uint8
            and images.shape[1:] == self.metadata.input_shape
            and len(images)
        ):
            batch = images  # the hot path: a uint8 batch, passed on as it is
        else:
            batch = self._batch(images, invert)
        outputs = self.backend.predict(batch)
        if self.metadata.output_kind == "logits":
            outputs = softmax(outputs)
        probs = self._checked(outputs)
        return probs if self.temperature == 1.0 else calibrate(probs, self.temperature)

    def unknown(self, probs: np.ndarray) -> np.ndarray:
        """Which rows of :meth:`predict`'s ``probs`` are "unknown" (bool ``(N,)``)."""
        return rejected(probs, self.reject_below)

    def _checked(self, probs: np.ndarray) -> np.ndarray:
        """``probs``, once it is certain they are finite rows of probabilities."""
        low, high = 1 - SUM_TOLERANCE, 1 + SUM_TOLERANCE
        # Written so that NaN fails every comparison (a NaN makes its row's sum NaN).
        if len(probs) <= _SMALL_BATCH:
            # A few rows: Python over a list beats four numpy reductions, whose cost is a
            # noticeable part of an int8 inference (docs/benchmarks.md, "probability check").
            for row in probs.tolist():
                if not (low <= sum(row) <= high and min(row) >= 0):
                    break
            else:
                return probs
        else:
            sums = probs.sum(axis=1)
            if sums.min() >= low and sums.max() <= high and probs.min() >= 0:
                return probs
        if not np.isfinite(probs).all():
            raise ModelError(
                f"{self.path}: the model computed NaN or infinity; the file is damaged"
            )
        sums = probs.sum(axis=1)
        raise ModelError(
            f"{self.path}: the model's outputs are not probabilities (rows sum to "
            f"{sums.min():.3g}..{sums.max():.3g}, smallest {probs.min():.3g}); a model that "
            'ends at logits must say so in its metadata ("output": {"kind": "logits"})'
        )

    def _batch(self, images: Any, invert: bool | None) -> np.ndarray:
        if not (invert is None or isinstance(invert, (bool, np.bool_))):
            raise InputError(f"invert must be True, False or None, got {invert!r:.20}")
        if type(images) is np.ndarray:  # the hot path: skip the picture checks
            batch = to_batch(images, self.input_shape)
        elif is_image_source(images):
            return to_batch(self._picture(images, invert), self.input_shape)
        elif isinstance(images, (list, tuple)) and images and all(map(is_image_source, images)):
            pictures = np.stack([self._picture(i, invert) for i in images])
            return to_batch(pictures, self.input_shape)
        else:
            batch = to_batch(images, self.input_shape)
        if invert:  # pictures were inverted as they were read; arrays only on request
            return np.invert(batch) if batch.dtype == np.uint8 else 1 - batch  # ~x is 255 - x
        return batch

    def _picture(self, source: Any, invert: bool | None) -> np.ndarray:
        height, _, channels = self.input_shape
        return load_image(
            source,
            invert,
            side=height,
            light_on_dark=self.metadata.light_on_dark,
            channels=channels,
        )

    def classify(
        self, image: Any, top_k: int | None = None, invert: bool | None = None
    ) -> list[tuple[str, float]]:
        """The ``top_k`` most likely labels of one image, most likely first.

        ``top_k`` defaults to :data:`DEFAULT_TOP_K`, or every class of a model with fewer.

        Raises:
            InputError: ``top_k`` is not an integer in 1..classes, or not one image.
        """
        k = top_k_count(top_k, len(self.labels))
        batch = self._batch(image, invert)
        if len(batch) != 1:
            raise InputError(f"classify takes one image, got {len(batch)}; use predict")
        probs = self.predict(batch)[0]
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.labels[i], float(probs[i])) for i in order]

    def answer(self, image: Any, top_k: int | None = None, invert: bool | None = None) -> Answer:
        """One image's answer: its label, or "unknown" when the model is not sure enough.

        The top class is reported whatever the label (:attr:`Answer.top_label`).

        Raises:
            InputError: as :meth:`classify`.
        """
        ranked = self.classify(image, top_k, invert)
        top_label, confidence = ranked[0]
        unknown = self.reject_below is not None and confidence < np.float32(self.reject_below)
        return Answer(UNKNOWN if unknown else top_label, top_label, confidence, unknown, ranked)


@dataclass(frozen=True)
class Answer:
    """What :meth:`Classifier.answer` says of one image.

    ``label`` is ``top_label`` or, when ``unknown``, the string ``"unknown"`` (a class
    of that name is told apart by ``unknown``). ``top_k`` lists (label, probability)
    pairs, most likely first.
    """

    label: str
    top_label: str
    confidence: float
    unknown: bool
    top_k: list[tuple[str, float]]


def top_k_count(value: Any, classes: int) -> int:
    """``value`` as a count of classes to list; None is :data:`DEFAULT_TOP_K`, at most ``classes``.

    Raises:
        InputError: not an integer in 1..``classes``.
    """
    if value is None:
        return min(DEFAULT_TOP_K, classes)
    if isinstance(value, bool):
        value = None  # True is not 1
    try:
        k = operator.index(value)
    except TypeError:
        raise InputError(
            f"top_k must be an integer, got {type(value).__name__} {value!r:.20}"
        ) from None
    if not 1 <= k <= classes:
        raise InputError(f"top_k must be in 1..{classes}, got {k}")
    return k


def load_classifier(
    path: str | os.PathLike[str] | bytes,
    backend: str = "auto",
    num_threads: int | None = None,
    check_integrity: bool = True,
    calibrated: bool = True,
    reject: bool | float = True,
) -> Classifier:
    """Load ``path`` (``.tflite``, ``.onnx`` or ``weights.npz``) with ``backend``.

    ``backend="auto"`` takes the first installed backend for the file's format: LiteRT,
    then tflite-runtime, for ``.tflite``; onnxruntime for ``.onnx``; numpy for ``.npz``
    (see :data:`~edgecnn.runtime.backends.BACKENDS` for every name).
    ``backend="openvino"`` runs ``.onnx`` and ``.tflite`` files on OpenVINO's CPU plugin
    (``edgecnn[openvino]``); ``auto`` never picks it. ``backend="c"`` loads the exported
    C library (``exports/c`` or its ``libedgecnn_model.so``): a library is code that runs
    with your privileges, so ``auto`` never picks it, and it loads only when its sidecar
    records the SHA-256 of its exact bytes, whatever ``check_integrity`` says.
    Files exported by edgecnn record their own SHA-256, and a file that no longer matches
    it, or whose metadata lost its integrity record, is refused; ``check_integrity=False``
    loads it anyway (for files edited on purpose). A file without edgecnn metadata is
    described by the model itself: its input, and classes ``class_0`` .. ``class_<n-1>``
    (:attr:`Classifier.generic_labels`).

    Probabilities are calibrated with the temperature the file's metadata holds
    (``calibrated=False``: the model's raw outputs). ``reject=True`` answers "unknown"
    below the file's fitted threshold (none for a file without one), ``False`` never, a
    number in 0..1 below that probability (:meth:`Classifier.answer`,
    :meth:`Classifier.unknown`).

    Raises:
        ModelError: missing, empty, damaged or corrupt file, an unknown or missing
            backend, a native library under ``auto`` or without its sealed sidecar, a
            model whose input or outputs this runtime does not support, or metadata that
            says logits on outputs that are already probabilities.
        InputError: ``path``, ``num_threads`` or ``reject`` is not of a usable type or
            value.
    """
    threshold = _threshold_option(reject)
    path = library_in(as_path(path, InputError, "a model file"))
    backend = check_backend_name(backend)
    threads = check_threads(num_threads)
    data = read_regular_file(path, MODEL_MAX_BYTES, ModelError, "a model file")
    names = check_format(path, data, backend)
    sidecar = read_sidecar(path)
    # Native code has its own check, which no option lifts (backends/c.py).
    native = BACKENDS[names[0]].native
    sealed = check_bytes(data, path, sidecar) if check_integrity and not native else False
    name, loaded = open_backend(path, data, names, threads)
    described = describe(path, loaded, sidecar)
    if described is not None and check_integrity:
        check_records(path, described, loaded, sealed, sidecar)
    metadata = generic_metadata(loaded) if described is None else described
    check_contract(path, metadata, loaded)
    check_output_kind(path, metadata, loaded)
    confidence = metadata.confidence
    temperature = confidence.temperature if confidence and calibrated else 1.0
    if threshold is True:
        # A threshold fitted on calibrated probabilities means nothing on raw ones.
        threshold = confidence.reject_below if confidence and calibrated else None
    return Classifier(path, name, metadata, loaded, described is None, temperature, threshold)


def _threshold_option(reject: object) -> float | None | bool:
    """``reject`` checked: True (the file's own threshold), None (never), or 0..1."""
    if reject is True:
        return True
    if reject is False or reject is None:
        return None
    try:
        return check_probability(reject, "reject")
    except ModelError:
        raise InputError(
            f"reject must be True, False or a probability in 0..1, got {reject!r:.20}"
        ) from None
