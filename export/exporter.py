"""``export_model``: convert, embed metadata, verify, and keep only the files that pass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgecnn import __version__, _atomic
from edgecnn._quiet import native_stderr_hidden
from edgecnn.export.config import ExportConfig
from edgecnn.export.report import format_table
from edgecnn.export.verify import compare, verify_file
from edgecnn.runtime import integrity
from edgecnn.runtime.metadata import METADATA_KEY, ModelMetadata, sidecar_path
from edgecnn.runtime.preprocess import softmax
from edgecnn.trainer.data import VALIDATION_SIZE, Dataset, load_dataset, to_float
from edgecnn.trainer.runs import ModelSource, resolve_model

SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "numpy": ".npz"}
# The exact int8 ONNX recipe; measured choices, see README "Export" for the numbers.
ONNX_INT8_OPTIONS: dict[str, Any] = {
    # 7-bit weights: on x86 CPUs without VNNI, onnxruntime's u8*s8 kernels otherwise
    # saturate 16-bit intermediate sums (98.3% -> 99.4% agreement here).
    "reduce_range": True,
    # Keep the dense layers' outputs (the logits) unquantized: their int8 rounding decides
    # near-ties between classes (99.4% -> 99.5%). Weights and inputs stay int8.
    "extra_options": {"OpTypesToExcludeOutputQuantization": ["Gemm"]},
}


def file_name(fmt: str, precision: str) -> str:
    """``model_int8.tflite`` and friends; the numpy backend's file is ``weights.npz``."""
    return "weights.npz" if fmt == "numpy" else f"model_{precision}{SUFFIX[fmt]}"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_images(data: Dataset, config: ExportConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """``calib_samples`` training-split images drawn with the seed, and a record of which.

    Never validation or test images: calibrating on them would leak into the numbers the
    gate reports.
    """
    n = min(config.calib_samples, len(data.x_train))
    rng = np.random.default_rng(config.seed)
    indices = np.sort(rng.choice(len(data.x_train), size=n, replace=False))
    record = {
        "split": "train",
        "samples": int(n),
        "seed": config.seed,
        "method": config.calib_method,
        "train_indices": indices.tolist(),
        # Position in train-images-idx3-ubyte: the first 5,000 images are validation.
        "file_indices": (indices + VALIDATION_SIZE).tolist(),
    }
    return to_float(data.x_train[indices]), record


def _metadata(base: ModelMetadata, precision: str, quantization: dict[str, Any]) -> ModelMetadata:
    """The file's metadata, with a placeholder digest that :func:`integrity.seal` fills in."""
    return dataclasses.replace(
        base,
        precision=precision,
        quantization=quantization,
        integrity={"content_sha256": integrity.PLACEHOLDER},
    )


def _sealed(data: bytes, meta: ModelMetadata) -> tuple[bytes, ModelMetadata]:
    """The file with its own digest written in, and the metadata that records it."""
    data = integrity.seal(data)
    return data, dataclasses.replace(
        meta, integrity={"content_sha256": integrity.content_digest(data) or ""}
    )


def sidecar_document(meta: ModelMetadata, name: str, data: bytes) -> dict[str, Any]:
    """``<file>.json``: the metadata, and the whole file's name, size and SHA-256."""
    record = {"name": name, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {**meta.to_dict(), "file": record}


def _tflite_io_quantization(flatbuffer: bytes) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    result = {}
    for name, detail in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        scale, zero_point = detail["quantization"]
        result[name] = {
            "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }
    return result


def _convert(
    fmt: str,
    precision: str,
    model: Any,
    config: ExportConfig,
    calibration: np.ndarray,
    calib_record: dict[str, Any],
    base: ModelMetadata,
    cache: dict[str, bytes],
) -> tuple[bytes, ModelMetadata]:
    """One file's bytes, metadata embedded, and that metadata."""
    calib_summary = {k: calib_record[k] for k in ("split", "samples", "seed")}
    if fmt == "tflite":
        from edgecnn.export import to_tflite

        data = to_tflite.convert(model, precision, calibration if precision == "int8" else None)
        quant: dict[str, Any] = {}
        if precision == "int8":
            quant = {
                "scheme": "full integer int8, per-channel weights",
                **_tflite_io_quantization(data),
                "calibration": {**calib_summary, "method": "minmax (TFLite converter)"},
            }
        elif precision == "dynamic":
            quant = {"scheme": "dynamic range: int8 weights, float activations"}
        elif precision == "float16":
            quant = {"scheme": "float16 weights, float32 computation"}
        meta = _metadata(base, precision, quant)
        return _sealed(to_tflite.embed_metadata(data, METADATA_KEY, meta.to_json().encode()), meta)
    if fmt == "onnx":
        from edgecnn.export import to_onnx

        if "onnx_float32" not in cache:
            cache["onnx_float32"] = to_onnx.convert_float(model)
        data, quant = cache["onnx_float32"], {}
        if precision == "int8":
            data = to_onnx.quantize_int8(
                data, calibration, config.calib_method, **ONNX_INT8_OPTIONS
            )
            quant = {
                "scheme": "static QDQ: int8 activations, per-channel int8 weights "
                "(7-bit range), float softmax and dense outputs",
                "input": {"dtype": "float32", "note": "quantized inside the graph"},
                "calibration": {**calib_summary, "method": config.calib_method},
            }
        meta = _metadata(base, precision, quant)
        return _sealed(to_onnx.set_metadata(data, METADATA_KEY, meta.to_json()), meta)
    from edgecnn.export import to_numpy

    return to_numpy.convert(model, dataclasses.replace(base, precision="float32"))


def export_model(
    target: str | Path,
    config: ExportConfig,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    stream: TextIO | None = None,
    on_file: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Export ``target`` (run directory or ``.keras``) in every format ``config`` asks for.

    Each file is written under a temporary name, verified with :mod:`edgecnn.runtime` on
    the full test set, then renamed to its final name if it passes its gate or to
    ``<name>.rejected`` if not. Returns the report also saved as ``export_report.json``.
    """
    started = time.perf_counter()
    source = resolve_model(target)
    out = _atomic.ensure_writable_dir(
        out_dir or (source.run_dir or source.model_path.parent) / "exports"
    )
    with _atomic.exclusive(out, "edgecnn export"):
        return _export_into(out, source, config, data_dir, stream or sys.stdout, on_file, started)


def _export_into(
    out: Path,
    source: ModelSource,
    config: ExportConfig,
    data_dir: str | Path | None,
    stream: TextIO,
    on_file: Callable[[dict[str, Any]], None] | None,
    started: float,
) -> dict[str, Any]:
    from edgecnn.trainer.evaluate import load_keras_model

    model = load_keras_model(source.model_path)
    dataset = source.config.dataset if source.config else "fashion"
    data = load_dataset(dataset, data_dir)
    calibration, calib_record = calibration_images(data, config)
    _atomic.write_json(out / "calibration.json", calib_record)

    x_test = to_float(data.x_test)
    reference = softmax(model.predict(x_test, batch_size=1000, verbose=0))
    base = ModelMetadata(
        labels=data.labels,
        dataset=data.name,
        source_sha256=sha256(source.model_path),
        edgecnn_version=__version__,
    )

    rows: list[dict[str, Any]] = []
    cache: dict[str, bytes] = {}
    for fmt, precision in [*config.targets(), ("numpy", "float32")]:
        name = file_name(fmt, precision)
        t0 = time.perf_counter()
        with native_stderr_hidden():
            data_bytes, meta = _convert(
                fmt, precision, model, config, calibration, calib_record, base, cache
            )
        convert_s = time.perf_counter() - t0
        final = out / name
        tmp = _atomic.temporary_path(final)
        try:
            _atomic.write_synced(tmp, data_bytes)
            row: dict[str, Any] = {
                "format": fmt,
                "precision": precision,
                "file": name,
                "size_bytes": len(data_bytes),
                "convert_seconds": convert_s,
            }
            # Verified under its temporary name: an unproven file never sits where users
            # would pick it up, and a replaced export is swapped in one rename.
            with native_stderr_hidden():
                row.update(verify_file(tmp, data.x_test, data.y_test, reference))
            row["failures"] = config.gate(precision).failures(row)
            row["passed"] = not row["failures"]
            if row["passed"]:
                # Sidecar first: a crash between the two renames leaves the old model with
                # a new sidecar beside it, which then refuses it (its SHA-256 differs).
                _atomic.write_json(sidecar_path(final), sidecar_document(meta, name, data_bytes))
                os.replace(tmp, final)
            else:
                # An older file of this name came from another export: removing it keeps
                # the folder from mixing files of two models.
                os.replace(tmp, out / f"{name}.rejected")
                final.unlink(missing_ok=True)
                sidecar_path(final).unlink(missing_ok=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        row["verify_seconds"] = time.perf_counter() - t0 - convert_s
        rows.append(row)
        if on_file:
            on_file(row)

    float32_size = next(
        (r["size_bytes"] for r in rows if r["file"] == "model_float32.tflite"), None
    ) or next(r["size_bytes"] for r in rows if r["precision"] == "float32")
    for row in rows:
        row["size_ratio"] = row["size_bytes"] / float32_size
    keras_scores = compare(reference, reference, data.y_test)
    report = {
        "source": str(source.model_path),
        "source_sha256": base.source_sha256,
        "dataset": data.name,
        "test_images": int(len(data.x_test)),
        "labels": list(data.labels),
        "keras_accuracy": keras_scores["accuracy"],
        "keras_per_class_accuracy": keras_scores["per_class_accuracy"],
        "config": config.to_dict(),
        "calibration_file": "calibration.json",
        "out_dir": str(out),
        "files": rows,
        "passed": all(r["passed"] for r in rows),
        "seconds": time.perf_counter() - started,
        "edgecnn_version": __version__,
    }
    _atomic.write_json(out / "export_report.json", report)
    stream.write(format_table(report) + "\n")
    return report


def load_report(out_dir: Path) -> dict[str, Any]:
    """Read ``export_report.json`` back."""
    return json.loads((out_dir / "export_report.json").read_text())
