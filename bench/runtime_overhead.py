"""The runtime against the bare interpreters, int8 against float32, and a cold start.

All numbers come from this one run; each wrapper/raw pair is measured interleaved.

    python bench/runtime.py [EXPORTS_DIR]   (default: runs/latest/exports)

Needs model_float32/int8 .tflite and .onnx from `edgecnn export --int8`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edgecnn.runtime.benchmark import bench_model


def xnnpack_off_latency(path: Path, threads: int, runs: int = 2000) -> float:
    """Raw LiteRT p50 with the builtin kernels only (no XNNPACK delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path),
        num_threads=threads,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    detail, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = np.zeros(detail["shape"], detail["dtype"])
    times = []
    for i in range(runs + 50):
        start = time.perf_counter()
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        interpreter.get_tensor(out["index"])
        if i >= 50:
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/latest/exports")
    names = ["model_float32.tflite", "model_int8.tflite", "model_float32.onnx", "model_int8.onnx"]
    rows = []
    for threads in (1, 2):
        for name in names:
            r = bench_model(folder / name, [1, 32, 256], threads=threads, runs=2000)
            rows.append((name, threads, r))
    print("Wrapper overhead (edgecnn.runtime / raw interpreter, same process, interleaved)")
    print(
        f"{'model':22s} {'thr':>3s} {'p50 us':>7s} {'raw us':>7s} {'ratio':>6s} "
        f"{'b256 img/s':>10s} {'raw':>8s} {'ratio':>6s}   goal: ratio <= 1.15, b256 >= 0.95"
    )
    for name, threads, r in rows:
        t = r["throughput"]["256"]
        print(
            f"{name:22s} {threads:3d} {r['latency_us']['p50']:7.0f} "
            f"{r['raw_latency_us']['p50']:7.0f} {r['latency_ratio']:6.2f} "
            f"{t['images_per_s']:10,.0f} {t['raw_images_per_s']:8,.0f} {t['ratio']:6.2f}"
        )
    print("\nint8 vs float32 (raw p50 single image; throughput at batch 256)")
    by = {(n, th): r for n, th, r in rows}
    for fmt in ("tflite", "onnx"):
        for threads in (1, 2):
            f32, i8 = by[(f"model_float32.{fmt}", threads)], by[(f"model_int8.{fmt}", threads)]
            print(
                f"{fmt:6s} {threads} thr: float32 {f32['raw_latency_us']['p50']:5.0f} us, "
                f"int8 {i8['raw_latency_us']['p50']:5.0f} us "
                f"({i8['raw_latency_us']['p50'] / f32['raw_latency_us']['p50']:.2f}x); "
                f"batch 256: {f32['throughput']['256']['raw_images_per_s']:,.0f} vs "
                f"{i8['throughput']['256']['raw_images_per_s']:,.0f} img/s"
            )
    for threads in (1, 2):
        on = by[("model_int8.tflite", threads)]["raw_latency_us"]["p50"]
        off = xnnpack_off_latency(folder / "model_int8.tflite", threads)
        print(f"LiteRT int8, {threads} thr: XNNPACK {on:.0f} us, builtin kernels {off:.0f} us")
    cold = by[("model_int8.tflite", 2)]
    print(
        f"\nCold start (new process: import edgecnn.runtime, load model_int8.tflite, classify "
        f"one image): {cold['cold_start_s']:.2f} s wall, peak RSS "
        f"{cold['peak_rss_one_image_mb']:.0f} MB   goal: <= 0.5 s, <= 80 MB"
    )


if __name__ == "__main__":
    main()
