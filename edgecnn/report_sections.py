"""The report's sections, each built from the files a run left in its folder."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn._format import format_duration
from edgecnn.report import (
    FIGURE_CAPTIONS,
    E,
    Markup,
    bar,
    figure,
    key_figure,
    pct,
    table,
)

STAGE_ORDER = ("train", "evaluate", "export", "bench", "report")


@dataclass
class RunData:
    """Everything a run wrote that the report shows."""

    run_dir: Path
    state: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    export: dict[str, Any]
    bench: dict[str, Any]

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        """Read ``run.json`` and the files of every stage before the report."""

        def read(name: str) -> Any:
            return json.loads((run_dir / name).read_text())

        return cls(
            run_dir=run_dir,
            state=read("run.json"),
            config=read("config.json"),
            history=read("history.json"),
            metrics=read("metrics.json"),
            export=read("exports/export_report.json"),
            bench=read("bench.json"),
        )

    @property
    def name(self) -> str:
        """The run's name: its folder's name."""
        return self.state.get("name") or self.run_dir.name

    @property
    def labels(self) -> list[str]:
        """Class names in class order."""
        return list(self.metrics["per_class_accuracy"])

    def latency_by_file(self) -> dict[str, float]:
        """Single-image p50 latency (us) of each benchmarked file."""
        return {r["model"]: r["latency_us"]["p50"] for r in self.bench.get("results", [])}

    def passed_files(self) -> list[dict[str, Any]]:
        """Export rows of the files that passed their gate."""
        return [f for f in self.export["files"] if f["passed"]]


def best_file(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The file to recommend: the int8 file that agrees best with Keras (then the smaller).

    Without int8 files, the smallest float file that passed.
    """
    passed = [f for f in files if f["passed"]]
    int8 = [f for f in passed if f["precision"] == "int8"]
    if int8:
        return max(int8, key=lambda f: (f["agreement"], -f["size_bytes"]))
    return min(passed, key=lambda f: f["size_bytes"], default=None)


def summary(run: RunData) -> str:
    """Key figures, configuration, machine, versions, time per stage."""
    m, stages = run.metrics, run.state["stages"]
    best = best_file(run.export["files"])
    total = sum(stages.get(s, {}).get("seconds", 0.0) for s in STAGE_ORDER)
    cards = [
        key_figure(
            "Test accuracy",
            pct(m["test_accuracy"]),
            f"{m['test_correct']:,} of {m['test_total']:,} test images",
        ),
        key_figure("Validation accuracy", pct(m["val_accuracy"])),
    ]
    if best:
        cards.append(
            key_figure(
                "Recommended model",
                best["file"],
                f"{best['size_ratio']:.2f}x float32 size, {pct(best['agreement'])} agreement",
            )
        )
    cards.append(key_figure("Run time", format_duration(total), "all stages before this page"))
    config = run.config
    augment = "none"
    if config.get("augment_shift"):
        augment = f"shifts up to {config['augment_shift']} px"
        augment += " and flips" if config.get("augment_flip") else ""
    settings = {
        "Dataset": f"{run.export.get('dataset', config['dataset'])} "
        f"({m['test_total']:,} test images)",
        "Epochs": config["epochs"],
        "Batch size": config["batch_size"],
        "Optimizer": f"Adam, learning rate {config['learning_rate']:g} ({config['lr_schedule']})",
        "Seed": config["seed"],
        "Augmentation": augment,
        "Training images": f"first {config['train_subset']:,}"
        if config["train_subset"]
        else "all (55,000)",
        "Network": _network(config["model"]),
        "Best epoch": m.get("best_epoch", "?"),
    }
    env = run.state.get("environment", {})
    machine = env.get("machine", {})
    machine_rows = {
        "CPU": machine.get("cpu", "?"),
        "Cores": machine.get("cores", "?"),
        "Memory": f"{machine.get('memory_gib', '?')} GiB",
        "System": f"{machine.get('system', '?')} ({machine.get('architecture', '?')})",
        **env.get("versions", {}),
    }
    durations = [
        [s, stages.get(s, {}).get("status", "?"), _seconds(stages.get(s, {}), s)]
        for s in STAGE_ORDER
    ]
    return (
        f'<div class="cards">{"".join(cards)}</div>'
        '<div class="grid"><div><h3>Configuration</h3>'
        + _kv(settings)
        + "</div><div><h3>Machine and versions</h3>"
        + _kv(machine_rows)
        + "</div></div><h3>Time per stage</h3>"
        + table(["stage", "status", "wall time"], durations, numeric_from=2)
    )


def _network(m: dict[str, Any]) -> str:
    """The tutorial's layers, as sizes."""
    return (
        f"conv {m['filter_size1']}x{m['filter_size1']}x{m['num_filters1']}, pool, ReLU; "
        f"conv {m['filter_size2']}x{m['filter_size2']}x{m['num_filters2']}, pool, ReLU; "
        f"dense {m['fc_size']}, ReLU; dense {m['num_classes']}"
    )


def _seconds(record: dict[str, Any], stage: str) -> str:
    if stage == "report" and record.get("status") != "done":
        return "writing this page"
    seconds = record.get("seconds")
    return format_duration(seconds) if seconds is not None else "-"


def _kv(items: dict[str, Any]) -> str:
    rows = "".join(f"<dt>{E(str(k))}</dt><dd>{E(str(v))}</dd>" for k, v in items.items())
    return f'<dl class="kv">{rows}</dl>'


def training(run: RunData) -> str:
    """Loss and accuracy curves, and the numbers of every epoch."""
    rows = [
        [
            h["epoch"],
            f"{h['loss']:.4f}",
            pct(h["accuracy"]),
            f"{h['val_loss']:.4f}",
            pct(h["val_accuracy"]),
            format_duration(h["seconds"]),
            f"{h['images_per_second']:,.0f}",
        ]
        for h in run.history
    ]
    return figure(run.run_dir / "training_curves.png", "Loss and accuracy per epoch") + table(
        ["epoch", "loss", "accuracy", "val loss", "val accuracy", "time", "img/s"], rows
    )


def accuracy(run: RunData) -> str:
    """Test accuracy per class, the confusion matrix and examples."""
    m = run.metrics
    cm = m.get("confusion_matrix")
    rows = []
    for i, (label, acc) in enumerate(m["per_class_accuracy"].items()):
        confused = ""
        if cm:
            others = [(n, j) for j, n in enumerate(cm[i]) if j != i]
            count, j = max(others)
            confused = f"{run.labels[j]} ({count})" if count else "-"
        rows.append([label, bar(acc, pct(acc, 1)), confused])
    per_class = table(["class", "accuracy", "most often mistaken for"], rows, numeric_from=1)
    figures = [
        figure(run.run_dir / name, FIGURE_CAPTIONS[name])
        for name in ("confusion_matrix.png", "errors.png", "samples.png")
    ]
    return (
        f"<p>{m['test_correct']:,} of {m['test_total']:,} test images classified correctly "
        f"({pct(m['test_accuracy'])}) by the Keras model.</p>"
        + per_class
        + f'<div class="grid">{"".join(figures)}</div>'
    )


def network(run: RunData) -> str:
    """What the two convolutional layers learned and what they output."""
    names = ("conv1_weights.png", "conv1_outputs.png", "conv2_weights.png", "conv2_outputs.png")
    figures = "".join(figure(run.run_dir / n, FIGURE_CAPTIONS[n]) for n in names)
    return f'<div class="grid">{figures}</div>'


def exports(run: RunData) -> str:
    """Every exported file against the Keras model, and a chart of size and latency."""
    rows = []
    for f in run.export["files"]:
        gate = Markup('<span class="pass">pass</span>')
        if not f["passed"]:
            gate = Markup(f'<span class="fail">FAIL</span> {E("; ".join(f["failures"]))}')
        rows.append(
            [
                f["format"],
                f["file"],
                f"{f['size_bytes'] / 1024:,.1f}",
                f"{f['size_ratio']:.3f}",
                pct(f["accuracy"]),
                f"{f['delta_pp']:+.2f}",
                pct(f["agreement"]),
                f"{f['max_prob_diff']:.1e}",
                gate,
            ]
        )
    keras = run.export["keras_accuracy"]
    return (
        f"<p>Each file was run through <code>edgecnn.runtime</code> on all "
        f"{run.export['test_images']:,} test images and compared with the Keras model "
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
        + figure(run.run_dir / "export_chart.png", "Size and single-image latency per file")
    )


def benchmark(run: RunData) -> str:
    """Latency and throughput through the runtime, beside the bare interpreter."""
    results = run.bench.get("results", [])
    latency = [
        [
            r["model"],
            r["backend"],
            r["threads"] or ("all" if r["backend"] == "onnxruntime" else "-"),
            f"{r['latency_us']['p50']:,.0f}",
            f"{r['latency_us']['p95']:,.0f}",
            f"{r['raw_latency_us']['p50']:,.0f}",
            f"{r['latency_ratio']:.2f}x",
            f"{r['cold_start_s']:.2f}",
            f"{r['peak_rss_one_image_mb']:.0f}",
        ]
        for r in results
    ]
    sizes = run.bench.get("batch_sizes", [])
    throughput = [
        [r["model"]]
        + [
            f"{r['throughput'][str(b)]['images_per_s']:,.0f} "
            f"({r['throughput'][str(b)]['ratio']:.2f}x)"
            for b in sizes
        ]
        for r in results
    ]
    cores = run.bench.get("cpu_count", "?")
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


def int8_changes(run: RunData) -> str:
    """The classes whose accuracy moved most when the model went to int8."""
    files = {(f["format"], f["precision"]): f for f in run.export["files"]}
    parts = []
    for (fmt, precision), f in files.items():
        base = files.get((fmt, "float32"))
        if precision != "int8" or not base or "per_class_accuracy" not in f:
            continue
        moved = sorted(
            zip(run.labels, base["per_class_accuracy"], f["per_class_accuracy"], strict=True),
            key=lambda t: -abs(t[2] - t[1]),
        )[:5]
        changed = round((1 - f["agreement"]) * run.export["test_images"])
        rows = [
            [
                label,
                pct(a, 1),
                pct(b, 1),
                Markup(
                    f'<span class="{"up" if b > a else "down" if b < a else ""}">'
                    f"{100 * (b - a):+.1f}</span>"
                ),
            ]
            for label, a, b in moved
        ]
        parts.append(
            f"<h3>{E(f['file'])} against {E(base['file'])}</h3><p>{changed:,} of "
            f"{run.export['test_images']:,} test images get another top-1 class; accuracy "
            f"{f['delta_pp']:+.2f} points overall.</p>"
            + table(["class", "float32", "int8", "change (pp)"], rows)
        )
    return "".join(parts) or "<p>No int8 file was exported in this run.</p>"


def usage(run: RunData) -> str:
    """How to use the recommended file, as commands to copy."""
    best = best_file(run.export["files"])
    if best is None:
        return "<p>No exported file passed its gate.</p>"
    path = str(run.run_dir / "exports" / best["file"])
    command = shlex.join(["edgecnn", "predict", path, str(run.run_dir / "sample.png")])
    return (
        f"<p>Classify a picture with <code>{E(best['file'])}</code> (only numpy and "
        f"{'LiteRT' if best['format'] == 'tflite' else 'onnxruntime'} needed):</p>"
        f"<pre>{E(command)}</pre>"
        "<p>From Python:</p><pre>from edgecnn.runtime import load_classifier\n"
        f"clf = load_classifier({E(repr(path))})\n"
        'print(clf.classify("picture.png", top_k=3))</pre>'
    )


SECTIONS: list[tuple[str, str, Callable[[RunData], str]]] = [
    ("summary", "Summary", summary),
    ("training", "Training", training),
    ("accuracy", "Test accuracy", accuracy),
    ("network", "Inside the network", network),
    ("exports", "Exported models", exports),
    ("benchmark", "Benchmark", benchmark),
    ("int8", "What int8 changed", int8_changes),
    ("use", "Use it", usage),
]
