"""``edgecnn predict`` over a folder of real Fashion-MNIST PNGs, beside the backend's own speed.

The first COUNT test images are written as 28x28 greyscale PNGs into a temporary folder;
then, interleaved over a few rounds (medians reported):

(a) the backend's batch-256 throughput on the same images already decoded, in this
    process: ``load_classifier(model).predict(batch)``;
(b) ``edgecnn predict MODEL FOLDER > file`` as a subprocess: wall time, and the time
    inside, that is the wall time less that of ``edgecnn predict MODEL one.png``
    (Python start-up, imports, model load); its CPU time, worker processes included;
(c) decoding alone, in this process: the batch decoder ``predict`` uses, split into
    reading the files, checking and inflating them, and unfiltering plus the
    dark-on-light test; and Pillow's ``load_image``, the path other pictures take.

The target is (b) inside >= 0.8x (a). ``measure()`` is what ``bench/runtime.py`` calls.

    python bench/predict_folder.py MODEL [--count N] [--threads T] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 0.8


def test_images(count: int) -> np.ndarray:
    """The first ``count`` Fashion-MNIST test images, found as the trainer finds them."""
    from edgecnn.trainer.idx import locate_dataset, read_idx

    files = locate_dataset("fashion")
    if not isinstance(files, dict):
        sys.exit("the Fashion-MNIST IDX files are not installed: apt-get install "
                 "dataset-fashion-mnist, or set EDGECNN_DATA_DIR")  # fmt: skip
    return read_idx(files["test_images"])[:count]


def write_pngs(images: np.ndarray, folder: Path) -> list[str]:
    """Each image as ``folder/NNNNN.png``; the paths in order."""
    from PIL import Image

    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def _backend_rate(classifier: Any, images: np.ndarray) -> float:
    """Images per second of ``predict`` on batches of 256 already-decoded images."""
    classifier.predict(images[:256])  # warm: the interpreter takes batch 256 from here on
    start = time.perf_counter()
    for i in range(0, len(images), 256):
        classifier.predict(images[i : i + 256])
    return len(images) / (time.perf_counter() - start)


def _run_predict(args: list[str], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (children included) of ``edgecnn predict ARGS > out``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(out, "w") as f:
        done = subprocess.run([sys.executable, "-m", "edgecnn", "predict", *args], stdout=f,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"edgecnn predict failed: {done.stderr.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _decode_parts(paths: list[str], shape: tuple[int, int, int], light: bool) -> dict[str, float]:
    """Microseconds per picture of each step of the batch decoder, and of ``load_image``."""
    from edgecnn.runtime.images import light_borders, load_image
    from edgecnn.runtime.predict import small_png
    from edgecnn.runtime.predict.batches import decode_pictures

    side = shape[0]
    n = len(paths)
    t0 = time.perf_counter()
    datas = [small_png.read_small(p) for p in paths]
    t1 = time.perf_counter()
    rows = [small_png.filtered_rows(d, side) for d in datas if d is not None]
    t2 = time.perf_counter()
    for i in range(0, len(rows), 256):
        pixels = small_png.unfilter(rows[i : i + 256], side)
        light_borders(pixels)
    t3 = time.perf_counter()
    for i in range(0, n, 256):
        decode_pictures(paths[i : i + 256], shape, light)
    t4 = time.perf_counter()
    sample = paths[: min(n, 2000)]
    for p in sample:
        load_image(p, light_on_dark=light)
    t5 = time.perf_counter()
    us = 1e6 / n
    return {
        "read": (t1 - t0) * us,
        "check_inflate": (t2 - t1) * us,
        "unfilter_invert": (t3 - t2) * us,
        "decode": (t4 - t3) * us,  # decode_pictures, the three above in one call
        "pillow_load_image": (t5 - t4) * 1e6 / len(sample),
        "fast_path_share": len(rows) / n,
    }


def measure(model: Path, count: int = 10_000, threads: int | None = None,
            rounds: int = 5) -> dict[str, Any]:  # fmt: skip
    """Every number of this benchmark for ``model``, as a flat dict (``ratio`` is the target's)."""
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.predict.workers import worker_count, workers_pay

    model = Path(model)
    images = test_images(count)
    with native_stderr_hidden():
        classifier = load_classifier(model, num_threads=threads)
    shape, light = classifier.input_shape, classifier.metadata.light_on_dark
    # How the predict subprocess runs: worker processes of a few interpreter threads each.
    predict_threads = threads or 1 if workers_pay(count) else classifier.backend.threads
    predict_workers = worker_count(threads or 1, str(model)) if workers_pay(count) else 0
    batch = images.reshape(len(images), *shape)
    thread_args = ["--threads", str(threads)] if threads else []
    rates, walls, cpus, starts, start_cpus, decodes = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pngs"
        folder.mkdir()
        paths = write_pngs(images, folder)
        out = Path(tmp) / "results.txt"
        for _ in range(rounds):
            with native_stderr_hidden():
                rates.append(_backend_rate(classifier, batch))
            wall, cpu = _run_predict([str(model), paths[0], *thread_args], out)
            starts.append(wall)
            start_cpus.append(cpu)
            wall, cpu = _run_predict([str(model), str(folder), *thread_args], out)
            walls.append(wall)
            cpus.append(cpu)
            decodes.append(_decode_parts(paths, shape, light))
        lines = len(out.read_text().splitlines())
    if lines != count:
        sys.exit(f"edgecnn predict wrote {lines} lines for {count} pictures")
    backend = statistics.median(rates)
    wall, start = statistics.median(walls), statistics.median(starts)
    inside = max(wall - start, 1e-9)
    cpu_us = (statistics.median(cpus) - statistics.median(start_cpus)) * 1e6 / count
    decode = {key: statistics.median(d[key] for d in decodes) for key in decodes[0]}
    return {
        "model": model.name,
        "backend": classifier.backend_name,
        "threads": classifier.backend.threads,
        "predict_threads": predict_threads,
        "predict_workers": predict_workers,
        "pictures": count,
        "backend_img_per_s": backend,
        "predict_wall_s": wall,
        "startup_s": start,
        "predict_inside_s": inside,
        "predict_img_per_s": count / inside,
        "predict_wall_img_per_s": count / wall,
        "ratio": count / inside / backend,
        "ratio_wall": count / wall / backend,
        "inference_us_per_image": 1e6 / backend,
        "cpu_us_per_picture": cpu_us,
        "decode_us_per_picture": decode["decode"],
        "decode_share_of_cpu": decode["decode"] / cpu_us if cpu_us > 0 else float("nan"),
        "read_us": decode["read"],
        "check_inflate_us": decode["check_inflate"],
        "unfilter_invert_us": decode["unfilter_invert"],
        "pillow_load_image_us": decode["pillow_load_image"],
        "fast_path_share": decode["fast_path_share"],
    }


def report(r: dict[str, Any]) -> str:
    """The numbers of :func:`measure` for people."""
    return "\n".join(
        [
            f"{r['model']} on {r['backend']}, {r['threads']} threads; {r['pictures']:,} PNGs "
            f"(28x28 greyscale, real Fashion-MNIST test images)",
            f"(a) backend, batch 256, decoded:   {r['backend_img_per_s']:9,.0f} img/s "
            f"({r['inference_us_per_image']:.1f} us/image)",
            f"(b) edgecnn predict FOLDER, inside: {r['predict_img_per_s']:9,.0f} img/s "
            f"({r['predict_inside_s']:.3f} s; wall {r['predict_wall_s']:.3f} s less "
            f"{r['startup_s']:.3f} s start-up with one picture; {r['predict_workers']} "
            f"workers of {r['predict_threads']} interpreter thread(s))",
            f"    wall, start-up included:        {r['predict_wall_img_per_s']:9,.0f} img/s",
            f"    CPU, workers included:          {r['cpu_us_per_picture']:9.1f} us/picture",
            f"(c) decode alone, one process:      {r['decode_us_per_picture']:9.1f} us/picture "
            f"= {100 * r['decode_share_of_cpu']:.0f}% of predict's CPU time "
            f"({100 * r['fast_path_share']:.0f}% on the small-PNG path)",
            f"    read {r['read_us']:.1f} + check and inflate {r['check_inflate_us']:.1f} + "
            f"unfilter and invert test {r['unfilter_invert_us']:.1f} us; Pillow's load_image "
            f"{r['pillow_load_image_us']:.1f} us/picture",
            f"predict / backend: {r['ratio']:.2f}x inside (target >= {TARGET:.1f}x), "
            f"{r['ratio_wall']:.2f}x wall",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--count", type=int, default=10_000, help="pictures (at most 10,000)")
    parser.add_argument("--threads", type=int, help="interpreter threads [backend's default]")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--json", action="store_true", help="the numbers as JSON")
    args = parser.parse_args()
    result = measure(args.model, args.count, args.threads, args.rounds)
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
