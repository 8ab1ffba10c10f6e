"""train.py end to end on a tiny synthetic dataset: phases, learning rates, weight decay,
every output file, and each setting or dataset mistake that must stop before any epoch."""

import csv
import importlib.util
import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import train as train_script
from nets.unet import Unet, backbone_layer_names, freeze_backbone
from utils.config import load_config
from utils.losses import CE
from utils.recipe import apply_weight_decay, compile_for_training
from utils.schedules import fit_learning_rates, get_lr_scheduler
from utils.training import plan_phases, train

IDS = [f"demo_{i:04d}" for i in range(12)]


class Recorder(keras.callbacks.Callback):
    """What each fit saw: optimizer object, trainable flags and learning rate per epoch."""

    def __init__(self):
        super().__init__()
        self.optimizers, self.trainable, self.lrs = [], [], {}

    def on_train_begin(self, logs=None):
        self.optimizers.append(self.model.optimizer)
        self.trainable.append({layer.name: layer.trainable for layer in self.model.layers})

    def on_epoch_begin(self, epoch, logs=None):
        self.lrs[epoch] = float(self.model.optimizer.learning_rate)


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_voc, train_argv):
    """Three epochs (1 frozen at batch 4, 2 unfrozen at batch 2), SGD, mIoU every 2 epochs."""
    root = tmp_path_factory.mktemp("train")
    dataset = make_voc(8, 4)
    argv = train_argv(dataset, root / "logs", "--Freeze_Epoch", "1", "--UnFreeze_Epoch", "3",
                      "--Freeze_batch_size", "4", "--Unfreeze_batch_size", "2",
                      "--optimizer_type", "sgd", "--Init_lr", "1e-2", "--save_period", "2",
                      "--eval_period", "2", "--weight_decay", "1e-4")
    cfg = load_config(train_script.__file__, argv)
    recorder = Recorder()
    result = train(cfg, callbacks=[recorder])
    return cfg, result, recorder, root / "logs"


def test_phase_switch_freezes_then_unfreezes_with_a_new_optimizer(run):
    _, result, recorder, _ = run
    frozen_phase, unfrozen_phase = recorder.trainable
    backbone = backbone_layer_names(result.model)
    assert [n for n in backbone if frozen_phase[n]] == ["block5_conv3"]
    assert all(frozen_phase[n] for n in frozen_phase if n.startswith("up"))
    assert all(unfrozen_phase.values())
    assert recorder.optimizers[0] is not recorder.optimizers[1]
    assert isinstance(recorder.optimizers[1], keras.optimizers.SGD)


def test_learning_rate_follows_the_schedule_scaled_per_phase(run):
    _, _, recorder, logs = run
    frozen = get_lr_scheduler("cos", *fit_learning_rates(4, 1e-2, 1e-4, "sgd"), 3)
    unfrozen = get_lr_scheduler("cos", *fit_learning_rates(2, 1e-2, 1e-4, "sgd"), 3)
    expected = [frozen(0), unfrozen(1), unfrozen(2)]
    assert expected[0] == pytest.approx(0.1 * 2.5e-3)  # batch 4: 4/16 * 1e-2, warm-up start
    assert [recorder.lrs[e] for e in range(3)] == pytest.approx(expected, rel=1e-6)
    with open(next(logs.glob("loss_*")) / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx(expected, rel=1e-6)


def test_output_files(run):
    _, result, _, logs = run
    assert sorted(p.name for p in logs.glob("*.weights.h5")) == sorted([
        "best_epoch_weights.weights.h5", "last_epoch_weights.weights.h5",
        f"ep002-loss{result.history['loss'][1]:.3f}-val_loss"
        f"{result.history['val_loss'][1]:.3f}.weights.h5",
    ])
    last = Unet((32, 32, 3), 4, "vgg")
    last.load_weights(logs / "last_epoch_weights.weights.h5")
    for a, b in zip(last.get_weights(), result.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    (log_dir,) = logs.glob("loss_*")
    assert log_dir == result.log_dir
    losses = [float(x) for x in (log_dir / "epoch_loss.txt").read_text().split()]
    val_losses = [float(x) for x in (log_dir / "epoch_val_loss.txt").read_text().split()]
    assert losses == result.history["loss"] and len(losses) == 3
    assert len(val_losses) == 3
    with open(log_dir / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(val_losses)
    assert {"f_score", "val_f_score", "loss"} <= set(rows[0])
    mious = (log_dir / "epoch_miou.txt").read_text().split()
    assert mious[0] == "0" and len(mious) == 2 and 0 <= float(mious[1]) <= 100
    for name in ("epoch_loss.png", "epoch_miou.png"):
        assert (log_dir / name).stat().st_size > 1000
    if importlib.util.find_spec("tensorboard"):  # TF 2.21 no longer installs it by itself
        assert list((log_dir / "train").glob("events.out.tfevents.*"))
        assert list((log_dir / "validation").glob("events.out.tfevents.*"))
    assert not (log_dir / ".temp_miou_out").exists()
    assert not Path(".temp_miou_out").exists()
    assert (logs / "training_state" / "state.json").is_file()


def test_val_miou_reaches_the_csv_log_and_tensorboard(run):
    _, result, _, _ = run
    mious = [float(x) for x in (result.log_dir / "epoch_miou.txt").read_text().split()]
    with open(result.log_dir / "training_log.csv") as f:
        cells = [row["val_miou"] for row in csv.DictReader(f)]
    assert cells[0] == "" and cells[2] == ""  # evaluated every 2 epochs
    assert float(cells[1]) == pytest.approx(mious[1])
    if importlib.util.find_spec("tensorboard"):
        tags = {value.tag for path in (result.log_dir / "validation").glob("events.out.*")
                for event in tf.compat.v1.train.summary_iterator(str(path))
                for value in event.summary.value}
        assert {"epoch_miou", "prediction/demo_0008"} <= tags


def test_checkpoints_hold_weights_only_and_the_run_describes_itself(run):
    cfg, result, _, logs = run
    size = 4 * result.model.count_params()
    for path in logs.glob("*.weights.h5"):
        assert abs(path.stat().st_size - size) < 0.05 * size, path.name
    state = logs / "training_state"
    with h5py.File(state / "model.weights.h5") as f:
        assert "optimizer" not in f  # the optimizer lives once, in optimizer.npz
    with np.load(state / "optimizer.npz") as store:
        assert len(store.files) == len(result.model.optimizer.variables)
    described = json.loads((logs / "config.json").read_text())
    assert described["settings"]["optimizer_type"] == "sgd"
    assert described["settings"]["cls_weights"] == [1.0] * 4
    assert (described["num_train"], described["num_val"], described["start_epoch"]) == (8, 4, 0)
    assert described["versions"]["tensorflow"] == tf.__version__
    assert set(described["settings"]) == set(vars(cfg))


def test_weight_decay_is_part_of_the_training_loss():
    model = Unet((32, 32, 3), 3, "vgg")
    apply_weight_decay(model, 1e-3)
    model.get_layer("block1_conv1").trainable = False  # Keras regularises trainable kernels only
    kernels = [layer.kernel.numpy() for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    expected_l2 = 1e-3 * sum(float(np.sum(k.astype(np.float64) ** 2)) for k in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected_l2, rel=1e-4)

    loss = CE(np.ones(3))
    model.compile(optimizer="sgd", loss=loss)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    y = np.zeros((2, 32, 32, 4), "float32")
    y[..., 1] = 1
    y_pred = model(x)
    total = float(model.compute_loss(x, y, y_pred))
    assert total == pytest.approx(float(loss(y, y_pred)) + expected_l2, rel=1e-4)
    assert expected_l2 > 0.01 * total  # large enough that leaving it out would show


def test_frozen_and_unfrozen_phases_report_the_same_loss_for_the_same_weights():
    """As in the original, the loss counts the frozen kernels' weight decay too: otherwise
    the frozen phase's val_loss is lower by a constant and best_epoch_weights sticks there."""
    cfg = load_config(train_script.__file__, ["--num_classes", "3", "--optimizer_type", "sgd",
                                              "--weight_decay", "1e-3"])
    model = Unet((32, 32, 3), 3, "vgg")
    apply_weight_decay(model, cfg.weight_decay)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    y = np.zeros((2, 32, 32, 4), "float32")
    y[..., 1] = 1
    losses = {}
    for frozen in (True, False):
        freeze_backbone(model, "vgg", frozen=frozen)
        compile_for_training(model, cfg, 2)
        losses[frozen] = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    frozen_l2 = 1e-3 * sum(float(np.sum(model.get_layer(name).kernel.numpy() ** 2))
                           for name in backbone_layer_names(model)
                           if isinstance(model.get_layer(name), keras.layers.Conv2D)
                           and name != "block5_conv3")
    assert frozen_l2 > 0.01 * losses[False]  # large enough that leaving it out would show
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_plan_phases_follows_the_original():
    cfg = load_config(train_script.__file__, ["--Freeze_batch_size", "4"])  # 50 + 50 epochs
    phases = plan_phases(cfg, 0)
    assert [(p.frozen, p.batch_size, p.start, p.end) for p in phases] == [
        (True, 4, 0, 50), (False, 2, 50, 100)]
    assert [(p.frozen, p.start) for p in plan_phases(cfg, 60)] == [(False, 60)]
    unfrozen = cfg.replace(Freeze_Train=False)
    assert [(p.frozen, p.start) for p in plan_phases(unfrozen, 0)] == [(False, 0)]
    assert plan_phases(cfg, 100) == []


# ---- fail fast: a clear message, a non-zero exit, and no checkpoint or log folder written ----


@pytest.fixture(scope="module")
def good_dataset(make_voc):
    return make_voc(4, 2)


@pytest.fixture
def fails(user_error, train_argv):
    """train.py stops with a message, and no checkpoint or log folder is written."""

    def run(dataset: Path, save_dir: Path, *override: str) -> str:
        message = user_error(train_script.main, train_argv(dataset, save_dir, *override))
        assert not list(save_dir.rglob("*.weights.h5"))
        assert not list(save_dir.glob("loss_*"))
        return message

    return run


@pytest.mark.parametrize("override, expected", [
    (["--input_shape", "100", "100"], "not a multiple of 32 (at least 32); use 96 or 128"),
    (["--num_classes", "1"], "num_classes = 1, but it counts the background"),
    (["--backbone", "mobilenet"], "Unsupported backbone - `mobilenet`, Use vgg, resnet50."),
    (["--optimizer_type", "rmsprop"], "optimizer_type = 'rmsprop' is not supported"),
    (["--lr_decay_type", "linear"], "lr_decay_type = 'linear' is not supported"),
    (["--model_path", "model_data/missing.h5"], "model_path = 'model_data/missing.h5' does not"),
    (["--cls_weights", "1", "1"], "cls_weights has 2 values but num_classes = 4"),
    (["--train_gpu", "0", "1"], "lists 2 GPUs, but TensorFlow sees none"),
    (["--mixed_precision", "int8"], "mixed_precision = 'int8'"),
    (["--best_metric", "val_miou", "--eval_flag", "False"],
     'best_metric = "val_miou" needs the mIoU evaluation'),
    (["--Freeze_batch_size", "5"], "数据集过小，无法进行训练，请扩充数据集。 Dataset too small: "
                                   "4 training and 2 validation images, but Freeze_batch_size = 5"),
    (["--Unfreeze_batch_size", "3"],
     "数据集过小，无法继续进行训练，请扩充数据集。 Dataset too small"),
    (["--resume", "True"], "no interrupted run to continue"),
])
def test_bad_settings_fail_before_training(fails, good_dataset, tmp_path, override, expected):
    assert expected in fails(good_dataset, tmp_path / "logs", *override)


def test_unwritable_save_dir(fails, good_dataset, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    message = fails(good_dataset, blocker / "logs")
    assert "is not writable" in message and "not_a_folder" in message


@pytest.fixture
def broken_dataset(make_voc):
    return make_voc(4, 2)


def label_file(dataset: Path, index: int) -> Path:
    return dataset / "VOC2007" / "SegmentationClass" / f"{IDS[index]}.png"


def test_missing_split(fails, broken_dataset, tmp_path):
    (broken_dataset / "VOC2007" / "ImageSets" / "Segmentation" / "val.txt").unlink()
    message = fails(broken_dataset, tmp_path / "logs")
    assert "val.txt: split file not found" in message and "voc_annotation.py" in message


def test_empty_split(fails, broken_dataset, tmp_path):
    (broken_dataset / "VOC2007" / "ImageSets" / "Segmentation" / "train.txt").write_text("\n\n")
    message = fails(broken_dataset, tmp_path / "logs")
    assert "train.txt is empty: run voc_annotation.py" in message


def test_binary_0_255_masks(fails, broken_dataset, tmp_path):
    for index in range(6):
        label = np.asarray(Image.open(label_file(broken_dataset, index)))
        Image.fromarray(np.where(label > 0, 255, 0).astype(np.uint8)).save(
            label_file(broken_dataset, index))
    message = fails(broken_dataset, tmp_path / "logs")
    assert "255" in message and "voc_annotation.py --fix_labels" in message


def test_rgb_label_is_named(fails, broken_dataset, tmp_path):
    Image.open(label_file(broken_dataset, 2)).convert("RGB").save(label_file(broken_dataset, 2))
    message = fails(broken_dataset, tmp_path / "logs")
    assert "RGB" in message and f"{IDS[2]}.png" in message


def test_corrupt_image_is_named(fails, broken_dataset, tmp_path):
    (broken_dataset / "VOC2007" / "JPEGImages" / f"{IDS[4]}.jpg").write_bytes(b"")
    message = fails(broken_dataset, tmp_path / "logs")
    assert f"{IDS[4]}.jpg" in message
