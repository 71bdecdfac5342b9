"""``run.json``: what an ``edgecnn run`` was asked to do and how far each stage got.

A stage is recorded as done only once all its files are written, so ``--resume`` can
trust "done" (and checks the files are still there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn._files import MiB, read_regular_file
from edgecnn.environment import describe_environment
from edgecnn.errors import ConfigError
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

#: The stages of a run, in order.
STAGES = ("train", "evaluate", "export", "bench", "report")


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

    def train_config(self, data_dir: Path | None = None) -> Any:
        """The :class:`TrainConfig` of this run, its network sized to the data.

        Raises:
            EdgecnnError: impossible options, or data that is missing or unusable.
        """
        from edgecnn.trainer.cli import class_order
        from edgecnn.trainer.datasets import configure

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


def resume_options(state: dict[str, Any], given: dict[str, Any]) -> RunOptions:
    """The saved options of a run; options given again must not contradict them."""
    saved = RunOptions(**state["options"])
    changed = [k for k, v in given.items() if v is not None and getattr(saved, k) != v]
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(changed))
        raise ConfigError(f"--resume continues the run as it was started; drop {flags}")
    return saved


def stage_outputs(stage: str, out: Path) -> list[Path]:
    """Files a stage must have left for ``--resume`` to trust its "done"."""
    if stage == "export":
        from edgecnn.export.exporter import load_report
        from edgecnn.export.formats import FORMATS

        exports = out / EXPORTS_DIR
        try:
            paths = [exports / EXPORT_REPORT_FILE]
            for f in load_report(exports)["files"]:
                if not f["passed"]:
                    continue
                contents = FORMATS[f["format"]].contents
                if contents:  # a folder: the files that make it whole
                    paths += [exports / f["file"] / name for name in contents]
                else:
                    paths.append(exports / f["file"])
            return paths
        except (OSError, ValueError, KeyError, TypeError):
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
