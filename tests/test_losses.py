"""Losses and f_score against an independent NumPy implementation of their formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from utils.losses import (
    CE,
    Focal_Loss,
    build_loss,
    dice_loss_with_CE,
    dice_loss_with_Focal_Loss,
    f_score,
)

NUM_CLASSES = 3
EPS = 1e-7
CLS_WEIGHTS = np.array([0.5, 1.0, 2.0], dtype="float32")


def make_batch(ignore_fraction: float, seed: int = 0, shape=(2, 8, 8)):
    """Random labels (some set to 255) as one-hot with an ignore channel, and softmax probs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=shape)
    labels[rng.random(shape) < ignore_fraction] = 255
    labels = np.where(labels >= NUM_CLASSES, NUM_CLASSES, labels)
    y_true = np.eye(NUM_CLASSES + 1, dtype="float32")[labels]
    logits = rng.normal(scale=2.0, size=shape + (NUM_CLASSES,))
    y_pred = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return y_true, y_pred.astype("float32")


def as_float(value) -> float:
    return float(keras.ops.convert_to_numpy(value))


# Reference implementations, float64 NumPy, written straight from the formulas.


def np_split(y_true, y_pred):
    y = y_true[..., :-1].astype("float64")
    valid = 1.0 - y_true[..., -1].astype("float64")
    return y, valid, np.clip(y_pred.astype("float64"), EPS, 1 - EPS)


def np_ce_pixels(y_true, y_pred, weights):
    y, _, p = np_split(y_true, y_pred)
    return -(y * np.log(p) * weights).sum(-1)


def np_ce(y_true, y_pred, weights):
    _, valid, _ = np_split(y_true, y_pred)
    return np_ce_pixels(y_true, y_pred, weights).sum() / max(valid.sum(), 1.0)


def np_focal(y_true, y_pred, weights, alpha=0.5, gamma=2):
    y, valid, p = np_split(y_true, y_pred)
    s = (y * np.log(p) * weights).sum(-1)
    scaled = s if alpha is None else alpha * s
    pixels = -((1 - np.exp(s)) ** gamma) * scaled
    return pixels.sum() / max(valid.sum(), 1.0)


def np_f_beta(y, p, beta, smooth):
    tp = (y * p).sum(axis=(0, 1, 2))
    fp = p.sum(axis=(0, 1, 2)) - tp
    fn = y.sum(axis=(0, 1, 2)) - tp
    b2 = beta**2
    return ((1 + b2) * tp + smooth) / ((1 + b2) * tp + b2 * fn + fp + smooth)


def np_dice(y_true, y_pred, beta=1, smooth=1e-5):
    y, valid, p = np_split(y_true, y_pred)
    return 1.0 - np_f_beta(y, p * valid[..., None], beta, smooth).mean()


def np_f_score(y_true, y_pred, beta=1, smooth=1e-5, threshold=0.5):
    y = y_true[..., :-1].astype("float64")
    valid = 1.0 - y_true[..., -1].astype("float64")
    y_hat = (y_pred > threshold).astype("float64") * valid[..., None]
    return np_f_beta(y, y_hat, beta, smooth).mean()


ALL_LOSSES = {
    "ce": (CE(CLS_WEIGHTS), lambda t, p: np_ce(t, p, CLS_WEIGHTS)),
    "focal": (Focal_Loss(CLS_WEIGHTS), lambda t, p: np_focal(t, p, CLS_WEIGHTS)),
    "dice_ce": (
        dice_loss_with_CE(CLS_WEIGHTS),
        lambda t, p: np_ce(t, p, CLS_WEIGHTS) + np_dice(t, p),
    ),
    "dice_focal": (
        dice_loss_with_Focal_Loss(CLS_WEIGHTS),
        lambda t, p: np_focal(t, p, CLS_WEIGHTS) + np_dice(t, p),
    ),
    "f_score": (f_score(), np_f_score),
}


@pytest.mark.parametrize("ignore_fraction", [0.0, 0.3])
@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_matches_numpy_reference(name, ignore_fraction):
    y_true, y_pred = make_batch(ignore_fraction)
    fn, reference = ALL_LOSSES[name]
    np.testing.assert_allclose(as_float(fn(y_true, y_pred)), reference(y_true, y_pred), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(beta=2, smooth=1e-3),
        dict(alpha=None, gamma=1),
        dict(alpha=0.25, gamma=3),
    ],
)
def test_non_default_hyperparameters(kwargs):
    y_true, y_pred = make_batch(0.2, seed=1)
    beta, smooth = kwargs.get("beta", 1), kwargs.get("smooth", 1e-5)
    focal_kwargs = {k: kwargs[k] for k in ("alpha", "gamma") if k in kwargs}
    loss = dice_loss_with_Focal_Loss(CLS_WEIGHTS, beta=beta, smooth=smooth, **focal_kwargs)
    expected = np_focal(y_true, y_pred, CLS_WEIGHTS, **focal_kwargs) + np_dice(
        y_true, y_pred, beta, smooth
    )
    np.testing.assert_allclose(as_float(loss(y_true, y_pred)), expected, rtol=1e-5)
    np.testing.assert_allclose(
        as_float(f_score(beta=beta, smooth=smooth)(y_true, y_pred)),
        np_f_score(y_true, y_pred, beta, smooth),
        rtol=1e-5,
    )


def test_ce_without_ignored_pixels_equals_original_all_pixel_mean():
    y_true, y_pred = make_batch(0.0)
    original = np_ce_pixels(y_true, y_pred, CLS_WEIGHTS).mean()
    np.testing.assert_allclose(as_float(CE(CLS_WEIGHTS)(y_true, y_pred)), original, rtol=1e-5)


def test_ce_with_ignored_pixels_is_not_diluted():
    y_true, y_pred = make_batch(0.5)
    original = np_ce_pixels(y_true, y_pred, CLS_WEIGHTS).mean()
    valid_fraction = 1.0 - y_true[..., -1].mean()
    assert 0.3 < valid_fraction < 0.7
    np.testing.assert_allclose(
        as_float(CE(CLS_WEIGHTS)(y_true, y_pred)), original / valid_fraction, rtol=1e-5
    )


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_predictions_at_ignored_pixels_do_not_matter(name):
    y_true, y_pred = make_batch(0.3)
    ignored = y_true[..., -1] == 1
    _, other_pred = make_batch(0.0, seed=7)
    changed = np.where(ignored[..., None], other_pred, y_pred)
    assert not np.allclose(changed, y_pred)
    fn, _ = ALL_LOSSES[name]
    np.testing.assert_allclose(as_float(fn(y_true, changed)), as_float(fn(y_true, y_pred)))


def test_all_pixels_ignored_gives_zero_not_nan():
    y_true, y_pred = make_batch(1.0)
    assert as_float(CE(CLS_WEIGHTS)(y_true, y_pred)) == 0.0
    assert as_float(Focal_Loss(CLS_WEIGHTS)(y_true, y_pred)) == 0.0


def test_perfect_prediction_scores_one_and_dice_zero():
    y_true, _ = make_batch(0.3)
    # Ignored pixels predict class 0 with certainty; masking keeps them out of fp.
    labels = np.argmax(y_true[..., :-1], axis=-1)
    perfect = np.eye(NUM_CLASSES, dtype="float32")[labels]
    assert as_float(f_score()(y_true, perfect)) == pytest.approx(1.0, abs=1e-6)
    dice = as_float(dice_loss_with_CE(CLS_WEIGHTS)(y_true, perfect)) - as_float(
        CE(CLS_WEIGHTS)(y_true, perfect)
    )
    assert dice == pytest.approx(0.0, abs=1e-5)


def test_threshold_spellings_agree():
    y_true, y_pred = make_batch(0.2)
    misspelled = as_float(f_score(threhold=0.3)(y_true, y_pred))
    spelled = as_float(f_score(threshold=0.3)(y_true, y_pred))
    assert misspelled == spelled
    np.testing.assert_allclose(spelled, np_f_score(y_true, y_pred, threshold=0.3), rtol=1e-5)


@pytest.mark.parametrize("name", ["ce", "focal", "dice_ce", "dice_focal"])
def test_gradients_are_finite_even_for_saturated_softmax(name):
    y_true, _ = make_batch(0.3)
    logits = tf.Variable(np.random.default_rng(3).normal(scale=50.0, size=(2, 8, 8, 3)))
    fn, _ = ALL_LOSSES[name]
    with tf.GradientTape() as tape:
        loss = fn(y_true, tf.nn.softmax(tf.cast(logits, "float32")))
    grad = tape.gradient(loss, logits).numpy()
    assert np.isfinite(as_float(loss))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_float16_predictions_give_float32_loss():
    y_true, y_pred = make_batch(0.2)
    loss = dice_loss_with_Focal_Loss(CLS_WEIGHTS)(y_true, y_pred.astype("float16"))
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    expected = np_focal(y_true, y_pred, CLS_WEIGHTS) + np_dice(y_true, y_pred)
    np.testing.assert_allclose(as_float(loss), expected, rtol=1e-2)


@pytest.mark.parametrize(
    "dice, focal, factory",
    [
        (False, False, CE),
        (True, False, dice_loss_with_CE),
        (False, True, Focal_Loss),
        (True, True, dice_loss_with_Focal_Loss),
    ],
)
def test_build_loss_selects_like_train_py(dice, focal, factory):
    y_true, y_pred = make_batch(0.2)
    chosen = build_loss(CLS_WEIGHTS, dice_loss=dice, focal_loss=focal)
    assert as_float(chosen(y_true, y_pred)) == as_float(factory(CLS_WEIGHTS)(y_true, y_pred))


def test_keras_logs_metric_as_f_score():
    assert f_score().__name__ == "f_score"
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(NUM_CLASSES, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=CE(CLS_WEIGHTS), metrics=[f_score()])
    y_true, _ = make_batch(0.2)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    logs = model.evaluate(x, y_true, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "f_score"}
    assert np.isfinite(logs["loss"]) and 0.0 <= logs["f_score"] <= 1.0
