"""Which model ``edgecnn serve`` is serving: its file, its digest, its store name and version.

A model installed in the store (``HOME/models/<name>/<version>/``) has a
``manifest.json`` beside it; its ``name`` and ``version`` are believed only when they are
the names of the folders the file really sits in, so a stray manifest elsewhere names
nothing. :func:`confidence_in_effect` says how the served model's answers are calibrated
and when they are "unknown", as serve's options made them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.runtime.errors import ModelError
from edgecnn.runtime.manifest import file_sha256
from edgecnn.runtime.store import CURRENT, NAME, home, read_manifest

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier

#: Hex digits of the SHA-256 shown where a short form is enough.
SHORT_SHA = 12


@dataclass(frozen=True)
class ModelInfo:
    """A served model: its file name, SHA-256, and store ``name``/``version`` if it has them."""

    file: str
    sha256: str
    name: str | None = None
    version: str | None = None

    @property
    def short_sha(self) -> str:
        """The first :data:`SHORT_SHA` hex digits of the file's SHA-256."""
        return self.sha256[:SHORT_SHA]

    @property
    def shown_name(self) -> str:
        """The store name, else the file name."""
        return self.name or self.file

    @property
    def shown_version(self) -> str:
        """The store version, else the short SHA-256 (which tells two files apart as well)."""
        return self.version or self.short_sha

    @property
    def shown(self) -> str:
        """``<name> <version>``, or ``<file> <short sha256>`` outside the store."""
        return f"{self.shown_name} {self.shown_version}"

    def to_health(self) -> dict[str, str | None]:
        """The model's part of ``/health``."""
        return {
            "model": self.file,
            "model_sha256": self.short_sha,
            "model_name": self.name,
            "model_version": self.version,
        }


def confidence_in_effect(classifier: Classifier) -> dict[str, float | None]:
    """The temperature and the "unknown" threshold the served answers use.

    The file's fitted values unless serve was told otherwise (``--raw-confidence``,
    ``--reject-below``, ``--no-reject``): a temperature of 1 is the model's own
    probabilities, a threshold of None never answers "unknown".
    """
    return {"temperature": classifier.temperature, "reject_below": classifier.reject_below}


def current_link() -> Path:
    """The store's ``current`` symlink (which need not exist)."""
    return home() / "models" / CURRENT


def describe_model(path: Path) -> ModelInfo:
    """``path``'s :class:`ModelInfo`: the digest of its bytes as they are now.

    Raises:
        OSError: the file cannot be read.
    """
    name, version = _store_names(path)
    return ModelInfo(path.name, file_sha256(path), name, version)


def _store_names(path: Path) -> tuple[str | None, str | None]:
    """``(name, version)`` from the manifest beside ``path`` in the store, else Nones."""
    real = Path(os.path.realpath(path))
    folder = real.parent
    try:
        manifest = read_manifest(folder)
    except ModelError:
        return None, None
    name, version = manifest.get("name"), manifest.get("version")
    if not (
        isinstance(name, str)
        and isinstance(version, str)
        and NAME.fullmatch(name)
        and NAME.fullmatch(version)
        and (folder.parent.name, folder.name) == (name, version)
        and manifest["model"] == real.name
    ):
        return None, None
    return name, version
