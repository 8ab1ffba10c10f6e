"""Resume equals an uninterrupted run; NaN stops cleanly; SIGTERM; mixed precision; multi-device."""

import json
import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import train as train_script
import utils.training as training
from nets.unet import Unet
from utils.config import load_config
from utils.demo_data import write_demo_dataset

REPO = Path(__file__).resolve().parents[1]


def write_dataset(root: Path, num_train: int = 4, num_val: int = 2) -> Path:
    dataset = root / "VOCdevkit"
    write_demo_dataset(dataset, num_images=num_train + num_val, img_dir=root / "img")
    ids = [f"demo_{i:04d}" for i in range(num_train + num_val)]
    splits = dataset / "VOC2007" / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("".join(f"{i}\n" for i in ids[:num_train]))
    (splits / "val.txt").write_text("".join(f"{i}\n" for i in ids[num_train:]))
    return dataset


def tiny_argv(dataset: Path, save_dir: Path, *extra: str) -> list[str]:
    return ["--num_classes", "4", "--model_path", "", "--input_shape", "32", "32",
            "--VOCdevkit_path", str(dataset), "--save_dir", str(save_dir),
            "--Freeze_batch_size", "2", "--Unfreeze_batch_size", "2", *extra]


def config(argv: list[str]):
    return load_config(train_script.__file__, argv)


class InterruptAfter(keras.callbacks.Callback):
    """Ctrl-C right after epoch `epochs` ended (and its state was saved)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(dataset, tmp_path):
    # 1 frozen + 2 unfrozen epochs; the interruption after epoch 2 falls inside phase 2, so the
    # resumed run must restore the phase-2 optimizer moments, not just the weights.
    extra = ("--Freeze_Epoch", "1", "--UnFreeze_Epoch", "3", "--save_period", "3",
             "--eval_period", "2", "--Init_lr", "1e-3", "--optimizer_type", "sgd")
    straight = training.train(config(tiny_argv(dataset, tmp_path / "straight", *extra)))

    save_dir = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        training.train(config(tiny_argv(dataset, save_dir, *extra)), callbacks=[InterruptAfter(2)])
    message = training.describe_interrupt(save_dir)
    assert "after epoch 2" in message and "--resume True" in message
    assert json.loads((save_dir / "training_state" / "state.json").read_text())["phase"] == 2

    resumed = training.train(config(tiny_argv(dataset, save_dir, *extra, "--resume", "True")))
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert resumed.history["loss"] == pytest.approx(straight.history["loss"], rel=1e-5)
    assert [p.name for p in save_dir.glob("loss_*")] == [resumed.log_dir.name]
    assert len((resumed.log_dir / "epoch_loss.txt").read_text().split()) == 3
    assert len((resumed.log_dir / "epoch_miou.txt").read_text().split()) == 2  # 0 and epoch 2
    # The periodic counter (2 epochs since the last save) was restored: epoch 3 is saved.
    assert len(list(save_dir.glob("ep003-*.weights.h5"))) == 1
    assert len(list((tmp_path / "straight").glob("ep003-*.weights.h5"))) == 1

    finished = fails_with(tiny_argv(dataset, save_dir, *extra, "--resume", "True"))
    assert "already finished 3 epochs" in finished
    changed = fails_with(tiny_argv(dataset, save_dir, *extra, "--resume", "True",
                                   "--UnFreeze_Epoch", "5", "--backbone", "resnet50"))
    assert "backbone = 'resnet50' but the run" in changed


def fails_with(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as excinfo:
        train_script.main(argv)
    assert isinstance(excinfo.value.code, str)
    return excinfo.value.code


def test_nan_loss_stops_and_keeps_the_last_good_epoch(dataset, tmp_path, monkeypatch):
    make_dataset = training.make_dataset

    def nan_from_second_epoch(ids, input_shape, batch_size, *args, **kwargs):
        data = make_dataset(ids, input_shape, batch_size, *args, **kwargs)
        if not args[1]:  # validation stays clean
            return data
        steps = len(ids) // batch_size
        return data.enumerate().map(  # NaN targets (ReLU would swallow NaN images)
            lambda i, xy: (xy[0], tf.where(i >= steps, np.float32("nan"), xy[1])))

    monkeypatch.setattr(training, "make_dataset", nan_from_second_epoch)
    save_dir = tmp_path / "logs"
    message = fails_with(tiny_argv(dataset, save_dir, "--Freeze_Train", "False",
                                   "--UnFreeze_Epoch", "3", "--save_period", "1",
                                   "--eval_flag", "False"))
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
    with pytest.raises(KeyboardInterrupt), training.sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("precision, optimizer", [("bfloat16", "SGD"),
                                                  ("float16", "LossScaleOptimizer")])
def test_mixed_precision_one_step(dataset, tmp_path, precision, optimizer):
    cfg = config(tiny_argv(dataset, tmp_path / "logs", "--Freeze_Train", "False",
                           "--UnFreeze_Epoch", "1", "--eval_flag", "False",
                           "--optimizer_type", "sgd",
                           "--mixed_precision", precision))
    result = training.train(cfg)
    model = result.model
    assert model.get_layer("block1_conv1").compute_dtype == precision
    assert model.get_layer("block1_conv1").kernel.dtype == "float32"
    assert model.get_layer("final_conv").compute_dtype == "float32"
    assert type(model.optimizer).__name__ == optimizer  # Keras wraps float16 in compile
    assert np.isfinite(result.history["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"  # restored after training
