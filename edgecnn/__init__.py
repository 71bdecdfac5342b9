"""edgecnn: the classic tutorial CNN, trained, exported and verified for edge devices.

``edgecnn`` itself is the floor every stage stands on (errors, atomic writes, bounded
reads, run folder names) and the CLI root. The stages import downwards only:

    edgecnn.pipeline -> edgecnn.export -> edgecnn.trainer -> edgecnn.runtime -> edgecnn

The runtime is the shared inference layer: the trainer and the exporter use it, and it
imports no other stage and never TensorFlow. ``tests/test_architecture.py`` checks these
rules on every module, and that no two modules import each other in a circle. Importing
``edgecnn`` itself is cheap and never pulls in TensorFlow.
"""

from __future__ import annotations

# Read by pyproject.toml; a literal rather than importlib.metadata, which would add tens
# of milliseconds to every runtime start on a Raspberry Pi.
__version__ = "0.1.0"

__all__ = ["__version__"]
