"""``.onnx`` models on onnxruntime's CPU execution provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.backends import INTERPRETERS, default_threads, in_chunks
from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.metadata import METADATA_KEY
from edgecnn.runtime.onnx_scan import MalformedProtobuf, uses_external_data
from edgecnn.runtime.preprocess import as_float

# Large batches run in chunks: onnxruntime would otherwise allocate every intermediate
# tensor for the whole batch (gigabytes for a folder of pictures).
MAX_CHUNK = 256


def import_onnxruntime() -> Any:
    """onnxruntime, or BackendUnavailable saying what to install."""
    return INTERPRETERS["onnxruntime"].load("onnxruntime")


def _first_line(error: Exception, default: str) -> str:
    return ((str(error).strip().splitlines() or [default])[0])[:200]


def open_backend(path: Path, data: bytes, threads: int | None = None) -> OnnxBackend:
    """An :class:`OnnxBackend` (the registry's factory)."""
    return OnnxBackend(path, data, threads)


class OnnxBackend:
    """Runs an ONNX model; ``InferenceSession.run`` is safe to call from many threads."""

    name = "onnxruntime"

    def __init__(self, path: Path, data: bytes, num_threads: int | None = None) -> None:
        ort = import_onnxruntime()
        self.path = path
        try:
            external = uses_external_data(data)
        except MalformedProtobuf as e:
            raise ModelError(f"{path}: not a valid ONNX model ({e})") from None
        if external:
            raise ModelError(
                f"{path}: a tensor keeps its data in another file (ONNX external data); "
                "edgecnn never writes such models and refuses to read files they name"
            )
        options = ort.SessionOptions()
        # Chosen here rather than left to onnxruntime (one per physical core), so that
        # every backend reports the threads it really uses.
        self.threads = num_threads or default_threads()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: warnings go to stderr otherwise
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise ModelError(
                f"{path}: not a valid ONNX model ({_first_line(e, 'unreadable')})"
            ) from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}"
            )
        shape, output = tuple(inputs[0].shape), tuple(outputs[0].shape)
        sizes = [*shape[1:], *output[1:]]
        if len(shape) != 4 or len(output) != 2 or not all(isinstance(d, int) for d in sizes):
            raise ModelError(
                f"{path}: model maps shape {shape} to {output}; expected images "
                "(N, height, width, channels) to scores (N, classes)"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"{path}: model input type is {inputs[0].type}, expected float")
        self.input_shape: tuple[int, int, int] = (shape[1], shape[2], shape[3])
        self.num_classes = int(output[1])
        self._input_name, self._output_names = inputs[0].name, [outputs[0].name]
        try:
            self.embedded_metadata = self._session.get_modelmeta().custom_metadata_map.get(
                METADATA_KEY
            )
        except (UnicodeDecodeError, RuntimeError) as e:
            raise ModelError(f"{path}: unreadable model metadata ({e})") from None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(N, classes)`` for a batch of uint8 or [0, 1] float images."""
        return in_chunks(self._run, x, MAX_CHUNK)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            result: np.ndarray = self._session.run(
                self._output_names, {self._input_name: as_float(x)}
            )[0]
        except Exception as e:  # onnxruntime's own exception types; the model is at fault
            raise ModelError(
                f"{self.path}: onnxruntime cannot run this model ({_first_line(e, 'failed')})"
            ) from None
        return result if result.dtype == np.float32 else result.astype(np.float32)

    def raw_runner(self, batch: np.ndarray) -> Callable[[], object]:
        """The same work on the bare session: the uint8 ``batch`` to float, then ``run``."""
        session, name = self._session, self._input_name
        return lambda: session.run(None, {name: batch.astype(np.float32) / np.float32(255)})[0]
