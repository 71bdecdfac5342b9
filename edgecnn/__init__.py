"""edgecnn: the classic tutorial CNN, trained, exported and verified for edge devices.

The stages live in sub-packages that import in one direction only:
``edgecnn.trainer`` -> ``edgecnn.export`` -> ``edgecnn.runtime``.
Importing ``edgecnn`` itself is cheap and never pulls in TensorFlow.
"""

from __future__ import annotations

# Read by pyproject.toml; a literal rather than importlib.metadata, which would add tens
# of milliseconds to every runtime start on a Raspberry Pi.
__version__ = "0.1.0"

__all__ = ["__version__"]
