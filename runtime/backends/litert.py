"""``.tflite`` models on LiteRT (``ai-edge-litert``) or the legacy ``tflite-runtime``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.backends import INTERPRETERS, default_threads, in_chunks
from edgecnn.runtime.errors import BackendUnavailable, ModelError
from edgecnn.runtime.metadata import METADATA_KEY, Quantization
from edgecnn.runtime.preprocess import (
    as_float,
    bare_conversions,
    dequantize_table,
    pixel_table,
    quantize,
)
from edgecnn.runtime.tflite_metadata import read_tflite_metadata

#: Which kernels run the model: the default (XNNPACK where it applies), TFLite's
#: builtin optimized kernels alone, or its reference kernels (plain C++, the
#: arithmetic TFLite Micro reproduces).
KERNELS = {
    "default": None,
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "reference": "BUILTIN_REF",
}
# Large batches run in chunks so that the interpreter's arena stays small on devices.
MAX_CHUNK = 256


def import_interpreter(name: str) -> Any:
    """The interpreter module for ``name``, or BackendUnavailable saying what to install."""
    return INTERPRETERS[name].load(name)


def _quantization(detail: dict[str, Any], path: Path) -> Quantization | None:
    if detail["dtype"] not in (np.int8, np.uint8):
        return None
    scale, zero_point = detail["quantization"]
    if not (np.isfinite(scale) and scale > 0):
        raise ModelError(f"{path}: tensor {detail['name']} has an invalid int8 scale {scale}")
    return Quantization(float(scale), int(zero_point))


class _Session:
    """One thread's interpreter, its calls bound once, and an input buffer of its batch size."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.set_tensor = interpreter.set_tensor
        self.invoke = interpreter.invoke
        self.get_tensor = interpreter.get_tensor
        self._buffers(tuple(interpreter.get_input_details()[0]["shape"]))

    def _buffers(self, shape: tuple[int, ...]) -> None:
        self.batch = int(shape[0])
        # uint8 pixels XOR 128 land here; read as int8 they are the model's input codes.
        self.pixels = np.empty(shape, np.uint8)
        self.codes = self.pixels.view(np.int8)

    def resize(self, index: int, shape: tuple[int, ...]) -> None:
        """Make the interpreter take batches of ``shape``."""
        self.interpreter.resize_tensor_input(index, list(shape))
        self.interpreter.allocate_tensors()
        self._buffers(shape)


def open_backend(
    path: Path,
    data: bytes,
    threads: int | None = None,
    module: str = "litert",
    kernels: str = "default",
) -> LiteRTBackend:
    """A :class:`LiteRTBackend` (the registry's factory)."""
    return LiteRTBackend(path, data, threads, module=module, kernels=kernels)


class LiteRTBackend:
    """Runs a TFLite flatbuffer with one interpreter per thread.

    LiteRT interpreters are not thread-safe, and one shared behind a lock would serialise
    a multi-threaded app; an interpreter of this model costs little memory
    (docs/benchmarks.md, "LiteRT interpreter size").
    """

    def __init__(
        self,
        path: Path,
        data: bytes,
        num_threads: int | None = None,
        module: str = "litert",
        kernels: str = "default",
    ) -> None:
        self.name = module if kernels == "default" else f"{module}-{kernels}"
        self.path = path
        self._module = import_interpreter(module)
        self._options: dict[str, Any] = {}
        resolver_name = KERNELS[kernels]
        if resolver_name is not None:
            resolver = getattr(self._module, "OpResolverType", None)
            if resolver is None:
                raise BackendUnavailable(f"{module} cannot choose {kernels} kernels")
            self._options["experimental_op_resolver_type"] = getattr(resolver, resolver_name)
            self._options["experimental_preserve_all_tensors"] = kernels == "reference"
        self._data = data
        self.threads = num_threads or default_threads()
        self._local = threading.local()
        interpreter = self._session().interpreter
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}"
            )
        self._input, self._output = inputs[0], outputs[0]
        self._in_index, self._out_index = self._input["index"], self._output["index"]
        shape = tuple(int(d) for d in self._input["shape_signature"])
        output = tuple(int(d) for d in self._output["shape"])
        if len(shape) != 4 or len(output) != 2:
            raise ModelError(
                f"{path}: model maps shape {shape} to {output}; expected images "
                "(N, height, width, channels) to scores (N, classes)"
            )
        self.input_shape: tuple[int, int, int] = (shape[1], shape[2], shape[3])
        self.num_classes = output[1]
        self.input_quantization = _quantization(self._input, path)
        self.output_quantization = _quantization(self._output, path)
        self._pixels_xor_128 = False
        if self.input_quantization is not None:
            self._pixel_codes = pixel_table(self.input_quantization, self._input["dtype"])
            # The usual int8 input (scale 1/255, zero-point -128) maps pixel p to p - 128:
            # flipping the top bit does that in one cheap operation.
            self._pixels_xor_128 = self._input["dtype"] == np.int8 and np.array_equal(
                self._pixel_codes, (np.arange(256) - 128).astype(np.int8)
            )
        if self.output_quantization is not None:
            self._code_values = dequantize_table(self.output_quantization, self._output["dtype"])
        try:
            self.embedded_metadata = read_tflite_metadata(data).get(METADATA_KEY)
        except ValueError:
            self.embedded_metadata = None

    def _session(self) -> _Session:
        """This thread's interpreter of the model, made on the thread's first call."""
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            try:
                interpreter = self._module.Interpreter(
                    model_content=self._data, num_threads=self.threads, **self._options
                )
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                first = (str(e).strip().splitlines() or ["unreadable"])[0]
                raise ModelError(f"{self.path}: not a valid TFLite model ({first})") from None
            session = self._local.session = _Session(interpreter)
        return session

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(N, classes)`` for a batch of uint8 or [0, 1] float images."""
        try:
            return in_chunks(self._run, x, MAX_CHUNK)
        except (ValueError, RuntimeError) as e:
            # A flatbuffer can parse yet hold impossible tensors (a corrupted scale, say):
            # the interpreter then fails when it prepares or runs them.
            first = (str(e).strip().splitlines() or ["failed"])[0]
            raise ModelError(
                f"{self.path}: the interpreter cannot run this model ({first[:200]})"
            ) from None

    def _run(self, x: np.ndarray) -> np.ndarray:
        # Every one-image request passes here: it is kept to the interpreter's own three
        # calls plus one numpy operation on the input (and the output's, if int8).
        session = getattr(self._local, "session", None) or self._session()
        if len(x) != session.batch:
            session.resize(self._in_index, x.shape)
        if self._pixels_xor_128 and x.dtype == np.uint8:
            np.bitwise_xor(x, 128, out=session.pixels)
            session.set_tensor(self._in_index, session.codes)
        else:
            session.set_tensor(self._in_index, self._input_tensor(x))
        session.invoke()
        y = session.get_tensor(self._out_index)
        return y if self.output_quantization is None else self._probabilities(y)

    def _input_tensor(self, x: np.ndarray) -> np.ndarray:
        """The batch in the input tensor's own type: float, or int8 codes."""
        if self.input_quantization is None:
            x = as_float(x)
        elif x.dtype == np.uint8:
            x = (
                np.bitwise_xor(x, 128).view(np.int8)
                if self._pixels_xor_128
                else self._pixel_codes[x]
            )
        else:
            x = quantize(x, self.input_quantization, self._input["dtype"])
        return x

    def _probabilities(self, y: np.ndarray) -> np.ndarray:
        """An int8 softmax output as float32 probabilities."""
        y = self._code_values[y.view(np.uint8)]
        # int8 probabilities come in steps of 1/256; renormalise so each row sums to 1.
        # (A softmax row's codes cannot all be the minimum: the sum is never zero.)
        y /= y.sum(axis=1, keepdims=True)
        return y

    def raw_runner(self, batch: np.ndarray) -> Callable[[], object]:
        """The same work on the bare interpreter, as a user would write it.

        From the uint8 ``batch`` to float outputs: the pixels become the input tensor's
        type with one numpy expression, then ``set_tensor``, ``invoke``, ``get_tensor``,
        and an int8 output is dequantized. It runs this thread's interpreter, sized for
        ``batch`` here, so that both sides of a comparison share one interpreter and one
        pool of worker threads (two pools on two cores would slow each other down).
        """
        session = self._session()
        in_index, out_index = self._in_index, self._out_index
        if len(batch) != session.batch:
            session.resize(in_index, batch.shape)
        interpreter = session.interpreter
        convert, dequantize = bare_conversions(
            self.input_quantization,
            self.output_quantization,
            self._pixels_xor_128,
            getattr(self, "_pixel_codes", None),
        )

        def run() -> np.ndarray:
            interpreter.set_tensor(in_index, convert(batch))
            interpreter.invoke()
            return dequantize(interpreter.get_tensor(out_index))

        return run
