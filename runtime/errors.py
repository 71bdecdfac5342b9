"""Exceptions of the runtime: one base, a model error and an input error."""

from __future__ import annotations

import os
from pathlib import Path

from edgecnn.errors import EdgecnnError


class InferenceError(EdgecnnError):
    """Base of everything :mod:`edgecnn.runtime` raises on purpose."""


class ModelError(InferenceError):
    """A model file is missing, corrupt, of the wrong kind or shape, or lacks its interpreter."""


class InputError(InferenceError, ValueError):
    """Input the model cannot classify: wrong shape, dtype or range, NaN, an unreadable image."""


def read_file(path: str | os.PathLike[str], error: type[InferenceError], kind: str) -> bytes:
    """The non-empty contents of ``path``, or ``error`` saying plainly why not.

    ``kind`` names what the file should be ("a model file", "an image") in the message.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not {kind}") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}") from None
    if not data:
        raise error(f"{path} is empty")
    return data
