"""What every exported file computes: ``image`` (N, 28, 28, 1) in, ``probabilities`` out."""

from __future__ import annotations

from typing import Any

from edgecnn.trainer._tf import import_tensorflow

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SIGNATURE_KEY = "serving_default"


def input_spec() -> Any:
    """A float32 ``(None, 28, 28, 1)`` spec named ``image``; the batch stays dynamic."""
    tf = import_tensorflow()
    return tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)


def serving_function(model: Any) -> Any:
    """A ``tf.function`` returning ``{"probabilities": softmax(model(image))}``.

    The softmax goes into the exported graph so that every format, and every app that
    loads one, gets probabilities without knowing the model outputs logits. The dict key
    names the output in both TFLite signatures and ONNX graphs.
    """
    tf = import_tensorflow()

    @tf.function(input_signature=[input_spec()])
    def serve(image: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: tf.nn.softmax(model(image, training=False), axis=-1)}

    return serve
