"""The report's sections about the exported files: gates, benchmark, microcontrollers, use."""

from __future__ import annotations

import shlex
from pathlib import Path

from edgecnn.pipeline.recommend import best_file, recommend
from edgecnn.pipeline.report.html import E, Markup, figure, pct, table
from edgecnn.pipeline.results import RunData
from edgecnn.run_folder import CHART_FILES, EXPORTS_DIR, SAMPLE_FILE
from edgecnn.runtime.backends import BACKENDS, candidates


def exports(run: RunData) -> str:
    """Every exported file against the Keras model, and a chart of size and latency."""
    rows = []
    for f in run.export.files:
        gate = Markup('<span class="pass">pass</span>')
        if not f.passed:
            gate = Markup(f'<span class="fail">FAIL</span> {E("; ".join(f.failures))}')
        rows.append(
            [
                f.format,
                f.file,
                f"{f.size_bytes / 1024:,.1f}",
                f"{f.size_ratio:.3f}",
                pct(f.accuracy),
                f"{f.scores.delta_pp:+.2f}",
                pct(f.agreement),
                f"{f.scores.max_prob_diff:.1e}",
                gate,
            ]
        )
    keras = run.export.keras_accuracy
    tested, checked = run.export.test_images, run.export.agreement_images
    more = (
        f" (accuracy on those; top-1 agreement on {checked:,} images, the validation and "
        "training images too, since a small test set alone cannot show a 99.9% agreement)"
        if checked != tested
        else ""
    )
    return (
        f"<p>Each file was run through <code>edgecnn.runtime</code> on all "
        f"{tested:,} test images{more} and compared with the Keras model "
        f"({pct(keras)}): a file is kept only if it passes its gate.</p>"
        + table(
            [
                "format",
                "file",
                "KiB",
                "size ratio",
                "accuracy",
                "delta (pp)",
                "agreement",
                "max |dp|",
                "gate",
            ],
            rows,
            numeric_from=2,
        )
        + figure(run.run_dir / CHART_FILES[1], "Size and single-image latency per file")
    )


def benchmark(run: RunData) -> str:
    """Latency and throughput through the runtime, beside the bare interpreter."""
    results = run.bench.results
    latency = [
        [
            r.model,
            r.backend,
            r.threads or "its own",  # None: numpy's BLAS picks its threads
            f"{r.p50_us:,.0f}",
            f"{r.p95_us:,.0f}",
            f"{r.raw_p50_us:,.0f}",
            f"{r.latency_ratio:.2f}x",
            "-" if r.cold_start_s is None else f"{r.cold_start_s:.2f}",
            "-" if r.peak_rss_one_image_mb is None else f"{r.peak_rss_one_image_mb:.0f}",
        ]
        for r in results
    ]
    sizes = run.bench.batch_sizes
    throughput = [
        [r.model]
        + [
            f"{r.throughput[b].images_per_s:,.0f} ({r.throughput[b].ratio:.2f}x)"
            if b in r.throughput
            else "-"
            for b in sizes
        ]
        for r in results
    ]
    cores = run.bench.cpu_count or "?"
    return (
        f"<p>Measured on this machine ({cores} cores) through <code>edgecnn.runtime</code>, "
        "interleaved with the bare interpreter in the same process so that both see the "
        "same load. Ratio: edgecnn against raw.</p><h3>One image at a time (microseconds)</h3>"
        + table(
            [
                "file",
                "backend",
                "threads",
                "p50",
                "p95",
                "raw p50",
                "ratio",
                "cold start (s)",
                "peak RSS (MB)",
            ],
            latency,
            numeric_from=2,
        )
        + "<h3>Throughput (images per second; ratio against raw)</h3>"
        + table(["file", *(f"batch {b}" for b in sizes)], throughput)
    )


def microcontrollers(run: RunData) -> str:
    """The folder formats (C library, TFLite Micro): what they proved, their flash and RAM.

    Each format renders its own facts (:class:`edgecnn.export.formats.Details`).
    """
    parts = []
    for f in run.export.files:
        if f.details is None:
            continue
        parts.append(
            f"<h3>{E(f.file)}: {E(f.details.title)}</h3>"
            + table(["", "measured"], [list(fact) for fact in f.details.report_facts()])
        )
    for skipped in run.export.skipped:
        parts.append(f"<p>{E(skipped.format)}: skipped ({E(skipped.reason)}).</p>")
    if not parts:
        return "<p>No microcontroller format was exported in this run.</p>"
    return (
        "<p>Generated from the int8 <code>.tflite</code> after it passed its gate; "
        "each folder's <code>README.md</code> says how to build it into firmware.</p>"
        + "".join(parts)
    )


def _needed(file: str) -> str:
    """What runs ``file`` besides numpy: the package of the backend ``auto`` tries first."""
    names = candidates(Path(file).suffix.lower(), "auto")
    if not names:
        return "its interpreter"
    package = BACKENDS[names[0]].package
    return "nothing else" if package is None else package.label


def usage(run: RunData) -> str:
    """Which file for which target, and how to use this machine's, as commands to copy."""
    best = best_file(run.export.files, run.latency_by_file())
    if best is None:
        return "<p>No exported file passed its gate.</p>"
    path = str(run.run_dir / EXPORTS_DIR / best.file)
    from edgecnn.pipeline.summary import edgecnn_command

    command = shlex.join([edgecnn_command(), "predict", path, str(run.run_dir / SAMPLE_FILE)])
    targets = [
        [r.target, Markup(f"<code>{E(r.file)}</code>"), r.reason]
        for r in recommend(run.export.files, run.latency_by_file())
    ]
    return (
        "<h3>Which file where</h3>"
        + table(["target", "file", "why"], targets, numeric_from=3)
        + f"<p>Classify a picture on this machine with <code>{E(best.file)}</code> (numpy "
        f"and {_needed(best.file)} needed):</p>"
        f"<pre>{E(command)}</pre>"
        "<p>From Python:</p><pre>from edgecnn.runtime import load_classifier\n"
        f"clf = load_classifier({E(repr(path))})\n"
        'print(clf.classify("picture.png"))  # the 3 likeliest labels</pre>'
    )
