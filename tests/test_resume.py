"""Resume equals an uninterrupted run; NaN stops cleanly; SIGTERM; mixed precision; multi-device."""

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from backend_run import InterruptAfter

import train as train_script
import utils.dataloader
from nets.unet import Unet
from utils.config import load_config
from utils.training import sigterm_as_interrupt, train
from utils.training_state import describe_interrupt


def config(argv: list[str]):
    return load_config(train_script.__file__, argv)


@pytest.fixture(scope="module")
def dataset(make_voc):
    return make_voc()


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(dataset, tmp_path, train_argv, user_error, capsys):
    # 1 frozen + 2 unfrozen epochs; the interruption after epoch 2 falls inside phase 2, so the
    # resumed run must restore the phase-2 optimizer moments, not just the weights.
    extra = ("--Freeze_Epoch", "1", "--UnFreeze_Epoch", "3", "--save_period", "3",
             "--eval_period", "2", "--Init_lr", "1e-3", "--optimizer_type", "sgd")
    straight = train(config(train_argv(dataset, tmp_path / "straight", *extra)))

    save_dir = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(config(train_argv(dataset, save_dir, *extra)), callbacks=[InterruptAfter(2)])
    assert describe_interrupt(save_dir) in capsys.readouterr().out
    message = describe_interrupt(save_dir)
    assert "after epoch 2" in message and "--resume True" in message
    assert json.loads((save_dir / "training_state" / "state.json").read_text())["phase"] == 2

    resumed = train(config(train_argv(dataset, save_dir, *extra, "--resume", "True")))
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert resumed.history["loss"] == pytest.approx(straight.history["loss"], rel=1e-5)
    assert [p.name for p in save_dir.glob("loss_*")] == [resumed.log_dir.name]
    assert len((resumed.log_dir / "epoch_loss.txt").read_text().split()) == 3
    assert len((resumed.log_dir / "epoch_miou.txt").read_text().split()) == 2  # 0 and epoch 2
    # The periodic counter (2 epochs since the last save) was restored: epoch 3 is saved.
    assert len(list(save_dir.glob("ep003-*.weights.h5"))) == 1
    assert len(list((tmp_path / "straight").glob("ep003-*.weights.h5"))) == 1

    finished = user_error(train_script.main,
                          train_argv(dataset, save_dir, *extra, "--resume", "True"))
    assert "already finished 3 epochs" in finished
    changed = user_error(train_script.main, train_argv(
        dataset, save_dir, *extra, "--resume", "True", "--UnFreeze_Epoch", "5", "--backbone",
        "resnet50"))
    assert "backbone = 'resnet50' but the run" in changed


def test_nan_loss_stops_and_keeps_the_last_good_epoch(dataset, tmp_path, monkeypatch,
                                                      train_argv, user_error):
    make_dataset = utils.dataloader.make_dataset

    def nan_from_second_epoch(layout, ids, input_shape, batch_size, num_classes, *, train,
                              **kwargs):
        data = make_dataset(layout, ids, input_shape, batch_size, num_classes, train=train,
                            **kwargs)
        if not train:  # validation stays clean
            return data
        steps = len(ids) // batch_size
        return data.enumerate().map(  # NaN targets (ReLU would swallow NaN images)
            lambda i, xy: (xy[0], tf.where(i >= steps, np.float32("nan"), xy[1])))

    monkeypatch.setattr("utils.training.make_dataset", nan_from_second_epoch)
    save_dir = tmp_path / "logs"
    message = user_error(train_script.main, train_argv(
        dataset, save_dir, "--Freeze_Train", "False", "--UnFreeze_Epoch", "3", "--save_period",
        "1", "--eval_flag", "False"))
    assert "loss became nan at epoch 2 batch 1: lower Init_lr" in message
    names = sorted(p.name for p in save_dir.glob("*.weights.h5"))
    assert len(names) == 3 and names[1].startswith("ep001-")
    assert names[0] == "best_epoch_weights.weights.h5"
    assert names[2] == "last_epoch_weights.weights.h5"
    state = json.loads((save_dir / "training_state" / "state.json").read_text())
    assert state["epoch"] == 1
    last = Unet((32, 32, 3), 4, "vgg")
    last.load_weights(save_dir / "last_epoch_weights.weights.h5")
    assert all(np.isfinite(w).all() for w in last.get_weights())
    (log_dir,) = save_dir.glob("loss_*")
    assert len((log_dir / "epoch_loss.txt").read_text().split()) == 1


def test_sigterm_becomes_a_clean_interrupt():
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("precision, optimizer", [("bfloat16", keras.optimizers.SGD),
                                                  ("float16", keras.optimizers.LossScaleOptimizer)])
def test_mixed_precision_one_step(make_voc, tmp_path, precision, optimizer, train_argv, capsys):
    # one step each way, without validation: float16 has no fast CPU kernels (seconds a step)
    cfg = config(train_argv(make_voc(2, 0), tmp_path / "logs", "--Freeze_Train", "False",
                            "--UnFreeze_Epoch", "1", "--eval_flag", "False",
                            "--optimizer_type", "sgd", "--mixed_precision", precision))
    result = train(cfg)
    model = result.model
    assert model.get_layer("block1_conv1").compute_dtype == precision
    assert model.get_layer("block1_conv1").kernel.dtype == "float32"
    assert model.get_layer("final_conv").compute_dtype == "float32"
    assert isinstance(model.optimizer, optimizer)  # Keras wraps float16 in compile
    assert np.isfinite(result.history["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    warned = "float16\" without a GPU" in capsys.readouterr().out
    assert warned == (precision == "float16")
