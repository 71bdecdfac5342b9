"""``edgecnn run``: the whole job in one command, from the dataset to a verified edge model."""

from __future__ import annotations

import json
import os
import shlex
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.errors import EdgecnnError
from edgecnn.pipeline import (
    BENCH_FILE,
    REPORT_FILE,
    SAMPLE_FILE,
    STAGES,
    RunOptions,
    load_state,
    resume_options,
    run_stages,
    start_state,
)
from edgecnn.run_dirs import RUN_FILE, check_fresh, new_run_dir, point_latest
from edgecnn.trainer.cli import DatasetName

RUNS_ROOT = Path("runs")


def run_command(
    dataset: Annotated[
        DatasetName | None, typer.Option(help="Dataset to train on. [default: fashion]")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Training epochs. [default: the trainer's recipe, 10]"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run folder. [default: runs/<timestamp>, with runs/latest pointing at it; "
            "with --resume, runs/latest]"
        ),
    ] = None,
    int8: Annotated[
        bool | None,
        typer.Option(
            "--int8/--no-int8", help="Also export and verify int8 TFLite and ONNX. [default: on]"
        ),
    ] = None,
    open_report: Annotated[
        bool, typer.Option("--open", help="Open report.html in a browser at the end.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue a failed or interrupted run from its first unfinished stage."
        ),
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder with the dataset's four IDX files (else EDGECNN_DATA_DIR, Debian's "
            "dataset-fashion-mnist, the Keras cache, a Keras download).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Training seed. [default: 42]")] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment", help="Train with random shifts (and flips for Fashion-MNIST)."),
    ] = None,
    train_subset: Annotated[
        int | None, typer.Option(min=1, help="Train on the first N training images (quick trials).")
    ] = None,
    bench_runs: Annotated[
        int | None, typer.Option(min=10, help="Single-image runs per file in the bench stage.")
    ] = None,
) -> None:
    """Train, evaluate, export (verified), benchmark, and write report.html, in one go.

    A failed stage stops the run and keeps what the earlier stages wrote;
    'edgecnn run --resume' continues from the first unfinished stage.
    """
    from edgecnn._atomic import ensure_writable_dir, write_json
    from edgecnn.trainer.data import locate_dataset

    given: dict[str, Any] = {
        "dataset": dataset.value if dataset else None,
        "epochs": epochs,
        "int8": int8,
        "augment": augment,
        "seed": seed,
        "train_subset": train_subset,
        "bench_runs": bench_runs,
    }
    if resume:
        # The run itself, not the 'latest' link: later runs move the link.
        out = _real(out or RUNS_ROOT / "latest")
        state = load_state(out)
        options = resume_options(state, given)
        if data_dir is None and state.get("data_dir"):
            data_dir = Path(state["data_dir"])
        # Answered before TensorFlow's slow import.
        locate_dataset(options.dataset, data_dir)
    else:
        options = RunOptions(**{k: v for k, v in given.items() if v is not None})
        options.train_config(), options.export_config()  # impossible options fail here
        if out is not None:
            check_fresh(out)
        # Answered before TensorFlow's slow import, and before a run folder is made.
        locate_dataset(options.dataset, data_dir)
        default_out = out is None
        out = out or new_run_dir(RUNS_ROOT)
        ensure_writable_dir(out)
        state = start_state(out, options)
        state["data_dir"] = str(data_dir.resolve()) if data_dir else None
        write_json(out / RUN_FILE, state)
        if default_out and point_latest(out) is None:
            typer.echo(f"note: {RUNS_ROOT / 'latest'} exists and is not a link: left as it is")
    typer.echo(f"edgecnn run: {out}  ({', '.join(STAGES)})")
    state = run_stages(out, state, data_dir=data_dir, resuming=resume)
    typer.echo(format_summary(out, state))
    if open_report:
        report = (out / REPORT_FILE).resolve()
        if not webbrowser.open(report.as_uri()):
            typer.echo(f"could not start a browser here; open {report.as_uri()} yourself")
    rejected = _rejected(out)
    if rejected:
        raise EdgecnnError(
            f"{', '.join(rejected)} failed the verification gate and "
            f"{'was' if len(rejected) == 1 else 'were'} moved aside as *.rejected; "
            f"{out / REPORT_FILE} shows why"
        ).with_exit_code(1)


def _real(path: Path) -> Path:
    """``path`` with symlinks resolved, kept relative when it was."""
    real = Path(os.path.realpath(path))
    return real if path.is_absolute() else Path(os.path.relpath(real))


def _rejected(out: Path) -> list[str]:
    report = json.loads((out / "exports" / "export_report.json").read_text())
    return [f["file"] for f in report["files"] if not f["passed"]]


def format_summary(out: Path, state: dict[str, Any]) -> str:
    """The closing summary: accuracy, export table, where the files are, what to run next."""
    from edgecnn._format import format_duration
    from edgecnn.export.report import format_table
    from edgecnn.report_sections import best_file
    from edgecnn.trainer.metrics import accuracy_line

    metrics = json.loads((out / "metrics.json").read_text())
    export = json.loads((out / "exports" / "export_report.json").read_text())
    bench = json.loads((out / BENCH_FILE).read_text())
    stages = state["stages"]
    total = sum(stages[s].get("seconds", 0.0) for s in STAGES)
    lines = [
        "",
        f"Run finished in {format_duration(total)}: "
        + ", ".join(f"{s} {format_duration(stages[s].get('seconds', 0.0))}" for s in STAGES),
        accuracy_line(metrics["test_correct"], metrics["test_total"]),
        "",
        format_table(export),
        "",
        "Single-image latency (p50) through edgecnn.runtime: "
        + ", ".join(f"{r['model']} {r['latency_us']['p50']:.0f} us" for r in bench["results"]),
        f"Models:  {out / 'exports'}",
        f"Report:  {out / REPORT_FILE}",
    ]
    best = best_file(export["files"])
    if best:
        kind = "the int8 model" if best["precision"] == "int8" else "the smallest model"
        lines += [
            f"Classify an image with {kind} ({best['size_ratio']:.2f}x the float32 size, "
            f"{100 * best['agreement']:.2f}% top-1 agreement with Keras):",
            "  "
            + shlex.join(
                ["edgecnn", "predict", str(out / "exports" / best["file"]), str(out / SAMPLE_FILE)]
            ),
        ]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``edgecnn run`` to the app."""
    app.command("run")(run_command)
