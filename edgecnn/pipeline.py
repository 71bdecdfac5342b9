"""``edgecnn run``: train, evaluate, export, benchmark and report, as resumable stages.

Each stage writes its outputs atomically and is recorded in ``run.json`` only once they are
all written. A failed or interrupted stage keeps everything earlier stages produced, and
``edgecnn run --resume`` starts again at the first stage not recorded as done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edgecnn import __version__, _atomic
from edgecnn._files import MiB, read_regular_file
from edgecnn.environment import describe_environment
from edgecnn.errors import ConfigError, EdgecnnError, plain_os_error
from edgecnn.run_dirs import RUN_FILE

BENCH_FILE = "bench.json"
REPORT_FILE = "report.html"
SAMPLE_FILE = "sample.png"
STAGES = ("train", "evaluate", "export", "bench", "report")
#: Batch sizes the bench stage measures; enough to show where batching pays off.
BENCH_BATCH_SIZES = [1, 32, 256]


class StageFailed(EdgecnnError):
    """A stage of ``edgecnn run`` failed; the run can continue with ``--resume``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunOptions:
    """What ``edgecnn run`` was asked to do; saved in ``run.json`` so ``--resume`` keeps it."""

    dataset: str = "fashion"
    epochs: int | None = None  # None: the trainer's default recipe
    int8: bool = True
    augment: bool = False
    seed: int | None = None
    train_subset: int | None = None
    bench_runs: int = 300

    def train_config(self) -> Any:
        """The :class:`TrainConfig` of this run."""
        from edgecnn.trainer.config import TrainConfig

        given = {"epochs": self.epochs, "seed": self.seed, "train_subset": self.train_subset}
        fields = {k: v for k, v in given.items() if v is not None}
        if self.augment:
            fields.update(augment_shift=2, augment_flip=self.dataset == "fashion")
        return TrainConfig(dataset=self.dataset, **fields)

    def export_config(self) -> Any:
        """Every TFLite and ONNX precision the issue asks for; int8 unless ``--no-int8``."""
        from edgecnn.export.config import ExportConfig

        return ExportConfig(int8=self.int8, fp16=True, dynamic=True)


@dataclass
class RunContext:
    """What a stage gets: the run folder, its options, where the data is, where to print."""

    out: Path
    options: RunOptions
    data_dir: Path | None
    stream: TextIO
    resuming: bool

    def say(self, line: str = "") -> None:
        """Print one line of progress."""
        self.stream.write(line + "\n")
        self.stream.flush()


def _train(ctx: RunContext) -> None:
    from edgecnn.trainer.runs import STATE_FILE
    from edgecnn.trainer.train import train

    # An interrupted training continues from its last completed epoch.
    resume = ctx.resuming and (ctx.out / STATE_FILE).is_file()
    train(ctx.options.train_config(), ctx.out, ctx.data_dir, resume=resume, stream=ctx.stream)


def _evaluate(ctx: RunContext) -> None:
    from edgecnn.trainer.evaluate import evaluate

    evaluate(ctx.out, data_dir=ctx.data_dir, stream=ctx.stream)
    _write_sample(ctx)


def _write_sample(ctx: RunContext) -> None:
    """The first test image as a PNG, so the closing summary's command runs as printed."""
    from PIL import Image

    from edgecnn.trainer.data import load_dataset

    data = load_dataset(ctx.options.dataset, ctx.data_dir)
    with _atomic.atomic_path(ctx.out / SAMPLE_FILE) as tmp:
        Image.fromarray(data.x_test[0]).save(tmp, format="PNG")


def _export(ctx: RunContext) -> None:
    """Export and verify every format; a file that fails its gate is kept aside, not used.

    A rejected file does not stop the run: the report shows why it failed, and
    ``edgecnn run`` exits with 1 at the end (as ``edgecnn export`` does). Retrying would
    not help, since conversion and calibration are deterministic.
    """
    from edgecnn.export.exporter import export_model

    export_model(ctx.out, ctx.options.export_config(), data_dir=ctx.data_dir)


def _bench(ctx: RunContext) -> None:
    from edgecnn.export.exporter import load_report
    from edgecnn.runtime.bench import bench_model

    exports = ctx.out / "exports"
    results = []
    largest = str(max(BENCH_BATCH_SIZES))
    for row in load_report(exports)["files"]:
        if not row["passed"]:
            continue  # moved aside as *.rejected: not a file anyone should run
        result = bench_model(
            exports / row["file"],
            BENCH_BATCH_SIZES,
            runs=ctx.options.bench_runs,
            seconds_per_batch_size=0.5,
        )
        result["model"] = row["file"]
        results.append(result)
        lat, raw = result["latency_us"], result["raw_latency_us"]
        ctx.say(
            f"  {row['file']:22s} {result['backend']:12s} 1 image p50 {lat['p50']:6.0f} us "
            f"(raw {raw['p50']:5.0f} us)  batch {largest}: "
            f"{result['throughput'][largest]['images_per_s']:8,.0f} img/s"
        )
    _atomic.write_json(
        ctx.out / BENCH_FILE,
        {"batch_sizes": BENCH_BATCH_SIZES, "cpu_count": os.cpu_count(), "results": results},
    )


def _report(ctx: RunContext) -> None:
    from edgecnn.report import write_report

    path = write_report(ctx.out)
    ctx.say(f"  wrote {path} ({path.stat().st_size / 1024:.0f} KiB, self-contained)")


STAGE_FUNCTIONS: dict[str, Callable[[RunContext], None]] = {
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "bench": _bench,
    "report": _report,
}


def stage_outputs(stage: str, out: Path) -> list[Path]:
    """Files a stage must have left for ``--resume`` to trust its "done"."""
    from edgecnn.trainer.runs import MODEL_FILE

    if stage == "train":
        names = [MODEL_FILE, "config.json", "history.json", "metrics.json"]
    elif stage == "evaluate":
        from edgecnn.trainer.evaluate import FIGURES

        names = [*FIGURES, SAMPLE_FILE]
    elif stage == "export":
        report = out / "exports" / "export_report.json"
        try:
            files = json.loads(report.read_text())["files"]
            return [report, *(out / "exports" / f["file"] for f in files if f["passed"])]
        except (OSError, ValueError, KeyError, TypeError):
            return [report]
    else:
        names = [BENCH_FILE] if stage == "bench" else [REPORT_FILE]
    return [out / name for name in names]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def load_state(out: Path) -> dict[str, Any]:
    """``run.json`` of ``out``, checked enough that resuming from it cannot go wrong.

    Raises:
        ConfigError: there is no readable run to resume there.
    """
    path = out / RUN_FILE
    if not path.exists():
        raise ConfigError(
            f"nothing to resume: {path} does not exist (start a run with 'edgecnn run')"
        )
    raw = read_regular_file(path, MiB, ConfigError, "a run record")
    try:
        state = json.loads(raw)
        if not isinstance(state["options"], dict) or not isinstance(state["stages"], dict):
            raise TypeError("options and stages must be objects")
        RunOptions(**state["options"])
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise ConfigError(f"cannot resume: {path} is unreadable ({e})") from None
    return state


def _is_done(state: dict[str, Any], stage: str, out: Path) -> bool:
    record = state["stages"].get(stage, {})
    return record.get("status") == "done" and all(
        path.is_file() for path in stage_outputs(stage, out)
    )


def start_state(out: Path, options: RunOptions) -> dict[str, Any]:
    """A new ``run.json`` for a run about to start."""
    return {
        "edgecnn_version": __version__,
        "name": out.name,
        "created": _now(),
        "options": dataclasses.asdict(options),
        "stages": {},
        "environment": describe_environment(),
    }


def resume_options(state: dict[str, Any], given: dict[str, Any]) -> RunOptions:
    """The saved options of a run; options given again must not contradict them."""
    saved = RunOptions(**state["options"])
    changed = [k for k, v in given.items() if v is not None and getattr(saved, k) != v]
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(changed))
        raise ConfigError(f"--resume continues the run as it was started; drop {flags}")
    return saved


def run_stages(
    out: Path,
    state: dict[str, Any],
    data_dir: Path | None = None,
    stream: TextIO | None = None,
    resuming: bool = False,
) -> dict[str, Any]:
    """Run every stage not yet done, saving ``run.json`` before and after each.

    Raises:
        StageFailed: a stage failed; the message names it and how to continue.
    """
    ctx = RunContext(out, RunOptions(**state["options"]), data_dir, stream or sys.stdout, resuming)
    state["environment"] = describe_environment()  # a resumed run may be on another machine
    redo = False  # once a stage runs again, every later stage must too: its inputs changed
    for number, stage in enumerate(STAGES, 1):
        record = state["stages"].setdefault(stage, {})
        if not redo and _is_done(state, stage, out):
            ctx.say(f"==> [{number}/{len(STAGES)}] {stage}: done earlier, kept")
            continue
        ctx.say(f"==> [{number}/{len(STAGES)}] {stage}")
        redo = True
        record.update(status="running", started=_now(), error=None)
        _atomic.write_json(out / RUN_FILE, state)
        started = time.perf_counter()
        try:
            STAGE_FUNCTIONS[stage](ctx)
        except BaseException as e:
            record.update(status="failed", seconds=time.perf_counter() - started)
            message, code = _failure(e)
            record["error"] = message
            _atomic.write_json(out / RUN_FILE, state)
            if isinstance(e, SystemExit | GeneratorExit):
                raise
            resume = f"edgecnn run --resume --out {shlex.quote(str(out))}"
            if data_dir is not None:
                resume += f" --data-dir {shlex.quote(str(data_dir))}"
            what = "was interrupted" if code == 130 else f"failed: {message}"
            kept = "what the earlier stages wrote is kept; " if number > 1 else ""
            raise StageFailed(
                f"stage '{stage}' {what}; {kept}continue with: {resume}", exit_code=code
            ) from e
        record.update(status="done", seconds=time.perf_counter() - started, finished=_now())
        _atomic.write_json(out / RUN_FILE, state)
    return state


def _failure(e: BaseException) -> tuple[str, int]:
    """One line about ``e`` and the exit code it deserves."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", 130
    plain = plain_os_error(e)
    if plain is not None:
        e = plain
    if isinstance(e, EdgecnnError):
        # The trainer's own Ctrl-C message suggests 'edgecnn train --resume': not here.
        return ("interrupted" if e.exit_code == 130 else str(e)), e.exit_code
    if os.environ.get("EDGECNN_DEBUG"):
        traceback.print_exc()
    first = (str(e).strip().splitlines() or [""])[0]
    return f"unexpected {type(e).__name__}: {first}", 1
