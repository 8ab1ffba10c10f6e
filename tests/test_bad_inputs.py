"""The bad-input matrix: each case gets a clear message, and nothing written is lost.

Rows already covered beside their code (audit traps, bad HDF5 files, NaN loss, prompt/EOF, ...)
are not repeated here; this file holds the rest, end to end through train.py where it matters.
"""

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO
from PIL import Image

import train as train_script
import voc_annotation
from nets.unet import Unet
from utils.config import load_config
from utils.dataloader import make_dataset
from utils.dataset_audit import audit_dataset
from utils.errors import UserError
from utils.predictor import Predictor
from utils.training import train
from utils.training_state import find_training_state, load_training_state, save_training_state
from utils.utils import cvtColor, read_image, resize_image
from utils.weights import CheckpointWriteError

SPLITS = Path("VOC2007") / "ImageSets" / "Segmentation"
UNICODE_ID = "café_猫"
SIZE = (40, 32)  # stored width x height of the odd-format images
ONE_EPOCH = ("--Freeze_Epoch", "1", "--UnFreeze_Epoch", "1", "--eval_flag", "False")


@pytest.fixture(scope="module")
def tiny_argv(train_argv):
    """A one-epoch run without mIoU evaluation."""
    return lambda dataset, save_dir, *extra: train_argv(dataset, save_dir, *ONE_EPOCH, *extra)


@pytest.fixture
def fails(user_error):
    return lambda argv: user_error(train_script.main, argv)


@pytest.fixture(scope="module")
def demo(make_voc):
    return make_voc()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---- labels and settings: refused before anything is built or written ----


def test_train_refuses_label_values_at_or_above_num_classes(tmp_path, make_voc, tiny_argv,
                                                             fails):
    dataset = make_voc()
    label_path = dataset / "VOC2007" / "SegmentationClass" / "demo_0001.png"
    label = np.asarray(Image.open(label_path)).copy()
    label[:3, :3] = 7
    Image.fromarray(label).save(label_path)
    message = fails(tiny_argv(dataset, tmp_path / "logs"))
    assert "Label values [7] are >= num_classes = 4" in message and "demo_0001.png" in message
    assert not (tmp_path / "logs").exists()

    label[:3, :3] = 255  # 255 is the ignore value: allowed
    Image.fromarray(label).save(label_path)
    assert audit_dataset(dataset, 4, progress=False).fatal == []


def test_input_shape_below_32_suggests_32(demo, tmp_path, tiny_argv, fails):
    message = fails(tiny_argv(demo, tmp_path / "logs", "--input_shape", "16", "16"))
    assert "16" in message and "use 32" in message
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("content", [b"not an hdf5 file", "truncated"])
def test_bad_model_path_is_named_and_save_dir_is_untouched(demo, tmp_path, content, tiny_argv,
                                                            fails):
    model_path = tmp_path / "model_data" / "broken.h5"
    model_path.parent.mkdir()
    if content == "truncated":
        Unet((32, 32, 3), 4, "vgg").save_weights(tmp_path / "good.weights.h5")
        content = (tmp_path / "good.weights.h5").read_bytes()[:4096]
    model_path.write_bytes(content)
    save_dir = tmp_path / "logs"  # a previous run's files must survive the failed start
    (save_dir / "training_state").mkdir(parents=True)
    (save_dir / "training_state" / "state.json").write_text('{"epoch": 3}')
    (save_dir / "last_epoch_weights.weights.h5").write_bytes(b"previous weights")
    before = snapshot(save_dir)

    message = fails(tiny_argv(demo, save_dir, "--model_path", str(model_path)))
    assert str(model_path) in message and "cannot be read as an HDF5 weights file" in message
    assert snapshot(save_dir) == before
    assert model_path.read_bytes() == content


def test_names_with_spaces_are_refused_by_the_split(make_voc, user_error):
    dataset = make_voc(3, 0)
    labels, images = dataset / "VOC2007" / "SegmentationClass", dataset / "VOC2007" / "JPEGImages"
    (labels / "demo_0002.png").rename(labels / "my photo.png")
    (images / "demo_0002.jpg").rename(images / "my photo.jpg")
    (dataset / SPLITS / "train.txt").unlink()
    message = user_error(voc_annotation.main, ["--VOCdevkit_path", str(dataset)])
    assert "my photo" in message and "rename" in message
    assert not (dataset / SPLITS / "train.txt").exists()


# ---- odd image formats, a unicode name and a checkpoint with another head: one real run ----


def odd_dataset(root: Path) -> Path:
    """Six items: unicode name, CMYK JPEG, EXIF-rotated JPEG, grey PNG, RGBA PNG, plain JPEG."""
    dataset = root / "VOCdevkit"
    images, labels = dataset / "VOC2007" / "JPEGImages", dataset / "VOC2007" / "SegmentationClass"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rotated = Image.Exif()
    rotated[0x0112] = 6  # "rotate 90° clockwise to display"
    items = {UNICODE_ID: ("RGB", ".jpg", {}), "cmyk": ("CMYK", ".jpg", {}),
             "exif": ("RGB", ".jpg", {"exif": rotated}), "grey": ("L", ".png", {}),
             "rgba": ("RGBA", ".png", {}), "plain": ("RGB", ".jpg", {})}
    for image_id, (mode, ext, options) in items.items():
        label = np.zeros(SIZE[::-1], np.uint8)
        label[:, : SIZE[0] // 2] = rng.integers(1, 4)
        pixels = np.where(label[..., None] > 0, 200, 40).astype(np.uint8).repeat(3, axis=2)
        pixels = (pixels + rng.integers(0, 30, pixels.shape)).astype(np.uint8)
        Image.fromarray(pixels).convert(mode).save(images / f"{image_id}{ext}", **options)
        Image.fromarray(label).save(labels / f"{image_id}.png")
    return dataset


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, tiny_argv):
    root = tmp_path_factory.mktemp("odd")
    dataset = odd_dataset(root)
    voc_annotation.main(["--VOCdevkit_path", str(dataset), "--train_percent", "0.5"])
    checkpoint = root / "three_classes.weights.h5"
    Unet((32, 32, 3), 3, "vgg").save_weights(checkpoint)
    argv = tiny_argv(dataset, root / "logs", "--model_path", str(checkpoint),
                     "--eval_flag", "True", "--eval_period", "1")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train(load_config(train_script.__file__, argv))
    return dataset, result, printed.getvalue()


def test_unicode_name_is_split_and_trained(odd_run):
    dataset, result, _ = odd_run
    trainval = (dataset / SPLITS / "trainval.txt").read_text(encoding="utf-8").split()
    assert len(trainval) == 6 and UNICODE_ID in trainval
    assert np.isfinite(result.history["loss"]).all() and len(result.history["loss"]) == 1


def test_checkpoint_with_another_head_is_skipped_and_reported(odd_run):
    _, result, printed = odd_run
    assert "checkpoint head has 3 classes, model has 4: head left random" in printed
    assert result.model.get_layer("final_conv").kernel.shape[-1] == 4


@pytest.mark.parametrize("image_id", ["cmyk", "exif", "grey", "rgba"])
def test_odd_formats_are_trained_and_predicted_as_rgb(odd_run, image_id):
    dataset, result, _ = odd_run
    (path,) = (dataset / "VOC2007" / "JPEGImages").glob(f"{image_id}.*")
    stored = Image.open(path)
    rgb = cvtColor(stored)
    assert rgb.mode == "RGB" and rgb.size == SIZE  # EXIF orientation is not applied
    expected = np.asarray(resize_image(rgb, (32, 32))[0], np.float32) / 127.5 - 1
    images, _ = next(iter(make_dataset(dataset, [image_id], (32, 32), 1, 4, train=False)))
    np.testing.assert_allclose(images.numpy()[0], expected, atol=1e-6)

    predictor = Predictor(model=result.model, num_classes=4, input_shape=[32, 32], mix_type=1)
    drawn = predictor.detect_image(read_image(path))
    assert drawn.size == SIZE
    same_pixels = Image.fromarray(np.asarray(rgb))  # plain RGB copy without EXIF
    assert np.array_equal(np.asarray(drawn), np.asarray(predictor.detect_image(same_pixels)))


# ---- disk full: a clear message, the previous files stay the latest ----


class DiskFullFrom(keras.callbacks.Callback):
    """Every weights write from epoch `epoch` on leaves half a file, then fails with ENOSPC."""

    def __init__(self, epoch: int, monkeypatch):
        super().__init__()
        self.epoch, self.monkeypatch = epoch, monkeypatch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.monkeypatch.setattr(keras.Model, "save_weights", write_half_then_fail)


def write_half_then_fail(self, filepath, *args, **kwargs):
    Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n half")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_during_training_keeps_the_last_good_epoch(demo, tmp_path, monkeypatch,
                                                             tiny_argv):
    save_dir = tmp_path / "logs"
    cfg = load_config(train_script.__file__, tiny_argv(
        demo, save_dir, "--Freeze_Train", "False", "--UnFreeze_Epoch", "2", "--save_period", "1"))
    with pytest.raises(CheckpointWriteError) as excinfo:
        train(cfg, callbacks=[DiskFullFrom(2, monkeypatch)])
    message = str(excinfo.value)
    assert "ep002-" in message and "No space left on device" in message
    assert "Free disk space" in message and isinstance(excinfo.value, UserError)
    monkeypatch.undo()

    names = sorted(p.name for p in save_dir.iterdir() if p.is_file())
    assert len(names) == 4 and names[2].startswith("ep001-")  # no half-written or temp files
    assert names[0] == "best_epoch_weights.weights.h5" and names[1] == "config.json"
    model = Unet((32, 32, 3), 4, "vgg")
    model.load_weights(save_dir / "last_epoch_weights.weights.h5")
    assert load_training_state(find_training_state(save_dir))[0]["epoch"] == 1


def test_disk_full_during_state_write_keeps_the_previous_state(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    save_training_state(tmp_path, model, {"epoch": 1})
    monkeypatch.setattr(keras.Model, "save_weights", write_half_then_fail)
    with pytest.raises(CheckpointWriteError, match="training_state keeps the previous epoch"):
        save_training_state(tmp_path, model, {"epoch": 2})
    assert sorted(os.listdir(tmp_path)) == ["training_state"]
    assert load_training_state(find_training_state(tmp_path))[0] == {"epoch": 1}


# ---- signals: real SIGINT / SIGKILL to a training subprocess ----


DRIVER = """
import faulthandler, os, signal, sys, time
import numpy as np

faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks on a hang
# Ctrl-C as in a terminal, even when this test runs in a background job, which starts every
# child with SIGINT ignored (and Python then installs no KeyboardInterrupt handler)
signal.signal(signal.SIGINT, signal.default_int_handler)

hang_at = int(os.environ.get("HANG_AT_SAVE", "0"))
if hang_at:  # hang in the middle of the N-th training-state write, so SIGKILL lands there
    calls, savez = [], np.savez

    def slow_savez(file, *args, **kwargs):
        calls.append(file)
        if len(calls) == hang_at:
            open(os.environ["HANG_MARKER"], "w").close()
            time.sleep(600)
        return savez(file, *args, **kwargs)

    np.savez = slow_savez

import train
from utils.cli import run
run(train.main, sys.argv[1:])
"""


def start_training(tmp_path: Path, argv: list[str], **env: str) -> tuple[subprocess.Popen, Path]:
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    log = tmp_path / "train.log"
    process = subprocess.Popen(
        [sys.executable, "-u", str(driver), *argv], cwd=REPO, stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow",
             "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **env})
    return process, log


def wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training subprocess did not get there:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def saved_epoch(save_dir: Path) -> int:
    state = save_dir / "training_state" / "state.json"
    return json.loads(state.read_text())["epoch"] if state.is_file() else 0


@pytest.mark.slow
def test_sigint_keeps_the_last_checkpoint_and_resume_continues(demo, tmp_path, tiny_argv):
    save_dir = tmp_path / "logs"
    argv = tiny_argv(demo, save_dir, "--Freeze_Train", "False", "--UnFreeze_Epoch", "50")
    process, log = start_training(tmp_path, argv)
    wait_for(lambda: saved_epoch(save_dir) >= 1, process, log)
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # every thread's stack into the log
        time.sleep(3)
        process.kill()
        pytest.fail(f"no exit 2 minutes after Ctrl-C:\n{log.read_text()[-6000:]}")
    epoch = load_training_state(find_training_state(save_dir))[0]["epoch"]
    assert f"state after epoch {epoch} is in" in log.read_text()
    assert "--resume True" in log.read_text()

    resumed = train(load_config(train_script.__file__, [
        *argv, "--UnFreeze_Epoch", str(epoch + 1), "--resume", "True"]))
    assert resumed.epoch == epoch + 1 and len(resumed.history["loss"]) == epoch + 1
    assert saved_epoch(save_dir) == epoch + 1


@pytest.mark.slow
def test_kill_9_during_checkpoint_write_then_resume_equals_a_straight_run(demo, tmp_path,
                                                                         tiny_argv):
    extra = ("--Freeze_Train", "False", "--UnFreeze_Epoch", "2", "--save_period", "1",
             "--optimizer_type", "sgd", "--Init_lr", "1e-3")
    straight = train(load_config(train_script.__file__,
                                 tiny_argv(demo, tmp_path / "straight", *extra)))

    save_dir = tmp_path / "killed"
    argv = tiny_argv(demo, save_dir, *extra)
    marker = tmp_path / "hanging"
    process, log = start_training(tmp_path, argv, HANG_AT_SAVE="2", HANG_MARKER=str(marker))
    wait_for(marker.exists, process, log)  # epoch 2's state is half written
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert (save_dir / "training_state.tmp" / "model.weights.h5").is_file()
    assert not (save_dir / "training_state.tmp" / "state.json").exists()
    assert load_training_state(find_training_state(save_dir))[0]["epoch"] == 1
    Unet((32, 32, 3), 4, "vgg").load_weights(save_dir / "last_epoch_weights.weights.h5")

    resumed = train(load_config(train_script.__file__, [*argv, "--resume", "True"]))
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert resumed.history["loss"] == pytest.approx(straight.history["loss"], rel=1e-5)
    assert sorted(os.listdir(save_dir / "training_state")) == [
        "model.weights.h5", "optimizer.npz", "state.json"]


KILL_DURING_SAVE = """
import os, sys, time
import keras
from utils.weights import save_weights_atomic

model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
model.layers[0].kernel.assign(keras.ops.zeros((2, 3)))
save_weights_atomic(model, sys.argv[1])
original = keras.Model.save_weights

def slow(self, filepath, *args, **kwargs):
    original(self, filepath, *args, **kwargs)
    with open(filepath, "r+b") as f:
        f.truncate(200)  # the temp file is half written when the kill comes
    open(sys.argv[2], "w").close()
    time.sleep(600)

keras.Model.save_weights = slow
model.layers[0].kernel.assign(model.layers[0].kernel + 1)
save_weights_atomic(model, sys.argv[1])
"""


def test_kill_9_during_weights_write_keeps_the_previous_file(tmp_path):
    path, marker = tmp_path / "last_epoch_weights.weights.h5", tmp_path / "hanging"
    script = tmp_path / "save.py"
    script.write_text(textwrap.dedent(KILL_DURING_SAVE))
    log = tmp_path / "save.log"
    process = subprocess.Popen(
        [sys.executable, str(script), str(path), str(marker)], cwd=REPO,
        stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow",
             "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    wait_for(marker.exists, process, log, timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.load_weights(path)  # the first save, complete
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.zeros((2, 3)))
    leftovers = [p.name for p in tmp_path.glob(".last_epoch_weights*")]
    assert len(leftovers) == 1 and leftovers[0] != path.name
