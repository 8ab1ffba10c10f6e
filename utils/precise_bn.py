"""Batch-norm statistics re-estimated before validation ("precise BN"), for small batches.

At inference, batch norm divides by moving averages of the batch statistics (momentum 0.99).
Early in training, above all from scratch, the weights change faster than those averages
follow, so validation, the mIoU and the checkpoints see statistics of older weights. Here,
before each validation, every trainable batch-norm layer gets the mean of the batch means and
variances of a fixed set of training images (letterboxed, not augmented), batched like
training. Frozen layers keep theirs; layers without batch norm (VGG) are untouched.
"""

from collections.abc import Callable, Iterable

import keras
import numpy as np

from utils.backend import is_tensorflow


def trainable_batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The batch-norm layers whose statistics training changes (nested models included)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += trainable_batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer)
    return found


def statistics_step(model: keras.Model, layers: list) -> Callable:
    """One forward pass in training mode that returns each layer's (moving mean, moving
    variance) after it; compiled on TensorFlow, where the eager pass is ten times slower."""
    def step(images):
        model(images, training=True)
        return [(keras.ops.convert_to_tensor(layer.moving_mean),
                 keras.ops.convert_to_tensor(layer.moving_variance)) for layer in layers]

    if is_tensorflow():
        import tensorflow as tf

        return tf.function(step, reduce_retracing=True)
    return step


def recalibrate_batch_norm(model: keras.Model, batches: Iterable,
                           step: Callable | None = None) -> int:
    """Set each trainable batch-norm layer's moving mean and variance to the average of its
    batch statistics over `batches` (images only); returns how many batches were used.
    `step`, from `statistics_step` for the same model and layers, saves tracing it again."""
    layers = trainable_batch_norms(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    sums = [[0.0, 0.0] for _ in layers]
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # each pass leaves exactly its batch's statistics
        step = step or statistics_step(model, layers)  # traced with momentum 0
        for images in batches:
            for total, (mean, variance) in zip(sums, step(images), strict=True):
                total[0] += keras.ops.convert_to_numpy(mean).astype(np.float64)
                total[1] += keras.ops.convert_to_numpy(variance).astype(np.float64)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    for (mean, variance), layer in zip(sums, layers, strict=True):
        if count:
            layer.moving_mean.assign(mean / count)
            layer.moving_variance.assign(variance / count)
    return count


class PreciseBatchNorm(keras.callbacks.Callback):
    """Re-estimates the batch-norm statistics before each validation of `fit` (and at the
    epoch's end when no validation ran), so val_loss, the mIoU and the checkpoints agree."""

    def __init__(self, batches: Callable[[], Iterable]) -> None:
        super().__init__()
        self.batches = batches
        self.done = False
        self.step: Callable | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.done = False

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.done:
            return
        if self.step is None:
            self.step = statistics_step(self.model, trainable_batch_norms(self.model))
        recalibrate_batch_norm(self.model, self.batches(), self.step)
        self.done = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.on_test_begin()
