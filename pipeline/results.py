"""What a finished run wrote, read back once, typed: for the closing summary and the report.

``run.json``, ``bench.json`` and ``export_report.json`` are read by their own records'
readers; ``metrics.json`` and ``history.json`` (written by the trainer) into
:class:`Metrics` and :class:`Epoch`, every field checked as it is taken out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import DataError
from edgecnn.export.records import ExportReport
from edgecnn.pipeline.bench_record import BenchRecord, read_bench
from edgecnn.pipeline.state import RunState
from edgecnn.records import Fields, RecordError, read_record
from edgecnn.run_folder import (
    BENCH_FILE,
    CONFIG_FILE,
    EXPORTS_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILE,
)
from edgecnn.trainer.calibration_metrics import CALIBRATION_KEY, CalibrationMetrics
from edgecnn.trainer.config import TrainConfig
from edgecnn.trainer.splits import SplitCounts, read_counts


@dataclass(frozen=True)
class Metrics:
    """``metrics.json``: the Keras model's test (and validation) results."""

    test_accuracy: float
    test_correct: int
    test_total: int
    val_accuracy: float
    #: Class name -> test accuracy, in class order.
    per_class_accuracy: Mapping[str, float]
    #: None in a run written before edgecnn counted them.
    val_images: int | None = None
    train_images: int | None = None
    best_epoch: int | None = None
    confusion_matrix: tuple[tuple[int, ...], ...] = ()
    #: ECE before and after calibration on the test images (None before edgecnn measured it).
    calibration: CalibrationMetrics | None = None

    @classmethod
    def from_fields(cls, f: Fields) -> Metrics:
        """The metrics the evaluation wrote; names a field it rejects."""
        per_class = f.object("per_class_accuracy")
        rows = f.raw("confusion_matrix") or []
        if not isinstance(rows, list) or not all(
            isinstance(row, list) and all(type(n) is int and n >= 0 for n in row) for row in rows
        ):
            raise RecordError("confusion_matrix is not a table of image counts")
        matrix = tuple(tuple(row) for row in rows)
        return cls(
            test_accuracy=f.number("test_accuracy"),
            test_correct=f.integer("test_correct"),
            test_total=f.integer("test_total"),
            val_accuracy=f.number("val_accuracy"),
            per_class_accuracy={str(k): per_class.number(str(k)) for k in per_class.data},
            val_images=None if "val_images" not in f else f.integer("val_images"),
            train_images=None if "train_images" not in f else f.integer("train_images"),
            best_epoch=None if "best_epoch" not in f else f.integer("best_epoch"),
            confusion_matrix=matrix,
            calibration=None
            if CALIBRATION_KEY not in f
            else CalibrationMetrics.from_fields(f.object(CALIBRATION_KEY)),
        )


@dataclass(frozen=True)
class Epoch:
    """One entry of ``history.json``."""

    epoch: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    images_per_second: float

    @classmethod
    def from_fields(cls, f: Fields) -> Epoch:
        """An epoch as the training wrote it; names a field it rejects."""
        return cls(
            epoch=f.integer("epoch", least=1),
            loss=f.number("loss"),
            accuracy=f.number("accuracy"),
            val_loss=f.number("val_loss"),
            val_accuracy=f.number("val_accuracy"),
            seconds=f.number("seconds", default=0.0),
            images_per_second=f.number("images_per_second", default=0.0),
        )


def _history(document: object) -> tuple[Epoch, ...]:
    """``history.json``, a list of epochs (named ``history[i]`` in errors)."""
    return tuple(Epoch.from_fields(e) for e in Fields({"history": document}).objects("history"))


def _config(f: Fields) -> TrainConfig:
    try:
        return TrainConfig.from_dict(dict(f.data))
    except ValueError as e:
        raise RecordError(str(e)) from None


@dataclass
class RunData:
    """Everything a run wrote that the summary and the report show."""

    run_dir: Path
    state: RunState
    config: TrainConfig
    history: tuple[Epoch, ...]
    metrics: Metrics
    export: ExportReport
    bench: BenchRecord
    #: ``split.json`` of a run on the user's own data: counts per class, warnings.
    split: SplitCounts | None = None

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        """Read ``run.json`` and the files of every stage before the report.

        Raises:
            DataError: a file is unreadable or holds a field no stage writes (named).
        """
        from edgecnn.export.report_file import load_report

        def history(path: Path) -> tuple[Epoch, ...]:
            # history.json is a list: read_record parses objects, so wrap it.
            from edgecnn import _json
            from edgecnn._files import MiB, read_regular_file

            raw = read_regular_file(path, 16 * MiB, DataError, "a training history")
            try:
                return _history(_json.loads(raw))
            except ValueError as e:  # RecordError too
                raise DataError(f"{path}: {e}") from None

        return cls(
            run_dir=run_dir,
            state=read_record(run_dir / RUN_FILE, RunState.from_fields, "a run record"),
            config=read_record(run_dir / CONFIG_FILE, _config, "a configuration"),
            history=history(run_dir / HISTORY_FILE),
            metrics=read_record(run_dir / METRICS_FILE, Metrics.from_fields, "metrics"),
            export=load_report(run_dir / EXPORTS_DIR),
            bench=read_bench(run_dir / BENCH_FILE),
            split=read_counts(run_dir),
        )

    @property
    def name(self) -> str:
        """The run's name: its folder's name."""
        return self.state.name or self.run_dir.name

    @property
    def labels(self) -> list[str]:
        """Class names in class order."""
        return list(self.metrics.per_class_accuracy)

    @property
    def rejected(self) -> list[str]:
        """Files that failed their verification gate."""
        return [f.file for f in self.export.files if not f.passed]

    def latency_by_file(self) -> dict[str, float]:
        """Single-image p50 latency (us) of each benchmarked file, from the bench stage."""
        return self.bench.latency_by_file()
