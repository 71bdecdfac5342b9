"""The generated C library (``edgecnn export --formats c``), compiled for this machine.

``exports/c/libedgecnn_model.so`` is the exporter's host build of ``edgecnn_model.c``,
the same code a microcontroller runs, with the model's metadata compiled in. It is called
through ``ctypes`` (standard library): no interpreter at all. Each call runs one image
with its own work buffer, the library keeps no state, and ctypes releases the GIL while C
runs, so threads classify in parallel.

A shared library is code: loading one runs whatever it holds (its constructors run at
load, before any check of its symbols) with the user's privileges. So it is loaded only
when asked for by name (``backend="c"``, ``--backend c``; ``auto`` never picks it), and
only when ``<library>.json``, the sidecar its export wrote, records the SHA-256 of exactly
these bytes: checked before the loader sees them, whatever ``check_integrity`` says. The
digest proves the library is the one exported, not that it is harmless: load libraries
you exported yourself.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.errors import InputError, ModelError
from edgecnn.runtime.metadata import read_sidecar, sidecar_path
from edgecnn.runtime.preprocess import (
    Quantization,
    as_float,
    dequantize_table,
    pixel_table,
    quantize,
    softmax,
)

#: The host library's name, less its platform's suffix: said once, in the backend's entry.
LIBRARY_STEM = BACKENDS["c"].folder_stem or ""
_POINTER = ctypes.c_void_p


def open_backend(path: Path, data: bytes, threads: int | None = None) -> CBackend:
    """A :class:`CBackend` of ``data`` once its sidecar vouches for it; ``threads`` does not apply.

    Raises:
        ModelError: no sidecar, or one that records no SHA-256 or another one than
            ``data``'s; nothing was loaded.
    """
    check_sealed(path, data)
    return CBackend(path, data)


def check_sealed(path: Path, data: bytes) -> None:
    """``data`` must be the bytes whose SHA-256 ``path``'s sidecar records.

    This is the one check that stands between a file and running it as code, so no
    option turns it off.

    Raises:
        ModelError: it is not (saying what to do).
    """
    sidecar = sidecar_path(path)
    advice = (
        "a C library is code that runs with your privileges, so it is loaded only when the "
        "sidecar its export wrote vouches for these bytes (--no-integrity-check does not "
        "apply to code); export it again with 'edgecnn export RUN --formats c'"
    )
    recorded = read_sidecar(path)
    if recorded is None:
        raise ModelError(f"{path}: no {sidecar.name} beside it records its SHA-256; {advice}")
    if recorded.file_sha256 is None:
        raise ModelError(f"{path}: {sidecar.name} records no SHA-256 of it; {advice}")
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), recorded.file_sha256):
        raise ModelError(
            f"{path}: its SHA-256 differs from the one {sidecar.name} records (damaged, "
            f"replaced or edited); {advice}"
        )


def _private_copy(data: bytes, digest: str, suffix: str) -> Path:
    """``data`` in a new file of its own, named by its digest, for the loader.

    The loader gets exactly the bytes that were read once and hashed, never the user's
    path again: a library swapped in after the check cannot be what runs. The copy sits
    in a fresh directory from ``mkdtemp`` (mode 0700, owned by this user), so no other
    user can replace it between this write and ``dlopen``. (The loader also reuses a
    library already loaded from the same path; a fresh name loads a new export anew.)
    """
    try:
        folder = Path(tempfile.mkdtemp(prefix="edgecnn-c-"))
    except OSError as e:
        raise ModelError(f"cannot copy the library for loading: {e.strerror or e}") from None
    copy = folder / f"{LIBRARY_STEM}-{digest[:16]}{suffix}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(copy, flags, 0o600), "wb") as out:
            out.write(data)
    except OSError as e:  # a full or read-only temporary folder: said, and nothing left
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelError(f"cannot copy the library for loading: {e.strerror or e}") from None
    return copy


def _symbol(library: Any, name: str, ctype: Any, path: Path) -> Any:
    try:
        return ctype.in_dll(library, name)
    except ValueError:
        raise ModelError(f"{path}: not an edgecnn C library (it has no {name})") from None


class CBackend:
    """Runs the generated C library; stateless, so one instance serves every thread.

    The constructor loads the bytes it is given (or ``path``'s) without asking: it is the
    low-level step behind :func:`open_backend`, which checks the sidecar first and is
    what :func:`~edgecnn.runtime.load_classifier` calls. ``file_sha256`` is the SHA-256
    of exactly the bytes loaded, for checks that must be about what runs (``verify``).
    """

    name = "c"
    threads = 1  # one inference runs on the calling thread

    def __init__(self, path: Path, data: bytes | None = None) -> None:
        blob = path.read_bytes() if data is None else data
        self.file_sha256 = hashlib.sha256(blob).hexdigest()
        copy = _private_copy(blob, self.file_sha256, path.suffix)
        try:
            library = ctypes.CDLL(str(copy))
        except OSError as e:
            raise ModelError(f"{path}: cannot load the library ({str(e)[:200]})") from None
        finally:
            # Once mapped, the file is not needed (Windows keeps it until exit).
            shutil.rmtree(copy.parent, ignore_errors=True)
        self.path = path
        dims = list(_symbol(library, "edgecnn_dims", ctypes.c_int32 * 5, path))
        quantization = list(_symbol(library, "edgecnn_quantization", ctypes.c_float * 4, path))
        height, width, channels, classes, work = (int(d) for d in dims)
        if min(height, width, channels, classes, work) <= 0:
            raise ModelError(f"{path}: impossible dimensions {dims}")
        self.input_shape: tuple[int, int, int] = (height, width, channels)
        self.num_classes = classes
        self.work_bytes = work
        self.input_quantization = Quantization(quantization[0], int(quantization[1]))
        self.output_quantization = Quantization(quantization[2], int(quantization[3]))
        self._code_values = dequantize_table(self.output_quantization)
        try:  # libraries from edgecnn 0.x before it have scores only
            logits = list((ctypes.c_float * 2).in_dll(library, "edgecnn_logits_quantization"))
        except ValueError:
            logits = None
        self.logits_quantization = (
            Quantization(logits[0], int(logits[1])) if logits and logits[0] > 0 else None
        )
        try:
            text = ctypes.c_char_p.in_dll(library, "edgecnn_metadata_json").value
            self.embedded_metadata = text.decode("utf-8") if text else None
        except (ValueError, UnicodeDecodeError):
            self.embedded_metadata = None
        # Libraries from edgecnn before calibration have no edgecnn_answer.
        self._answer = getattr(library, "edgecnn_answer", None)
        if self._answer is not None:
            self._answer.restype = ctypes.c_int
            self._answer.argtypes = [_POINTER, _POINTER, _POINTER]
        self._classify = library.edgecnn_classify
        self._infer = library.edgecnn_infer
        for function in (self._classify, self._infer):
            function.restype = ctypes.c_int
        self._classify.argtypes = [_POINTER, _POINTER, _POINTER]
        self._infer.argtypes = [_POINTER, _POINTER, _POINTER, _POINTER]
        self._library = library  # keeps the library loaded as long as the backend lives

    def _rows(self, x: np.ndarray, dtype: Any) -> np.ndarray:
        """``x`` as contiguous rows of one image each, its shape checked first.

        C would read past a smaller image without noticing.
        """
        x = np.asarray(x)
        size = int(np.prod(self.input_shape))
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != size:
            raise InputError(
                f"the C library takes images of {'x'.join(map(str, self.input_shape))} "
                f"({size} values each), got an array of shape {x.shape}"
            )
        return np.ascontiguousarray(x, dtype=dtype).reshape(len(x), size)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The int8 scores ``(N, classes)`` of a uint8 or [0, 1] float batch."""
        x = np.asarray(x)
        n = len(x)
        out = np.empty((n, self.num_classes), dtype=np.int8)
        work = ctypes.create_string_buffer(self.work_bytes)
        if x.dtype == np.uint8:
            images = self._rows(x, np.uint8)
            for i in range(n):
                self._classify(images[i].ctypes.data, work, out[i].ctypes.data)
        else:
            codes = self._rows(quantize(as_float(x), self.input_quantization), np.int8)
            for i in range(n):
                self._infer(codes[i].ctypes.data, work, None, out[i].ctypes.data)
        return out

    def answers(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``edgecnn_answer`` on each image of the uint8 batch ``x``: the C library's own.

        Returns its calibrated probabilities ``(N, classes)`` and answers ``(N,)``: a class,
        or ``EDGECNN_UNKNOWN`` (-1) under the threshold compiled in.

        Raises:
            ModelError: a library generated before edgecnn_answer existed.
            InputError: pixels that are not uint8, or not of the model's shape.
        """
        if self._answer is None:
            raise ModelError(f"{self.path}: no edgecnn_answer (export it again)")
        if np.asarray(x).dtype != np.uint8:
            raise InputError(f"edgecnn_answer takes uint8 pixels, got {np.asarray(x).dtype}")
        images = self._rows(x, np.uint8)
        probabilities = np.empty((len(images), self.num_classes), dtype=np.float32)
        answers = np.empty(len(images), dtype=np.int64)
        work = ctypes.create_string_buffer(self.work_bytes)
        for i in range(len(images)):
            answers[i] = self._answer(images[i].ctypes.data, work, probabilities[i].ctypes.data)
        return probabilities, answers

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The int8 scores that feed the softmax, for a batch of int8 model inputs."""
        codes = self._rows(x, np.int8)
        n = len(codes)
        out = np.empty((n, self.num_classes), dtype=np.int8)
        scores = np.empty(self.num_classes, dtype=np.int8)
        work = ctypes.create_string_buffer(self.work_bytes)
        for i in range(n):
            self._infer(codes[i].ctypes.data, work, out[i].ctypes.data, scores.ctypes.data)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, classes)``: the softmax of the library's int8 logits.

        The library's own int8 scores come in steps of 1/256, so the runners-up of a sure
        answer are all 0 and their order says nothing; the logits keep it (far more often
        in the float model's order: docs/benchmarks.md, "C library logits"). The top
        class is the scores' one except where two scores tie and their logits do not.
        """
        if self.logits_quantization is None:
            y = self._code_values[self.scores(x).view(np.uint8)]
            y /= y.sum(axis=1, keepdims=True)
            return y
        x = np.asarray(x)
        if x.dtype == np.uint8:
            codes = pixel_table(self.input_quantization)[self._rows(x, np.uint8)]
        else:
            codes = quantize(as_float(x), self.input_quantization)
        q = self.logits_quantization
        logits = q.scale * (self.logits(codes).astype(np.float32) - q.zero_point)
        return softmax(logits)

    def raw_runner(self, batch: np.ndarray) -> Callable[[], object]:
        """``edgecnn_classify`` on each image of the uint8 ``batch``: the library's own API."""
        images = self._rows(batch, np.uint8)
        pointers = [images[i].ctypes.data for i in range(len(images))]
        out = np.empty(self.num_classes, dtype=np.int8)
        work = ctypes.create_string_buffer(self.work_bytes)
        classify, scores = self._classify, out.ctypes.data

        def run() -> None:
            for pointer in pointers:
                classify(pointer, work, scores)

        return run
