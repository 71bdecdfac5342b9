"""Interpreters behind :func:`~edgecnn.runtime.load_classifier`: one file each, one entry here.

A backend module defines ``open_backend(path, data, threads, **options)`` returning an
object that satisfies :class:`Backend`. Registering it is one entry in
:data:`BACKENDS`, which names the module, the file suffixes it runs, whether
``backend="auto"`` may choose it (in dict order), whether the file it runs is native code
(never chosen by ``auto``), the name of that file inside an exported folder, and keyword
options for its factory.
Modules are imported only when their backend is chosen, so a device needs only the one
interpreter it uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from edgecnn._quiet import banners_hidden
from edgecnn.runtime.contract import C_LIBRARY_STEM
from edgecnn.runtime.errors import BackendUnavailable, ModelError


class Backend(Protocol):
    """What the runtime needs from an interpreter, and nothing more.

    Attributes:
        name: the registry name (``litert``, ``onnxruntime``...).
        threads: the threads one inference uses; ``None`` when the backend does not let
            edgecnn choose (numpy's BLAS decides for itself).
        input_shape: one image, ``(height, width, channels)``, as the model itself says.
        num_classes: the length of one output row.
        embedded_metadata: the edgecnn metadata document inside the file, if any.
    """

    name: str
    threads: int | None
    input_shape: tuple[int, int, int]
    num_classes: int
    embedded_metadata: bytes | str | None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(N, num_classes)`` float32 for a batch ``(N, H, W, C)``.

        ``x`` is uint8 pixels or float32 in [0, 1] (already validated by the caller).

        Raises:
            ModelError: the interpreter cannot run the model.
        """
        ...

    def raw_runner(self, batch: np.ndarray) -> Callable[[], object]:
        """A callable that runs the uint8 ``batch`` on the bare interpreter, for ``bench``.

        Everything the runtime does around the interpreter (validating, converting the
        input, reading the output) is done once beforehand, not inside the callable.
        """
        ...


@dataclass(frozen=True)
class Interpreter:
    """A package that runs models: what it is called, where it comes from, how it behaves."""

    #: How people name it ("LiteRT").
    label: str
    #: Its name on PyPI, for ``pip`` and for reading its installed version.
    distribution: str
    #: The module a backend imports.
    module: str
    #: The line that installs it.
    install: str
    #: Its threads make ``fork`` unsafe once it is imported (see
    #: :func:`edgecnn.runtime.predict.workers.start_method`).
    starts_threads: bool = True

    def load(self, backend: str) -> ModuleType:
        """The module, imported now.

        Raises:
            BackendUnavailable: it is not installed (the message says what to install).
        """
        try:
            return import_module(self.module)
        except ImportError:
            raise BackendUnavailable(
                f"the {backend} backend needs {self.distribution}: {self.install}"
            ) from None


#: The interpreter packages, by the key a :class:`BackendEntry` names them with. numpy (the
#: numpy backend) and the standard library's ctypes (the C library) are not among them:
#: they need nothing installed beyond edgecnn itself.
INTERPRETERS = {
    "litert": Interpreter(
        "LiteRT", "ai-edge-litert", "ai_edge_litert.interpreter", 'pip install "edgecnn[litert]"'
    ),
    "tflite": Interpreter(
        "tflite-runtime",
        "tflite-runtime",
        "tflite_runtime.interpreter",
        "pip install tflite-runtime",
    ),
    "onnxruntime": Interpreter(
        "onnxruntime", "onnxruntime", "onnxruntime", 'pip install "edgecnn[onnx]"'
    ),
    "openvino": Interpreter("OpenVINO", "openvino", "openvino", 'pip install "edgecnn[openvino]"'),
}


@dataclass(frozen=True)
class BackendEntry:
    """How to open one backend: its module, the files it runs, and its options.

    ``own_threads``: the backend takes no thread count and runs one inference on every
    core by itself (numpy's BLAS), so processes running it side by side only fight.
    ``native``: the file is machine code that runs with the user's privileges (a shared
    library), so it is loaded only when asked for by name, never by ``auto``.
    ``folder_stem``: an exported folder (``exports/c``) stands for the file of this name,
    with one of ``suffixes``, inside it. ``interpreter``: the key of the package it runs
    models with in :data:`INTERPRETERS` (None: nothing beyond edgecnn's own needs).
    """

    module: str
    suffixes: tuple[str, ...]
    auto: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    own_threads: bool = False
    native: bool = False
    folder_stem: str | None = None
    interpreter: str | None = None

    @property
    def package(self) -> Interpreter | None:
        """The interpreter package it needs, or None."""
        return None if self.interpreter is None else INTERPRETERS[self.interpreter]

    @property
    def distribution(self) -> str | None:
        """The PyPI distribution it needs (``ai-edge-litert``), or None."""
        return None if self.package is None else self.package.distribution

    @property
    def install_hint(self) -> str:
        """The line that installs what it needs ("" when nothing is needed)."""
        return "" if self.package is None else self.package.install

    @property
    def starts_threads(self) -> bool:
        """Whether its interpreter's threads make forking unsafe once it is loaded."""
        return self.package is not None and self.package.starts_threads

    def __post_init__(self) -> None:
        if self.native and self.auto:
            raise ValueError(f"backend module {self.module}: native code is never chosen by auto")

    def open(self, path: Path, data: bytes, threads: int | None) -> Backend:
        """Import the backend's module and load the model with it.

        What interpreters print straight to file descriptor 2 as they load (LiteRT's
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") is kept off the app's
        stderr; anything else written there meanwhile is passed on.

        Raises:
            BackendUnavailable: its interpreter is not installed.
            ModelError: the file is not a model it can run.
        """
        with banners_hidden(BANNERS):
            module = import_module(f"{__name__}.{self.module}")
            backend: Backend = module.open_backend(path, data, threads, **self.options)
        return backend

    def check_installed(self) -> None:
        """Raise BackendUnavailable (saying what to install) if its interpreter is missing.

        A native backend's loader is the standard library's, so importing its module is
        the whole check: nothing is opened, no file (not even a sidecar) is read. Others
        open an empty model: every factory imports its interpreter before it reads the
        bytes, so a missing interpreter raises BackendUnavailable and a present one the
        ModelError of an unreadable file.
        """
        if self.native:
            import_module(f"{__name__}.{self.module}")
            return
        try:
            self.open(Path("installed-check"), b"", 1)
        except BackendUnavailable:
            raise
        except ModelError:
            pass


#: Lines interpreters print on file descriptor 2 while loading a model, bypassing Python's
#: ``sys.stderr`` and any log level: noise in the app's own stderr.
BANNERS = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",)
#: Backends by name, in the order ``backend="auto"`` tries them for a file.
BACKENDS: dict[str, BackendEntry] = {
    "litert": BackendEntry(
        "litert", (".tflite",), options={"module": "litert"}, interpreter="litert"
    ),
    "tflite": BackendEntry(
        "litert", (".tflite",), options={"module": "tflite"}, interpreter="tflite"
    ),
    # TFLite's builtin kernels without XNNPACK, and its reference kernels: what 32-bit
    # tflite-runtime and microcontrollers compute, for comparisons. Never chosen by auto.
    "litert-builtin": BackendEntry(
        "litert",
        (".tflite",),
        auto=False,
        options={"module": "litert", "kernels": "builtin"},
        interpreter="litert",
    ),
    "litert-reference": BackendEntry(
        "litert",
        (".tflite",),
        auto=False,
        options={"module": "litert", "kernels": "reference"},
        interpreter="litert",
    ),
    "onnxruntime": BackendEntry("onnxruntime", (".onnx",), interpreter="onnxruntime"),
    # OpenVINO's CPU plugin: the fastest for large int8 batches on x86, and an independent
    # reader of both formats. Never chosen by auto: an extra install that few devices have.
    "openvino": BackendEntry("openvino", (".onnx", ".tflite"), auto=False, interpreter="openvino"),
    "numpy": BackendEntry("numpy", (".npz",), own_threads=True),
    # The generated C library, compiled for this machine (``exports/c``): no interpreter.
    # A library is code: loaded only on request (--backend c), and only once its bytes
    # match the SHA-256 its export recorded beside it (backends/c.py).
    "c": BackendEntry(
        "c", (".so", ".dylib", ".dll"), auto=False, native=True, folder_stem=C_LIBRARY_STEM
    ),
}


def in_chunks(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int) -> np.ndarray:
    """``run`` over ``x`` in chunks of at most ``size`` rows, the outputs concatenated.

    A batch that fits is passed on whole, without a copy.
    """
    if len(x) <= size:
        return run(x)
    return np.concatenate([run(x[i : i + size]) for i in range(0, len(x), size)])


def default_threads() -> int:
    """Threads an interpreter gets unless told otherwise: all cores, up to 4.

    LiteRT itself defaults to one thread, which leaves a Raspberry Pi's other cores idle;
    beyond 4 this small network gains nothing.
    """
    return max(1, min(os.cpu_count() or 1, 4))


def suffixes() -> tuple[str, ...]:
    """Every model file suffix some backend runs."""
    return tuple(dict.fromkeys(s for entry in BACKENDS.values() for s in entry.suffixes))


def candidates(suffix: str, backend: str) -> tuple[str, ...]:
    """The backends to try for a ``suffix`` file: ``auto``'s list, or the one asked for."""
    if backend != "auto":
        return (backend,) if suffix in BACKENDS[backend].suffixes else ()
    return tuple(n for n, e in BACKENDS.items() if suffix in e.suffixes and e.auto and not e.native)


def folder_file(folder: Path) -> Path | None:
    """The model file an exported folder stands for (``exports/c``: its library), if any."""
    for entry in BACKENDS.values():
        if entry.folder_stem is not None:
            for suffix in entry.suffixes:
                path = folder / f"{entry.folder_stem}{suffix}"
                if path.is_file():
                    return path
    return None


def native_backend(suffix: str) -> str | None:
    """The backend that runs ``suffix`` files as native code (a shared library), if any."""
    return next((n for n, e in BACKENDS.items() if e.native and suffix in e.suffixes), None)
