"""A small synthetic electron-microscopy dataset, Medical_Datasets layout:
`python -m utils.em_data [--name value]`.

Like serial-section EM of neural tissue (ISBI 2012): cells packed edge to edge (a Voronoi
tessellation) and separated by dark membranes 2-4 px wide, with dark organelles inside the
cells, so that dark alone does not mean membrane. Images/<id>.png are greyscale slices,
Labels/<id>.png are 0 (membrane, class 1) and 255 (everything else, class 0). The same
arguments always give the same files.
"""

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from utils.demo_manifest import check_demo_folders, clean_demo, write_manifest

# ---- EM demo dataset ---------------------------------------------------------------------------
# The demo's own Medical_Datasets folder: it refuses to write where files it did not write are.
out = "Medical_Datasets/demo"
# How many images and labels to write.
num_images = 120
# Folders the demo's later steps write into (train.py's save_dir): the demo's too.
outputs = ["logs/demo_medical"]
# Also write a 256x256 RGB cell picture (like img/cell.png) to this path; "" for none.
cell_image = ""
# The same seed always gives the same files.
seed = 0

IMAGE_SIZE = (128, 128)  # (w, h)
CELL_PICTURE_SIZE = (256, 256)
CELL_DIAMETER = (22.0, 32.0)  # typical cell diameter (px), drawn per image
MEMBRANE_WIDTH = (2.0, 4.0)  # px; the base is drawn per image and varies along the membranes
MEMBRANE, BACKGROUND = 0, 255  # label values: membrane is the target (class 1)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int = 4) -> np.ndarray:
    """A low-frequency random field, roughly -1..1, varying over about w / cells pixels."""
    coarse = rng.normal(0, 0.6, (cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _seeds(rng: np.random.Generator, w: int, h: int, diameter: float) -> np.ndarray:
    """Cell centres, spread like real cells (no two closer than 0.7 diameters), over an area a
    cell larger than the image, so that the border cuts some cells."""
    lo, hi = np.array([-diameter, -diameter]), np.array([w + diameter, h + diameter])
    count = round(np.prod(hi - lo) / (np.pi / 4 * diameter**2))
    points = rng.uniform(lo, hi, (count * 10, 2)).astype(np.float32)
    x, y = points.T
    close = (x[:, None] - x) ** 2 + (y[:, None] - y) ** 2 < (0.7 * diameter) ** 2
    blocked, kept = np.zeros(len(points), bool), []
    for index in range(len(points)):  # random sequential adsorption, in the drawn order
        if not blocked[index] and len(kept) < count:
            kept.append(index)
            blocked |= close[index]
    return points[kept]


def _organelles(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A mask of small dark blobs: round vesicles and elongated mitochondria-like ellipses."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.poisson(w * h / 700)):
        centre = tuple(int(v) for v in rng.integers(0, (w, h)))
        if rng.uniform() < 0.5:  # vesicle
            axes = (int(rng.integers(1, 3)),) * 2
        else:  # mitochondrion
            axes = (int(rng.integers(3, 8)), int(rng.integers(2, 4)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


def make_em_slice(rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE):
    """One greyscale EM-like slice (uint8, h x w) and its label (0 = membrane, 255 = other)."""
    w, h = size
    seeds = _seeds(rng, w, h, rng.uniform(*CELL_DIAMETER))
    rows, cols = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    dist = ((rows[:, None] - seeds[:, 1]) ** 2)[:, None] + (cols[:, None] - seeds[:, 0]) ** 2
    cell = dist.argmin(axis=-1)
    first = np.take_along_axis(dist, cell[..., None], -1)[..., 0]
    np.put_along_axis(dist, cell[..., None], np.inf, -1)
    gap = np.sqrt(dist.min(axis=-1)) - np.sqrt(first)  # ~ the distance across the boundary
    width = np.clip(rng.uniform(2.3, 3.5) + _smooth_noise(rng, h, w), *MEMBRANE_WIDTH)
    membrane = gap < width

    brightness = rng.uniform(160, 195) + rng.uniform(-20, 20, len(seeds))
    image = brightness[cell] + 12 * _smooth_noise(rng, h, w, 8)
    image += cv2.GaussianBlur(rng.normal(0, 10, (h, w)), (0, 0), 0.8)  # cytoplasm texture
    organelles = _organelles(rng, w, h) & (gap > width + 2)  # kept clear of the membranes
    image[organelles] = rng.uniform(30, 80) + rng.normal(0, 8, organelles.sum())
    image[membrane] = rng.uniform(25, 60) + 10 * _smooth_noise(rng, h, w, 16)[membrane]

    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.7, 1.2))
    image += rng.normal(0, rng.uniform(8, 15), (h, w))
    label = np.where(membrane, MEMBRANE, BACKGROUND).astype(np.uint8)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label


def write_cell_picture(path: str | Path, seed: int = 0) -> Path:
    """A 256x256 RGB PNG of an EM-like slice (grey in all three channels), like the
    original repository's img/cell.png for its medical predict example."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image, _ = make_em_slice(np.random.default_rng([seed, 10**6]), CELL_PICTURE_SIZE)
    Image.fromarray(np.repeat(image[..., None], 3, axis=-1)).save(path)
    return path


def write_em_dataset(
    out: str | Path = "Medical_Datasets/demo",
    num_images: int = 120,
    seed: int = 0,
    *,
    outputs: Sequence[str | Path] = (),
    size: tuple[int, int] = IMAGE_SIZE,
    cell_image: str | Path | None = None,
) -> str:
    """Write the slices and labels (and the cell picture to `cell_image`, if given) into a
    folder of the demo's own; returns a one-line summary with the membrane share.

    As for write_demo_dataset, a manifest lists everything so that `clean_demo` deletes
    exactly this, and folders holding files the demo did not write are refused.
    """
    root = Path(out)
    outputs = [root / "ImageSets", *map(Path, outputs)]
    check_demo_folders(root, outputs)
    clean_demo(root)  # an earlier run's files and outputs: a rerun starts afresh
    (root / "Images").mkdir(parents=True, exist_ok=True)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    written, membrane = [], 0
    for index in range(num_images):
        image, label = make_em_slice(np.random.default_rng([seed, index]), size)
        written += [root / "Images" / f"cell_{index:04d}.png",
                    root / "Labels" / f"cell_{index:04d}.png"]
        Image.fromarray(image).save(written[-2])
        Image.fromarray(label).save(written[-1])
        membrane += int((label == MEMBRANE).sum())
    picture = ""
    if cell_image:
        written.append(write_cell_picture(cell_image, seed))
        picture = f", and a 256x256 cell picture to {cell_image}"
    write_manifest(root, written, outputs)
    share = membrane / max(1, num_images * size[0] * size[1])
    return (f"Wrote {num_images} EM slices ({size[0]}x{size[1]}) and labels (0 = membrane, "
            f"{share:.1%} of pixels; 255 = other; num_classes = 2) to {root}{picture}.")


def main(argv: list[str] | None = None) -> None:
    from utils.config import load_config

    cfg = load_config(__file__, argv)
    print(write_em_dataset(cfg.out, cfg.num_images, cfg.seed, outputs=cfg.outputs,
                           cell_image=cfg.cell_image or None))


if __name__ == "__main__":
    from utils.cli import run

    run(main)
