"""Hide what native libraries (TensorFlow, LiteRT, onnxruntime) print straight to stderr.

C++ logging ("INFO: Created TensorFlow Lite XNNPACK delegate", converter statistics)
bypasses Python's ``sys.stderr`` and ignores log-level variables, so it is caught at the
descriptor: file descriptor 2 goes to a temporary file for a block, and what the block's
policy keeps of it is written back. Python's own ``sys.stderr`` writes to the same
descriptor, so whatever the block prints there (warnings, logging, tracebacks of
threads) is caught with the rest: :func:`native_stderr_hidden` drops it unless the block
raises. Keep such blocks to the native calls, and report from outside them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

#: One redirection of file descriptor 2 per thread at a time: two threads redirecting at
#: once would restore each other's temporary file as the process's stderr. Reentrant, so
#: a block inside another (a model loaded while a command hides its libraries) nests.
_FD2_LOCK = threading.RLock()


def _new_lock_in_child() -> None:
    """In a forked child: a fresh lock, free.

    The child holds only its forking thread, so a lock another thread held would stay
    held in the child for good. (A block the forking thread is in keeps the lock object
    it took, and releases that one.)
    """
    global _FD2_LOCK
    _FD2_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_lock_in_child)


@contextlib.contextmanager
def _fd2_captured(keep: Callable[[bytes, bool], bytes]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block, then write back the rest.

    What is written back is ``keep(captured, failed)``; ``failed`` says whether the block
    raised (Ctrl-C does not count).
    """
    with _FD2_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to hide
            yield
            return
        try:
            with tempfile.TemporaryFile() as sink:
                failed = False
                # Ctrl-C raises KeyboardInterrupt after any call returns, the finally
                # blocks' own calls included: the redirection is made inside the try and
                # undone in a finally of its own, so that no moment of the block can
                # leave descriptor 2 on the temporary file (and the command's last line,
                # "error: interrupted", unseen).
                try:
                    os.dup2(sink.fileno(), 2)
                    yield
                except KeyboardInterrupt:
                    raise  # the user stopped it: what the libraries printed is not the story
                except BaseException:
                    failed = True
                    raise
                finally:
                    try:
                        with contextlib.suppress(OSError, ValueError):
                            sys.stderr.flush()
                    finally:
                        os.dup2(saved, 2)
                    sink.seek(0)
                    rest = keep(sink.read(), failed)
                    if rest:
                        with contextlib.suppress(OSError):
                            os.write(2, rest)
        finally:
            os.close(saved)


def native_stderr_hidden() -> contextlib.AbstractContextManager[None]:
    """Hide everything written to file descriptor 2 in the block; replay it if it fails."""
    return _fd2_captured(lambda captured, failed: captured if failed else b"")


def banners_hidden(banners: tuple[bytes, ...]) -> contextlib.AbstractContextManager[None]:
    """Keep the lines in ``banners`` off file descriptor 2 in the block, and nothing else."""

    def without_banners(captured: bytes, failed: bool) -> bytes:
        for banner in banners:
            captured = captured.replace(banner, b"")
        return captured

    return _fd2_captured(without_banners)
