"""``run.json``: what an ``edgecnn run`` was asked to do and how far each stage got.

A stage is recorded as done only once all its files are written, so ``--resume`` can
trust "done" (and checks the files are still there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import __version__, _json
from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import ConfigError, DataError
from edgecnn.pipeline.environment import describe_environment
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
    seed: int | None = None
    train_subset: int | None = None
    bench_runs: int = 300
    #: Backends that must also pass each exported file they run, comma-separated.
    verify_with: str = ""

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
        if self.image_size is not None:
            check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if self.channels not in (None, 1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels!r:.40}")
        for name in ("epochs", "train_subset"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.seed is not None:
            check_int("seed", self.seed, 0, MAX_SEED)
        check_int("bench_runs", self.bench_runs, MIN_BENCH_RUNS)

    @classmethod
    def from_dict(cls, data: Any) -> RunOptions:
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
        return cls(**data)

    def train_config(self, data_dir: Path | None = None) -> Any:
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
        }
        options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        sizes = {"img_size": self.image_size, "channels": self.channels}
        model = {k: v for k, v in sizes.items() if v is not None}
        return configure(options, model, self.augment, data_dir)

    def export_config(self) -> Any:
        """Every TFLite and ONNX precision and the microcontroller formats.

        int8 unless ``--no-int8``; the C library and TFLite Micro bundle (made from the int8
        ``.tflite``) unless ``--no-mcu``.
        """
        from edgecnn.export.config import (
            DEFAULT_FORMATS,
            FOLDER_FORMATS,
            ExportConfig,
            backend_names,
        )

        formats = DEFAULT_FORMATS + (FOLDER_FORMATS if self.int8 and self.mcu else ())
        verify_with = backend_names(self.verify_with)
        return ExportConfig(
            formats=formats, int8=self.int8, fp16=True, dynamic=True, verify_with=verify_with
        )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def start_state(out: Path, options: RunOptions, data_dir: Path | None) -> dict[str, Any]:
    """A new ``run.json`` for a run about to start."""
    return {
        "edgecnn_version": __version__,
        "name": out.name,
        "created": _now(),
        "options": dataclasses.asdict(options),
        "data_dir": str(data_dir.resolve()) if data_dir else None,
        "stages": {},
        "environment": describe_environment(),
    }


def load_state(out: Path) -> dict[str, Any]:
    """``run.json`` of ``out``, every field resuming reads checked for type and range.

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
        state = _json.loads(raw)
        check_state(state)
    except (ValueError, KeyError, TypeError) as e:  # ConfigError is a ValueError
        message = str(e) if not isinstance(e, KeyError) else f"no {e} field"
        raise ConfigError(f"cannot resume: {path} is unreadable: {message}") from None
    return state


def check_state(state: Any) -> None:
    """Raise ``ConfigError`` naming the first field of a run record that is wrong."""
    if not isinstance(state, dict):
        raise ConfigError("it is not an object")
    for key in ("options", "stages"):
        if key not in state:
            raise ConfigError(f"it has no {key!r} field")
    try:
        RunOptions.from_dict(state["options"])
    except ConfigError as e:
        raise ConfigError(f"options: {e}") from None
    for key in ("data_dir", "name"):
        if not isinstance(state.get(key), str | None):
            raise ConfigError(f"{key} must be a path or null, got {state[key]!r:.40}")
    stages = state["stages"]
    if not isinstance(stages, dict):
        raise ConfigError("stages must be an object")
    for stage, record in stages.items():
        where = f"stages.{stage!s:.20}"
        if stage not in STAGES:
            raise ConfigError(f"stages has an unknown stage {stage!r:.40}")
        if not isinstance(record, dict):
            raise ConfigError(f"{where} must be an object, got {record!r:.40}")
        if record.get("status") not in STATUSES:
            raise ConfigError(
                f"{where}.status must be one of {', '.join(STATUSES)}, got "
                f"{record.get('status')!r:.40}"
            )
        seconds = record.get("seconds", 0.0)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (0 <= seconds < math.inf)
        ):
            raise ConfigError(f"{where}.seconds must be a number of seconds, got {seconds!r:.40}")
        for key in ("started", "finished", "error"):
            if not isinstance(record.get(key), str | None):
                raise ConfigError(f"{where}.{key} must be text, got {record[key]!r:.40}")


def resume_options(state: dict[str, Any], given: dict[str, Any]) -> RunOptions:
    """The saved options of a run; options given again must not contradict them."""
    saved = RunOptions.from_dict(state["options"])
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


def is_done(state: dict[str, Any], stage: str, out: Path) -> bool:
    """Whether ``stage`` finished and every file it wrote is still there."""
    record = state["stages"].get(stage, {})
    return record.get("status") == "done" and all(p.is_file() for p in stage_outputs(stage, out))


def mark(state: dict[str, Any], stage: str, out: Path, **fields: Any) -> None:
    """Update ``stage``'s record and write ``run.json`` at once."""
    from edgecnn import _atomic

    record = state["stages"].setdefault(stage, {})
    record.update(fields)
    _atomic.write_json(out / RUN_FILE, state)


def now() -> str:
    """The time, for stage records."""
    return _now()
