"""The closing summary of ``edgecnn run``: accuracy, the exported files, what to run next."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from edgecnn._format import format_duration
from edgecnn.export.table import format_table
from edgecnn.pipeline.recommend import best_file, recommend
from edgecnn.pipeline.results import RunData
from edgecnn.pipeline.state import STAGES
from edgecnn.run_folder import EXPORTS_DIR, REPORT_FILE, SAMPLE_FILE
from edgecnn.trainer.metrics import accuracy_line


def format_summary(run: RunData) -> str:
    """Time per stage, test accuracy, the export table, where the files are, a command."""
    out, state, metrics = run.run_dir, run.state, run.metrics
    total = sum(state.seconds(s) for s in STAGES)
    note = "latency: single-image p50 through edgecnn.runtime, from the bench stage"
    results = run.bench.results
    if results and results[0].runs is not None:
        note += f" ({results[0].runs} calls per file)"
    lines = [
        "",
        f"Run finished in {format_duration(total)}: "
        + ", ".join(f"{s} {format_duration(state.seconds(s))}" for s in STAGES),
        accuracy_line(metrics.test_correct, metrics.test_total),
        "",
        format_table(run.export, run.latency_by_file(), note),
        "",
        f"Models:  {out / EXPORTS_DIR}",
        f"Report:  {out / REPORT_FILE}",
    ]
    recommended = recommend(run.export.files, run.latency_by_file())
    if recommended:
        lines += ["", "Recommended files, per target:"]
        width = max(len(r.target) for r in recommended)
        for r in recommended:
            lines.append(f"  {r.target:{width}s}  {r.file:22s} {r.reason}")
    best = best_file(run.export.files, run.latency_by_file())
    if best:
        command = [
            edgecnn_command(),
            "predict",
            str(out / EXPORTS_DIR / best.file),
            str(out / SAMPLE_FILE),
        ]
        lines += [
            f"Classify an image on this machine with {best.file}:",
            "  " + shlex.join(command),
        ]
    return "\n".join(lines)


def edgecnn_command() -> str:
    """How to call ``edgecnn`` from this shell.

    The bare name if it is on ``PATH``, else the path of the one running now
    (``.venv/bin/edgecnn`` after ``tools/bootstrap.sh``, which never activates the
    virtual environment).
    """
    here = Path(sys.executable).parent / "edgecnn"
    on_path = shutil.which("edgecnn")
    if not here.is_file() or (on_path and Path(on_path).resolve() == here.resolve()):
        return "edgecnn"
    try:
        return os.path.relpath(here)
    except ValueError:  # another drive (Windows)
        return str(here)
