"""Run folders: a new one per run, ``latest`` pointing at it, never two runs in one."""

from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path

from edgecnn.errors import ConfigError
from edgecnn.trainer.runs import MODEL_FILE

RUN_FILE = "run.json"


def check_fresh(out: Path) -> None:
    """A new run never mixes with an older run's files."""
    if (out / RUN_FILE).exists() or (out / MODEL_FILE).exists():
        raise ConfigError(
            f"{out} already holds a run; choose another --out, or continue it with: "
            f"edgecnn run --resume --out {shlex.quote(str(out))}"
        )


def new_run_dir(root: Path) -> Path:
    """Create and return ``root/<timestamp>``, unique even for runs started together."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise ConfigError(f"cannot create a new run folder in {root}")


def point_latest(run_dir: Path) -> Path | None:
    """Make ``<parent>/latest`` a relative symlink to ``run_dir``, replaced atomically.

    Returns ``None`` (and changes nothing) when ``latest`` is a real folder, for instance
    one written by ``edgecnn train``'s default ``--out runs/latest``.
    """
    latest = run_dir.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return None  # a folder or file someone made: never replaced
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, latest)
    return latest
