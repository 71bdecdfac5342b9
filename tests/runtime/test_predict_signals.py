"""``edgecnn predict`` and its worker processes end together, whatever ends the command.

Real processes on real pictures: the command is started, seen working (its first result
line), stopped with SIGTERM or SIGKILL while its output waits in a full pipe, and every
process it started must end with it. Workers are forked from the command, or from a
fork server when the caller had already loaded an interpreter; both are checked. Then,
in this process, the pieces that make it so: the signal mask held while workers are
forked, the pidfd a worker watches its command through, and the fd-2 capture a worker
loads its model in.
"""

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from PIL import Image
from shared import TINY

from edgecnn import _quiet
from edgecnn.runtime.predict import lifetime, workers

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

needs_workers = pytest.mark.skipif(
    not workers.workers_pay(PICTURES), reason="worker processes run on Linux with two cores or more"
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
        started.append((process, below, marker))
        assert len(below) >= 2, below  # the workers (and the fork server)
        return process, marker, first, below

    yield run
    for process, below, marker in started:
        for pid, when in [(process.pid, None), *below]:
            if when is None or start_time(pid) == when:
                kill(pid)
        # And the workers a fork server started after the list was made.
        end = time.monotonic() + DEADLINE
        while (left := marked(marker)) and time.monotonic() < end:
            for pid in left:
                kill(pid)
            time.sleep(0.05)
        process.wait(timeout=DEADLINE)
        process.stdout.close()
        process.stderr.close()


def kill(pid):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@needs_workers
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


@needs_workers
@pytest.mark.parametrize("started_by", ["fork", "forkserver"])
def test_sigkill_ends_every_worker_and_closes_the_output(running, started_by):
    process, marker, _, below = running(started_by)
    process.kill()
    assert process.wait(timeout=DEADLINE) == -signal.SIGKILL
    # Nobody holds the pipe any longer: its reader gets to the end (the workers used to
    # keep it open, waiting forever for work).
    read(process.stdout)
    wait_until(lambda: ended(below, marker), "a process of the command outlived it")


def sigterm_blocked():
    return signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_holding_sigterm_for_the_fork_restores_the_callers_mask():
    assert not sigterm_blocked()
    with lifetime.signals_held():
        assert sigterm_blocked()
    assert not sigterm_blocked()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with lifetime.signals_held():
            assert sigterm_blocked()
        assert sigterm_blocked()  # the caller's own hold is kept, not cleared
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def pidfds():
    """This process's open pidfds."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]":
                found.add(int(fd))
    return found


def have_pidfds():
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


@pytest.mark.skipif(not have_pidfds(), reason="pidfds: Linux 5.3 or later")
def test_the_watch_on_the_command_holds_one_pidfd_for_as_long_as_it_watches(monkeypatch):
    ended = threading.Event()
    monkeypatch.setattr(lifetime, "_parent_ended", ended.set)  # not os._exit, here
    command = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = pidfds()
        lifetime._watch(lifetime.Parent(command.pid, lifetime._start_time(command.pid)))
        (handle,) = pidfds() - before
        assert not ended.is_set()
    finally:
        command.kill()
        command.wait()
    assert ended.wait(DEADLINE), "the command's end went unseen"
    assert handle not in pidfds()  # closed before the worker would end


@pytest.mark.skipif(not have_pidfds(), reason="pidfds: Linux 5.3 or later")
def test_a_watch_on_a_pid_taken_over_ends_at_once_and_keeps_no_pidfd(monkeypatch):
    ended = []
    monkeypatch.setattr(lifetime, "_parent_ended", lambda: ended.append(True))
    before = pidfds()
    lifetime._watch(lifetime.Parent(os.getpid(), "another start time"))
    assert ended == [True]
    assert pidfds() == before


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_hiding_stderr_without_a_temporary_file_leaks_no_descriptor(monkeypatch):
    def no_temporary_file():
        raise OSError("no usable temporary directory")

    monkeypatch.setattr(_quiet.tempfile, "TemporaryFile", no_temporary_file)
    before = open_fds()
    with pytest.raises(OSError, match="no usable"), _quiet.native_stderr_hidden():
        pass
    assert open_fds() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_child_forked_while_another_thread_hides_stderr_can_hide_its_own():
    """The other thread holds the capture's lock; the child, which has no such thread,
    must not wait for it forever."""
    holding, release = threading.Event(), threading.Event()

    def hide():
        with _quiet.native_stderr_hidden():
            holding.set()
            release.wait(DEADLINE)

    thread = threading.Thread(target=hide)
    thread.start()
    try:
        assert holding.wait(DEADLINE)
        pid = os.fork()
        if pid == 0:  # the child: ends here, whatever happens
            code = 1
            try:
                signal.alarm(DEADLINE)  # a lock held for good ends the child by SIGALRM
                with _quiet.native_stderr_hidden():
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join()
