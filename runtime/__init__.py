"""Inference for edgecnn models: numpy plus one interpreter, never TensorFlow."""

from __future__ import annotations

from edgecnn.runtime.labels import FASHION_MNIST_LABELS, LABELS, MNIST_LABELS

__all__ = ["FASHION_MNIST_LABELS", "LABELS", "MNIST_LABELS"]
