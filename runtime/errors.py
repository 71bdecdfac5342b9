"""Exceptions of the runtime: one base, a model error and an input error."""

from __future__ import annotations

from edgecnn.errors import EdgecnnError


class InferenceError(EdgecnnError):
    """Base of everything :mod:`edgecnn.runtime` raises on purpose."""


class ModelError(InferenceError):
    """A model file is missing, corrupt, of the wrong kind or shape, or lacks its interpreter."""


class InputError(InferenceError, ValueError):
    """Input the model cannot classify: wrong shape, dtype or range, NaN, an unreadable image."""
