"""edgecnn: the classic tutorial CNN, trained, exported and verified for edge devices.

The stages live in sub-packages that import in one direction only:
``edgecnn.trainer`` -> ``edgecnn.export`` -> ``edgecnn.runtime``.
Importing ``edgecnn`` itself is cheap and never pulls in TensorFlow.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgecnn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
