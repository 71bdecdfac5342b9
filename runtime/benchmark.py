"""Measure a model through the runtime beside its raw interpreter, in one process, interleaved."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn._quiet import native_stderr_hidden
from edgecnn.runtime.classifier import Classifier, load_classifier
from edgecnn.runtime.preprocess import to_batch

_COLD_START = """
import sys, time
t0 = time.perf_counter()
def peak_kb():
    # VmHWM, not ru_maxrss: the latter keeps the parent's high-water mark across exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import numpy as np
from edgecnn.runtime import load_classifier
clf = load_classifier(sys.argv[1], backend=sys.argv[2], num_threads=int(sys.argv[3]) or None)
clf.classify(np.zeros(clf.input_shape, np.uint8))
t1 = time.perf_counter()
rss_one = peak_kb()
clf.predict(np.zeros((int(sys.argv[4]), *clf.input_shape), np.uint8))
print(t1 - t0, rss_one, peak_kb())
"""


def raw_runner(clf: Classifier, batch: np.ndarray) -> Callable[[], Any]:
    """A callable running ``batch`` (uint8) on the bare interpreter, no edgecnn code inside."""
    return clf.backend.raw_runner(to_batch(batch, clf.input_shape))


def _interleaved(a: Any, b: Any, runs: int, block: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Time ``a`` and ``b`` alternately in blocks, so load changes hit both alike."""
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(3):
        a(), b()
    done = 0
    while done < runs:
        for key, fn in ((0, a), (1, b)):
            for _ in range(min(block, runs - done)):
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        done += block
    return np.array(times[0]), np.array(times[1])


def cold_start(path: Path, backend: str, threads: int | None, batch: int) -> dict[str, float]:
    """Wall time of a new process that imports the runtime, loads, and classifies one image.

    Also that process's peak RSS after it classifies a ``batch``.
    """
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _COLD_START, str(path), backend, str(threads or 0), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    inside, rss_one_kb, rss_kb = done.stdout.split()
    return {
        "cold_start_s": wall,
        "import_load_classify_s": float(inside),
        "peak_rss_one_image_mb": int(rss_one_kb) / 1024,
        "peak_rss_mb": int(rss_kb) / 1024,
    }


def bench_model(
    path: Path,
    batch_sizes: list[int],
    threads: int | None = None,
    runs: int = 500,
    seconds_per_batch_size: float | None = None,
) -> dict[str, Any]:
    """Latency percentiles, throughput per batch size, load time and memory of one model.

    ``runs`` single-image calls are timed for the latency percentiles; each batch size is
    timed over about 20,000 images (5 to 200 calls), or for about
    ``seconds_per_batch_size`` if given (at least 5 calls), which keeps slow backends short.
    """
    start = time.perf_counter()
    with native_stderr_hidden():  # LiteRT's one "INFO: Created ... delegate" line
        clf = load_classifier(path, num_threads=threads)
        load_s = time.perf_counter() - start
        clf.predict(np.zeros((1, *clf.input_shape), np.uint8))
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, *clf.input_shape), dtype=np.uint8)
    wrapped, raw = _interleaved(lambda: clf.predict(one), raw_runner(clf, one), runs)
    result: dict[str, Any] = {
        "model": str(path),
        "size_bytes": path.stat().st_size,
        "backend": clf.backend_name,
        "threads": clf.backend.threads,
        "precision": clf.metadata.precision,
        "load_s": load_s,
        "runs": runs,
        "latency_us": {f"p{q}": float(np.percentile(wrapped, q) * 1e6) for q in (50, 95, 99)},
        "raw_latency_us": {f"p{q}": float(np.percentile(raw, q) * 1e6) for q in (50, 95, 99)},
        "throughput": {},
    }
    result["latency_ratio"] = result["latency_us"]["p50"] / result["raw_latency_us"]["p50"]
    for size in batch_sizes:
        batch = rng.integers(0, 256, (size, *clf.input_shape), dtype=np.uint8)
        reps = max(5, min(200, 20_000 // size))
        if seconds_per_batch_size is not None:
            start = time.perf_counter()
            clf.predict(batch)
            per_call = time.perf_counter() - start
            reps = max(5, min(reps, int(seconds_per_batch_size / (2 * per_call))))
        w, r = _interleaved(lambda b=batch: clf.predict(b), raw_runner(clf, batch), reps, 5)
        result["throughput"][str(size)] = {
            "images_per_s": size / float(np.median(w)),
            "raw_images_per_s": size / float(np.median(r)),
            "ratio": float(np.median(r) / np.median(w)),
        }
    result.update(cold_start(path, clf.backend_name, threads, max(batch_sizes)))
    return result


def format_bench(results: list[dict[str, Any]]) -> str:
    """A table per model: latency and throughput beside the raw interpreter."""
    cpu = os.cpu_count()
    lines = [
        f"{len(results)} model(s); {cpu} CPU cores; edgecnn vs the bare interpreter in "
        "the same process (ratio: edgecnn / raw for latency, edgecnn / raw for img/s)"
    ]
    for r in results:
        lat, raw = r["latency_us"], r["raw_latency_us"]
        lines.append(
            f"\n{r['model']}  ({r['size_bytes'] / 1024:.1f} KiB, {r['precision']}, "
            f"{r['backend']}, {r['threads'] or 'its own'} threads)\n"
            f"  load {1000 * r['load_s']:.1f} ms; cold start {r['cold_start_s']:.2f} s (peak RSS "
            f"{r['peak_rss_one_image_mb']:.0f} MB); peak RSS after the largest batch "
            f"{r['peak_rss_mb']:.0f} MB\n"
            f"  1 image: p50 {lat['p50']:.0f} us  p95 {lat['p95']:.0f} us  p99 {lat['p99']:.0f} us"
            f"   raw p50 {raw['p50']:.0f} us   ratio {r['latency_ratio']:.2f}x"
        )
        for size, t in r["throughput"].items():
            lines.append(
                f"  batch {size:>4s}: {t['images_per_s']:9,.0f} img/s   raw "
                f"{t['raw_images_per_s']:9,.0f} img/s   ratio {t['ratio']:.2f}x"
            )
    return "\n".join(lines)
