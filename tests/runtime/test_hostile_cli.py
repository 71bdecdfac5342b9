"""The commands as a whole: how one ends when interrupted, and what the project writes.

Ctrl-C in a runtime command is one line and exit 130, never a traceback; the JSON files
edgecnn writes can never hold NaN (strict JSON, nothing left behind when refused).
"""

import select
import signal
import subprocess
import sys

import pytest
from cli_helpers import interruptible
from shared import TINY

#: ``edgecnn ARGS...`` as ``python -m edgecnn`` runs it, but saying ``benchmarking`` on
#: stdout when the benchmark starts, so that the test knows the command is at work.
ANNOUNCED_BENCH = """
import sys

from edgecnn.runtime import benchmark

measure = benchmark.bench_model


def announced(*args, **kwargs):
    print("benchmarking", flush=True)
    return measure(*args, **kwargs)


benchmark.bench_model = announced
from edgecnn.cli import main

sys.argv = ["edgecnn", *sys.argv[1:]]
main()
"""


def test_ctrl_c_in_a_runtime_command_is_one_line_and_130():
    """SIGINT once the benchmark has started: ``error: interrupted`` alone, exit 130."""
    model = TINY / "model_float32.tflite"
    proc = subprocess.Popen(
        [sys.executable, "-c", ANNOUNCED_BENCH, "bench", str(model), "--runs", "100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)  # a bound, not a speed
        started = proc.stdout.readline() if ready else ""
        assert started == "benchmarking\n", (started, proc.poll())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "error: interrupted", err


def test_project_json_can_never_hold_nan(tmp_path):
    from edgecnn import _atomic

    with pytest.raises(ValueError):
        _atomic.write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.iterdir())
