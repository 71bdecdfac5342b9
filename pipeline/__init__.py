"""``edgecnn run``: the stages that chain training, evaluation, export and benchmarks.

``state`` holds ``run.json`` (the options and how far each stage got), ``stages`` runs
them, ``results`` reads a finished run back, ``summary`` and ``report`` present it, and
``cli`` is the command. The pipeline sits on top: it may import every other stage.
"""

from __future__ import annotations

from edgecnn.pipeline.state import STAGES, RunOptions

__all__ = ["STAGES", "RunOptions"]
