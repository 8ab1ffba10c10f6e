"""A small synthetic VOC-format dataset for the demo: `python -m utils.demo_data [--name value]`.

Three object classes (1 circle, 2 square, 3 triangle) of random size, rotation, texture and
colour on cluttered, muted backgrounds; labels are VOC-palette "P" PNGs with a 255 (ignore)
border around every object, like VOC. The same arguments always give the same files.

Object hues lean towards one family per class (circles reddish, squares greenish, triangles
bluish, +-45 degrees): with fully random colours (`--random_colours`) a small U-Net needs far
more than the demo's few CPU minutes to learn the shapes alone.
"""

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from utils.dataset import IGNORE_VALUE, VOCLayout, save_label
from utils.demo_manifest import check_demo_folders, clean_demo, write_manifest

# ---- Demo dataset ------------------------------------------------------------------------------
# The demo's own VOCdevkit folder: it refuses to write where files it did not write are.
out = "VOCdevkit/demo"
# How many images and labels to write.
num_images = 300
# Folders the demo's later steps write into (train.py's save_dir): the demo's too.
outputs = ["logs/demo"]
# Also write sample pictures (demo_1..4.jpg, demo_large.jpg) here; "" for none (img/ has them).
img_dir = ""
# The same seed always gives the same files.
seed = 0
# Any hue for any class: shape is the only cue (much slower to learn).
random_colours = False

CLASSES = ("background", "circle", "square", "triangle")
IMAGE_SIZE = (128, 128)  # (w, h)
LARGE_SIZE = (500, 375)
MUTED, VIVID = (0.0, 0.35), (0.55, 1.0)  # saturation of background / object colours
CLASS_HUES = {1: 0.0, 2: 1 / 3, 3: 2 / 3}  # red, green, blue families
HUE_SPREAD = 1 / 8  # +-45 degrees around the family hue
MIN_CONTRAST = 100  # RGB distance between an object and the background behind it


def _colour(rng: np.random.Generator, saturation: tuple, value: tuple,
            hue: float | None = None) -> np.ndarray:
    """A random RGB colour (floats 0-255): saturation and value in the ranges, hue random
    unless given."""
    hue = rng.uniform(0, 1) if hue is None else hue
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb) * 255


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A muted two-colour gradient with noise, lines and small blobs (all background)."""
    c0, c1 = (_colour(rng, MUTED, (0.15, 0.85)) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    t = np.clip((xx * np.cos(angle) + yy * np.sin(angle) + 1) / 2, 0, 1)[..., None]
    pixels = c0 * (1 - t) + c1 * t + rng.normal(0, rng.uniform(4, 14), (h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(1, 6)):
        points = rng.uniform(-0.1, 1.1, 4) * (w, h, w, h)
        draw.line(points.tolist(), fill=tuple(_colour(rng, MUTED, (0, 1)).astype(int).tolist()),
                  width=max(1, round(rng.integers(1, 4) * h / IMAGE_SIZE[1])))
    for _ in range(rng.integers(1, 5)):
        centre, radius = rng.uniform(0, 1, 2) * (w, h), h * rng.uniform(0.02, 0.06)
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 9)))
        radii = radius * rng.uniform(0.5, 1.3, len(angles))
        blob = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        colour = tuple(_colour(rng, MUTED, (0, 1)).astype(int).tolist())
        draw.polygon([tuple(p) for p in blob.tolist()], fill=colour)
    return image


def _shape_mask(rng: np.random.Generator, class_id: int, w: int, h: int) -> np.ndarray:
    """A boolean mask of one circle, square or triangle, 15-45% of the image height across."""
    radius = h * rng.uniform(0.15, 0.45) / 2
    centre = rng.uniform((radius, radius), (w - radius, h - radius))
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    if class_id == 1:
        draw.ellipse([*(centre - radius), *(centre + radius)], fill=1)
    else:
        corners = 4 if class_id == 2 else 3
        angles = rng.uniform(0, 2 * np.pi) + np.arange(corners) * 2 * np.pi / corners
        points = centre + radius * 1.1 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        draw.polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(mask, bool)


def _texture(rng: np.random.Generator, w: int, h: int, avoid: np.ndarray,
             hue: float | None) -> np.ndarray:
    """A vivid colour that stands out from `avoid`: plain, striped or noisy, (h, w, 3) floats."""
    for _attempt in range(20):
        colour = _colour(rng, VIVID, (0.5, 1), hue)
        if np.linalg.norm(colour - avoid) > MIN_CONTRAST:
            break
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(colour, (h, w, 3))
    if kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12) * h / IMAGE_SIZE[1]
        yy, xx = np.mgrid[0:h, 0:w]
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        return colour + wave[..., None] * rng.uniform(20, 40)
    return colour + rng.normal(0, 15, (h, w, 3))


def make_scene(
    rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE, *, class_hues: bool = True
):
    """One RGB image (uint8, h x w x 3) with 1-3 objects of different classes, and its label."""
    w, h = size
    image = np.asarray(_background(rng, w, h), np.float64).copy()
    label = np.zeros((h, w), np.uint8)
    for class_id in rng.permutation(np.arange(1, len(CLASSES)))[:rng.integers(1, 4)]:
        for _attempt in range(10):  # keep objects mostly apart so each stays recognisable
            mask = _shape_mask(rng, int(class_id), w, h)
            if (label[mask] > 0).mean() < 0.1:
                break
        hue = CLASS_HUES[class_id] + rng.uniform(-HUE_SPREAD, HUE_SPREAD) if class_hues else None
        image[mask] = _texture(rng, w, h, image[mask].mean(axis=0), hue)[mask]
        label[mask] = class_id
    kernel = np.ones((3, 3), np.uint8)
    border = cv2.dilate(label, kernel) != cv2.erode(label, kernel)  # 2 px across every edge
    label[border] = IGNORE_VALUE
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_sample_pictures(img_dir: str | Path, seed: int = 0, *,
                          class_hues: bool = True) -> list[Path]:
    """demo_1..4.jpg (the demo's size) and demo_large.jpg (LARGE_SIZE) in `img_dir`."""
    img_dir = Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, size in [(1, IMAGE_SIZE), (2, IMAGE_SIZE), (3, IMAGE_SIZE), (4, IMAGE_SIZE),
                        ("large", LARGE_SIZE)]:
        rng = np.random.default_rng([seed, 2 * 10**6] if index == "large" else
                                    [seed, 10**6 + index])
        image, _ = make_scene(rng, size, class_hues=class_hues)
        written.append(img_dir / f"demo_{index}.jpg")
        Image.fromarray(image).save(written[-1], quality=95)
    return written


def write_demo_dataset(
    out: str | Path = "VOCdevkit/demo",
    num_images: int = 300,
    img_dir: str | Path | None = None,
    seed: int = 0,
    *,
    outputs: Sequence[str | Path] = (),
    class_hues: bool = True,
) -> str:
    """Write the images and labels (and sample pictures into `img_dir`, if given) into a
    folder of the demo's own; returns a one-line summary.

    `outputs` are the folders the demo's later steps write into (train.py's save_dir). A
    manifest lists everything, so that `clean_demo` deletes exactly this; folders holding
    files an earlier demo run did not write are refused before anything is written.
    """
    layout = VOCLayout(Path(out))
    outputs = [layout.root / "VOC2007" / "ImageSets", *map(Path, outputs)]
    check_demo_folders(layout.root, outputs)
    clean_demo(layout.root)  # an earlier run's files and outputs: a rerun starts afresh
    layout.image_dir.mkdir(parents=True, exist_ok=True)
    layout.label_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(num_images):
        image, label = make_scene(np.random.default_rng([seed, index]), class_hues=class_hues)
        written += [layout.image_dir / f"demo_{index:04d}.jpg",
                    layout.label_dir / f"demo_{index:04d}.png"]
        Image.fromarray(image).save(written[-2], quality=95)
        save_label(label, written[-1])
    samples = ""
    if img_dir is not None:
        written += write_sample_pictures(img_dir, seed, class_hues=class_hues)
        samples = f", and demo_1..4.jpg + demo_large.jpg to {img_dir}/"
    write_manifest(layout.root, written, outputs)
    return (f"Wrote {num_images} demo images ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}) and labels "
            f"(1 circle, 2 square, 3 triangle, 255 borders; num_classes = 4) to "
            f"{layout.root / 'VOC2007'}{samples}.")


def main(argv: list[str] | None = None) -> None:
    from utils.config import load_config

    cfg = load_config(__file__, argv)
    print(write_demo_dataset(cfg.out, cfg.num_images, cfg.img_dir or None, cfg.seed,
                             outputs=cfg.outputs, class_hues=not cfg.random_colours))


if __name__ == "__main__":
    from utils.cli import run

    run(main)
