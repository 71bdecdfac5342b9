"""Inference for edgecnn models: numpy plus one interpreter, never TensorFlow.

>>> from edgecnn.runtime import load_classifier
>>> clf = load_classifier("exports/model_int8.tflite")
>>> clf.classify(image, top_k=3)
[('Sneaker', 0.97), ('Sandal', 0.02), ('Ankle boot', 0.01)]
"""

from __future__ import annotations

from edgecnn.runtime.backends import BACKENDS, Backend
from edgecnn.runtime.classifier import Classifier, load_classifier
from edgecnn.runtime.errors import BackendUnavailable, InferenceError, InputError, ModelError
from edgecnn.runtime.labels import FASHION_MNIST_LABELS, LABELS, MNIST_LABELS
from edgecnn.runtime.metadata import ModelMetadata

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "FASHION_MNIST_LABELS",
    "LABELS",
    "MNIST_LABELS",
    "Classifier",
    "InferenceError",
    "InputError",
    "ModelError",
    "ModelMetadata",
    "load_classifier",
]
