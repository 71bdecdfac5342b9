"""The one place TensorFlow is imported, late, with the settings training needs."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[bytes]]:
    """Capture what C++ code writes to file descriptor 2; yields a list that gets the bytes."""
    captured: list[bytes] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to hide
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with oneDNN kernels on and its start-up chatter hidden.

    TensorFlow only enables oneDNN by default on CPUs with AVX-512 VNNI or newer. On an
    AVX2 CPU its own kernels run this network's convolutions about 3x slower (measured:
    170 ms vs 60 ms for forward and backward of a 256-image batch), so turn it on unless
    the user chose otherwise. The variable is read once, when TensorFlow is first imported.
    TensorFlow logs a few lines to stderr before its log level applies; they are swallowed
    unless the import fails.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _captured_stderr() as captured:
            import tensorflow as tf
    except ImportError:
        from edgecnn.errors import EdgecnnError

        raise EdgecnnError('this command needs TensorFlow: pip install "edgecnn[train]"') from None
    except Exception:
        sys.stderr.write(b"".join(captured).decode(errors="replace"))
        raise
    return tf


def import_keras() -> ModuleType:
    """Import Keras (3.x, as shipped with TensorFlow 2.16+) via :func:`import_tensorflow`."""
    import_tensorflow()
    import keras

    return keras
