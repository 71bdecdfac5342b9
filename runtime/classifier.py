"""``load_classifier``: pick a backend for a model file and wrap it in a small, safe API."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.errors import InputError, ModelError, read_file
from edgecnn.runtime.images import is_image_source, load_image
from edgecnn.runtime.metadata import ModelMetadata
from edgecnn.runtime.preprocess import to_batch


def _litert(path: Path, data: bytes, threads: int | None) -> Any:
    from edgecnn.runtime.litert import LiteRTBackend

    return LiteRTBackend(path, data, threads, module="litert")


def _tflite(path: Path, data: bytes, threads: int | None) -> Any:
    from edgecnn.runtime.litert import LiteRTBackend

    return LiteRTBackend(path, data, threads, module="tflite")


def _onnxruntime(path: Path, data: bytes, threads: int | None) -> Any:
    from edgecnn.runtime.onnx_backend import OnnxBackend

    return OnnxBackend(path, data, threads)


def _numpy(path: Path, data: bytes, threads: int | None) -> Any:
    from edgecnn.runtime.numpy_backend import NumpyBackend

    return NumpyBackend(path, data, threads)


#: Backends by name. Each module is imported only when chosen.
BACKENDS: dict[str, Callable[[Path, bytes, int | None], Any]] = {
    "litert": _litert,
    "tflite": _tflite,
    "onnxruntime": _onnxruntime,
    "numpy": _numpy,
}
#: Which backends can run which file, in the order ``backend="auto"`` tries them.
SUFFIXES: dict[str, tuple[str, ...]] = {
    ".tflite": ("litert", "tflite"),
    ".onnx": ("onnxruntime",),
    ".npz": ("numpy",),
}


def _sniff(data: bytes) -> str | None:
    """The format the bytes really are, where it can be told from their first bytes."""
    if data[4:8] == b"TFL3":
        return ".tflite"
    if data[:4] == b"PK\x03\x04":
        return ".npz"
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
    _backend: Any

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, in output order."""
        return self.metadata.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's shape, ``(28, 28, 1)``, NHWC."""
        return self.metadata.input_shape

    def predict(self, images: Any, invert: bool | None = None) -> np.ndarray:
        """Class probabilities, float32 ``(N, 10)``.

        ``images`` is a uint8 [0, 255] or float [0, 1] array of one or more 28x28 images,
        or a picture (path or encoded bytes), or a list of pictures. Pictures are
        greyscaled, resized and, if dark-on-light, inverted (``invert`` forces it).

        Raises:
            InputError: the input cannot be images for this model.
        """
        return self._backend.predict(self._batch(images, invert))

    def _batch(self, images: Any, invert: bool | None) -> np.ndarray:
        if type(images) is np.ndarray:  # the hot path: skip the picture checks
            return to_batch(images)
        if is_image_source(images):
            images = load_image(images, invert)
        elif isinstance(images, (list, tuple)) and images and all(map(is_image_source, images)):
            images = np.stack([load_image(i, invert) for i in images])
        return to_batch(images)

    def classify(
        self, image: Any, top_k: int = 3, invert: bool | None = None
    ) -> list[tuple[str, float]]:
        """The ``top_k`` most likely labels of one image, most likely first."""
        if not 1 <= top_k <= len(self.labels):
            raise InputError(f"top_k must be in 1..{len(self.labels)}, got {top_k}")
        batch = self._batch(image, invert)
        if len(batch) != 1:
            raise InputError(f"classify takes one image, got {len(batch)}; use predict")
        probs = self._backend.predict(batch)[0]
        order = np.argsort(-probs, kind="stable")[:top_k]
        return [(self.labels[i], float(probs[i])) for i in order]


def load_classifier(
    path: str | os.PathLike[str], backend: str = "auto", num_threads: int | None = None
) -> Classifier:
    """Load ``path`` (``.tflite``, ``.onnx`` or ``weights.npz``) with ``backend``.

    ``backend="auto"`` takes the first installed backend for the file's format: LiteRT,
    then tflite-runtime, for ``.tflite``; onnxruntime for ``.onnx``; numpy for ``.npz``.

    Raises:
        ModelError: missing, empty or corrupt file, an unknown or missing backend, or a
            model that does not take 28x28x1 images.
    """
    path = Path(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if num_threads is not None and num_threads < 1:
        raise ModelError(f"num_threads must be at least 1, got {num_threads}")
    data = read_file(path, ModelError, "a model file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelError(
            f"{path}: unknown model format {suffix or '(no suffix)'}; expected "
            f"{', '.join(SUFFIXES)}"
        )
    actual = _sniff(data)
    if actual is not None and actual != suffix:
        raise ModelError(f"{path} is a {actual} file with a {suffix} name; rename it")
    if actual is None and suffix != ".onnx":
        raise ModelError(f"{path} is not a {suffix} file (unrecognised content)")
    candidates = SUFFIXES[suffix] if backend == "auto" else (backend,)
    if backend != "auto" and backend not in SUFFIXES[suffix]:
        raise ModelError(
            f"the {backend} backend cannot run {suffix} files; use {' or '.join(SUFFIXES[suffix])}"
        )
    error: ModelError | None = None
    for name in candidates:
        try:
            loaded = BACKENDS[name](path, data, num_threads)
        except ModelError as e:
            if "pip install" not in str(e):
                raise  # the file is bad, not the backend missing: no point trying another
            error = error or e
            continue
        return Classifier(path=path, backend_name=name, metadata=loaded.metadata, _backend=loaded)
    assert error is not None
    raise error
