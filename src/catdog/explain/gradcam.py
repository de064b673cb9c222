"""Grad-CAM: the regions of an image that drove a class's score (Selvaraju et al., "Grad-CAM:
Visual Explanations from Deep Networks via Gradient-based Localization", 2017).

The gradient of the class's log-odds against the other classes (its logit less the
log-sum-exp of theirs: what tells the class apart, without the part every class shares,
and without the softmax's saturation; for a multi-label model's tag, whose sigmoid stands
alone, the tag's own logit, its log-odds) with respect to the last spatial feature map (the
backbone's last convolutional output for a pretrained preset, the last convolutional
block's for the others: `catdog.models.inference.feature_map`) is averaged over the map
into one weight per channel; the heatmap is the weighted sum of the channels, without its
negative part, scaled to 0..1 and stretched over the image. Bright regions raised the
class's score; a heatmap is all zero where nothing did.

A cell of the map is drawn where it looks in the image: the centre of its receptive field,
measured once per model (`cell_centres`). Resizing the map to cover the image evenly would
shift it, for networks whose convolutions shrink the image ("valid" padding, as in the
reference's CNNs), by up to half a cell (benchmarks/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from catdog.models.inference import classifier_features, feature_map


@dataclass(frozen=True)
class Heatmaps:
    """A batch's heatmaps (N, S, S, 0..1), the class each explains, every class's logits
    (N, classes) and the classifier's features (N, D)."""

    heatmaps: np.ndarray
    classes: np.ndarray
    logits: np.ndarray
    features: np.ndarray


class GradCAM:
    """Grad-CAM for a catdog model (raw pixels in, softmax out, or with `multilabel` a sigmoid
    per tag), built once, run per batch."""

    def __init__(self, model: keras.Model, multilabel: bool = False):
        self.multilabel = multilabel
        maps = feature_map(model)
        self.parts = keras.Model(model.inputs, [maps, classifier_features(model)])
        last = model.layers[-1]  # the classifier, or the head whose last layer it is
        classifier = last.layers[-1] if isinstance(last, keras.Sequential) else last
        kernel, bias = classifier.get_weights()
        self.kernel, self.bias = kernel.astype("float32"), bias.astype("float32")
        self.image_size = model.input_shape[1]
        self.rows, self.columns = cell_centres(keras.Model(model.inputs, maps), self.image_size)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Every class's logits (N, classes), without the heatmaps."""
        _, features = self.parts(np.asarray(pixels, dtype="float32"), training=False)
        return np.asarray(features, dtype="float32") @ self.kernel + self.bias

    def __call__(self, pixels: np.ndarray, classes: np.ndarray | None = None) -> Heatmaps:
        """Heatmaps of `pixels` (N, S, S, 3, 0..255) for `classes` (indices; default: each image's
        most probable class)."""
        import tensorflow as tf

        inputs = tf.constant(np.asarray(pixels, dtype="float32"))
        with tf.GradientTape() as tape:
            tape.watch(inputs)  # a frozen backbone has no trainable weights for the tape to follow
            maps, features = self.parts(inputs, training=False)
            features = tf.cast(features, tf.float32)
            logits = tf.matmul(features, self.kernel) + self.bias
            chosen = tf.argmax(logits, axis=1) if classes is None else tf.constant(classes, tf.int64)
            scores = tf.gather(logits, chosen, axis=1, batch_dims=1)
            if not self.multilabel:
                others = tf.where(tf.one_hot(chosen, logits.shape[1]) > 0, -np.inf, logits)
                scores -= tf.reduce_logsumexp(others, axis=1)
        gradients = tf.cast(tape.gradient(scores, maps), tf.float32)
        maps = tf.cast(maps, tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        heat = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
        heat = _stretch(_stretch(heat, self.rows, self.image_size, axis=1), self.columns, self.image_size, axis=2)
        peak = heat.reshape(len(heat), -1).max(axis=1)
        heat = np.where(peak[:, None, None] > 0, heat / np.maximum(peak, 1e-12)[:, None, None], 0.0)
        return Heatmaps(heat.astype("float32"), chosen.numpy(), logits.numpy(), features.numpy())



def cell_centres(maps_model: keras.Model, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixel coordinates of the centres of the feature map's rows and columns in the image.

    A cell looks at the pixels its activations depend on (its receptive field): those with a
    non-zero input gradient for some of a few noise images. The midpoints of the fields of
    the two cells nearest the middle of each axis give the spacing and the offset. Where a
    field reaches the image's edge (deep networks, "same" padding), the map covers the
    image evenly, which is then where its cells look.
    """
    import tensorflow as tf

    height, width = maps_model.output_shape[1:3]
    noise = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, image_size, image_size, 3)).astype("float32"))

    def field(row: int, column: int) -> tuple[np.ndarray, np.ndarray]:
        with tf.GradientTape() as tape:
            tape.watch(noise)
            energy = tf.reduce_sum(tf.square(tf.cast(maps_model(noise, training=False)[:, row, column], tf.float32)))
        reach = tf.reduce_sum(tf.abs(tape.gradient(energy, noise)), axis=(0, 3)).numpy() > 0
        return np.flatnonzero(reach.any(axis=1)), np.flatnonzero(reach.any(axis=0))

    def axis(count: int, which: int) -> np.ndarray:
        even = (np.arange(count) + 0.5) * image_size / count - 0.5
        if count < 2:
            return even
        middle = (count - 1) // 2
        spans = [field(middle + step, middle + step)[which] for step in (0, 1)]
        if any(len(span) == 0 or span[0] == 0 or span[-1] == image_size - 1 for span in spans):
            return even
        first, second = ((span[0] + span[-1]) / 2 for span in spans)
        return first + (second - first) * (np.arange(count) - middle) if second > first else even

    return axis(height, 0), axis(width, 1)


def _stretch(heat: np.ndarray, centres: np.ndarray, size: int, axis: int) -> np.ndarray:
    """`heat` interpolated linearly along `axis` from cells at pixel `centres` to `size` pixels
    (constant beyond the outermost centres)."""
    position = np.interp(np.arange(size), centres, np.arange(len(centres)))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(centres) - 1)
    shape = [1] * heat.ndim
    shape[axis] = size
    fraction = (position - low).reshape(shape)
    return np.take(heat, low, axis=axis) * (1 - fraction) + np.take(heat, high, axis=axis) * fraction
