"""``load_classifier``: pick a backend for a model file and wrap it in a small, safe API."""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn._files import as_path, read_regular_file
from edgecnn.runtime import integrity
from edgecnn.runtime.backends import BACKENDS, Backend, candidates, suffixes
from edgecnn.runtime.contract import check_io
from edgecnn.runtime.errors import (
    MODEL_MAX_BYTES,
    BackendUnavailable,
    InputError,
    ModelError,
)
from edgecnn.runtime.images import is_image_source, load_image
from edgecnn.runtime.metadata import ModelMetadata, Sidecar, read_sidecar, resolve_metadata
from edgecnn.runtime.preprocess import softmax, to_batch

#: A probability row may miss 1 by this much (int8 outputs come in steps of 1/256).
_SUM_TOLERANCE = 0.02
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


def _sniff(data: bytes) -> str | None:
    """The format the bytes really are, where it can be told from their first bytes."""
    if data[4:8] == b"TFL3":
        return ".tflite"
    if data[:4] == b"PK\x03\x04":
        return ".npz"
    if data[:4] == b"\x7fELF":
        return ".so"
    if data[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe"):  # Mach-O, 64 and 32 bit
        return ".dylib"
    if data[:2] == b"MZ":
        return ".dll"
    return None


@dataclass(frozen=True)
class Classifier:
    """A loaded model: ``predict`` for probabilities, ``classify`` for labelled top-k.

    Safe to share between threads: every backend either is stateless, keeps one
    interpreter per thread, or (onnxruntime) is documented thread-safe.
    """

    path: Path
    backend_name: str
    metadata: ModelMetadata
    backend: Backend

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, in output order."""
        return self.metadata.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's shape, ``(height, width, channels)``: ``(28, 28, 1)`` by default."""
        return self.metadata.input_shape

    def predict(self, images: Any, invert: bool | None = None) -> np.ndarray:
        """Class probabilities, float32 ``(N, classes)``.

        ``images`` is a uint8 [0, 255] or float [0, 1] array of one or more images of
        :attr:`input_shape`, or a picture (path or encoded bytes), or a list of pictures.
        Pictures are greyscaled, resized and, for a light-on-dark model, inverted when
        dark-on-light (``invert`` forces it either way).

        Raises:
            InputError: the input cannot be images for this model.
            ModelError: the model computed NaN, infinity, or no probability distribution.
        """
        if (
            type(images) is np.ndarray
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
        return self._checked(outputs)

    def _checked(self, probs: np.ndarray) -> np.ndarray:
        """``probs``, once it is certain they are finite rows of probabilities."""
        low, high = 1 - _SUM_TOLERANCE, 1 + _SUM_TOLERANCE
        # Written so that NaN fails every comparison (a NaN makes its row's sum NaN).
        if len(probs) <= _SMALL_BATCH:
            # A few rows: Python over a list beats four numpy reductions (0.4 us against
            # 3 us, a fifth of an int8 inference).
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
        if type(images) is np.ndarray:  # the hot path: skip the picture checks
            return to_batch(images, self.input_shape)
        if is_image_source(images):
            images = self._picture(images, invert)
        elif isinstance(images, (list, tuple)) and images and all(map(is_image_source, images)):
            images = np.stack([self._picture(i, invert) for i in images])
        return to_batch(images, self.input_shape)

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
        k = _top_k(top_k, len(self.labels))
        batch = self._batch(image, invert)
        if len(batch) != 1:
            raise InputError(f"classify takes one image, got {len(batch)}; use predict")
        probs = self.predict(batch)[0]
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.labels[i], float(probs[i])) for i in order]


def _top_k(value: Any, classes: int) -> int:
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


def _library_in(path: Path) -> Path:
    """``exports/c`` stands for the C library compiled inside it; other paths as they are."""
    if path.is_dir():
        for suffix in (".so", ".dylib", ".dll"):
            library = path / f"libedgecnn_model{suffix}"
            if library.is_file():
                return library
        if (path / "model_data.cc").is_file():
            raise ModelError(
                f"{path} is a TensorFlow Lite Micro bundle, for firmware (its README.md says "
                "how); on this machine, load the .tflite file beside it"
            )
    return path


def _check_backend_name(backend: Any) -> str:
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ModelError(f"unknown backend {backend!r:.40}; choose auto, {', '.join(BACKENDS)}")
    return backend


def _check_format(path: Path, data: bytes, backend: str) -> tuple[str, ...]:
    """The backends to try for ``path``, after checking its name against its content."""
    suffix = path.suffix.lower()
    if suffix not in suffixes():
        raise ModelError(
            f"{path}: unknown model format {suffix or '(no suffix)'}; expected "
            f"{', '.join(suffixes())}"
        )
    actual = _sniff(data)
    if actual is not None and actual != suffix:
        raise ModelError(f"{path} is a {actual} file with a {suffix} name; rename it")
    if actual is None and suffix != ".onnx":
        raise ModelError(f"{path} is not a {suffix} file (unrecognised content)")
    names = candidates(suffix, backend)
    if not names:
        usable = " or ".join(candidates(suffix, "auto"))
        raise ModelError(f"the {backend} backend cannot run {suffix} files; use {usable}")
    return names


def _open_backend(
    path: Path, data: bytes, names: tuple[str, ...], threads: int | None
) -> tuple[str, Backend]:
    """The first backend of ``names`` that is installed, loaded with the model."""
    missing: BackendUnavailable | None = None
    for name in names:
        try:
            return name, BACKENDS[name].open(path, data, threads)
        except BackendUnavailable as e:
            missing = missing or e  # the first backend's install hint is the one to give
    assert missing is not None
    raise missing


def _check_bytes(data: bytes, path: Path, sidecar: Sidecar | None) -> bool:
    """Verify the digests a file's raw bytes carry, before any interpreter parses them.

    Some interpreters crash on damaged files (tflite-runtime on 32-bit ARM), so damage
    must be caught here. Returns whether the file holds its own ``content_sha256``.
    """
    if sidecar is not None and sidecar.file_sha256 is not None:
        integrity.check_file(data, sidecar.file_sha256, path, path.with_name(path.name + ".json"))
    return integrity.check_content(data, path)


def _check_records(path: Path, metadata: ModelMetadata, backend: Any, sealed: bool,
                   sidecar: Sidecar | None) -> None:  # fmt: skip
    """The integrity record the metadata promises must have been verified."""
    record = metadata.integrity
    if "weights_sha256" in record:
        verify = getattr(backend, "verify_weights", None)
        if verify is None:
            raise ModelError(f"{path}: records a weights digest its format cannot have")
        verify(record["weights_sha256"])
    elif "content_sha256" in record and not sealed and sidecar is None:
        raise ModelError(f"{path}: its metadata records a digest the file does not hold")


def _check_contract(path: Path, metadata: ModelMetadata, backend: Backend) -> None:
    """The model must be one this runtime runs, and its metadata must describe it."""
    problem = check_io(backend.input_shape, backend.num_classes)
    if problem:
        raise ModelError(f"{path}: the model's {problem}")
    if len(metadata.labels) != backend.num_classes:
        raise ModelError(
            f"{path}: the metadata names {len(metadata.labels)} labels for a model with "
            f"{backend.num_classes} outputs"
        )
    if tuple(metadata.input_shape) != tuple(backend.input_shape):
        raise ModelError(
            f"{path}: the metadata says input {metadata.input_shape}, the model takes "
            f"{backend.input_shape}"
        )


def load_classifier(
    path: str | os.PathLike[str] | bytes,
    backend: str = "auto",
    num_threads: int | None = None,
    check_integrity: bool = True,
) -> Classifier:
    """Load ``path`` (``.tflite``, ``.onnx`` or ``weights.npz``) with ``backend``.

    ``backend="auto"`` takes the first installed backend for the file's format: LiteRT,
    then tflite-runtime, for ``.tflite``; onnxruntime for ``.onnx``; numpy for ``.npz``
    (see :data:`~edgecnn.runtime.backends.BACKENDS` for every name).
    ``backend="openvino"`` runs ``.onnx`` and ``.tflite`` files on OpenVINO's CPU plugin
    (``edgecnn[openvino]``); ``auto`` never picks it.
    Files exported by edgecnn record their own SHA-256, and a file that no longer matches
    it is refused; ``check_integrity=False`` loads it anyway (for files edited on purpose).

    Raises:
        ModelError: missing, empty, damaged or corrupt file, an unknown or missing
            backend, or a model whose input or outputs this runtime does not support.
        InputError: ``path`` or ``num_threads`` is not of a usable type or value.
    """
    path = _library_in(as_path(path, InputError, "a model file"))
    backend = _check_backend_name(backend)
    threads = check_threads(num_threads)
    data = read_regular_file(path, MODEL_MAX_BYTES, ModelError, "a model file")
    names = _check_format(path, data, backend)
    sidecar = read_sidecar(path)
    sealed = _check_bytes(data, path, sidecar) if check_integrity else False
    name, loaded = _open_backend(path, data, names, threads)
    metadata = resolve_metadata(loaded.embedded_metadata, path, sidecar)
    if check_integrity:
        _check_records(path, metadata, loaded, sealed, sidecar)
    _check_contract(path, metadata, loaded)
    return Classifier(path=path, backend_name=name, metadata=metadata, backend=loaded)
