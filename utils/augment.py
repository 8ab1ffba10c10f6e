"""Per-sample input pipeline: read an image and its label, then augment or letterbox them.

Training draws follow the original's order (aspect x2, scale, flip, dx, dy, HSV gains) with its
constants; every sample's draws come from its own generator seeded by (seed, epoch, position),
so any feeder gives the same batches, and a resumed run the same as an uninterrupted one.
"""

import functools
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from utils.dataset import IGNORE_VALUE, VOCLayout
from utils.utils import GRAY, letterbox_geometry, resize_image


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
    *,
    jitter: float = 0.3,
    hue: float = 0.1,
    sat: float = 0.7,
    val: float = 0.3,
    random: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox (validation) or randomly augment (training) an RGB image and its label.

    Returns uint8 arrays (h, w, 3) and (h, w). Labels are padded with 255 (ignore), so the grey
    padding is never learned as background.
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
    nw, nh = max(nw, 1), max(nh, 1)  # extreme aspect ratios must not give a 0-size resize
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


class SampleReader:
    """Maps a global sample number (epoch * per_epoch + position) to the augmented
    (image, label) uint8 arrays it stands for: each epoch has its own shuffled order."""

    def __init__(self, layout: VOCLayout, ids: Sequence[str], input_shape: Sequence[int], *,
                 train: bool, seed: int, per_epoch: int):
        self.layout, self.pairs = layout, layout.pairs(ids)
        self.input_shape = tuple(int(v) for v in input_shape[:2])
        self.train, self.seed, self.per_epoch = train, seed, per_epoch
        self.order = functools.lru_cache(maxsize=4)(self._order)

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))

    def __call__(self, sample: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, position = divmod(int(sample), self.per_epoch)
        image, label = self.layout.load_pair(*self.pairs[self.order(epoch)[position]])
        rng = np.random.default_rng([self.seed, epoch, position])
        return get_random_data(image, label, self.input_shape, rng, random=self.train)
