"""Run folders of ``edgecnn run``: never two runs in one folder."""

from __future__ import annotations

import shlex
from pathlib import Path

from edgecnn.errors import ConfigError
from edgecnn.run_folder import MODEL_FILE, RUN_FILE, new_run_dir, point_latest

__all__ = ["RUN_FILE", "check_fresh", "new_run_dir", "point_latest"]


def check_fresh(out: Path) -> None:
    """A new run never mixes with an older run's files."""
    if (out / RUN_FILE).exists() or (out / MODEL_FILE).exists():
        raise ConfigError(
            f"{out} already holds a run; choose another --out, or continue it with: "
            f"edgecnn run --resume --out {shlex.quote(str(out))}"
        )
