"""catdog's own Keras layers, registered so that a saved model loads wherever catdog is imported.

`catdog.runs.Run.keras_model` imports this module before loading a model, so a `model.keras` that
holds one of these layers opens in any process.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="catdog")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch normalisation, trained with TensorFlow's fused kernel.

    Keras 3 computes the batch statistics and the normalisation as separate operations, in
    float32 even under mixed precision, a large part of a small network's training step
    (benchmarks/decisions.md). The fused kernel reads the activations once forward and once
    backward, and gives the same outputs, gradients and moving statistics (tested). Outside
    training the layer is Keras' own, so inference and every export see ordinary operations.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = self.scale and self.center and mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3)
        if not (training and self.trainable and fusable):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"), epsilon=self.epsilon,
            is_training=True)
        # The kernel returns the unbiased variance; Keras' moving variance averages the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], "float32")
        variance = variance * (count - 1) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)
