"""Input pipeline: augmentation geometry and alignment, padding = ignore, one-hot targets,
reproducible epochs, image formats and clear errors."""

import colorsys

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_voc_item
from PIL import Image

from utils.augment import get_random_data, hsv_jitter
from utils.dataloader import make_dataset, steps_per_epoch
from utils.dataset import DatasetError, VOCLayout, read_split
from utils.utils import cvtColor


def grey_dataset(root, n, size=(16, 16)):
    """n images of constant grey 10*i (PNG, exact) with an all-`i % 3` label; returns ids."""
    ids = [f"id{i}" for i in range(n)]
    for i, image_id in enumerate(ids):
        write_voc_item(root, image_id, np.full((*size[::-1], 3), 10 * i, np.uint8),
                   np.full(size[::-1], i % 3), ext=".png")
    return ids


def test_read_split_skips_blank_lines_and_takes_the_first_token(tmp_path):
    split = tmp_path / "train.txt"
    split.write_text("a\n\n  \nb extra words\nc\n")
    assert read_split(split) == ["a", "b", "c"]
    with pytest.raises(DatasetError, match="voc_annotation.py"):
        read_split(tmp_path / "missing.txt")


def test_steps_per_epoch_drops_the_remainder():
    assert steps_per_epoch(10, 4) == 2 and steps_per_epoch(3, 4) == 0


def test_hsv_jitter_follows_the_lut_formula():
    grey = np.full((2, 2, 3), 100, np.uint8)
    out = hsv_jitter(grey, np.array([1.05, 1.5, 1.2]))
    assert (out == 120).all()  # value 100 * 1.2; a grey has no hue or saturation to change
    green = np.zeros((1, 1, 3), np.uint8)
    green[..., 1] = 255
    out = hsv_jitter(green, np.array([1.1, 1.0, 1.0]))[0, 0]
    # OpenCV hue 60 (120 degrees) * 1.1 = 66 -> 132 degrees
    expected = np.array(colorsys.hsv_to_rgb(132 / 360, 1, 1)) * 255
    np.testing.assert_allclose(out, expected, atol=2)


def test_training_geometry_follows_the_original_draws():
    """Draw order aspect x2, scale, flip, dx, dy with the original's formulas (h=32, w=48)."""
    image, label = Image.new("RGB", (40, 30)), np.ones((30, 40), np.uint8)
    h, w = 32, 48
    for seed in range(20):
        r = np.random.default_rng(seed).random(6)
        new_ar = 40 / 30 * (r[0] * 0.6 + 0.7) / (r[1] * 0.6 + 0.7)
        scale = r[2] * 1.75 + 0.25
        if new_ar < 1:
            nh = int(scale * h)
            nw = int(nh * new_ar)
        else:
            nw = int(scale * w)
            nh = int(nw / new_ar)
        dx, dy = int(r[4] * (w - nw)), int(r[5] * (h - nh))
        expected = np.full((h, w), 255, np.uint8)
        expected[max(dy, 0):max(dy + nh, 0), max(dx, 0):max(dx + nw, 0)] = 1
        _, out = get_random_data(image, label, (h, w), np.random.default_rng(seed))
        np.testing.assert_array_equal(out, expected)


def test_augmentation_keeps_image_and_label_aligned():
    """A bright object on a dark image: after flip/scale/paste the label still marks it."""
    image = np.full((48, 64, 3), 30, np.uint8)
    image[8:40, 4:24] = 255  # in the left third, so a flip moves it right
    label = np.zeros((48, 64), np.uint8)
    label[8:40, 4:24] = 1
    kernel = np.ones((5, 5), bool)
    flipped, padded, full = 0, 0, 0
    for seed in range(60):
        out_image, out_label = get_random_data(Image.fromarray(image), label, (32, 32),
                                               np.random.default_rng(seed))
        bright = out_image.max(axis=2)
        inner_obj = erode(out_label == 1, kernel)
        inner_bg = erode(out_label == 0, kernel)
        assert (bright[inner_obj] >= 170).all() and (bright[inner_bg] <= 60).all(), seed
        pad = out_label == 255
        assert (out_image[pad].max(axis=1) - out_image[pad].min(axis=1) <= 1).all()
        assert ((bright[pad] >= 85) & (bright[pad] <= 170)).all()
        padded += pad.any()
        full += not pad.any()
        if (out_label == 1).any() and (~pad).sum() > (out_label == 1).sum():
            object_x = np.nonzero(out_label == 1)[1].mean()
            visible_x = np.nonzero(~pad)[1].mean()
            flipped += object_x > visible_x
    assert padded > 0 and full > 0
    assert 10 < flipped < 50


def erode(mask, kernel):
    """Pixels whose whole kernel-sized neighbourhood is inside the mask."""
    kh, kw = kernel.shape
    padded = np.pad(mask, ((kh // 2,), (kw // 2,)), constant_values=False)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw))
    return windows.all(axis=(2, 3))


def test_extreme_aspect_ratios_never_resize_to_zero():
    image, label = Image.new("RGB", (400, 1)), np.zeros((1, 400), np.uint8)
    for seed in range(30):
        out_image, out_label = get_random_data(image, label, (32, 32),
                                               np.random.default_rng(seed))
        assert out_image.shape == (32, 32, 3) and out_label.shape == (32, 32)
    out_image, out_label = get_random_data(Image.new("RGB", (1, 400)),
                                           np.zeros((400, 1), np.uint8), (32, 32), random=False)
    assert out_label.shape == (32, 32) and (out_label == 0).sum() == 32


def test_validation_letterbox_pads_labels_with_ignore(tmp_path):
    write_voc_item(tmp_path, "wide", np.full((16, 32, 3), 200, np.uint8), np.ones((16, 32)), ".png")
    images, targets = next(iter(make_dataset(tmp_path, ["wide"], (32, 32), 1, 3, train=False)))
    assert images.shape == (1, 32, 32, 3) and targets.shape == (1, 32, 32, 4)
    assert images.dtype == tf.float32 and targets.dtype == tf.float32
    targets = targets.numpy()[0]
    np.testing.assert_array_equal(targets.sum(-1), 1)
    channel = targets.argmax(-1)
    assert (channel[8:24] == 1).all()  # the 32x16 image is centred
    assert (channel[:8] == 3).all() and (channel[24:] == 3).all()  # padding -> ignore channel
    np.testing.assert_allclose(images.numpy()[0, 16, 16], 200 / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(images.numpy()[0, 0, 0], 128 / 127.5 - 1, atol=1e-6)


def test_targets_send_values_at_or_above_num_classes_to_the_ignore_channel(tmp_path):
    label = np.array([[0, 1, 2, 3], [7, 255, 1, 0], [0, 0, 0, 0], [2, 2, 2, 2]])
    write_voc_item(tmp_path, "a", np.zeros((4, 4, 3), np.uint8), label, ".png")
    dataset = make_dataset(tmp_path, ["a"], (4, 4), 1, 3, train=False)
    assert dataset.element_spec[0].shape == (1, 4, 4, 3)
    assert dataset.element_spec[1].shape == (1, 4, 4, 4)
    _, targets = next(iter(dataset))
    np.testing.assert_array_equal(targets.numpy()[0].argmax(-1), np.minimum(label, 3))
    np.testing.assert_array_equal(targets.numpy()[0], np.eye(4)[np.minimum(label, 3)])


def batches(dataset, n):
    iterator = iter(dataset)
    return [tuple(t.numpy() for t in next(iterator)) for _ in range(n)]


def test_epochs_are_reproducible_and_resume_exactly(tmp_path):
    ids = grey_dataset(tmp_path, 5)
    run = batches(make_dataset(tmp_path, ids, (16, 16), 2, 3, train=True, seed=3), 4)
    again = batches(make_dataset(tmp_path, ids, (16, 16), 2, 3, train=True, seed=3), 4)
    resumed = batches(make_dataset(tmp_path, ids, (16, 16), 2, 3, train=True, seed=3,
                                   initial_epoch=1), 2)
    other = batches(make_dataset(tmp_path, ids, (16, 16), 2, 3, train=True, seed=4), 2)
    for a, b in zip(run, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    for a, b in zip(run[2:], resumed, strict=True):  # 2 steps per epoch: epoch 1 = batches 2, 3
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(run[0][0], other[0][0])
    assert not np.array_equal(run[0][0], run[2][0])


def test_pipeline_runs_without_tf_data_autotuning(tmp_path):
    """Autotuning's thread stalls the deletion of an iterator (every validation, every phase
    change) for up to a minute; the pipeline sets its parallelism itself instead."""
    ids = grey_dataset(tmp_path, 4)
    dataset = make_dataset(tmp_path, ids, (16, 16), 2, 3, train=True, seed=3)
    assert dataset.options().autotune.enabled is False
    assert len(batches(dataset, 3)) == 3


def test_each_epoch_draws_distinct_samples_in_a_seeded_order(tmp_path):
    ids = grey_dataset(tmp_path, 6)
    run = batches(make_dataset(tmp_path, ids, (16, 16), 2, 3, train=False, seed=0), 9)
    grey = [int(round((x[0] + 1) * 127.5)) for batch, _ in run for x in batch[:, 8, 8]]
    epochs = [grey[i:i + 6] for i in range(0, 18, 6)]
    for epoch in epochs:
        assert sorted(epoch) == [0, 10, 20, 30, 40, 50]
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


@pytest.mark.parametrize("kind", ["grey", "palette", "rgba", "16bit", "cmyk", "bmp", "tif"])
def test_image_modes_and_formats_are_read_as_rgb(tmp_path, kind):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), np.uint8)
    image, ext = {
        "grey": (Image.fromarray(rgb[..., 0]), ".png"),
        "palette": (Image.fromarray(rgb).convert("P"), ".png"),
        "rgba": (Image.fromarray(np.dstack([rgb, rgb[..., 0]])), ".png"),
        "16bit": (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), ".png"),
        "cmyk": (Image.fromarray(rgb).convert("CMYK"), ".tif"),
        "bmp": (Image.fromarray(rgb), ".bmp"),
        "tif": (Image.fromarray(rgb), ".tif"),
    }[kind]
    write_voc_item(tmp_path, "x", image, np.ones((16, 16)), ext)
    path = tmp_path / "VOC2007" / "JPEGImages" / f"x{ext}"
    expected = np.asarray(cvtColor(Image.open(path)), np.float32) / 127.5 - 1
    images, _ = next(iter(make_dataset(tmp_path, ["x"], (16, 16), 1, 2, train=False)))
    np.testing.assert_allclose(images.numpy()[0], expected, atol=1e-6)
    if kind in ("grey", "16bit"):
        np.testing.assert_allclose(images.numpy()[0, ..., 1], rgb[..., 0] / 127.5 - 1, atol=1e-6)
    if kind in ("bmp", "tif", "rgba"):
        np.testing.assert_allclose(images.numpy()[0], rgb / 127.5 - 1, atol=1e-6)


def test_colour_label_raises_naming_the_file(tmp_path):
    write_voc_item(tmp_path, "rgb", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), ".png")
    label_file = tmp_path / "VOC2007" / "SegmentationClass" / "rgb.png"
    Image.new("RGB", (8, 8), (128, 0, 0)).save(label_file)
    with pytest.raises(DatasetError, match="rgb.png.*RGB"):
        VOCLayout(tmp_path).load_pair(tmp_path / "VOC2007" / "JPEGImages" / "rgb.png", label_file)
    with pytest.raises(tf.errors.OpError, match="rgb.png"):
        next(iter(make_dataset(tmp_path, ["rgb"], (8, 8), 1, 2, train=True)))


def test_size_mismatch_raises(tmp_path):
    write_voc_item(tmp_path, "a", np.zeros((8, 10, 3), np.uint8), np.zeros((8, 8)), ".png")
    with pytest.raises(DatasetError, match="8x8.*10x8"):
        VOCLayout(tmp_path).load_pair(tmp_path / "VOC2007" / "JPEGImages" / "a.png",
                                      tmp_path / "VOC2007" / "SegmentationClass" / "a.png")


def test_missing_files_and_tiny_datasets_fail_before_training(tmp_path):
    ids = grey_dataset(tmp_path, 2)
    with pytest.raises(DatasetError, match="ghost"):
        make_dataset(tmp_path, [*ids, "ghost"], (16, 16), 1, 3, train=True)
    with pytest.raises(DatasetError, match="数据集过小"):
        make_dataset(tmp_path, ids, (16, 16), 4, 3, train=True)
