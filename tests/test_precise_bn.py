"""Precise batch norm: the statistics become the average batch statistics of the given images,
frozen layers keep theirs, and training calls it before each validation."""

import keras
import numpy as np
import pytest

from utils.precise_bn import PreciseBatchNorm, recalibrate_batch_norm, trainable_batch_norms


def small_model() -> keras.Model:
    inputs = keras.Input((6, 5, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(features)
    frozen = keras.layers.BatchNormalization(name="frozen_bn")(normed)
    model = keras.Model(inputs, frozen)
    model.get_layer("frozen_bn").trainable = False
    return model


def test_statistics_are_the_mean_of_the_batch_statistics():
    model = small_model()
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, (2, 6, 5, 3)).astype("float32") for _ in range(3)]
    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    outputs = [keras.ops.convert_to_numpy(conv(b)) for b in batches]
    frozen = model.get_layer("frozen_bn")
    before = keras.ops.convert_to_numpy(frozen.moving_mean).copy()

    assert [layer.name for layer in trainable_batch_norms(model)] == ["bn"]
    assert recalibrate_batch_norm(model, iter(batches)) == 3
    bn = model.get_layer("bn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                               np.mean([o.mean(axis=(0, 1, 2)) for o in outputs], axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               np.mean([o.var(axis=(0, 1, 2)) for o in outputs], axis=0),
                               rtol=1e-4)
    assert bn.momentum == pytest.approx(0.99) and frozen.momentum == pytest.approx(0.99)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(frozen.moving_mean), before)


def test_no_batches_or_no_batch_norm_change_nothing():
    model = small_model()
    assert recalibrate_batch_norm(model, []) == 0
    assert keras.ops.convert_to_numpy(model.get_layer("bn").moving_variance).tolist() == [1.0] * 4
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert recalibrate_batch_norm(plain, [np.ones((2, 4), "float32")]) == 0


def test_fit_recalibrates_once_per_epoch_before_validation():
    model = small_model()
    model.compile(optimizer="sgd", loss="mse")
    calls = []

    def batches():
        calls.append(len(calls))
        return [np.ones((2, 6, 5, 3), "float32")]

    seen_at_validation = []

    class Probe(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen_at_validation.append(len(calls))

    x, y = np.zeros((4, 6, 5, 3), "float32"), np.zeros((4, 6, 5, 4), "float32")
    model.fit(x, y, batch_size=2, epochs=2, validation_data=(x, y), verbose=0,
              callbacks=[PreciseBatchNorm(batches), Probe()])
    assert calls == [0, 1] and seen_at_validation == [1, 2]
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[PreciseBatchNorm(batches)])
    assert calls == [0, 1, 2]  # no validation: at the epoch's end


def test_training_saves_the_recalibrated_statistics(make_voc, train_argv, tmp_path):
    import train as train_script
    from nets.unet import Unet
    from utils.config import load_config
    from utils.dataloader import make_dataset
    from utils.training import train

    dataset = make_voc(6, 2)
    argv = train_argv(dataset, tmp_path / "logs", "--backbone", "resnet50", "--input_shape",
                      "32", "32", "--Freeze_Train", "False", "--UnFreeze_Epoch", "1",
                      "--Unfreeze_batch_size", "2", "--eval_flag", "False",
                      "--precise_bn_images", "4")
    cfg = load_config(train_script.__file__, argv)
    train(cfg)
    model = Unet((32, 32, 3), cfg.num_classes, "resnet50")
    model.load_weights(tmp_path / "logs" / "last_epoch_weights.weights.h5")
    saved = [keras.ops.convert_to_numpy(bn.moving_variance).copy()
             for bn in trainable_batch_norms(model)]
    train_ids = (dataset / "VOC2007/ImageSets/Segmentation/train.txt").read_text().split()
    images = make_dataset(dataset, train_ids[:4], (32, 32), 2, cfg.num_classes, train=False,
                          seed=cfg.seed)
    assert recalibrate_batch_norm(model, (x for x, _ in images.take(2))) == 2
    again = [keras.ops.convert_to_numpy(bn.moving_variance)
             for bn in trainable_batch_norms(model)]
    assert len(saved) == 53
    for before, after in zip(saved, again, strict=True):
        np.testing.assert_allclose(before, after, rtol=1e-3, atol=1e-6)


def test_several_replicas_are_refused_before_training(make_voc, train_argv, tmp_path):
    from types import SimpleNamespace

    import train as train_script
    from utils.config import load_config
    from utils.errors import UserError
    from utils.training import train

    cfg = load_config(train_script.__file__, train_argv(
        make_voc(4, 2), tmp_path / "logs", "--precise_bn_images", "8"))
    with pytest.raises(UserError, match="precise_bn_images = 8 works on one device only, and "
                                        "this run has 2; set it to 0"):
        train(cfg, strategy=SimpleNamespace(num_replicas_in_sync=2))
    assert not (tmp_path / "logs").exists()
