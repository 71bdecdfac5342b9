"""``edgecnn run``: the whole job in one command, from the dataset to a verified edge model."""

from __future__ import annotations

import dataclasses
import os
import shlex
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgecnn.errors import ConfigError, EdgecnnError
from edgecnn.export.config import backend_names
from edgecnn.export.measure import check_runtimes
from edgecnn.pipeline.state import STAGES, RunOptions, RunState
from edgecnn.run_folder import LATEST, MODEL_FILE, REPORT_FILE, RUN_FILE, RUNS_ROOT
from edgecnn.trainer.cli import (
    ChannelsOption,
    ClassesOption,
    DataDirOption,
    DataOption,
    DatasetName,
    ImageSizeOption,
    SkipBadOption,
    class_order,
    data_path,
)
from edgecnn.trainer.config import DEFAULT_OUTLIERS, MAX_SEED

if TYPE_CHECKING:
    from edgecnn.pipeline.results import RunData


def run_command(
    dataset: Annotated[
        DatasetName | None, typer.Option(help="Dataset to train on. [default: fashion]")
    ] = None,
    data: DataOption = None,
    classes: ClassesOption = None,
    image_size: ImageSizeOption = None,
    channels: ChannelsOption = None,
    skip_bad_images: SkipBadOption = False,
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
    mcu: Annotated[
        bool | None,
        typer.Option(
            "--mcu/--no-mcu",
            help="Also generate and verify the microcontroller C library and TFLite Micro "
            "bundle from the int8 .tflite (needs --int8). [default: on]",
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
    data_dir: DataDirOption = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=MAX_SEED, help="Training seed. [default: 42]")
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment", help="Train with random shifts (and flips for Fashion-MNIST)."),
    ] = None,
    train_subset: Annotated[
        int | None, typer.Option(min=1, help="Train on the first N training images (quick trials).")
    ] = None,
    outliers: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=4,
            help="Synthetic pictures of no class added to each training epoch, as a share "
            "of its pictures, so that the model learns to answer 'unknown' (0 turns it "
            f"off). [default: {DEFAULT_OUTLIERS}]",
        ),
    ] = None,
    bench_runs: Annotated[
        int | None, typer.Option(min=10, help="Single-image runs per file in the bench stage.")
    ] = None,
    verify_with: Annotated[
        str | None,
        typer.Option(
            help="Also verify each exported file on these backends (comma-separated, e.g. "
            "openvino), with the same gate. [default: only the backend the runtime picks]"
        ),
    ] = None,
    remedy: Annotated[
        str | None,
        typer.Option(
            help="For int8 files that fail their gate: auto, or one remedy (see 'edgecnn "
            "export --help'). [default: none]"
        ),
    ] = None,
) -> None:
    """Train, evaluate, export (verified), benchmark, and write report.html, in one go.

    A failed stage stops the run and keeps what the earlier stages wrote;
    'edgecnn run --resume' continues from the first unfinished stage.
    """
    given: dict[str, Any] = {
        "dataset": dataset.value if dataset else None,
        "data": data_path(data, dataset),
        "classes": None if classes is None else ",".join(class_order(classes, data) or ()),
        "image_size": image_size,
        "channels": channels,
        "skip_bad_images": skip_bad_images or None,
        "epochs": epochs,
        "int8": int8,
        "mcu": mcu,
        "augment": augment,
        "seed": seed,
        "train_subset": train_subset,
        "outliers": outliers,
        "bench_runs": bench_runs,
        "verify_with": None if verify_with is None else ",".join(backend_names(verify_with)),
        "remedy": remedy,
    }
    if mcu and int8 is False:
        raise ConfigError(
            "--mcu needs int8: the microcontroller formats are made from the int8 .tflite"
        )
    if resume:
        out, state, data_dir = _resumed_run(out, given, data_dir)
    else:
        out, state = _new_run(out, given, data_dir)
    from edgecnn.pipeline.results import RunData
    from edgecnn.pipeline.stages import run_stages
    from edgecnn.pipeline.summary import format_summary

    typer.echo(f"edgecnn run: {out}  ({', '.join(STAGES)})")
    run_stages(out, state, data_dir=data_dir, resuming=resume)
    run = RunData.load(out)
    typer.echo(format_summary(run))
    if open_report:
        _open(out / REPORT_FILE)
    if run.rejected:
        raise EdgecnnError(
            f"{', '.join(run.rejected)} failed the verification gate and "
            f"{'was' if len(run.rejected) == 1 else 'were'} moved aside as *.rejected "
            f"({out / REPORT_FILE} shows why); {what_to_try(run)}"
        ).with_exit_code(1)


def what_to_try(run: RunData) -> str:
    """The next step after a rejected file, from what the run did."""
    epochs = run.config.epochs
    exports = shlex.quote(str(run.run_dir))
    tips = []
    if run.config.train_subset or epochs < 5:
        tips.append("train longer (a short run leaves many near-ties that int8 rounding flips)")
    tips += [
        f"see which layer loses it (edgecnn doctor {exports}; report.html has its findings)",
        f"re-export with a remedy (edgecnn export {exports} --remedy auto)",
        "or accept a looser gate knowingly (--min-agreement 0.98, --max-accuracy-drop 1)",
    ]
    return "try: " + "; ".join(tips)


def _resumed_run(
    out: Path | None, given: dict[str, Any], data_dir: Path | None
) -> tuple[Path, RunState, Path | None]:
    """The run to continue, its saved state, and where its data is."""
    from edgecnn.pipeline.state import load_state, resume_options

    # The run itself, not the 'latest' link: later runs move the link.
    out = _real(out or RUNS_ROOT / LATEST)
    state = load_state(out)
    options = resume_options(state, given)
    if data_dir is None and state.data_dir:
        data_dir = Path(state.data_dir)
    options.train_config(data_dir)  # missing data is answered before TensorFlow's import
    check_runtimes(options.export_config().verify_with)
    return out, state, data_dir


def _new_run(
    out: Path | None, given: dict[str, Any], data_dir: Path | None
) -> tuple[Path, RunState]:
    """A new run folder with its ``run.json``, once every option is known to be possible."""
    from edgecnn._atomic import ensure_writable_dir, write_json
    from edgecnn.pipeline.state import start_state
    from edgecnn.run_folder import new_run_dir, point_latest

    options = RunOptions(**{k: v for k, v in given.items() if v is not None})
    if options.outliers is None:  # recorded as a number: a resume trains as this run did
        options = dataclasses.replace(options, outliers=DEFAULT_OUTLIERS)
    if out is not None:
        _check_fresh(out)
    # Impossible options and unusable data are answered here: before TensorFlow's slow
    # import, and before a run folder is made.
    options.train_config(data_dir)
    check_runtimes(options.export_config().verify_with)
    folder = ensure_writable_dir(out) if out is not None else new_run_dir()
    state = start_state(folder, options, data_dir)
    write_json(folder / RUN_FILE, state.to_dict())
    if out is None and point_latest(folder) is None:
        typer.echo(f"note: {RUNS_ROOT / LATEST} exists and is not a link: left as it is")
    return folder, state


def _check_fresh(out: Path) -> None:
    """A new run never mixes with an older run's files."""
    if (out / RUN_FILE).exists() or (out / MODEL_FILE).exists():
        raise ConfigError(
            f"{out} already holds a run; choose another --out, or continue it with: "
            f"edgecnn run --resume --out {shlex.quote(str(out))}"
        )


def _open(report: Path) -> None:
    uri = report.resolve().as_uri()
    if not webbrowser.open(uri):
        typer.echo(f"could not start a browser here; open {uri} yourself")


def _real(path: Path) -> Path:
    """``path`` with symlinks resolved, kept relative when it was."""
    real = Path(os.path.realpath(path))
    return real if path.is_absolute() else Path(os.path.relpath(real))


def register(app: typer.Typer) -> None:
    """Add ``edgecnn run``, ``edgecnn bundle`` and ``edgecnn keys`` to the app."""
    from edgecnn.pipeline.bundle_cli import bundle_command, keys_command

    app.command("run")(run_command)
    app.command("bundle")(bundle_command)
    app.command("keys")(keys_command)
