"""Hide what native libraries (TensorFlow, LiteRT, onnxruntime) print straight to stderr."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block; replay it if the block fails.

    C++ logging ("INFO: Created TensorFlow Lite XNNPACK delegate", converter statistics)
    bypasses Python's ``sys.stderr`` and ignores log-level variables, so it is caught at
    the descriptor. Python-level warnings and errors are unaffected.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except KeyboardInterrupt:
            raise  # the user stopped it: what the libraries printed is not the story
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
