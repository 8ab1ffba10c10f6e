"""Callbacks: loss history files and curves, Keras 2 checkpoint semantics, NaN guard, mIoU
evaluation with get_miou.py's code, and the atomic training state."""

import math
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.signal

import train as train_script
import utils.callbacks as callbacks
from nets.unet import Unet
from utils.callbacks import (
    EvalCallback,
    LossHistory,
    shared_callbacks,
    training_callbacks,
)
from utils.checkpoints import (
    NaNGuard,
    NonFiniteLossError,
    TrainingStateCheckpoint,
    WeightsCheckpoint,
)
from utils.config import load_config
from utils.dataset import VOCLayout
from utils.demo_data import write_demo_dataset
from utils.evaluation import evaluate_split
from utils.precise_bn import PreciseBatchNorm
from utils.predictor import Predictor
from utils.training_state import (
    Stateful,
    callback_states,
    find_training_state,
    load_training_state,
    restore_callback_states,
    save_training_state,
)


def read_floats(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().splitlines()]


@pytest.fixture
def captured_curves(monkeypatch):
    """Record what each figure would draw, keyed by file name."""
    drawn = {}
    original = callbacks.save_curve_figure

    def capture(path, curves, ylabel, title):
        drawn[Path(path).name] = {"curves": curves, "ylabel": ylabel, "title": title}
        original(path, curves, ylabel, title)

    monkeypatch.setattr(callbacks, "save_curve_figure", capture)
    return drawn


def test_loss_history_files_and_smoothing(tmp_path, captured_curves):
    log_dir = tmp_path / "loss_x"
    history = LossHistory(log_dir)
    losses = [1.0, 0.8, 0.7, 0.65, 0.6, 0.58]
    val = [1.1, 0.9, 0.8, 0.75, 0.7, 0.69]
    for epoch in range(4):
        history.on_epoch_end(epoch, {"loss": losses[epoch], "val_loss": val[epoch]})
    # 4 points: too few for the 5-point Savitzky-Golay window, so raw curves only
    labels = [c["label"] for c in captured_curves["epoch_loss.png"]["curves"]]
    assert labels == ["train loss", "val loss"]

    for epoch in range(4, 6):
        history.on_epoch_end(epoch, {"loss": losses[epoch], "val_loss": val[epoch]})
    assert read_floats(log_dir / "epoch_loss.txt") == losses
    assert read_floats(log_dir / "epoch_val_loss.txt") == val
    assert (log_dir / "epoch_loss.txt").read_text().splitlines()[0] == str(1.0)
    drawn = captured_curves["epoch_loss.png"]
    assert drawn["title"] == "A Loss Curve" and drawn["ylabel"] == "Loss"
    by_label = {c["label"]: c for c in drawn["curves"]}
    assert list(by_label) == ["train loss", "val loss", "smooth train loss", "smooth val loss"]
    assert by_label["train loss"]["color"] == "red" and by_label["val loss"]["color"] == "coral"
    assert by_label["smooth val loss"]["color"] == "#8B4513"
    np.testing.assert_allclose(by_label["smooth train loss"]["y"],
                               scipy.signal.savgol_filter(losses, 5, 3))
    assert list(by_label["train loss"]["x"]) == list(range(6))
    assert (log_dir / "epoch_loss.png").stat().st_size > 1000


def test_loss_history_restores_state_and_rewrites_files(tmp_path):
    log_dir = tmp_path / "loss_x"
    first = LossHistory(log_dir, val_loss_flag=False)
    for epoch, loss in enumerate([0.9, 0.5]):
        first.on_epoch_end(epoch, {"loss": loss})
    assert not (log_dir / "epoch_val_loss.txt").exists()
    (log_dir / "epoch_loss.txt").write_text("0.9\n0.5\n0.4\n")  # a line the state never saw

    second = LossHistory(log_dir, val_loss_flag=False)
    second.set_state(first.get_state())
    second.on_epoch_end(2, {"loss": 0.3})
    assert read_floats(log_dir / "epoch_loss.txt") == [0.9, 0.5, 0.3]


def tiny_model() -> keras.Model:
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs))


def test_periodic_checkpoint_counts_from_creation_like_keras2(tmp_path):
    model = tiny_model()
    checkpoint = WeightsCheckpoint(
        tmp_path / "ep{epoch:03d}-loss{loss:.3f}-val_loss{val_loss:.3f}.weights.h5", "periodic",
        period=5)
    checkpoint.set_model(model)
    for epoch in range(3, 13):  # Init_Epoch = 3: the original saves at epochs 8 and 13
        checkpoint.on_epoch_end(epoch, {"loss": 0.5 / (epoch + 1), "val_loss": 0.25})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ep008-loss0.062-val_loss0.250.weights.h5",
        "ep013-loss0.038-val_loss0.250.weights.h5",
    ]
    restored = keras.models.clone_model(model)
    restored.load_weights(tmp_path / "ep013-loss0.038-val_loss0.250.weights.h5")
    np.testing.assert_array_equal(restored.get_weights()[0], model.get_weights()[0])


def test_best_checkpoint_saves_only_improvements_and_keeps_best_in_state(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr("utils.checkpoints.save_weights_atomic",
                        lambda model, path: saved.append(path))
    best = WeightsCheckpoint(tmp_path / "best_epoch_weights.weights.h5", "best",
                             save_best_only=True)
    best.set_model(tiny_model())
    for epoch, val_loss in enumerate([3.0, 2.0, 2.5, 2.0, 1.0]):
        best.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss})
    assert len(saved) == 3 and best.best == 1.0

    resumed = WeightsCheckpoint(tmp_path / "best_epoch_weights.weights.h5", "best",
                                save_best_only=True)
    resumed.set_state(best.get_state())
    resumed.set_model(tiny_model())
    resumed.on_epoch_end(5, {"loss": 1.0, "val_loss": 1.5})  # worse than the restored best
    assert len(saved) == 3


def test_best_checkpoint_can_follow_the_highest_val_miou(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr("utils.checkpoints.save_weights_atomic",
                        lambda model, path: saved.append(path))
    best = WeightsCheckpoint(tmp_path / "best.weights.h5", "best", monitor="val_miou",
                             save_best_only=True)
    best.set_model(tiny_model())
    logs = [{"val_loss": 1.0}, {"val_loss": 0.9, "val_miou": 40.0}, {"val_loss": 0.1},
            {"val_loss": 0.8, "val_miou": 35.0}, {"val_loss": 0.9, "val_miou": 52.5}]
    for epoch, log in enumerate(logs):
        best.on_epoch_end(epoch, {"loss": 1.0, **log})
    assert len(saved) == 2  # epochs 2 and 5: the epochs without an evaluation are passed
    assert best.get_state()["best"] == -52.5


def test_nan_guard_names_epoch_and_batch():
    guard = NaNGuard()
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(0, {"loss": 0.7})
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2 batch 3: lower "
                                                 r"Init_lr, check the labels"):
        guard.on_train_batch_end(2, {"loss": float("nan")})
    with pytest.raises(NonFiniteLossError, match=r"inf at epoch 2 \(val_loss\)"):
        guard.on_epoch_end(1, {"loss": 0.5, "val_loss": math.inf})


def test_training_state_is_atomic(tmp_path):
    model = tiny_model()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    save_training_state(tmp_path, model, {"epoch": 1})
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    save_training_state(tmp_path, model, {"epoch": 2})
    assert sorted(os.listdir(tmp_path)) == ["training_state"]
    state, optimizer_store = load_training_state(find_training_state(tmp_path))
    assert state == {"epoch": 2}
    assert len(optimizer_store) == len(model.optimizer.variables)
    np.testing.assert_array_equal(optimizer_store["0"], model.optimizer.variables[0].numpy())

    # Interrupted between the two renames: only training_state.old (and a stale .tmp) remain.
    os.replace(tmp_path / "training_state", tmp_path / "training_state.old")
    (tmp_path / "training_state.tmp").mkdir()
    assert find_training_state(tmp_path) == tmp_path / "training_state.old"
    save_training_state(tmp_path, model, {"epoch": 3})
    assert sorted(os.listdir(tmp_path)) == ["training_state"]
    assert find_training_state(tmp_path / "nothing") is None


def test_eval_callback_uses_get_miou_code_every_period(tmp_path, captured_curves):
    dataset = tmp_path / "VOCdevkit"
    write_demo_dataset(dataset, num_images=3, img_dir=tmp_path / "img")
    ids = ["demo_0000", "demo_0001", "demo_0002"]
    keras.utils.set_random_seed(0)
    model = Unet((32, 32, 3), 4, "vgg")
    log_dir = tmp_path / "loss_x"
    evaluation = EvalCallback([32, 32], 4, [f"{i} extra\n" for i in ids], dataset, log_dir,
                              period=2)
    evaluation.set_model(model)
    assert (log_dir / "epoch_miou.txt").read_text() == "0\n"

    evaluation.on_epoch_end(0)
    assert read_floats(log_dir / "epoch_miou.txt") == [0]
    evaluation.on_epoch_end(1)
    expected = evaluate_split(Predictor(model=model, num_classes=4, input_shape=[32, 32]),
                              dataset, ids, tmp_path / "direct", 4, progress=False)
    mious = read_floats(log_dir / "epoch_miou.txt")
    assert mious[0] == 0 and mious[1] == pytest.approx(expected["mIoU"] * 100)
    assert evaluation.epoches == [0, 2]
    assert not (log_dir / ".temp_miou_out").exists()
    curve = captured_curves["epoch_miou.png"]["curves"][0]
    assert (curve["label"], curve["color"], list(curve["x"])) == ("train miou", "red", [0, 2])
    assert captured_curves["epoch_miou.png"]["title"] == "A Miou Curve"


def test_eval_callback_disabled_writes_nothing(tmp_path):
    evaluation = EvalCallback([32, 32], 4, ["a"], tmp_path, tmp_path / "loss_x", eval_flag=False)
    evaluation.on_epoch_end(0)
    assert not (tmp_path / "loss_x" / "epoch_miou.txt").exists()


def test_callback_order_and_state_keys(tmp_path):
    cfg = load_config(train_script.__file__, ["--save_period", "3"])
    shared = shared_callbacks(cfg, tmp_path, tmp_path / "loss_x", VOCLayout(tmp_path), ["a"])
    saver = TrainingStateCheckpoint(tmp_path, shared, {"phase": 1})
    extra = keras.callbacks.Callback()
    ordered = training_callbacks(shared, lambda epoch: 1e-3, saver, [extra])
    kinds = [type(c).__name__ for c in ordered]
    assert kinds == ["NaNGuard", "LearningRateScheduler", "EvalCallback", "TensorBoard",
                     "LossHistory", "WeightsCheckpoint", "WeightsCheckpoint", "WeightsCheckpoint",
                     "TrainingLog", "TrainingStateCheckpoint", "Callback"]
    assert ordered[-1] is extra
    with_bn = training_callbacks(shared, lambda epoch: 1e-3, saver, [extra],
                                 PreciseBatchNorm(list))
    assert [type(c).__name__ for c in with_bn[:3]] == ["NaNGuard", "PreciseBatchNorm",
                                                       "LearningRateScheduler"]
    stateful = [c for c in ordered if isinstance(c, Stateful)]
    assert [c.state_key for c in stateful] == ["eval", "loss_history", "periodic", "last", "best"]

    states = callback_states(shared)
    states["periodic"]["epochs_since_last_save"] = 2
    fresh = shared_callbacks(cfg, tmp_path, tmp_path / "loss_x", VOCLayout(tmp_path), ["a"])
    restore_callback_states(fresh, states)
    assert fresh[4].epochs_since_last_save == 2 and fresh[4].period == 3


def test_without_val_images_checkpoints_follow_the_training_loss(tmp_path):
    cfg = load_config(train_script.__file__, [])
    shared = shared_callbacks(cfg, tmp_path, tmp_path / "loss_x", VOCLayout(tmp_path), [])
    evaluation, history = shared[1], shared[3]
    periodic, best, log = shared[4], shared[6], shared[7]
    assert not evaluation.eval_flag and not history.val_loss_flag and not log.with_miou
    assert Path(periodic.filepath).name == "ep{epoch:03d}-loss{loss:.3f}.weights.h5"
    assert best.monitor == "loss"
    with_val = shared_callbacks(cfg, tmp_path, tmp_path / "loss_y", VOCLayout(tmp_path), ["a"])
    assert with_val[6].monitor == "val_loss" and "val_loss{val_loss" in with_val[4].filepath
