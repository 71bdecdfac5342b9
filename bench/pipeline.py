"""Wall time of each stage of a default ``edgecnn run``, against the pipeline's goals.

    python bench/pipeline.py                 # a fresh default run in a temporary folder
    python bench/pipeline.py --keep runs/b1  # ... kept in runs/b1
    python bench/pipeline.py --from runs/latest   # only read an earlier run's run.json

Goals (2 cores): the whole run <= 7 minutes, everything but training <= 90 s. The run
is one process, timed from outside, so TensorFlow's import and start-up count too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgecnn.pipeline import STAGES

GOAL_TOTAL_S, GOAL_NON_TRAINING_S = 7 * 60, 90


def run_default(out: Path, extra: list[str]) -> float:
    """Run ``edgecnn run --out OUT`` in a new process; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgecnn", "run", "--out", str(out), *extra], check=True)
    return time.perf_counter() - start


def report(out: Path, wall: float | None) -> int:
    """Print the stage table; exit status 1 if a goal was missed."""
    state = json.loads((out / "run.json").read_text())
    stages = {s: state["stages"][s]["seconds"] for s in STAGES}
    staged = sum(stages.values())
    total = wall if wall is not None else staged
    non_training = total - stages["train"]
    machine = state["environment"]["machine"]
    print(f"\nedgecnn run {out}: {machine['cpu']}, {machine['cores']} cores")
    print(f"{'stage':10s} {'seconds':>8s} {'share':>6s}")
    for stage, seconds in stages.items():
        print(f"{stage:10s} {seconds:8.1f} {100 * seconds / total:5.1f}%")
    if wall is not None:
        overhead = wall - staged
        print(f"{'start-up':10s} {overhead:8.1f} {100 * overhead / total:5.1f}%  (imports, data)")
    print(f"{'total':10s} {total:8.1f}")
    ok_total, ok_rest = total <= GOAL_TOTAL_S, non_training <= GOAL_NON_TRAINING_S
    print(
        f"\nwhole run      {total / 60:5.2f} min  (goal <= {GOAL_TOTAL_S / 60:.0f} min: "
        f"{'met' if ok_total else 'MISSED'}, {total / GOAL_TOTAL_S:.2f}x the budget)"
    )
    print(
        f"all but train  {non_training:5.1f} s    (goal <= {GOAL_NON_TRAINING_S} s: "
        f"{'met' if ok_rest else 'MISSED'}, {non_training / GOAL_NON_TRAINING_S:.2f}x the budget)"
    )
    return 0 if ok_total and ok_rest else 1


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="an existing run folder")
    parser.add_argument("--keep", type=Path, help="run into this folder and keep it")
    args, extra = parser.parse_known_args()
    if args.source:
        return report(args.source, None)
    print(f"{os.cpu_count()} CPU cores; running a default 'edgecnn run' {' '.join(extra)}")
    if args.keep:
        return report(args.keep, run_default(args.keep, extra))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        return report(out, run_default(out, extra))


if __name__ == "__main__":
    sys.exit(main())
