"""Measure a model through the runtime beside its raw interpreter, in one process, interleaved."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn._quiet import native_stderr_hidden
from edgecnn.runtime.classifier import Classifier, load_classifier
from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.preprocess import to_batch
from edgecnn.runtime.verify import read_reference, reference_path

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


def raw_runner(clf: Classifier, batch: np.ndarray) -> Callable[[], object]:
    """The same work as ``clf.predict(batch)`` on the bare interpreter, no edgecnn code inside.

    It starts from the same uint8 pixels and ends at the same float outputs: converting
    the pixels to the model's input type and reading the output back are in it, the
    runtime's validation, checks and dispatch are not (see each backend's ``raw_runner``).
    """
    return clf.backend.raw_runner(to_batch(batch, clf.input_shape))


def bench_images(clf: Classifier, count: int) -> tuple[np.ndarray, str]:
    """``count`` uint8 images to time with, and where they come from.

    The real test images saved beside the model at export (``<file>.reference.npz``),
    repeated as needed; random pixels only for a model without them.
    """
    try:
        images = read_reference(reference_path(clf.path))["images"]
    except ModelError:
        images = None
    if images is not None and images.dtype == np.uint8 and len(images):
        images = images.reshape(len(images), *clf.input_shape)
        return np.resize(images, (count, *clf.input_shape)), "test images from the export"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, *clf.input_shape), dtype=np.uint8), "random pixels"


def _interleaved(
    a: Callable[[], object], b: Callable[[], object], runs: int, block: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Time ``a`` and ``b`` alternately (in blocks of ``block`` calls).

    Alternating call by call makes a burst of load from elsewhere hit both sides alike,
    which the tail percentiles need.
    """
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(max(3, min(100, runs // 10))):
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


def _percentiles(times: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(times, q) * 1e6) for q in (50, 95, 99)}


def bench_model(
    path: Path,
    batch_sizes: list[int],
    threads: int | None = None,
    runs: int = 500,
    seconds_per_batch_size: float | None = None,
    backend: str = "auto",
    cold: bool = True,
) -> dict[str, Any]:
    """Latency percentiles, throughput per batch size, load time and memory of one model.

    Each figure is measured beside the bare interpreter doing the same work
    (:func:`raw_runner`), interleaved in blocks in one process, on the same images.
    ``runs`` single-image calls are timed for the latency percentiles; each batch size is
    timed over about 20,000 images (5 to 200 calls), or for about
    ``seconds_per_batch_size`` if given (at least 5 calls), which keeps slow backends short.
    ``cold`` adds a new process's start-up time and peak memory.
    """
    start = time.perf_counter()
    with native_stderr_hidden():  # LiteRT's one "INFO: Created ... delegate" line
        clf = load_classifier(path, backend=backend, num_threads=threads)
        load_s = time.perf_counter() - start
        clf.predict(np.zeros((1, *clf.input_shape), np.uint8))
    images, source = bench_images(clf, max(batch_sizes + [1]))
    one = images[:1]
    wrapped, raw = _interleaved(lambda: clf.predict(one), raw_runner(clf, one), runs)
    result: dict[str, Any] = {
        "model": str(path),
        "size_bytes": path.stat().st_size,
        "backend": clf.backend_name,
        "threads": clf.backend.threads,
        "precision": clf.metadata.precision,
        "images": source,
        "load_s": load_s,
        "runs": runs,
        "latency_us": _percentiles(wrapped),
        "raw_latency_us": _percentiles(raw),
        "throughput": {},
    }
    lat, raw_lat = result["latency_us"], result["raw_latency_us"]
    result["latency_ratio"] = lat["p50"] / raw_lat["p50"]
    result["latency_ratio_p99"] = lat["p99"] / raw_lat["p99"]
    for size in batch_sizes:
        batch = images[:size]
        reps = max(5, min(200, 20_000 // size))
        if seconds_per_batch_size is not None:
            start = time.perf_counter()
            clf.predict(batch)
            per_call = time.perf_counter() - start
            reps = max(5, min(reps, int(seconds_per_batch_size / (2 * per_call))))
        w, r = _interleaved(partial(clf.predict, batch), raw_runner(clf, batch), reps)
        result["throughput"][str(size)] = {
            "images_per_s": size / float(np.median(w)),
            "raw_images_per_s": size / float(np.median(r)),
            "ratio": float(np.median(r) / np.median(w)),
        }
    if cold:
        result.update(cold_start(path, clf.backend_name, threads, max(batch_sizes)))
    return result


def format_bench(results: list[dict[str, Any]]) -> str:
    """A table per model: latency and throughput beside the bare interpreter."""
    cpu = os.cpu_count()
    lines = [
        f"{len(results)} model(s); {cpu} CPU cores; edgecnn beside the bare interpreter doing "
        "the same work, interleaved in one process (ratio: edgecnn / raw for latency, "
        "edgecnn / raw for img/s)"
    ]
    for r in results:
        lat, raw = r["latency_us"], r["raw_latency_us"]
        lines.append(
            f"\n{r['model']}  ({r['size_bytes'] / 1024:.1f} KiB, {r['precision']}, "
            f"{r['backend']}, {r['threads'] or 'its own'} threads, {r['images']})"
        )
        if "cold_start_s" in r:
            lines.append(
                f"  load {1000 * r['load_s']:.1f} ms; cold start {r['cold_start_s']:.2f} s "
                f"(peak RSS {r['peak_rss_one_image_mb']:.0f} MB); peak RSS after the largest "
                f"batch {r['peak_rss_mb']:.0f} MB"
            )
        lines.append(
            f"  1 image: p50 {lat['p50']:.0f} us  p95 {lat['p95']:.0f} us  p99 {lat['p99']:.0f} us"
            f"   raw p50 {raw['p50']:.0f} us  p99 {raw['p99']:.0f} us   ratio "
            f"{r['latency_ratio']:.2f}x (p99 {r['latency_ratio_p99']:.2f}x)"
        )
        for size, t in r["throughput"].items():
            lines.append(
                f"  batch {size:>4s}: {t['images_per_s']:9,.0f} img/s   raw "
                f"{t['raw_images_per_s']:9,.0f} img/s   ratio {t['ratio']:.2f}x"
            )
    return "\n".join(lines)
