"""The tiny test model as the generated C library, for every test of the C code."""

from __future__ import annotations

import json
from pathlib import Path

from shared import TINY

from edgecnn.export.mcu import cgen, graph
from edgecnn.runtime.metadata import ModelMetadata

#: The tiny model's full-integer form: every layer int8, as the C generator needs.
TINY_INT8 = TINY / "full_integer" / "model_int8.tflite"


def tiny_metadata() -> ModelMetadata:
    """The full-integer tiny model's metadata (its sidecar, without the file record)."""
    document = json.loads(TINY_INT8.with_name(TINY_INT8.name + ".json").read_text())
    document.pop("file")
    return ModelMetadata.from_dict(document)


def generate_tiny(folder: Path, labels: tuple[str, ...] | None = None) -> cgen.Library:
    """Generate the tiny model's ``edgecnn_model.h`` and ``.c`` into ``folder``."""
    data = TINY_INT8.read_bytes()
    meta = tiny_metadata()
    library = cgen.generate(graph.read(data), cgen.sha256(data), "test",
                            labels or meta.labels, meta.light_on_dark)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in library.files.items():
        (folder / name).write_text(text)
    return library
