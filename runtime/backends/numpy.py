"""The network in plain numpy, for devices with no interpreter wheel (32-bit Raspberry Pi OS).

It reads ``weights.npz`` as written by ``edgecnn export``:

========================  ============================  ==================================
key                       shape (defaults)              meaning
========================  ============================  ==================================
``conv1.kernel``          (5, 5, C, 16)                 height, width, in, out (HWIO)
``conv1.bias``            (16,)
``conv2.kernel``          (5, 5, 16, 36)                HWIO
``conv2.bias``            (36,)
``fc1.kernel``            (H/4 * W/4 * 36, 128)         rows in NHWC flatten order
``fc1.bias``              (128,)
``logits.kernel``         (128, classes)
``logits.bias``           (classes,)
``input_shape``           (3,) int                      (H, W, C) of one image
``metadata``              0-d string                    the model's JSON metadata
========================  ============================  ==================================

The weights are float32; H x W x C is 28x28x1 for the tutorial's Fashion-MNIST, and
``input_shape`` (absent from files of edgecnn 0.1, which were all 28x28x1) says it.
Convolutions use 'same' padding and stride 1; pooling is 2x2 max with stride 2, followed
by ReLU, exactly as the Keras model.

The archive is read member by member, each ``.npy`` header checked against the size the
zip directory declares before anything is allocated, so a damaged or hostile file is a
:class:`ModelError`, never a memory error.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecnn.runtime import integrity
from edgecnn.runtime.contract import DEFAULT_INPUT_SHAPE
from edgecnn.runtime.errors import MODEL_MAX_BYTES, ModelError
from edgecnn.runtime.npy import ARCHIVE_ERRORS, NpyError, read_member
from edgecnn.runtime.preprocess import as_float, softmax

WEIGHT_KEYS = (
    "conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias",
    "fc1.kernel", "fc1.bias", "logits.kernel", "logits.bias",
)  # fmt: skip
# im2col of conv2 grows with the batch; chunks keep a large batch's peak memory flat
# (docs/benchmarks.md, "numpy backend memory").
MAX_CHUNK = 128
#: Weights larger than this (in absolute value) are damage, not training.
MAX_WEIGHT = 1e6


def _conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'same' convolution, stride 1, NHWC input and HWIO kernel, as im2col + one matmul."""
    kh, kw, cin, cout = kernel.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2  # TensorFlow puts the odd pixel bottom/right
    xp = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    n, h, w = x.shape[:3]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    # (n, h, w, cin, kh, kw) -> (n, h, w, kh, kw, cin) to match the HWIO kernel's row order.
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, kh * kw * cin)
    out: np.ndarray = (cols @ kernel.reshape(-1, cout) + bias).reshape(n, h, w, cout)
    return out


def _pool_relu(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    pooled = x[:, : 2 * h2, : 2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))
    relu: np.ndarray = np.maximum(pooled, 0, out=pooled)
    return relu


def read_weights(
    data: bytes, path: Path
) -> tuple[dict[str, np.ndarray], tuple[int, ...] | None, str | None]:
    """The float32 weight arrays, the input shape and the metadata of a ``weights.npz``.

    Raises:
        ModelError: not a readable archive, missing or non-float arrays, damaged members.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            missing = [k for k in WEIGHT_KEYS if f"{k}.npy" not in members]
            if missing:
                raise ModelError(
                    f"{path}: not an edgecnn weights file (missing {', '.join(missing)})"
                )
            declared = sum(members[f"{k}.npy"].file_size for k in WEIGHT_KEYS)
            if declared > MODEL_MAX_BYTES:
                raise ModelError(f"{path}: its arrays claim {declared:,} bytes; not a weights file")
            weights = {}
            for key in WEIGHT_KEYS:
                info = members[f"{key}.npy"]
                with archive.open(info) as stream:
                    array = read_member(stream, info.file_size, MODEL_MAX_BYTES // 4)
                with np.errstate(over="ignore"):  # 1e300 becomes inf, refused below
                    weights[key] = array.astype(np.float32)
            shape = None
            if "input_shape.npy" in members:
                info = members["input_shape.npy"]
                with archive.open(info) as stream:
                    shape = tuple(int(d) for d in read_member(stream, info.file_size, 3, "ui"))
            metadata = None
            if "metadata.npy" in members:
                info = members["metadata.npy"]
                with archive.open(info) as stream:
                    metadata = str(read_member(stream, info.file_size, 1, kinds="U"))
    except ModelError:
        raise
    except NpyError as e:
        raise ModelError(f"{path}: a weight array is damaged ({e})") from None
    except ARCHIVE_ERRORS as e:
        raise ModelError(f"{path}: not a readable weights.npz ({type(e).__name__}: {e})") from None
    return weights, shape, metadata


def open_backend(path: Path, data: bytes, threads: int | None = None) -> NumpyBackend:
    """A :class:`NumpyBackend` (the registry's factory); numpy's BLAS picks its own threads."""
    return NumpyBackend(path, data)


class NumpyBackend:
    """Runs ``weights.npz`` with numpy alone; stateless, so safe from any number of threads."""

    name = "numpy"

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.threads: int | None = None  # numpy's BLAS decides
        self._w, shape, self.embedded_metadata = read_weights(data, path)
        self._check_values()
        self.input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE
        if shape is not None:
            if len(shape) != 3:
                raise ModelError(f"{path}: input_shape {shape} is not (height, width, channels)")
            self.input_shape = (shape[0], shape[1], shape[2])
        self._check_shapes()
        self.num_classes = int(self._w["logits.bias"].shape[0])

    def _check_values(self) -> None:
        for key, array in self._w.items():
            if not np.isfinite(array).all():
                raise ModelError(f"{self.path}: {key} holds NaN or infinity; the file is damaged")
            if array.size and float(np.abs(array).max()) > MAX_WEIGHT:
                raise ModelError(
                    f"{self.path}: {key} holds values above {MAX_WEIGHT:g}; the file is damaged"
                )

    def _check_shapes(self) -> None:
        w = self._w
        height, width, channels = self.input_shape
        k1, k2 = w["conv1.kernel"], w["conv2.kernel"]
        ok = k1.ndim == 4 and k2.ndim == 4 and w["fc1.kernel"].ndim == 2
        ok = ok and w["logits.kernel"].ndim == 2
        ok = ok and k1.shape[2] == channels and k2.shape[2] == k1.shape[3]
        if ok:
            fc_in = (height // 4) * (width // 4) * k2.shape[3]  # two 2x2 pools
            fc_out, classes = w["logits.kernel"].shape
            expected = {
                "conv1.bias": (k1.shape[3],), "conv2.bias": (k2.shape[3],),
                "fc1.kernel": (fc_in, fc_out), "fc1.bias": (fc_out,),
                "logits.bias": (classes,),
            }  # fmt: skip
            ok = all(w[k].shape == shape for k, shape in expected.items())
        if not ok:
            shapes = ", ".join(f"{k} {w[k].shape}" for k in WEIGHT_KEYS)
            raise ModelError(
                f"{self.path}: weights do not form the edgecnn network for "
                f"{height}x{width}x{channels} images ({shapes})"
            )

    def verify_weights(self, expected: str) -> None:
        """Compare the weights with the digest recorded in the metadata.

        Raises:
            ModelError: they differ.
        """
        integrity.check_weights(self._w, WEIGHT_KEYS, expected, self.path)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` for float32 ``(N, H, W, C)`` images."""
        w = self._w
        h = _pool_relu(_conv_same(x, w["conv1.kernel"], w["conv1.bias"]))
        h = _pool_relu(_conv_same(h, w["conv2.kernel"], w["conv2.bias"]))
        h = np.maximum(h.reshape(len(x), -1) @ w["fc1.kernel"] + w["fc1.bias"], 0)
        logits: np.ndarray = h @ w["logits.kernel"] + w["logits.bias"]
        return logits

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, classes)`` for a batch of uint8 or [0, 1] float images."""
        return np.concatenate(
            [
                softmax(self.logits(as_float(x[i : i + MAX_CHUNK])))
                for i in range(0, len(x), MAX_CHUNK)
            ]
        )

    def raw_runner(self, batch: np.ndarray) -> Callable[[], object]:
        """The network's numpy code on the uint8 ``batch``, in one piece, with no checks."""
        return lambda: softmax(self.logits(as_float(batch)))
