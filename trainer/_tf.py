"""The one place TensorFlow is imported, late, with the settings training needs."""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import cast

from edgecnn._quiet import native_stderr_hidden


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with oneDNN kernels on and its start-up chatter hidden.

    TensorFlow only enables oneDNN by default on CPUs with AVX-512 VNNI or newer. On an
    AVX2 CPU its own kernels run this network's convolutions several times slower
    (docs/benchmarks.md, "Training"), so turn it on unless the user chose otherwise. The
    variable is read once, when TensorFlow is first imported. TensorFlow logs a few lines
    to stderr before its log level applies; they are swallowed unless the import fails.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with native_stderr_hidden():
            import tensorflow as tf
    except ImportError:
        from edgecnn.errors import EdgecnnError

        raise EdgecnnError('this command needs TensorFlow: pip install "edgecnn[train]"') from None
    return cast(ModuleType, tf)  # TensorFlow ships no type information


def import_keras() -> ModuleType:
    """Import Keras (3.x, as shipped with TensorFlow 2.16+) via :func:`import_tensorflow`."""
    import_tensorflow()
    import keras

    return cast(ModuleType, keras)  # nor does Keras
