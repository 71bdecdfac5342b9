"""What :func:`~edgecnn.runtime.load_classifier` checks, in order, before it trusts a file.

The name and the bytes agree on the format; a native library (code) is loaded only when
asked for by name; the bytes match the digests they record, before any interpreter
parses them; the metadata (the file's, its sidecar's, or numbered classes for a file
with none) describes the model the interpreter loaded, including whether its outputs
are probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime import integrity
from edgecnn.runtime.backends import (
    BACKENDS,
    Backend,
    candidates,
    folder_file,
    native_backend,
    suffixes,
)
from edgecnn.runtime.contract import check_io
from edgecnn.runtime.errors import BackendUnavailable, ModelError
from edgecnn.runtime.metadata import ModelMetadata, Sidecar, parse_metadata

#: A probability row may miss 1 by this much (int8 outputs come in steps of 1/256); a
#: reference's rows too (verify_reference), as the runtime accepts a model's so.
SUM_TOLERANCE = 0.02


def sniff(data: bytes) -> str | None:
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


def library_in(path: Path) -> Path:
    """``exports/c`` stands for the C library compiled inside it; other paths as they are.

    What a folder stands for is said once, in its backend's entry (``folder_stem``).
    """
    if path.is_dir():
        library = folder_file(path)
        if library is not None:
            return library
        if (path / "model_data.cc").is_file():
            raise ModelError(
                f"{path} is a TensorFlow Lite Micro bundle, for firmware (its README.md says "
                "how); on this machine, load the .tflite file beside it"
            )
    return path


def check_backend_name(backend: Any) -> str:
    """``backend`` if it is ``auto`` or a registered name."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ModelError(f"unknown backend {backend!r:.40}; choose auto, {', '.join(BACKENDS)}")
    return backend


def check_format(path: Path, data: bytes, backend: str) -> tuple[str, ...]:
    """The backends to try for ``path``, after checking its name against its content."""
    suffix = path.suffix.lower()
    if suffix not in suffixes():
        raise ModelError(
            f"{path}: unknown model format {suffix or '(no suffix)'}; expected "
            f"{', '.join(suffixes())}"
        )
    actual = sniff(data)
    if actual is not None and actual != suffix:
        raise ModelError(f"{path} is a {actual} file with a {suffix} name; rename it")
    if actual is None and suffix != ".onnx":
        raise ModelError(f"{path} is not a {suffix} file (unrecognised content)")
    names = candidates(suffix, backend)
    native = native_backend(suffix)
    if not names and backend == "auto" and native is not None:
        raise ModelError(
            f"{path} is a native library: code that runs with your privileges, never loaded "
            f"unasked; if you exported it, load it with --backend {native} "
            f'(backend="{native}" in Python)'
        )
    if not names:
        usable = " or ".join(candidates(suffix, "auto") or (native or "",))
        raise ModelError(f"the {backend} backend cannot run {suffix} files; use {usable}")
    return names


def open_backend(
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


def check_bytes(data: bytes, path: Path, sidecar: Sidecar | None) -> bool:
    """Verify the digests a file's raw bytes carry, before any interpreter parses them.

    Some interpreters crash on damaged files (tflite-runtime on 32-bit ARM), so damage
    must be caught here. Returns whether the file holds its own ``content_sha256``.
    """
    if sidecar is not None and sidecar.file_sha256 is not None:
        integrity.check_file(data, sidecar.file_sha256, path, path.with_name(path.name + ".json"))
    return integrity.check_content(data, path)


def check_records(path: Path, metadata: ModelMetadata, backend: Any, sealed: bool,
                   sidecar: Sidecar | None) -> None:  # fmt: skip
    """The integrity record the metadata promises must have been verified."""
    for meta in (metadata, sidecar.metadata if sidecar else None):
        if meta is not None and meta.schema >= 2 and not meta.integrity:
            raise ModelError(
                f"{path}: its metadata has no integrity record (damaged, or edited by hand); "
                f"{integrity.SKIP_HINT}"
            )
    record = metadata.integrity
    if "weights_sha256" in record:
        verify = getattr(backend, "verify_weights", None)
        if verify is None:
            raise ModelError(f"{path}: records a weights digest its format cannot have")
        verify(record["weights_sha256"])
    elif "content_sha256" in record and not sealed and sidecar is None:
        raise ModelError(f"{path}: its metadata records a digest the file does not hold")


def describe(path: Path, backend: Backend, sidecar: Sidecar | None) -> ModelMetadata | None:
    """The file's own metadata, else its sidecar's; None if it has neither."""
    if backend.embedded_metadata:
        return parse_metadata(backend.embedded_metadata, str(path))
    return sidecar.metadata if sidecar is not None else None


def generic_metadata(backend: Backend) -> ModelMetadata:
    """What a file without edgecnn metadata is taken for, from the model itself.

    Its own input shape, and its classes named ``class_0`` .. ``class_<n-1>``.
    """
    return ModelMetadata(
        labels=tuple(f"class_{i}" for i in range(backend.num_classes)),
        dataset="unknown",
        input_shape=backend.input_shape,
        schema=1,
    )


def check_contract(path: Path, metadata: ModelMetadata, backend: Backend) -> None:
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


def check_output_kind(path: Path, metadata: ModelMetadata, backend: Backend) -> None:
    """Metadata that says ``logits`` must not sit on a model that ends at a softmax.

    The runtime would apply a second softmax, and a sure 100% would read as 23%. A black
    and a white image (a warm-up the interpreter needs anyway) tell: real logits are not
    rows in [0, 1] that sum to 1.
    """
    if metadata.output_kind != "logits":
        return
    probe = np.zeros((2, *backend.input_shape), np.uint8)
    probe[1] = 255
    rows = np.asarray(backend.predict(probe), dtype=np.float64)
    sums = rows.sum(axis=1)
    if (
        np.isfinite(rows).all()
        and rows.min() >= 0
        and rows.max() <= 1
        and np.abs(sums - 1).max() <= SUM_TOLERANCE
    ):
        raise ModelError(
            f"{path}: its metadata says the outputs are logits, but they are already "
            'probabilities (rows in [0, 1] summing to 1); set "output": {"kind": '
            '"probabilities"} or export it again'
        )
