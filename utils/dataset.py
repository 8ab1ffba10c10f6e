"""A segmentation dataset on disk: its folder layout, split files, labels and the palette.

Two layouts, the original's two workflows:
- `VOCLayout`: `VOC2007/JPEGImages/<id>.jpg`, `VOC2007/SegmentationClass/<id>.png` and
  `VOC2007/ImageSets/Segmentation/<split>.txt` under the dataset root. A label stores the class
  of each pixel as its value (the palette index for "P" PNGs); 255 marks pixels to ignore.
- `MedicalLayout`: `Images/<id>.png`, `Labels/<id>.png` and `ImageSets/Segmentation/<split>.txt`
  (the original's Medical_Datasets). Labels are 0/255 masks: a pixel whose value is at most
  127.5 (the dark membrane) is class 1, every other pixel class 0.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import ClassVar

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.utils import IMAGE_EXTENSIONS, cvtColor, read_image

IGNORE_VALUE = 255
# Medical masks: a value at most this (dark) is class 1, the membrane.
MEDICAL_THRESHOLD = 127.5
MAX_NAMED = 10
SPLIT_NAMES = ("trainval", "train", "val", "test")
# The original's "dataset too small" messages, for the first and for a continued phase.
TOO_SMALL = "数据集过小，无法进行训练，请扩充数据集。"
TOO_SMALL_TO_CONTINUE = "数据集过小，无法继续进行训练，请扩充数据集。"


class DatasetError(UserError, ValueError):
    """A dataset problem that would make training fail or learn garbage; the message says why."""


def name_files(paths: Iterable, limit: int = MAX_NAMED) -> str:
    """'a, b, c' naming at most `limit` items, then 'and N more'."""
    names = [str(p) for p in paths]
    text = ", ".join(names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def voc_palette() -> np.ndarray:
    """The 256-colour VOC palette: class i is drawn in colour i, 255 (void) in (224, 224, 192).

    Its first 21 colours are the ones the original predictor draws the classes with.
    """
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, rgb = index, [0, 0, 0]
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << bit
            c >>= 3
        palette[index] = rgb
    return palette


def save_label(array: np.ndarray, path: str | Path) -> None:
    """Write class indices as a "P" PNG with the VOC palette, like VOC and labelme do."""
    label = Image.fromarray(np.asarray(array, np.uint8))
    label.putpalette(voc_palette().flatten().tolist())  # turns the "L" image into "P"
    label.save(path)


def label_array(image: Image.Image, path: str | Path) -> np.ndarray:
    """The pixel values (uint8, H x W) of a label image; colour labels raise DatasetError."""
    if image.mode in ("L", "P"):
        return np.asarray(image)
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I", "I;16", "I;16L", "I;16B"):
        values = np.asarray(image)
        if values.min() >= 0 and values.max() <= 255:
            return values.astype(np.uint8)
        raise DatasetError(
            f"{path}: 16-bit label with values up to {values.max()}; class indices must be "
            "0..254 (255 = ignore). Save labels as 8-bit L or P PNGs."
        )
    if image.mode in ("RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr", "HSV"):
        raise DatasetError(
            f"{path}: the label is a {image.mode} colour image with {len(image.getbands())} "
            "channels. Labels must be single-channel L or P PNGs whose pixel values are the "
            "class indices (0 = background, 255 = ignore). If it is drawn in VOC colours, "
            "`python voc_annotation.py --fix_labels True` converts it."
        )
    raise DatasetError(f"{path}: unsupported label mode {image.mode}; save it as an 8-bit PNG.")


def read_label(path: str | Path) -> np.ndarray:
    """The pixel values of a label PNG (uint8, H x W); names the file on any problem."""
    return label_array(read_image(path), path)


def check_same_size(image_path: Path, image_size: tuple[int, int], label_path: Path,
                    label_size: tuple[int, int]) -> None:
    """A label must cover its image pixel for pixel; sizes are (width, height)."""
    if tuple(image_size) != tuple(label_size):
        raise DatasetError(
            f"{label_path}: label is {label_size[0]}x{label_size[1]} but its image {image_path} "
            f"is {image_size[0]}x{image_size[1]}; a label must have exactly its image's size.")


def read_split(path: str | Path, script: str = "voc_annotation.py") -> list[str]:
    """Ids of a split file: the first whitespace token of each non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found. Run `python {script}` first "
                           "to write the train/val splits.")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def split_ids(ids: Sequence[str], trainval_percent: float, train_percent: float,
              seed: int = 0) -> dict[str, list[str]]:
    """The original's random split, reproducible on any file system because the ids are
    sorted first: `Random(seed)` then draws exactly what the original's `random.seed(seed)` +
    `random.sample` draws. Each split keeps the sorted order."""
    ids = sorted(ids)
    rng = Random(seed)
    num_trainval = int(len(ids) * trainval_percent)
    num_train = int(num_trainval * train_percent)
    trainval = rng.sample(range(len(ids)), num_trainval)
    train = set(rng.sample(trainval, num_train))
    trainval = set(trainval)
    return {
        "trainval": [x for i, x in enumerate(ids) if i in trainval],
        "train": [x for i, x in enumerate(ids) if i in train],
        "val": [x for i, x in enumerate(ids) if i in trainval and i not in train],
        "test": [x for i, x in enumerate(ids) if i not in trainval],
    }


@dataclass(frozen=True)
class VOCLayout:
    """Where a VOC-format dataset keeps its images, labels and split files."""

    root: Path
    kind: ClassVar[str] = "voc"
    images: ClassVar[str] = "VOC2007/JPEGImages"
    labels: ClassVar[str] = "VOC2007/SegmentationClass"
    splits: ClassVar[str] = "VOC2007/ImageSets/Segmentation"
    image_extensions: ClassVar[tuple[str, ...]] = IMAGE_EXTENSIONS  # .jpg first
    annotation_script: ClassVar[str] = "voc_annotation.py"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def image_dir(self) -> Path:
        return self.root / self.images

    @property
    def label_dir(self) -> Path:
        return self.root / self.labels

    @property
    def splits_dir(self) -> Path:
        return self.root / self.splits

    def split_file(self, name: str) -> Path:
        return self.splits_dir / f"{name}.txt"

    def read_split(self, name: str) -> list[str]:
        return read_split(self.split_file(name), self.annotation_script)

    def label_path(self, image_id: str) -> Path:
        return self.label_dir / f"{image_id}.png"

    def find_image(self, image_id: str) -> Path | None:
        """`<id>` with the layout's first image extension, else another one, else None."""
        extensions = self.image_extensions
        for ext in extensions + tuple(e.upper() for e in extensions):
            path = self.image_dir / f"{image_id}{ext}"
            if path.is_file():
                return path
        return None

    def image_path(self, image_id: str) -> Path:
        """The image of an id; a DatasetError naming the folder if there is none."""
        path = self.find_image(image_id)
        if path is None:
            first, *others = self.image_extensions
            raise DatasetError(f"{self.image_dir / image_id}{first}: image not found (nor "
                               f"{'/'.join(others)}); add it or remove the id from the split "
                               "file.")
        return path

    def label_ids(self) -> list[str]:
        """Ids of every label file, sorted."""
        if not self.label_dir.is_dir():
            raise DatasetError(f"{self.label_dir}: folder not found. Put the label PNGs there "
                               f"and the images in {self.image_dir}.")
        return sorted(p.stem for p in self.label_dir.glob("*.png"))

    def label_values(self, image: Image.Image, path: str | Path) -> np.ndarray:
        """The pixel values of a label image as stored (uint8, H x W), before any class rule."""
        return label_array(image, path)

    def classes_of(self, values: np.ndarray) -> np.ndarray:
        """The class of each pixel from its stored value: here the value itself."""
        return values

    def read_label(self, path: str | Path) -> np.ndarray:
        """The class of each pixel (uint8, H x W; 255 = ignore); names the file on a problem."""
        return self.classes_of(self.label_values(read_image(path), path))

    def pairs(self, ids: Sequence[str]) -> list[tuple[Path, Path]]:
        """(image, label) paths of each id; missing files raise one DatasetError naming them."""
        pairs, missing = [], []
        for image_id in ids:
            image_file, label_file = self.find_image(image_id), self.label_path(image_id)
            if image_file is None:
                missing.append(f"{image_id} (no image in {self.image_dir})")
            if not label_file.is_file():
                missing.append(f"{image_id} (no label {label_file})")
            pairs.append((image_file, label_file))
        if missing:
            raise DatasetError(f"{len(missing)} files of the split are missing: "
                               f"{name_files(missing)}. Fix the dataset or rerun "
                               f"{self.annotation_script}.")
        return pairs

    def load_pair(self, image_file: Path, label_file: Path) -> tuple[Image.Image, np.ndarray]:
        """An RGB image and its classes; any read, mode or size problem names the file."""
        image = cvtColor(read_image(image_file))
        label = self.read_label(label_file)
        check_same_size(image_file, image.size, label_file, label.shape[::-1])
        return image, label

    def write_splits(self, trainval_percent: float, train_percent: float,
                     seed: int = 0) -> dict[str, list[str]]:
        """Split the ids of every label into the four split files."""
        ids = self.label_ids()
        spaced = [i for i in ids if i.split() != [i]]
        if spaced:
            raise DatasetError(
                f"{len(spaced)} label name(s) contain spaces: {name_files(spaced)}. Split files "
                "hold one name per line and training reads each line up to its first space (as "
                "the original does): rename these labels and their images without spaces, e.g. "
                "with _.")
        splits = split_ids(ids, trainval_percent, train_percent, seed)
        self.splits_dir.mkdir(parents=True, exist_ok=True)
        for name in SPLIT_NAMES:
            self.split_file(name).write_text("".join(f"{i}\n" for i in splits[name]),
                                             encoding="utf-8")
        return splits


class MedicalLayout(VOCLayout):
    """The original's Medical_Datasets: greyscale slices and 0/255 masks, the dark membrane
    (value <= 127.5) being class 1. There is no ignore value in these labels."""

    kind: ClassVar[str] = "medical"
    images: ClassVar[str] = "Images"
    labels: ClassVar[str] = "Labels"
    splits: ClassVar[str] = "ImageSets/Segmentation"
    image_extensions: ClassVar[tuple[str, ...]] = (".png", *(e for e in IMAGE_EXTENSIONS
                                                             if e != ".png"))
    annotation_script: ClassVar[str] = "voc_annotation_medical.py"

    def label_values(self, image: Image.Image, path: str | Path) -> np.ndarray:
        """8-bit grey values of a mask. Microscopy tools also save masks as bilevel ("1"),
        16-bit (0/65535, scaled to 0/255) or RGB with three equal channels: read as grey."""
        if image.mode == "1":
            return np.asarray(image.convert("L"))
        if image.mode in ("I", "I;16", "I;16L", "I;16B"):
            values = np.asarray(image, np.float64)
            peak = 65535.0 if values.max() > 255 else 255.0
            return np.clip(np.round(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        if image.mode in ("RGB", "RGBA"):
            values = np.asarray(image)
            grey = values[..., 0]
            if (values[..., 1] == grey).all() and (values[..., 2] == grey).all():
                return grey.copy()
        return label_array(image, path)

    def classes_of(self, values: np.ndarray) -> np.ndarray:
        """Class 1 where the mask is dark (value <= 127.5), class 0 elsewhere."""
        return (values <= MEDICAL_THRESHOLD).astype(np.uint8)


LAYOUTS = {"voc": VOCLayout, "medical": MedicalLayout}


def detect_layout(root: str | Path) -> str:
    """"medical" for a folder with Labels/ (and no VOC2007/), else "voc"."""
    root = Path(root)
    return "medical" if (root / MedicalLayout.labels).is_dir() and not (
        root / "VOC2007").exists() else "voc"


def as_layout(dataset: "str | Path | VOCLayout", kind: str = "auto") -> VOCLayout:
    """The layout of a dataset root folder: `kind` "voc" or "medical", or "auto" to tell them
    apart by their folders (a layout object is returned as it is)."""
    if isinstance(dataset, VOCLayout):
        return dataset
    if kind == "auto":
        kind = detect_layout(dataset)
    if kind not in LAYOUTS:
        raise DatasetError(f"dataset layout {kind!r} is unknown; use one of {list(LAYOUTS)} "
                           "or \"auto\".")
    return LAYOUTS[kind](Path(dataset))
