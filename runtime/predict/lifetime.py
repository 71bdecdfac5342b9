"""How ``edgecnn predict``'s processes end together: its workers with it, itself on SIGTERM.

A worker process that outlived the command would hold the command's stdout open, and
``edgecnn predict ... | wc -l`` would wait for it forever. So each worker asks the kernel
for SIGKILL when its parent process ends (``PR_SET_PDEATHSIG``); when its parent is not
the command (a fork server started it, or the command is already gone) it watches the
command itself, through a pidfd. SIGTERM to the command is answered as Ctrl-C is: one
line, the results so far written, and exit code 143 (128 + SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from edgecnn.errors import Interrupted

#: The exit code of a command that SIGTERM stopped, as a shell reports it.
TERMINATED_EXIT_CODE = 128 + signal.SIGTERM
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: How often a worker without pidfds (Linux before 5.3) looks for its command.
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Parent:
    """The process workers must not outlive.

    Its start time tells it from a later process given the same pid (None where
    ``/proc`` cannot say).
    """

    pid: int
    started: str | None


def this_process() -> Parent:
    """This process, as its workers will watch it."""
    return Parent(os.getpid(), _start_time(os.getpid()))


def follow_parent(parent: Parent) -> None:
    """In a worker, at once: end when ``parent`` ends, however it ends (even SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == parent.pid:
        return  # still its child after prctl: the kernel kills this process when it ends
    # A fork server's child (the server ends with the command, but a little later), or
    # the command already gone: watch the command itself.
    _watch(parent)


def _watch(parent: Parent) -> None:
    """End this process when ``parent`` ends (now, if it already has), from a thread.

    The pidfd opened here belongs to the watching thread, which closes it when the
    parent ends, just before it ends this process: one descriptor, for exactly as long
    as the watch.
    """
    try:
        handle = os.pidfd_open(parent.pid)
    except ProcessLookupError:
        _parent_ended()
        return
    except (AttributeError, OSError):  # no pidfds: look for it every half second
        handle = None
    # Opened first, checked second: a pid taken over by a later process is refused here.
    alive = _start_time(parent.pid) == parent.started
    watching = False
    try:
        if alive:
            target, argument = (_poll, parent) if handle is None else (_wait, handle)
            threading.Thread(
                target=target, args=(argument,), name="parent-watch", daemon=True
            ).start()
            watching = True
    finally:
        if handle is not None and not watching:
            os.close(handle)
    if not alive:
        _parent_ended()


def _wait(handle: int) -> None:
    """Wait on the pidfd ``handle``, which turns readable when its process ends; close it."""
    import select

    try:
        waiting = select.poll()  # not select.select: no limit on the descriptor's number
        waiting.register(handle, select.POLLIN)
        waiting.poll()
    finally:
        os.close(handle)
    _parent_ended()


def _poll(parent: Parent) -> None:
    import time

    while _start_time(parent.pid) == parent.started:
        time.sleep(_POLL_SECONDS)
    _parent_ended()


def _parent_ended() -> None:
    """What a worker does once the command it serves is gone: end at once."""
    os._exit(1)


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot; None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19].decode() if len(fields) > 19 else None  # field 22 of proc(5)


def ignore_stop_signals() -> None:
    """In a worker: Ctrl-C and SIGTERM are for the command, which then stops the workers.

    A shell's Ctrl-C, or a service manager's SIGTERM, reaches every process of the
    group; a worker that died of it first would turn the command's plain "interrupted"
    into "a worker process died".
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # see signals_held


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM while workers are forked: a worker must not run the command's handler.

    A SIGTERM that comes meanwhile is delivered when the block ends (unless the caller
    held it already: its own mask is restored, not cleared); each worker unblocks it once
    it ignores it (:func:`ignore_stop_signals`).
    """
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """In the block, SIGTERM raises :class:`~edgecnn.errors.Interrupted` (exit code 143).

    As Ctrl-C raises KeyboardInterrupt: what is running stops, ``finally`` blocks stop
    the workers, and the CLI says one line. Only where SIGTERM has its default action
    and in the main thread (the only one Python runs signal handlers in); a later SIGTERM
    during the cleanup is ignored, since the cleanup is short and has its own end.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted("terminated").with_exit_code(TERMINATED_EXIT_CODE)

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
