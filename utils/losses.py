"""Segmentation losses and the `f_score` training metric, written with keras.ops.

Every function takes `y_true` one-hot `(B, H, W, C + 1)`, whose last channel marks ignored
pixels (label 255 or any value >= C), and `y_pred` softmax probabilities `(B, H, W, C)`.
Unlike the original, ignored pixels neither dilute CE/focal (they are left out of the mean) nor
add false positives to dice/f_score; with no ignored pixels the values equal the original's.

On several replicas (tf.distribute) each replica returns its share of the loss of the whole
global batch: the valid-pixel count and the dice statistics are summed over replicas first, so
training on N devices equals training on one with the same global batch.
"""

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

LossFn = Callable[[object, object], object]


def _split_targets(y_true, y_pred):
    """Casts to float32 and splits `y_true` into class targets and the ignore mask."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    return y_true[..., :-1], y_true[..., -1], y_pred


def _clip(y_pred):
    epsilon = keras.config.epsilon()
    return ops.clip(y_pred, epsilon, 1.0 - epsilon)


def _replica_context():
    """The tf.distribute replica context when several replicas train in sync, else None."""
    if keras.backend.backend() != "tensorflow":
        return None  # other backends compute the loss on the whole global batch
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def _sum_over_replicas(value):
    """`value` summed over all replicas (all-reduce, gradients included); itself on one."""
    context = _replica_context()
    return value if context is None else context.all_reduce("sum", value)


def _mean_over_valid(pixel_loss, ignore):
    """Averages a per-pixel loss over the non-ignored pixels only."""
    valid_count = _sum_over_replicas(ops.stop_gradient(ops.sum(1.0 - ignore)))
    return ops.sum(pixel_loss * (1.0 - ignore)) / ops.maximum(valid_count, 1.0)


def _f_beta(y, y_pred, beta: float, smooth: float, *, over_replicas: bool = False):
    """Per-class F-beta score summed over batch and space; `y_pred` already masked."""
    tp = ops.sum(y * y_pred, axis=[0, 1, 2])
    stats = ops.stack([tp, ops.sum(y_pred, axis=[0, 1, 2]), ops.sum(y, axis=[0, 1, 2])])
    if over_replicas:
        stats = _sum_over_replicas(stats)
    tp, fp, fn = stats[0], stats[1] - stats[0], stats[2] - stats[0]
    beta_sq = beta**2
    return ((1 + beta_sq) * tp + smooth) / ((1 + beta_sq) * tp + beta_sq * fn + fp + smooth)


def _soft_dice(y, ignore, y_pred, beta: float, smooth: float):
    """1 - mean soft F-beta over classes, with ignored pixels masked out of y_pred."""
    y_pred = y_pred * (1.0 - ignore)[..., None]
    dice = 1.0 - ops.mean(_f_beta(y, y_pred, beta, smooth, over_replicas=True))
    context = _replica_context()
    return dice if context is None else dice / context.num_replicas_in_sync


def _weighted_log_likelihood(y, y_pred, weights):
    """Per-pixel Σ_c y_c·log(p_c)·w_c; zero at ignored pixels because y is all zeros there."""
    weights = ops.cast(weights, y_pred.dtype)  # a backend tensor: torch will not mix in NumPy
    return ops.sum(y * ops.log(y_pred) * weights, axis=-1)


def _focal_pixel_loss(log_likelihood, alpha: float | None, gamma: float):
    pt = ops.exp(log_likelihood)
    if alpha is not None:
        log_likelihood = alpha * log_likelihood
    return -ops.power(1.0 - pt, gamma) * log_likelihood


def _as_weights(cls_weights: Sequence[float]) -> np.ndarray:
    return np.asarray(cls_weights, dtype="float32")


def CE(cls_weights: Sequence[float]) -> LossFn:
    """Class-weighted cross-entropy averaged over non-ignored pixels."""
    weights = _as_weights(cls_weights)

    def loss(y_true, y_pred):
        y, ignore, y_pred = _split_targets(y_true, y_pred)
        pixel_loss = -_weighted_log_likelihood(y, _clip(y_pred), weights)
        return _mean_over_valid(pixel_loss, ignore)

    return loss


def Focal_Loss(cls_weights: Sequence[float], alpha: float | None = 0.5, gamma: float = 2) -> LossFn:
    """Class-weighted focal loss, -(1-pt)^gamma·alpha·log(pt), averaged over valid pixels."""
    weights = _as_weights(cls_weights)

    def loss(y_true, y_pred):
        y, ignore, y_pred = _split_targets(y_true, y_pred)
        log_likelihood = _weighted_log_likelihood(y, _clip(y_pred), weights)
        return _mean_over_valid(_focal_pixel_loss(log_likelihood, alpha, gamma), ignore)

    return loss


def dice_loss_with_CE(
    cls_weights: Sequence[float], beta: float = 1, smooth: float = 1e-5
) -> LossFn:
    """Weighted CE plus soft dice (unweighted); dice helps with few or imbalanced classes."""
    weights = _as_weights(cls_weights)

    def loss(y_true, y_pred):
        y, ignore, y_pred = _split_targets(y_true, y_pred)
        y_pred = _clip(y_pred)
        ce = _mean_over_valid(-_weighted_log_likelihood(y, y_pred, weights), ignore)
        return ce + _soft_dice(y, ignore, y_pred, beta, smooth)

    return loss


def dice_loss_with_Focal_Loss(
    cls_weights: Sequence[float],
    beta: float = 1,
    smooth: float = 1e-5,
    alpha: float | None = 0.5,
    gamma: float = 2,
) -> LossFn:
    """Weighted focal loss plus soft dice (unweighted)."""
    weights = _as_weights(cls_weights)

    def loss(y_true, y_pred):
        y, ignore, y_pred = _split_targets(y_true, y_pred)
        y_pred = _clip(y_pred)
        log_likelihood = _weighted_log_likelihood(y, y_pred, weights)
        focal = _mean_over_valid(_focal_pixel_loss(log_likelihood, alpha, gamma), ignore)
        return focal + _soft_dice(y, ignore, y_pred, beta, smooth)

    return loss


def build_loss(cls_weights: Sequence[float], *, dice_loss: bool, focal_loss: bool) -> LossFn:
    """Picks the training loss from the two flags, as the original `train.py` does."""
    if focal_loss and dice_loss:
        return dice_loss_with_Focal_Loss(cls_weights)
    if focal_loss:
        return Focal_Loss(cls_weights)
    if dice_loss:
        return dice_loss_with_CE(cls_weights)
    return CE(cls_weights)


def f_score(
    beta: float = 1,
    smooth: float = 1e-5,
    threhold: float = 0.5,
    threshold: float | None = None,
) -> LossFn:
    """Thresholded F-beta averaged over classes; the original's only training metric.

    `threhold` keeps the original's spelling; `threshold`, when given, takes precedence.
    """
    cutoff = threhold if threshold is None else threshold

    def f_score(y_true, y_pred):
        y, ignore, y_pred = _split_targets(y_true, y_pred)
        y_hat = ops.cast(ops.greater(y_pred, cutoff), "float32") * (1.0 - ignore)[..., None]
        return ops.mean(_f_beta(y, y_hat, beta, smooth))

    return f_score
