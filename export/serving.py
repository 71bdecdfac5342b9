"""What every exported file computes: ``image`` (N, H, W, C) in, ``probabilities`` out."""

from __future__ import annotations

from typing import Any

from edgecnn.runtime.contract import INPUT_NAME, OUTPUT_NAME
from edgecnn.trainer._tf import import_tensorflow

SIGNATURE_KEY = "serving_default"


def input_spec(model: Any) -> Any:
    """A float32 ``(None, H, W, C)`` spec named ``image``, the model's own image shape.

    The batch dimension stays dynamic.
    """
    tf = import_tensorflow()
    return tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=INPUT_NAME)


def serving_function(model: Any) -> Any:
    """A ``tf.function`` returning ``{"probabilities": softmax(model(image))}``.

    The softmax goes into the exported graph so that every format, and every app that
    loads one, gets probabilities without knowing the model outputs logits. The dict key
    names the output in both TFLite signatures and ONNX graphs.
    """
    tf = import_tensorflow()

    @tf.function(input_signature=[input_spec(model)])
    def serve(image: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: tf.nn.softmax(model(image, training=False), axis=-1)}

    return serve
