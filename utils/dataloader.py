"""Input pipeline: read image + label -> augment (SPEC §7) -> one-hot with ignore -> tf.data.

Every epoch's order and augmentation are a pure function of (seed, epoch, position), so a run
resumed at epoch k sees exactly the batches an uninterrupted run would have seen.
"""

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
from PIL import Image

from utils.dataset_audit import (
    IGNORE_VALUE,
    DatasetError,
    find_image,
    image_dir,
    label_path,
    name_files,
    read_label,
)
from utils.utils import GRAY, cvtColor, letterbox_geometry, read_image, resize_image

TOO_SMALL = "数据集过小，无法进行训练，请扩充数据集。"


def read_split(path: str | Path) -> list[str]:
    """Ids of a split file: the first whitespace token of each non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found. Run `python voc_annotation.py` first "
                           "to write the train/val splits.")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder is left out, as in the original (N // bs)."""
    return n // batch_size


def _rand(rng: np.random.Generator, a: float = 0.0, b: float = 1.0) -> float:
    return rng.random() * (b - a) + a


def hsv_jitter(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Scale hue, saturation and value of a uint8 RGB image by `gains` with OpenCV LUTs."""
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(0, 256, dtype=gains.dtype)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def get_random_data(
    image: Image.Image,
    label: np.ndarray,
    input_shape: Sequence[int],
    rng: np.random.Generator | None = None,
    jitter: float = 0.3,
    hue: float = 0.1,
    sat: float = 0.7,
    val: float = 0.3,
    random: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox (validation) or randomly augment (training) an RGB image and its label.

    Returns uint8 arrays (h, w, 3) and (h, w); label padding is 255 = ignore (D4). The
    training draws follow the original's order: aspect x2, scale, flip, dx, dy, HSV gains.
    """
    h, w = (int(v) for v in input_shape[:2])
    label = Image.fromarray(label)
    if not random:  # the predictor's letterbox, with the label boxed the same way
        image_canvas, _, _ = resize_image(image, (w, h))
        nw, nh, dx, dy = letterbox_geometry(image.size, (w, h))
        label_canvas = Image.new("L", (w, h), IGNORE_VALUE)
        label_canvas.paste(label.resize((nw, nh), Image.NEAREST), (dx, dy))
        return np.asarray(image_canvas), np.asarray(label_canvas)

    rng = np.random.default_rng() if rng is None else rng
    iw, ih = image.size
    new_ar = iw / ih * _rand(rng, 1 - jitter, 1 + jitter) / _rand(rng, 1 - jitter, 1 + jitter)
    scale = _rand(rng, 0.25, 2)
    if new_ar < 1:
        nh = int(scale * h)
        nw = int(nh * new_ar)
    else:
        nw = int(scale * w)
        nh = int(nw / new_ar)
    nw, nh = max(nw, 1), max(nh, 1)  # extreme aspect ratios must not give a 0-size resize (D18)
    image = image.resize((nw, nh), Image.BICUBIC)
    label = label.resize((nw, nh), Image.NEAREST)
    if _rand(rng) < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        label = label.transpose(Image.FLIP_LEFT_RIGHT)

    dx, dy = int(_rand(rng, 0, w - nw)), int(_rand(rng, 0, h - nh))
    image_canvas = Image.new("RGB", (w, h), GRAY)
    image_canvas.paste(image, (dx, dy))
    label_canvas = Image.new("L", (w, h), IGNORE_VALUE)
    label_canvas.paste(label, (dx, dy))

    gains = rng.uniform(-1, 1, 3) * [hue, sat, val] + 1
    return hsv_jitter(np.asarray(image_canvas), gains), np.asarray(label_canvas)


def load_pair(image_file: str | Path, label_file: str | Path) -> tuple[Image.Image, np.ndarray]:
    """An RGB image and its class-index label; any read, mode or size problem names the file."""
    image = cvtColor(read_image(image_file))
    label = read_label(label_file)
    if label.shape != (image.height, image.width):
        raise DatasetError(
            f"{label_file}: label is {label.shape[1]}x{label.shape[0]} but its image {image_file} "
            f"is {image.width}x{image.height}; a label must match its image's size."
        )
    return image, label


def resolve_files(dataset_path: str | Path, ids: Sequence[str]) -> list[tuple[Path, Path]]:
    """(image, label) paths for each id; missing files raise one DatasetError naming them."""
    pairs, missing = [], []
    for image_id in ids:
        image_file = find_image(dataset_path, image_id)
        label_file = label_path(dataset_path, image_id)
        if image_file is None:
            missing.append(f"{image_id} (no image in {image_dir(dataset_path)})")
        if not label_file.is_file():
            missing.append(f"{image_id} (no label {label_file})")
        pairs.append((image_file, label_file))
    if missing:
        raise DatasetError(f"{len(missing)} files of the split are missing: "
                           f"{name_files(missing)}. Fix the dataset or rerun voc_annotation.py.")
    return pairs


class _Sampler:
    """Maps a global sample number to the augmented (image, label) it stands for."""

    def __init__(self, pairs, input_shape, train: bool, seed: int, per_epoch: int):
        self.pairs, self.input_shape, self.train = pairs, input_shape, train
        self.seed, self.per_epoch = seed, per_epoch
        self.order = functools.lru_cache(maxsize=4)(self._order)

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))

    def __call__(self, sample: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, position = divmod(int(sample), self.per_epoch)
        image, label = load_pair(*self.pairs[self.order(epoch)[position]])
        rng = np.random.default_rng([self.seed, epoch, position])
        return get_random_data(image, label, self.input_shape, rng, random=self.train)


def make_dataset(
    ids: Sequence[str],
    input_shape: Sequence[int],
    batch_size: int,
    num_classes: int,
    train: bool,
    dataset_path: str | Path,
    seed: int = 11,
    initial_epoch: int = 0,
    pipeline: tuple[int, int] = (1, 0),
    replica_batch: int | None = None,
) -> tf.data.Dataset:
    """Endless batches `(images (B,H,W,3) in [-1,1], targets (B,H,W,C+1) one-hot)`, float32.

    Each epoch is `len(ids) // batch_size` full batches in a shuffled order; labels >= C go to
    the last (ignore) channel. Reading and augmentation run in parallel tf.data workers.
    With several workers, `pipeline = (count, index)` reads only this worker's contiguous share
    of every global batch, in batches of `replica_batch`; together the workers see exactly the
    batches one process would.
    """
    ids = list(ids)
    h, w = (int(v) for v in input_shape[:2])
    per_epoch = steps_per_epoch(len(ids), batch_size) * batch_size
    if per_epoch == 0:
        raise DatasetError(f"{TOO_SMALL} ({len(ids)} images, fewer than one batch of "
                           f"{batch_size}: the dataset is too small to train.)")
    sampler = _Sampler(resolve_files(dataset_path, ids), (h, w), train, seed, per_epoch)

    def load(sample):
        image, label = tf.numpy_function(sampler, [sample], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape((h, w, 3))
        label.set_shape((h, w))
        return image, label

    one_hot = tf.eye(num_classes + 1, dtype=tf.float32)  # gather is ~2x faster than tf.one_hot

    def to_targets(images, labels):
        images = tf.cast(images, tf.float32) / 127.5 - 1.0
        labels = tf.minimum(tf.cast(labels, tf.int32), num_classes)
        return images, tf.gather(one_hot, labels)

    pipelines, index = pipeline
    share = batch_size // pipelines  # this worker's images of every global batch
    dataset = tf.data.Dataset.counter(initial_epoch * per_epoch // pipelines)
    if pipelines > 1:  # k-th image of this worker -> its sample number in the global stream
        dataset = dataset.map(lambda k: k // share * batch_size + index * share + k % share)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(replica_batch or share, drop_remainder=True)
    dataset = dataset.map(to_targets, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
