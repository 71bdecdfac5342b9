"""``edgecnn predict`` and its worker processes end together, whatever ends the command.

Real processes on real pictures: the command is started, seen working (its first result
line), stopped with SIGTERM or SIGKILL while its output waits in a full pipe, and every
process it started must end with it. Workers are forked from the command, or from a
fork server when the caller had already loaded an interpreter; both are checked.
"""

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest
from PIL import Image
from shared import TINY

from edgecnn.runtime import stream

MODEL = TINY / "model_float32.tflite"
PICTURES = 1000  # four batches; text lines of ten classes: far more than a pipe holds
#: Seconds any state below is waited for, at most.
DEADLINE = 30

# The caller has loaded an interpreter, so the workers come from a fork server; the
# main guard because the fork server imports the caller's __main__ again.
FORKSERVER = """
import sys
import ai_edge_litert.interpreter

if __name__ == "__main__":
    sys.argv = ["edgecnn", "predict", *sys.argv[1:]]
    from edgecnn.cli import main

    main()
"""

pytestmark = pytest.mark.skipif(
    not stream.workers_pay(PICTURES), reason="worker processes run on Linux with two cores or more"
)


@pytest.fixture(scope="module")
def pictures(test_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals")
    for i, image in enumerate(test_images.x[:PICTURES]):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


def start(pictures, started_by, tmp_path):
    """``edgecnn predict`` on the pictures, marked in its environment, seen working."""
    marker = f"EDGECNN_SIGNAL_TEST={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    args = [str(MODEL), str(pictures), "--top-k", "10"]
    if started_by == "fork":
        command = [sys.executable, "-m", "edgecnn", "predict", *args]
    else:
        (tmp_path / "caller.py").write_text(FORKSERVER)
        command = [sys.executable, str(tmp_path / "caller.py"), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=_default_signals)  # fmt: skip
    first = read(process.stdout, lambda seen: b"\n" in seen)
    assert first.startswith(str(pictures).encode()), (first, process.stderr.read())
    return process, marker.encode(), first


def _default_signals():
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def read(pipe, enough=None):
    """What ``pipe`` gives until ``enough(seen)`` holds, or until its end (EOF) if None."""
    seen = b""
    end = time.monotonic() + DEADLINE
    while enough is None or not enough(seen):
        left = end - time.monotonic()
        assert left > 0 and select.select([pipe], [], [], left)[0], f"no end after {seen[-200:]!r}"
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            assert enough is None, f"ended after {seen[-200:]!r}"
            break
        seen += chunk
    return seen


def descendants(pid):
    """The processes below ``pid``, each with its start time (to tell it from a later one)."""
    found = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children") as children:
                todo += map(int, children.read().split())
        if parent != pid:
            found.append((parent, start_time(parent)))
    return found


def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else fields[19]  # a zombie has ended


def blocked(pid):
    """The signals process ``pid`` blocks."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigBlk:")).split()[1]
    return {n for n in range(1, 65) if int(mask, 16) >> (n - 1) & 1}


def marked(marker):
    """The live processes whose environment holds ``marker``: the command's descendants."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    found.append(int(name))
        except (OSError, ValueError):  # not a process, gone, or another user's
            continue
    return found


def ended(below, marker):
    """Whether the processes ``below`` the command, and any other it started, have ended."""
    return all(start_time(pid) != started for pid, started in below) and not marked(marker)


def wait_until(condition, what):
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.05)


@pytest.fixture
def running(pictures, tmp_path):
    """Starts the command (by ``started_by``) and, whatever the test finds, ends every
    process it left, so that a failure is reported rather than waited on."""
    started = []

    def run(started_by):
        process, marker, first = start(pictures, started_by, tmp_path)
        below = descendants(process.pid)
        started.append((process, below))
        assert len(below) >= 2, below  # the workers (and the fork server)
        return process, marker, first, below

    yield run
    for process, below in started:
        for pid, when in [(process.pid, None), *below]:
            if when is None or start_time(pid) == when:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)
        process.stdout.close()
        process.stderr.close()


@pytest.mark.parametrize("started_by", ["fork", "forkserver"])
def test_sigterm_is_answered_like_ctrl_c_and_stops_every_worker(running, pictures, started_by):
    process, marker, first, below = running(started_by)
    # SIGTERM is held only while workers are forked: none of them (nor a fork server,
    # which keeps the mask it starts with) is left unable to get it.
    assert not any(signal.SIGTERM in blocked(pid) for pid, _ in below)
    process.send_signal(signal.SIGTERM)
    out = (first + read(process.stdout)).decode()
    err = read(process.stderr).decode()
    assert process.wait(timeout=DEADLINE) == 143, err
    assert err == "error: terminated\n"
    lines = out.splitlines()
    assert 0 < len(lines) < PICTURES
    assert all(line.startswith(str(pictures)) for line in lines[:-1])
    wait_until(lambda: ended(below, marker), "a process of the command outlived it")


@pytest.mark.parametrize("started_by", ["fork", "forkserver"])
def test_sigkill_ends_every_worker_and_closes_the_output(running, started_by):
    process, marker, _, below = running(started_by)
    process.kill()
    assert process.wait(timeout=DEADLINE) == -signal.SIGKILL
    # Nobody holds the pipe any longer: its reader gets to the end (the workers used to
    # keep it open, waiting forever for work).
    read(process.stdout)
    wait_until(lambda: ended(below, marker), "a process of the command outlived it")
