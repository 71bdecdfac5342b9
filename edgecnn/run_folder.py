"""A run folder: the names of the files every stage writes into it, and making new ones.

One name for one file: a stage that checks for, reads or writes one of these files uses
the constant, so renaming a file cannot leave a stage looking for the old name (for
``edgecnn run --resume``, that would mean redoing a stage forever).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from edgecnn.errors import ConfigError

#: Where runs go by default, and the symlink to the newest.
RUNS_ROOT = Path("runs")
LATEST = "latest"

# Written by the trainer.
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
#: For an image folder or array file: which images went to train, validation and test.
SPLIT_FILE = "split.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
#: Names the last completed epoch's checkpoint, ``checkpoint-eNNN.keras``.
STATE_FILE = "checkpoint.json"
#: Written by ``edgecnn evaluate``: the tutorial's pictures.
FIGURE_FILES = (
    "samples.png",
    "errors.png",
    "confusion_matrix.png",
    "conv1_weights.png",
    "conv2_weights.png",
    "conv1_outputs.png",
    "conv2_outputs.png",
)
#: Written by ``edgecnn evaluate`` beside them (and into an exported file's evaluation):
#: the reliability diagram, before and after calibration.
RELIABILITY_FILE = "reliability.png"
# Written by the exporter, in EXPORTS_DIR.
EXPORTS_DIR = "exports"
EXPORT_REPORT_FILE = "export_report.json"
CALIBRATION_FILE = "calibration.json"
# Written by edgecnn run.
RUN_FILE = "run.json"
BENCH_FILE = "bench.json"
REPORT_FILE = "report.html"
SAMPLE_FILE = "sample.png"
#: Drawn for the report, beside the tutorial's pictures.
CHART_FILES = ("training_curves.png", "export_chart.png")
#: Written by ``edgecnn run`` when an int8 file fails its gate or agrees with Keras on less
#: than 99.5% of the test images: ``edgecnn doctor``'s findings, and the report's chart of them.
DOCTOR_FILE = "doctor.json"
DOCTOR_CHART = "doctor_chart.png"


def new_run_dir(root: Path = RUNS_ROOT) -> Path:
    """Create and return ``root/<timestamp>``, unique even for runs started together."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {root}: {e.strerror}") from None
    for n in range(1, 1000):
        candidate = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise ConfigError(f"cannot create a run folder in {root}: {e.strerror}") from None
    raise ConfigError(f"cannot create a new run folder in {root}")


def point_latest(run_dir: Path) -> Path | None:
    """Make ``<parent>/latest`` a relative symlink to ``run_dir``, replaced atomically.

    Returns ``None`` (and changes nothing) when ``latest`` is a real folder or file,
    which is never replaced.
    """
    latest = run_dir.parent / LATEST
    if latest.exists() and not latest.is_symlink():
        return None
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, latest)
    return latest
