"""Exceptions of the runtime: one base, a model error and an input error."""

from __future__ import annotations

from edgecnn._files import MiB
from edgecnn.errors import EdgecnnError

#: The largest files the runtime reads. Its models are a few MB at most; pictures are
#: refused by pixel count long before this, which only stops endless or giant files.
MODEL_MAX_BYTES = 256 * MiB
IMAGE_MAX_BYTES = 64 * MiB
SIDECAR_MAX_BYTES = 1 * MiB


class InferenceError(EdgecnnError):
    """Base of everything :mod:`edgecnn.runtime` raises on purpose."""


class ModelError(InferenceError):
    """A model file is missing, corrupt, of the wrong kind or shape, or lacks its interpreter.

    Also raised when a model computes NaN, infinity or something that is not a
    probability distribution: the file, not the input, is at fault.
    """


class IntegrityError(ModelError):
    """A model file's bytes or weights differ from the SHA-256 recorded for them."""


class BackendUnavailable(ModelError):
    """The interpreter a backend needs is not installed; the message says what to install."""


class InputError(InferenceError, ValueError):
    """Input the model cannot classify, or an impossible argument.

    Wrong shape, dtype or range, NaN, an unreadable or oversized picture, a ``top_k`` or
    ``num_threads`` that is not a sensible integer.
    """
