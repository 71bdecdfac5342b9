"""``.onnx`` and ``.tflite`` models on OpenVINO's CPU plugin; chosen only by name.

OpenVINO compiles the model for the CPU it runs on (oneDNN kernels, VNNI for int8 where
the CPU has it), the fastest engine for large int8 batches on x86. It is an independent
implementation of both formats, which also makes it a second opinion on exported files.
"""

from __future__ import annotations

import io
import re
import tempfile
import threading
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.backends import INTERPRETERS, default_threads, in_chunks
from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.metadata import METADATA_KEY, Quantization
from edgecnn.runtime.onnx_scan import MalformedProtobuf, read_onnx_metadata, uses_external_data
from edgecnn.runtime.preprocess import bare_conversions, dequantize_table, pixel_table, quantize
from edgecnn.runtime.tflite_metadata import read_tflite_io_quantization, read_tflite_metadata

# Large batches run in chunks, so that a request's intermediate tensors stay bounded.
MAX_CHUNK = 256
#: Batch sizes compiled with a static shape; every other size shares one model compiled
#: with a dynamic batch. A static shape is faster for one image and for a full batch,
#: but compiling each size takes time, so only the two sizes that recur are specialised:
#: one image (a server's request) and the full chunk (docs/benchmarks.md, "OpenVINO
#: static batch sizes").
STATIC_BATCHES = (1, MAX_CHUNK)
#: How the CPU plugin compiles every model. float32 precision: on CPUs with bfloat16
#: (AVX-512 BF16, AMX) OpenVINO would otherwise compute float layers in bfloat16, whose
#: probabilities differ from the file's enough to fail the float32 export gate.
#: LATENCY: one stream, all threads on one request (THROUGHPUT splits the threads
#: between streams, and a batch split over streams measured no faster).
#: (docs/benchmarks.md, "OpenVINO float32 precision")
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
_PIXEL_SCALE = np.float32(255)
_INTEGER_TYPES = {"i8": np.int8, "u8": np.uint8}
_FLOAT_TYPES = ("f32", "f16", "bf16", "f64")
#: The lines of an OpenVINO error that only say where in its C++ sources it was raised.
_LOCATION = re.compile(r"(Exception from |Check '.*' failed at |FrontEnd API failed with )")
_LOCK = threading.Lock()
_CORE: list[Any] = []


def import_openvino() -> Any:
    """openvino, or BackendUnavailable saying what to install."""
    return INTERPRETERS["openvino"].load("openvino")


def _core(ov: Any) -> Any:
    """The process's one ``openvino.Core``: each Core loads its own copy of the plugins."""
    with _LOCK:
        if not _CORE:
            _CORE.append(ov.Core())
        return _CORE[0]


def _reason(error: Exception, default: str) -> str:
    """The line of an OpenVINO error that says what is wrong, without source locations."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if not _LOCATION.match(line)]
    return re.sub(r"\s+", " ", (said or lines or [default])[0])[:200]


def _dims(shape: Any) -> tuple[int | None, ...]:
    """A partial shape as a tuple, None for a dynamic dimension."""
    if not shape.rank.is_static:
        return ()
    return tuple(d.get_length() if d.is_static else None for d in shape)


def open_backend(path: Path, data: bytes, threads: int | None = None) -> OpenVINOBackend:
    """An :class:`OpenVINOBackend` (the registry's factory)."""
    return OpenVINOBackend(path, data, threads)


class _Request:
    """One thread's infer request of one compiled model, reading an input buffer it owns.

    The buffer is bound to the request once; each call writes the converted pixels into
    it. Cheaper than ``infer({0: array})``, which allocates and wraps a new tensor each
    call, a large part of an inference (docs/benchmarks.md, "OpenVINO input buffer").
    """

    def __init__(self, ov: Any, compiled: Any, shape: tuple[int, ...], dtype: Any) -> None:
        self._ov, self._dtype = ov, dtype
        self.request = compiled.create_infer_request()
        self.infer = self.request.infer
        self.output = self.request.get_output_tensor
        self.resize(shape)

    def resize(self, shape: tuple[int, ...]) -> None:
        """Make the buffer hold batches of ``shape``; the tensor keeps it alive too."""
        self.batch = shape[0]
        self.buffer = np.empty(shape, self._dtype)
        self.request.set_input_tensor(self._ov.Tensor(self.buffer, shared_memory=True))


class OpenVINOBackend:
    """Runs an ONNX or TFLite model on OpenVINO with one infer request per thread.

    A compiled model is shared by every thread; an infer request is not thread-safe, and
    one behind a lock would serialise a multi-threaded app. Requests are created on a
    thread's first call, per compiled batch size.
    """

    name = "openvino"

    def __init__(self, path: Path, data: bytes, num_threads: int | None = None) -> None:
        self._ov = import_openvino()
        self.path = path
        self._tflite = data[4:8] == b"TFL3"
        self._format = "TFLite" if self._tflite else "ONNX"
        self.embedded_metadata, quantization = self._read_metadata(data)
        self._model = self._read_model(data)
        inputs, outputs = self._model.inputs, self._model.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}"
            )
        shape, output = _dims(inputs[0].get_partial_shape()), _dims(outputs[0].get_partial_shape())
        sizes = [*shape[1:], *output[1:]]
        if len(shape) != 4 or len(output) != 2 or None in sizes:
            raise ModelError(
                f"{path}: model maps shape {shape} to {output}; expected images "
                "(N, height, width, channels) to scores (N, classes)"
            )
        height, width, channels, classes = (int(d or 0) for d in sizes)
        self.input_shape: tuple[int, int, int] = (height, width, channels)
        self.num_classes = classes
        self._input_dtype, self.input_quantization = self._tensor_type(
            inputs[0], quantization[0], "input"
        )
        self._output_dtype, self.output_quantization = self._tensor_type(
            outputs[0], quantization[1], "output"
        )
        self._prepare_tables()
        threads = num_threads or default_threads()
        self._config: dict[str, Any] = {**COMPILE_CONFIG, "INFERENCE_NUM_THREADS": threads}
        self._compiled_models: dict[int | None, Any] = {}
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        # Compiled now, so that a model the CPU plugin cannot run is refused at load.
        compiled = self._compiled(1)
        # OpenVINO uses no more threads than there are cores: report what it chose.
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))

    def _read_metadata(
        self, data: bytes
    ) -> tuple[str | bytes | None, tuple[Quantization | None, Quantization | None]]:
        """The embedded metadata, and the int8 input and output mappings of a .tflite."""
        if self._tflite:
            try:
                document: str | bytes | None = read_tflite_metadata(data).get(METADATA_KEY)
                affine = read_tflite_io_quantization(data)
            except ValueError as e:
                raise ModelError(f"{self.path}: not a valid TFLite model ({e})") from None
            return document, (self._checked(affine[0]), self._checked(affine[1]))
        try:
            external = uses_external_data(data)
        except MalformedProtobuf as e:
            raise ModelError(f"{self.path}: not a valid ONNX model ({e})") from None
        if external:
            raise ModelError(
                f"{self.path}: a tensor keeps its data in another file (ONNX external data); "
                "edgecnn never writes such models and refuses to read files they name"
            )
        try:
            return read_onnx_metadata(data).get(METADATA_KEY), (None, None)
        except MalformedProtobuf as e:
            raise ModelError(f"{self.path}: unreadable model metadata ({e})") from None

    def _checked(self, affine: tuple[float, int] | None) -> Quantization | None:
        if affine is None:
            return None
        scale, zero_point = affine
        if not (np.isfinite(scale) and scale > 0):
            raise ModelError(f"{self.path}: an int8 input or output has an invalid scale {scale}")
        return Quantization(scale, zero_point)

    def _read_model(self, data: bytes) -> Any:
        """The model as OpenVINO reads it, from the bytes already read and checked.

        Read by the frontend of the file's own format: ``Core.read_model`` would try every
        frontend it has (Paddle, TensorFlow...) on bytes that are not ONNX.
        """
        manager = import_module("openvino.frontend").FrontEndManager()
        try:
            frontend = manager.load_by_framework("tflite" if self._tflite else "onnx")
            if not self._tflite:
                return frontend.convert(frontend.load(io.BytesIO(data)))
            # The TFLite frontend reads files only: a private copy of the bytes (never the
            # path again, which may have changed since its digest was checked). It reads
            # the file whole, so the copy can go at once.
            with tempfile.TemporaryDirectory(prefix="edgecnn-openvino-") as folder:
                copy = Path(folder) / "model.tflite"
                copy.write_bytes(data)
                return frontend.convert(frontend.load(str(copy)))
        except Exception as e:  # OpenVINO's own exception types (OpConversionFailure...)
            raise ModelError(
                f"{self.path}: not a valid {self._format} model ({_reason(e, 'unreadable')})"
            ) from None

    def _tensor_type(
        self, port: Any, quantization: Quantization | None, what: str
    ) -> tuple[Any, Quantization | None]:
        """The numpy type of the model's ``what`` tensor, and its int8 mapping if integer."""
        kind = port.get_element_type().get_type_name()
        if kind in _FLOAT_TYPES:
            return (np.float32 if what == "input" else port.get_element_type().to_dtype()), None
        if kind in _INTEGER_TYPES and quantization is not None:
            return _INTEGER_TYPES[kind], quantization
        raise ModelError(f"{self.path}: model {what} type is {kind}, expected float")

    def _prepare_tables(self) -> None:
        """Lookup tables for int8 inputs and outputs (as the LiteRT backend uses)."""
        self._pixels_xor_128 = False
        if self.input_quantization is not None:
            self._pixel_codes = pixel_table(self.input_quantization, self._input_dtype)
            # The usual int8 input (scale 1/255, zero-point -128) maps pixel p to p - 128:
            # flipping the top bit does that in one cheap operation.
            self._pixels_xor_128 = self._input_dtype == np.int8 and np.array_equal(
                self._pixel_codes, (np.arange(256) - 128).astype(np.int8)
            )
        if self.output_quantization is not None:
            self._code_values = dequantize_table(self.output_quantization, self._output_dtype)

    def _compiled(self, batch: int) -> Any:
        """The model compiled for ``batch`` images: static for :data:`STATIC_BATCHES`."""
        key = batch if batch in STATIC_BATCHES else None
        compiled = self._compiled_models.get(key)
        if compiled is None:
            with self._compile_lock:
                compiled = self._compiled_models.get(key)
                if compiled is None:
                    compiled = self._compiled_models[key] = self._compile(key)
        return compiled

    def _compile(self, batch: int | None) -> Any:
        try:
            self._model.reshape({0: [-1 if batch is None else batch, *self.input_shape]})
            return _core(self._ov).compile_model(self._model, "CPU", self._config)
        except RuntimeError as e:
            raise ModelError(
                f"{self.path}: OpenVINO cannot compile this model ({_reason(e, 'failed')})"
            ) from None

    def _request(self, batch: int) -> _Request:
        """This thread's request for ``batch`` images, its buffer of that size."""
        key = batch if batch in STATIC_BATCHES else None
        requests: dict[int | None, _Request] | None = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(key)
        shape = (batch, *self.input_shape)
        if request is None:
            compiled = self._compiled(batch)
            request = requests[key] = _Request(self._ov, compiled, shape, self._input_dtype)
        elif request.batch != batch:
            request.resize(shape)
        return request

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(N, classes)`` for a batch of uint8 or [0, 1] float images."""
        try:
            return in_chunks(self._run, x, MAX_CHUNK)
        except RuntimeError as e:
            raise ModelError(
                f"{self.path}: OpenVINO cannot run this model ({_reason(e, 'failed')})"
            ) from None

    def _run(self, x: np.ndarray) -> np.ndarray:
        # Every one-image request passes here: a dict lookup, one numpy operation into
        # the bound buffer, the inference, and a copy of the output.
        requests = getattr(self._local, "requests", None)
        request = requests.get(len(x)) if requests else None
        if request is None or request.batch != len(x):
            request = self._request(len(x))
        if self.input_quantization is None and x.dtype == np.uint8:
            # Exactly x.astype(float32) / float32(255), the trainer's arithmetic.
            np.divide(x, _PIXEL_SCALE, out=request.buffer, dtype=np.float32)
        else:
            self._fill(request.buffer, x)
        request.infer()
        return self._outputs(request.output().data)

    def _fill(self, buffer: np.ndarray, x: np.ndarray) -> None:
        """Write the batch into ``buffer`` in the input tensor's own type."""
        q = self.input_quantization
        if q is None:
            np.copyto(buffer, x)
        elif x.dtype != np.uint8:
            buffer[...] = quantize(x, q, self._input_dtype)
        elif self._pixels_xor_128:
            np.bitwise_xor(x, 128, out=buffer.view(np.uint8))
        else:
            np.take(self._pixel_codes, x, out=buffer)

    def _outputs(self, y: np.ndarray) -> np.ndarray:
        """The output tensor (the request's own memory) as new float32 probabilities."""
        if self.output_quantization is None:
            return y.astype(np.float32)  # a copy: the next inference overwrites ``y``
        y = self._code_values[y.view(np.uint8)]
        # int8 probabilities come in steps of 1/256; renormalise so each row sums to 1.
        y /= y.sum(axis=1, keepdims=True)
        return y

    def raw_runner(self, batch: np.ndarray) -> Callable[[], object]:
        """The same work on the bare OpenVINO API, as its documentation writes it.

        From the uint8 ``batch`` to float outputs: one numpy expression makes the input
        tensor's type, ``InferRequest.infer`` runs it (which copies the input in and the
        output out), and an int8 output is dequantized. Its own request of the model the
        runtime compiled for this batch size, so the two compare the same kernels.
        """
        request = self._compiled(len(batch)).create_infer_request()
        convert, dequantize = bare_conversions(
            self.input_quantization,
            self.output_quantization,
            self._pixels_xor_128,
            getattr(self, "_pixel_codes", None),
        )

        def run() -> np.ndarray:
            return dequantize(request.infer({0: convert(batch)})[0])

        return run
