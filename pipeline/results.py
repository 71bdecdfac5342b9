"""What a finished run wrote, read back once: for the closing summary and the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.export.records import ExportReport
from edgecnn.run_folder import (
    BENCH_FILE,
    CONFIG_FILE,
    EXPORTS_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILE,
    SPLIT_FILE,
)


@dataclass
class RunData:
    """Everything a run wrote that the summary and the report show."""

    run_dir: Path
    state: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    export: ExportReport
    bench: dict[str, Any]
    #: ``split.json`` of a run on the user's own data: counts per class, warnings.
    split: dict[str, Any] | None = None

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        """Read ``run.json`` and the files of every stage before the report."""
        from edgecnn.export.report_file import load_report

        def read(name: str) -> Any:
            return json.loads((run_dir / name).read_text())

        return cls(
            run_dir=run_dir,
            state=read(RUN_FILE),
            config=read(CONFIG_FILE),
            history=read(HISTORY_FILE),
            metrics=read(METRICS_FILE),
            export=load_report(run_dir / EXPORTS_DIR),
            bench=read(BENCH_FILE),
            split=read(SPLIT_FILE) if (run_dir / SPLIT_FILE).exists() else None,
        )

    @property
    def name(self) -> str:
        """The run's name: its folder's name."""
        return self.state.get("name") or self.run_dir.name

    @property
    def labels(self) -> list[str]:
        """Class names in class order."""
        return list(self.metrics["per_class_accuracy"])

    @property
    def rejected(self) -> list[str]:
        """Files that failed their verification gate."""
        return [f.file for f in self.export.files if not f.passed]

    def latency_by_file(self) -> dict[str, float]:
        """Single-image p50 latency (us) of each benchmarked file, from the bench stage."""
        return latency_by_file(self.bench)


def latency_by_file(bench: dict[str, Any]) -> dict[str, float]:
    """Single-image p50 latency (us) per file name, from what the bench stage wrote."""
    return {r["model"]: float(r["latency_us"]["p50"]) for r in bench.get("results", [])}
