"""A hand-made run folder, in the shape a real ``edgecnn run`` writes it, for report tests.

No training: each test picks the numbers that show one thing (a long training, a small
validation set, an int8 file that changed nothing, a latency near a tie).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from PIL import Image
from shared import export_record, export_report_document

from edgecnn.export.records import ExportedFile, ExportReport
from edgecnn.pipeline.state import STAGES, RunOptions, RunState, StageRecord
from edgecnn.run_folder import (
    BENCH_FILE,
    CONFIG_FILE,
    EXPORT_REPORT_FILE,
    EXPORTS_DIR,
    FIGURE_FILES,
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILE,
)
from edgecnn.runtime.gate import Scores
from edgecnn.trainer.config import ModelConfig, TrainConfig

LABELS = ["circle", "square", "<b>cross</b>"]  # a label that must come out escaped
KERAS = [0.9, 0.8, 0.7]


def exported_file(name, fmt, precision, agreement=1.0, per_class=None, **changes):
    """A kept file's record as an export writes it, with its gate's figures."""
    small = precision != "float32"
    scores = Scores(
        accuracy=0.8, reference_accuracy=0.8 if agreement == 1.0 else 0.805,
        agreement=agreement, agreement_images=1_000, max_prob_diff=0.01,
        per_class_accuracy=tuple(per_class or KERAS),
    )  # fmt: skip
    changes = {"backend": "numpy", "size_bytes": 250_000 if small else 950_000,
               "size_ratio": 0.26 if small else 1.0, **changes}  # fmt: skip
    record = export_record(name, fmt, scores=scores, **changes)
    return dataclasses.replace(record, precision=precision)


def bench_result(name: str, p50: float) -> dict:
    """A row of ``bench.json`` with the given single-image p50 (us)."""
    return {
        "model": name, "backend": "numpy", "threads": 2, "runs": 300,
        "latency_us": {"p50": p50, "p95": 2 * p50}, "raw_latency_us": {"p50": p50},
        "latency_ratio": 1.0, "cold_start_s": 0.1, "peak_rss_one_image_mb": 40.0,
        "throughput": {"1": {"images_per_s": 1e6 / p50, "ratio": 1.0}},
    }  # fmt: skip


def make_run(
    folder: Path,
    *,
    epochs: int = 3,
    best_epoch: int | None = None,
    val_images: int = 5_000,
    val_accuracy: float = 0.9,
    files: list[ExportedFile] | None = None,
    latency_us: dict[str, float] | None = None,
) -> Path:
    """A finished run folder with everything the report and the summary read."""
    exports = folder / EXPORTS_DIR
    exports.mkdir(parents=True)
    files = files or [
        exported_file("model_float32.tflite", "tflite", "float32"),
        exported_file("model_int8.tflite", "tflite", "int8", 0.995, [0.91, 0.8, 0.69]),
        exported_file("model_int8.onnx", "onnx", "int8"),
    ]
    latency_us = latency_us or {"model_float32.tflite": 100.0, "model_int8.tflite": 50.0}
    best_epoch = best_epoch or epochs
    history = [
        {"epoch": e, "loss": 1 / e, "accuracy": 0.5 + e / (4 * epochs), "val_loss": 1 / e,
         "val_accuracy": 0.9 if e == best_epoch else 0.8, "seconds": 1.0,
         "images_per_second": 1000.0}
        for e in range(1, epochs + 1)
    ]  # fmt: skip
    test_total = 380
    metrics = {
        "dataset": "shapes", "test_accuracy": 0.8, "test_correct": 304, "test_total": test_total,
        "val_accuracy": val_accuracy, "val_images": val_images, "best_epoch": best_epoch,
        "per_class_accuracy": dict(zip(LABELS, KERAS, strict=True)),
        "confusion_matrix": [[9, 1, 0], [1, 8, 1], [0, 3, 7]],
    }  # fmt: skip
    config = TrainConfig(epochs=epochs, model=ModelConfig(num_classes=3)).to_dict()
    done = {s: StageRecord("done", seconds=1.0) for s in STAGES}
    state = RunState(RunOptions(), done, name="hand-made").to_dict()
    report = dataclasses.replace(
        ExportReport.from_dict(export_report_document(files, "0" * 64)),
        dataset="shapes", test_images=test_total, agreement_images=1_000,
        labels=tuple(LABELS), keras_accuracy=0.8, keras_per_class_accuracy=tuple(KERAS),
        out_dir="exports", seconds=1.0,
    ).to_dict()  # fmt: skip
    bench = {
        "batch_sizes": [1],
        "cpu_count": 2,
        "results": [bench_result(name, p50) for name, p50 in latency_us.items()],
    }
    for name, data in ((RUN_FILE, state), (CONFIG_FILE, config), (HISTORY_FILE, history),
                       (METRICS_FILE, metrics), (BENCH_FILE, bench),
                       (f"{EXPORTS_DIR}/{EXPORT_REPORT_FILE}", report)):  # fmt: skip
        (folder / name).write_text(json.dumps(data))
    for f in files:  # each kept file names the model it came from in its sidecar
        if f.is_folder:
            (exports / f.file).mkdir()  # a folder format: no sidecar
            continue
        (exports / f.file).write_bytes(b"model")
        (exports / f"{f.file}.json").write_text(json.dumps({"source_sha256": "0" * 64}))
    for name in FIGURE_FILES:
        Image.new("L", (40, 30), 128).save(folder / name)
    return folder
