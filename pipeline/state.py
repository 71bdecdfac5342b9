"""``run.json``: what an ``edgecnn run`` was asked to do and how far each stage got.

A stage is recorded as done only once all its files are written, so ``--resume`` can
trust "done" (and checks the files are still there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecnn import __version__, _json
from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import ConfigError, DataError
from edgecnn.pipeline.environment import Environment, describe_environment
from edgecnn.records import Fields, JSONObject, RecordError, check_schema
from edgecnn.run_folder import (
    BENCH_FILE,
    CONFIG_FILE,
    EXPORT_REPORT_FILE,
    EXPORTS_DIR,
    FIGURE_FILES,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    REPORT_FILE,
    RUN_FILE,
    SAMPLE_FILE,
)
from edgecnn.runtime.labels import LABELS
from edgecnn.trainer.config import (
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MIN_IMAGE_SIZE,
    check_int,
    check_type,
)

if TYPE_CHECKING:
    from edgecnn.export.config import ExportConfig
    from edgecnn.trainer.config import TrainConfig

#: The schema :meth:`RunState.to_dict` writes.
SCHEMA = 1
#: The stages of a run, in order.
STAGES = ("train", "evaluate", "export", "bench", "report")
#: What a stage's record may say of it.
STATUSES = ("running", "done", "failed")
#: Fewer single-image runs than this say nothing about latency (``--bench-runs``).
MIN_BENCH_RUNS = 10


@dataclass(frozen=True)
class RunOptions:
    """What ``edgecnn run`` was asked to do; saved in ``run.json`` so ``--resume`` keeps it."""

    dataset: str = "fashion"
    #: An image folder or .npz to train on instead (absolute path).
    data: str | None = None
    classes: str | None = None  # --classes, comma-separated; None: the data's own order
    image_size: int | None = None  # None: the data's own
    channels: int | None = None  # None: greyscale
    skip_bad_images: bool = False
    epochs: int | None = None  # None: the trainer's default recipe
    int8: bool = True
    #: The C library and TFLite Micro bundle, made from the int8 .tflite.
    mcu: bool = True
    augment: bool = False
    #: Outlier exposure's share (``--outliers``); None: the trainer's default. A new run
    #: records the number; a run recorded without it trained with none.
    outliers: float | None = None
    seed: int | None = None
    train_subset: int | None = None
    bench_runs: int = 300
    #: Backends that must also pass each exported file they run, comma-separated.
    verify_with: str = ""
    #: ``edgecnn export --remedy`` for the int8 files (edgecnn.export.auto).
    remedy: str = "none"

    def __post_init__(self) -> None:
        """Each field of its type and in its range, as ``run.json`` may have been edited.

        Raises:
            ConfigError: the first field that is not, named.
        """
        if not isinstance(self.dataset, str) or self.dataset not in LABELS:
            raise ConfigError(
                f"dataset must be one of {', '.join(LABELS)}, got {self.dataset!r:.40}"
            )
        check_type("data", self.data, (str, type(None)), "a path")
        check_type("classes", self.classes, (str, type(None)), "class names separated by commas")
        for name in ("skip_bad_images", "int8", "mcu", "augment"):
            check_type(name, getattr(self, name), bool, "true or false")
        check_type("verify_with", self.verify_with, str, "backend names")
        check_type("remedy", self.remedy, str, "a remedy's name")
        from edgecnn.export.auto import REMEDY_CHOICES

        if self.remedy not in REMEDY_CHOICES:
            raise ConfigError(f"remedy must be one of {', '.join(REMEDY_CHOICES)}")
        if self.remedy != "none" and not self.int8:
            raise ConfigError("--remedy changes the int8 files; it needs --int8")
        if self.image_size is not None:
            check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if self.channels not in (None, 1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels!r:.40}")
        for name in ("epochs", "train_subset"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.seed is not None:
            check_int("seed", self.seed, 0, MAX_SEED)
        if self.outliers is not None:  # TrainConfig checks its range, naming it
            check_type("outliers", self.outliers, (int, float), "a number")
        check_int("bench_runs", self.bench_runs, MIN_BENCH_RUNS)

    @classmethod
    def from_dict(cls, data: object) -> RunOptions:
        """The options ``run.json`` saved, each field checked.

        Raises:
            ConfigError: not an object, an unknown field, or a bad value; named.
        """
        if not isinstance(data, dict):
            raise ConfigError("options must be an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(f"options has an unknown field {unknown[0]!r:.40}")
        # A run recorded before outlier exposure trained without it (so must its resume).
        return cls(**{"outliers": 0.0, **data})

    def train_config(self, data_dir: Path | None = None) -> TrainConfig:
        """The :class:`TrainConfig` of this run, its network sized to the data.

        Raises:
            EdgecnnError: impossible options, or data that is missing or unusable.
        """
        from edgecnn.trainer.cli import class_order
        from edgecnn.trainer.training_data import configure

        given = {
            "dataset": self.dataset,
            "data": self.data,
            "classes": class_order(self.classes, self.data),
            "skip_bad_images": self.skip_bad_images,
            "epochs": self.epochs,
            "seed": self.seed,
            "train_subset": self.train_subset,
            "outliers": self.outliers,
        }
        options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        sizes = {"img_size": self.image_size, "channels": self.channels}
        model = {k: v for k, v in sizes.items() if v is not None}
        return configure(options, model, self.augment, data_dir)

    def export_config(self) -> ExportConfig:
        """Every TFLite and ONNX precision and the microcontroller formats.

        int8 unless ``--no-int8``; the C library and TFLite Micro bundle (made from the int8
        ``.tflite``) unless ``--no-mcu``.
        """
        from edgecnn.export.config import DEFAULT_FORMATS, FOLDER_FORMATS, backend_names
        from edgecnn.export.config import ExportConfig as Config

        formats = DEFAULT_FORMATS + (FOLDER_FORMATS if self.int8 and self.mcu else ())
        verify_with = backend_names(self.verify_with)
        return Config(
            formats=formats,
            int8=self.int8,
            fp16=True,
            dynamic=True,
            verify_with=verify_with,
            remedy=self.remedy,
        )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Rejected:
    """A file the export stage kept aside, and the gate's reasons."""

    file: str
    failures: tuple[str, ...]


@dataclass(frozen=True)
class StageRecord:
    """How far one stage got."""

    status: str
    seconds: float | None = None
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    #: The export stage's files that failed their gate (None for the other stages).
    rejected: tuple[Rejected, ...] | None = None

    def to_dict(self) -> JSONObject:
        """JSON-ready form: the stage's entry of ``run.json``."""
        out: JSONObject = {"status": self.status, "started": self.started,
                           "finished": self.finished, "error": self.error}  # fmt: skip
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.rejected is not None:
            out["rejected"] = [{"file": r.file, "failures": list(r.failures)}
                               for r in self.rejected]  # fmt: skip
        return out

    @classmethod
    def from_fields(cls, f: Fields) -> StageRecord:
        """The entry :meth:`to_dict` wrote; names the field it rejects."""
        status = f.text("status")
        if status not in STATUSES:
            raise RecordError(f"{f.where}.status must be one of {', '.join(STATUSES)}, "
                              f"got {status!r:.40}")  # fmt: skip
        seconds = f.optional_number("seconds")
        if seconds is not None and seconds < 0:
            raise RecordError(f"{f.where}.seconds must be a number of seconds, got {seconds!r}")
        return cls(
            status=status,
            seconds=seconds,
            started=f.optional_text("started"),
            finished=f.optional_text("finished"),
            error=f.optional_text("error"),
            rejected=None
            if f.raw("rejected") is None
            else tuple(
                Rejected(r.text("file"), r.texts("failures", default=()))
                for r in f.objects("rejected")
            ),  # fmt: skip
        )


@dataclass(frozen=True)
class RunState:
    """``run.json``: the run's options, where its data is, and each stage's record.

    Schema 1 is what edgecnn wrote before the record had a schema: the same layout.
    """

    options: RunOptions
    stages: Mapping[str, StageRecord]
    name: str | None = None
    created: str | None = None
    data_dir: str | None = None
    edgecnn_version: str = ""
    environment: Environment = field(default_factory=Environment)
    schema: int = SCHEMA

    def stage(self, name: str) -> StageRecord | None:
        """The record of stage ``name``, or None if it never started."""
        return self.stages.get(name)

    def seconds(self, name: str) -> float:
        """The wall time stage ``name`` took (0 if it never ran)."""
        record = self.stages.get(name)
        return record.seconds or 0.0 if record is not None else 0.0

    def to_dict(self) -> JSONObject:
        """JSON-ready form: ``run.json``."""
        return {
            "schema": SCHEMA,
            "edgecnn_version": self.edgecnn_version,
            "name": self.name,
            "created": self.created,
            "options": dataclasses.asdict(self.options),
            "data_dir": self.data_dir,
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "environment": self.environment.to_dict(),
        }

    @classmethod
    def from_fields(cls, f: Fields) -> RunState:
        """The state :meth:`to_dict` wrote, or a schema-1 one; names the field it rejects.

        Raises:
            RecordError: a field no run writes, or a newer schema.
        """
        schema = check_schema(f, SCHEMA, "the run record")
        try:
            options = RunOptions.from_dict(f.raw("options"))
        except ConfigError as e:
            raise RecordError(f"options: {e}") from None
        stages = f.object("stages")
        for stage in stages.data:
            if stage not in STAGES:
                raise RecordError(f"stages has an unknown stage {stage!r:.40}")
        return cls(
            options=options,
            stages={
                s: StageRecord.from_fields(Fields(stages.raw(s), f"stages.{s}"))
                for s in stages.data
            },  # fmt: skip
            name=f.optional_text("name"),
            created=f.optional_text("created"),
            data_dir=f.optional_text("data_dir"),
            edgecnn_version=f.text("edgecnn_version", default=""),
            environment=Environment.from_fields(f.object("environment", default={})),
            schema=schema,
        )


def start_state(out: Path, options: RunOptions, data_dir: Path | None) -> RunState:
    """A new ``run.json`` for a run about to start."""
    return RunState(
        options=options,
        stages={},
        name=out.name,
        created=_now(),
        data_dir=str(data_dir.resolve()) if data_dir else None,
        edgecnn_version=__version__,
        environment=describe_environment(),
    )


def load_state(out: Path) -> RunState:
    """``run.json`` of ``out``, read bounded and strict, every field checked.

    Raises:
        ConfigError: there is no readable run to resume there; the message names the
            first field that is wrong.
    """
    path = out / RUN_FILE
    if not path.exists():
        raise ConfigError(
            f"nothing to resume: {path} does not exist (start a run with 'edgecnn run')"
        )
    raw = read_regular_file(path, MiB, ConfigError, "a run record")
    try:
        return RunState.from_fields(Fields(_json.loads(raw)))
    except ValueError as e:  # a RecordError, or JSON that is not strict
        raise ConfigError(f"cannot resume: {path} is unreadable: {e}") from None


def resume_options(state: RunState, given: dict[str, Any]) -> RunOptions:
    """The saved options of a run; options given again must not contradict them."""
    saved = state.options
    changed = [k for k, v in given.items() if v is not None and getattr(saved, k) != v]
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(changed))
        raise ConfigError(f"--resume continues the run as it was started; drop {flags}")
    return saved


def stage_outputs(stage: str, out: Path) -> list[Path]:
    """Files a stage must have left for ``--resume`` to trust its "done"."""
    if stage == "export":
        from edgecnn.export.formats import FORMATS
        from edgecnn.export.report_file import load_report

        exports = out / EXPORTS_DIR
        try:
            paths = [exports / EXPORT_REPORT_FILE]
            for f in load_report(exports).kept:
                contents = FORMATS[f.format].contents
                if contents:  # a folder: the files that make it whole
                    paths += [exports / f.name / name for name in contents]
                else:
                    paths.append(exports / f.file)
            return paths
        except (OSError, ValueError, DataError):  # ReportError is both
            return [exports / EXPORT_REPORT_FILE]
    names = {
        "train": [MODEL_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE],
        "evaluate": [*FIGURE_FILES, SAMPLE_FILE],
        "bench": [BENCH_FILE],
        "report": [REPORT_FILE],
    }[stage]
    return [out / name for name in names]


def is_done(state: RunState, stage: str, out: Path) -> bool:
    """Whether ``stage`` finished and every file it wrote is still there."""
    record = state.stage(stage)
    done = record is not None and record.status == "done"
    return done and all(p.is_file() for p in stage_outputs(stage, out))


def mark(state: RunState, stage: str, out: Path, **changes: Any) -> RunState:
    """``state`` with ``stage``'s record changed, written to ``run.json`` at once."""
    from edgecnn import _atomic

    record = dataclasses.replace(state.stage(stage) or StageRecord("running"), **changes)
    state = dataclasses.replace(state, stages={**state.stages, stage: record})
    _atomic.write_json(out / RUN_FILE, state.to_dict())
    return state


def now() -> str:
    """The time, for stage records."""
    return _now()
