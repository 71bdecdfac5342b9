"""``edgecnn run``'s stages: train, evaluate, export, benchmark and report, resumable.

Each stage writes its outputs atomically and is recorded in ``run.json`` only once they are
all written. A failed or interrupted stage keeps everything earlier stages produced, and
``edgecnn run --resume`` starts again at the first stage not recorded as done.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from edgecnn import _atomic
from edgecnn.errors import EdgecnnError, plain_os_error
from edgecnn.export.records import ExportedFile
from edgecnn.pipeline.bench_record import BenchRecord, BenchResult, BenchSkipped
from edgecnn.pipeline.environment import describe_environment
from edgecnn.pipeline.state import STAGES, Rejected, RunOptions, RunState, is_done, mark, now
from edgecnn.records import Fields
from edgecnn.run_folder import BENCH_FILE, EXPORTS_DIR, SAMPLE_FILE, STATE_FILE

if TYPE_CHECKING:
    import numpy as np

#: Batch sizes the bench stage measures; enough to show where batching pays off.
BENCH_BATCH_SIZES = [1, 32, 256]


class StageFailed(EdgecnnError):
    """A stage of ``edgecnn run`` failed; the run can continue with ``--resume``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunContext:
    """What a stage gets: the run folder, its options, where the data is, where to print.

    ``built``: the files the export stage built in this invocation, from what it
    returned rather than from any file; only those may be loaded as native code.
    ``rejected``: the files it moved aside, and why, for ``run.json``.
    """

    out: Path
    options: RunOptions
    data_dir: Path | None
    stream: TextIO
    resuming: bool
    built: frozenset[str] = frozenset()
    rejected: tuple[Rejected, ...] = ()

    def say(self, line: str = "") -> None:
        """Print one line of progress."""
        self.stream.write(line + "\n")
        self.stream.flush()


def _train(ctx: RunContext) -> None:
    from edgecnn.trainer.train import train

    # An interrupted training continues from its last completed epoch.
    resume = ctx.resuming and (ctx.out / STATE_FILE).is_file()
    config = ctx.options.train_config(ctx.data_dir)
    train(config, ctx.out, ctx.data_dir, resume=resume, stream=ctx.stream)


def _evaluate(ctx: RunContext) -> None:
    from edgecnn.trainer.evaluate import evaluate

    # The first test image as a PNG too, so the closing summary's command runs as printed.
    evaluate(ctx.out, data_dir=ctx.data_dir, stream=ctx.stream, sample=ctx.out / SAMPLE_FILE)


def _export(ctx: RunContext) -> None:
    """Export and verify every format; a file that fails its gate is kept aside, not used.

    A rejected file does not stop the run: the report shows why it failed, and
    ``edgecnn run`` exits with 1 at the end (as ``edgecnn export`` does). Retrying would
    not help, since conversion and calibration are deterministic.
    """
    from edgecnn.export.exporter import export_model

    held: list[np.ndarray] = []
    report = export_model(ctx.out, ctx.options.export_config(), data_dir=ctx.data_dir,
                          on_reference=held.append)  # fmt: skip
    ctx.built = frozenset(f.file for f in report.kept)
    ctx.rejected = tuple(Rejected(f.file, f.failures) for f in report.files if not f.passed)
    _evaluate_int8(ctx, report.kept, held[0] if held else None)


def _doctor_if_needed(ctx: RunContext, files: tuple[ExportedFile, ...]) -> None:
    """``edgecnn doctor`` into ``doctor.json`` when the int8 .tflite needs it.

    That is when it failed its gate or agrees with Keras less than :data:`DOCTOR_BELOW`;
    the report shows the findings.
    """
    from edgecnn.pipeline.report.doctor import DOCTOR_BELOW, read_diagnosis
    from edgecnn.run_folder import DOCTOR_CHART, DOCTOR_FILE

    if read_diagnosis(ctx.out) is not None:
        return  # the findings about this very file are there already (a resumed run)
    for stale in (DOCTOR_FILE, DOCTOR_CHART):  # an earlier export's findings
        (ctx.out / stale).unlink(missing_ok=True)
    int8 = next((f for f in files if f.format == "tflite" and f.precision == "int8"), None)
    if int8 is None or (int8.passed and int8.agreement >= DOCTOR_BELOW):
        return
    from edgecnn.export.doctor.cli import find_patient
    from edgecnn.export.doctor.examine import examine

    try:
        diagnosis = examine(find_patient(ctx.out), data_dir=ctx.data_dir)
    except (EdgecnnError, OSError) as e:
        ctx.say(f"  the doctor could not examine {int8.file}: {e}")
        return
    _atomic.write_json(ctx.out / DOCTOR_FILE, diagnosis.to_dict())
    named = f"it names {diagnosis.culprit}" if diagnosis.culprit else "no single layer stands out"
    ctx.say(f"  {int8.file} agrees {100 * int8.agreement:.2f}% with Keras: the doctor looked "
            f"({named}; report.html has its findings)")  # fmt: skip


def _backend_for(ctx: RunContext, name: str) -> tuple[str | None, str]:
    """The backend to run the kept file ``name`` with, and the backend its format needs.

    ``auto`` for a model file. A native library (code) is run with its backend only when
    the export stage built it in this invocation: a run folder is plain files anyone may
    have put there, and ``edgecnn run --resume`` was not asked to load code. Then the
    first is None. No backend name is ever taken from a file.
    """
    from edgecnn.runtime.backends import native_backend
    from edgecnn.runtime.loading import library_in

    native = native_backend(library_in(ctx.out / EXPORTS_DIR / name).suffix.lower())
    if native is None:
        return "auto", "auto"
    return (native if name in ctx.built else None), native


def _not_loaded(ctx: RunContext, name: str, native: str, what: str) -> str:
    """Why a native library of the run folder is not run, and the command that runs it."""
    path = shlex.quote(str(ctx.out / EXPORTS_DIR / name.rstrip("/")))
    return (
        f"{name}: not {what}: a native library (code) is loaded only right after this run "
        f"built it; measure it with `edgecnn bench {path} --backend {native}`"
    )


def _evaluate_int8(
    ctx: RunContext, kept: tuple[ExportedFile, ...], keras_probs: np.ndarray | None
) -> None:
    """``edgecnn evaluate`` on each int8 file kept, into ``<file>.evaluation/``.

    The report shows their galleries of images whose answer differs from Keras.
    ``keras_probs``: the Keras model's probabilities the export stage held (the test
    images first), so that no evaluation loads Keras and predicts the test set again.
    """
    import io

    from edgecnn.export.formats import FORMATS
    from edgecnn.trainer.evaluate import evaluate_exported

    exports = ctx.out / EXPORTS_DIR
    for f in kept:
        if f.precision != "int8" or not FORMATS[f.format].runnable:
            continue
        backend, native = _backend_for(ctx, f.file)
        if backend is None:
            ctx.say("  " + _not_loaded(ctx, f.file, native, "evaluated"))
            continue
        try:
            metrics = evaluate_exported(exports / f.file, data_dir=ctx.data_dir,
                                        stream=io.StringIO(), backend=backend,
                                        keras_probs=keras_probs)  # fmt: skip
        except (EdgecnnError, OSError) as e:
            # The file passed its gate and stays; only its report gallery is missing.
            ctx.say(f"  could not evaluate {f.file} for the report: {e}")
            continue
        differs = metrics.get("differs_from_keras") or []
        ctx.say(f"  evaluated {f.file}: {len(differs):,} test images differ from Keras")


def _bench(ctx: RunContext) -> None:
    from edgecnn.export.formats import FORMATS
    from edgecnn.export.report_file import load_report
    from edgecnn.runtime.benchmark import bench_model

    exports = ctx.out / EXPORTS_DIR
    results: list[BenchResult] = []
    skipped: list[BenchSkipped] = []
    largest = max(BENCH_BATCH_SIZES)
    for row in load_report(exports).kept:  # a rejected file is not one anyone should run
        if not FORMATS[row.format].runnable:
            continue  # the TFLite Micro bundle runs only inside TFLM, on a microcontroller
        backend, native = _backend_for(ctx, row.file)
        if backend is None:
            reason = _not_loaded(ctx, row.file, native, "benchmarked")
            skipped.append(BenchSkipped(row.file, reason))
            ctx.say("  " + reason)
            continue
        measured = bench_model(
            exports / row.file,
            BENCH_BATCH_SIZES,
            runs=ctx.options.bench_runs,
            seconds_per_batch_size=0.5,
            backend=backend,
        )
        result = BenchResult.from_fields(Fields({**measured, "model": row.file}))
        results.append(result)
        ctx.say(
            f"  {row.file:22s} {result.backend:12s} 1 image p50 {result.p50_us:6.0f} us "
            f"(raw {result.raw_p50_us:5.0f} us)  batch {largest}: "
            f"{result.throughput[largest].images_per_s:8,.0f} img/s"
        )
    record = BenchRecord(tuple(BENCH_BATCH_SIZES), tuple(results), tuple(skipped), os.cpu_count())
    _atomic.write_json(ctx.out / BENCH_FILE, record.to_dict())


def _report(ctx: RunContext) -> None:
    from edgecnn.export.report_file import load_report
    from edgecnn.pipeline.report import write_report

    _doctor_if_needed(ctx, load_report(ctx.out / EXPORTS_DIR).files)

    path = write_report(ctx.out)
    ctx.say(f"  wrote {path} ({path.stat().st_size / 1024:.0f} KiB, self-contained)")


STAGE_FUNCTIONS: dict[str, Callable[[RunContext], None]] = {
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "bench": _bench,
    "report": _report,
}
assert tuple(STAGE_FUNCTIONS) == STAGES


def run_stages(
    out: Path,
    state: RunState,
    data_dir: Path | None = None,
    stream: TextIO | None = None,
    resuming: bool = False,
) -> RunState:
    """Run every stage not yet done, saving ``run.json`` before and after each.

    Raises:
        StageFailed: a stage failed; the message names it and how to continue.
    """
    ctx = RunContext(out, state.options, data_dir, stream or sys.stdout, resuming)
    # A resumed run may be on another machine.
    state = dataclasses.replace(state, environment=describe_environment())
    redo = False  # once a stage runs again, every later stage must too: its inputs changed
    for number, stage in enumerate(STAGES, 1):
        if not redo and is_done(state, stage, out):
            ctx.say(f"==> [{number}/{len(STAGES)}] {stage}: done earlier, kept")
            continue
        ctx.say(f"==> [{number}/{len(STAGES)}] {stage}")
        redo = True
        state = mark(state, stage, out, status="running", started=now(), error=None)
        started = time.perf_counter()
        try:
            STAGE_FUNCTIONS[stage](ctx)
        except BaseException as e:
            message, code = _failure(e)
            seconds = time.perf_counter() - started
            state = mark(state, stage, out, status="failed", seconds=seconds, error=message)
            if isinstance(e, SystemExit | GeneratorExit):
                raise
            raise _stage_failed(stage, number, message, code, out, data_dir) from e
        extra = {"rejected": ctx.rejected} if stage == "export" else {}
        state = mark(state, stage, out, status="done", seconds=time.perf_counter() - started,
                     finished=now(), **extra)  # fmt: skip
    return state


def _stage_failed(
    stage: str, number: int, message: str, code: int, out: Path, data_dir: Path | None
) -> StageFailed:
    """The one line that says which stage failed and how to continue."""
    resume = f"edgecnn run --resume --out {shlex.quote(str(out))}"
    if data_dir is not None:
        resume += f" --data-dir {shlex.quote(str(data_dir))}"
    what = "was interrupted" if code == 130 else f"failed: {message}"
    kept = "what the earlier stages wrote is kept; " if number > 1 else ""
    return StageFailed(f"stage '{stage}' {what}; {kept}continue with: {resume}", exit_code=code)


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
