"""Export all six files (plus weights.npz) from one model and compare each with float32 TFLite.

Everything is measured in this one run: conversion and verification time per file, size,
accuracy, agreement with Keras, and single-image latency through edgecnn.runtime, each
beside the float32 TFLite file's.

    python bench/export.py [MODEL_OR_RUN_DIR]   (default: runs/latest)
"""

from __future__ import annotations

import io
import sys
import tempfile
import time


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "runs/latest"
    from edgecnn.export.config import ExportConfig
    from edgecnn.export.exporter import export_model

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        report = export_model(
            target,
            ExportConfig(int8=True, fp16=True, dynamic=True),
            out_dir=out,
            stream=io.StringIO(),
        )
        total = time.perf_counter() - started
    rows = report["files"]
    base = next(r for r in rows if r["file"] == "model_float32.tflite")
    print(f"model: {report['source']}  Keras test accuracy {100 * report['keras_accuracy']:.2f}%")
    print(
        f"{'file':22s} {'KiB':>7s} {'size x':>7s} {'accuracy':>9s} {'delta':>8s} "
        f"{'agree':>8s} {'latency':>9s} {'lat x':>6s} {'convert':>8s} {'verify':>7s} gate"
    )
    for r in rows:
        print(
            f"{r['file']:22s} {r['size_bytes'] / 1024:7.1f} "
            f"{r['size_bytes'] / base['size_bytes']:7.3f} {100 * r['accuracy']:8.2f}% "
            f"{r['delta_pp']:+6.2f}pp {100 * r['agreement']:7.2f}% {r['latency_us']:7.0f}us "
            f"{r['latency_us'] / base['latency_us']:6.2f} {r['convert_seconds']:7.1f}s "
            f"{r['verify_seconds']:6.1f}s {'pass' if r['passed'] else 'FAIL'}"
        )
    int8 = [r for r in rows if r["precision"] == "int8"]
    print(f"\nexport of {len(rows)} files with verification: {total:.1f} s (goal < 90 s)")
    for r in int8:
        print(
            f"{r['file']}: size {r['size_bytes'] / base['size_bytes']:.3f}x float32 "
            f"(goal <= 0.27x), agreement {100 * r['agreement']:.2f}% (goal >= 99.5%)"
        )


if __name__ == "__main__":
    main()
