"""Which exported file to recommend."""

from __future__ import annotations

from typing import Any

from edgecnn.export.formats import FORMATS


def best_file(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The file to recommend: the int8 file that agrees best with Keras (then the smaller).

    Without int8 files, the smallest float file that passed. The microcontroller folders
    (the C library, the TFLite Micro bundle) are for firmware, not for the machine that
    runs this, and are never recommended here.
    """
    passed = [f for f in files if f["passed"] and not FORMATS[f["format"]].folder]
    int8 = [f for f in passed if f["precision"] == "int8"]
    if int8:
        return max(int8, key=lambda f: (f["agreement"], -f["size_bytes"]))
    return min(passed, key=lambda f: f["size_bytes"], default=None)
