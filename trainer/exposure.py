"""Outlier exposure in Keras: the loss and the accuracy of a batch that holds outliers.

An outlier's label is :data:`OUTLIER` (-1). Its loss is the cross-entropy from the
uniform distribution to the network's (the mean of ``-log p`` over the classes), times
:data:`OUTLIER_WEIGHT`; a picture of a class keeps the usual cross-entropy. Accuracy is
taken over the pictures of a class only. Both are registered with Keras, so that a
checkpoint saved with them loads again (``edgecnn train --resume``).
"""

from __future__ import annotations

from typing import Any

from edgecnn.trainer._tf import import_keras, import_tensorflow

tf = import_tensorflow()
keras = import_keras()

#: The label an outlier picture is given.
OUTLIER = -1
#: How much an outlier's loss counts beside a picture of a class (Hendrycks et al. use 0.5).
OUTLIER_WEIGHT = 0.5


@keras.saving.register_keras_serializable(package="edgecnn")
def outlier_exposure_loss(labels: Any, logits: Any) -> Any:
    """Per picture: cross-entropy to its label, or ``OUTLIER_WEIGHT`` x to uniform."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    log_probs = tf.nn.log_softmax(logits)
    to_label = -tf.gather(log_probs, tf.maximum(labels, 0), batch_dims=1)
    to_uniform = -tf.reduce_mean(log_probs, axis=1)
    return tf.where(labels >= 0, to_label, OUTLIER_WEIGHT * to_uniform)


@keras.saving.register_keras_serializable(package="edgecnn")
class InlierAccuracy(keras.metrics.Metric):  # type: ignore[name-defined]
    """Top-1 accuracy over the pictures that have a class (outliers left out)."""

    def __init__(self, name: str = "accuracy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.right = self.add_weight(name="right", initializer="zeros")
        self.seen = self.add_weight(name="seen", initializer="zeros")

    def update_state(self, labels: Any, logits: Any, sample_weight: Any = None) -> None:
        """Count a batch's right answers among its pictures of a class."""
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        inlier = tf.cast(labels >= 0, "float32")
        top = tf.argmax(logits, axis=1, output_type=tf.int32)
        right = tf.cast(tf.equal(top, labels), "float32")
        self.right.assign_add(tf.reduce_sum(right * inlier))
        self.seen.assign_add(tf.reduce_sum(inlier))

    def result(self) -> Any:
        """The fraction right so far."""
        return tf.math.divide_no_nan(self.right, self.seen)

    def reset_state(self) -> None:
        """Start counting again (each epoch)."""
        self.right.assign(0.0)
        self.seen.assign(0.0)
