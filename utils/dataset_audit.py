"""Checks a VOC-format dataset for the traps that make training learn silent garbage.

Shared by voc_annotation.py (whole folder, optional `--fix_labels`) and train.py (its split ids).
Each trap gets a plain-language verdict; fatal ones name the files and say how to fix them.
"""

import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import numpy as np
from PIL import Image
from tqdm import tqdm

from utils.utils import IMAGE_EXTENSIONS, ImageReadError, read_image

IGNORE_VALUE = 255
SPLITS_DIR = Path("VOC2007") / "ImageSets" / "Segmentation"
MAX_NAMED = 10
FORMAT_HELP = (
    "JPEGImages中的图片应当为.jpg文件、SegmentationClass中的图片应当为.png文件。"
    " (images go in JPEGImages as .jpg, labels in SegmentationClass as .png)\n"
    "如果格式有误，参考: (if the format is wrong, see:)\n"
    "https://github.com/bubbliiiing/segmentation-format-fix"
)


class DatasetError(ValueError):
    """A dataset problem that would make training fail or learn garbage; the message says why."""


def image_dir(dataset_path: str | Path) -> Path:
    return Path(dataset_path) / "VOC2007" / "JPEGImages"


def label_dir(dataset_path: str | Path) -> Path:
    return Path(dataset_path) / "VOC2007" / "SegmentationClass"


def find_image(dataset_path: str | Path, image_id: str) -> Path | None:
    """`JPEGImages/<id>.jpg`, else the same stem with another image extension, else None."""
    folder = image_dir(dataset_path)
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        path = folder / f"{image_id}{ext}"
        if path.is_file():
            return path
    return None


def label_path(dataset_path: str | Path, image_id: str) -> Path:
    return label_dir(dataset_path) / f"{image_id}.png"


def name_files(paths: Iterable, limit: int = MAX_NAMED) -> str:
    """'a, b, c' naming at most `limit` items, then 'and N more'."""
    names = [str(p) for p in paths]
    text = ", ".join(names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def voc_palette() -> np.ndarray:
    """The 256-colour VOC palette (index 255 = (224, 224, 192), the void border colour)."""
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
    """Class indices (uint8, H x W) of a label image; colour labels raise DatasetError (D7)."""
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
    """Read a label PNG as class indices (uint8, H x W); names the file on any problem."""
    return label_array(read_image(path), path)


def split_ids(
    ids: Sequence[str], trainval_percent: float, train_percent: float, seed: int = 0
) -> dict[str, list[str]]:
    """The original's random split, made reproducible by sorting the ids first (D14).

    With the ids sorted, `random.Random(seed)` draws exactly what the original's
    `random.seed(seed)` + `random.sample` draws; each split keeps the sorted order.
    """
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


def write_splits(
    dataset_path: str | Path, trainval_percent: float, train_percent: float, seed: int = 0
) -> dict[str, list[str]]:
    """Split the ids of `VOC2007/SegmentationClass/*.png` into `ImageSets/Segmentation/*.txt`."""
    labels = label_dir(dataset_path)
    if not labels.is_dir():
        raise DatasetError(f"{labels}: folder not found. Put the label PNGs there and the images "
                           f"in {labels.with_name('JPEGImages')}.")
    ids = [p.stem for p in labels.glob("*.png")]
    spaced = sorted(i for i in ids if i.split() != [i])
    if spaced:
        raise DatasetError(
            f"{len(spaced)} label name(s) contain spaces: {name_files(spaced)}. Split files hold "
            "one name per line and training reads each line up to its first space (as the "
            "original does): rename these labels and their images without spaces, e.g. with _.")
    splits = split_ids(ids, trainval_percent, train_percent, seed)
    out = Path(dataset_path) / SPLITS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (out / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return splits


@dataclass
class AuditReport:
    """What the audit found: pixel-value histogram, verdicts, and the files a fix would touch."""

    value_counts: dict[int, int] = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    num_labels: int = 0
    binary_labels: list[Path] = field(default_factory=list)  # 0/255 masks (fixable)
    colour_labels: list[Path] = field(default_factory=list)  # RGB/RGBA labels (maybe fixable)
    label_folder: Path | None = None

    def print_table(self) -> None:
        """Pixel values and their counts, in the original's table format."""
        print("打印像素点的值与数量。 (pixel values and their counts)")
        print("-" * 37)
        print("| %15s | %15s |" % ("Key", "Value"))
        print("-" * 37)
        for value, count in sorted(self.value_counts.items()):
            print("| %15s | %15s |" % (str(value), str(count)))
            print("-" * 37)

    def print_verdicts(self, include_fatal: bool = True) -> None:
        """One line per trap: ok, warning or (unless left to the caller's error) ERROR."""
        for message in self.passed:
            print(f"[ok]      {message}")
        for message in self.warnings:
            print(f"[warning] {message}")
        if include_fatal and self.fatal:
            print(self.error_message())

    def error_message(self) -> str:
        """All fatal findings, one per line, followed by the original's format hints."""
        lines = [f"[ERROR]   {message}" for message in self.fatal]
        return "\n".join([*lines, FORMAT_HELP])

    def raise_if_fatal(self) -> None:
        if self.fatal:
            raise DatasetError("The dataset has problems that must be fixed first:\n"
                               + self.error_message())


@dataclass
class _Item:
    """What the audit learned about one id."""

    image_id: str
    image_path: Path | None
    label_path: Path
    counts: np.ndarray | None = None  # 256-bin histogram of label values
    error: str | None = None  # unreadable image or label
    colour: bool = False
    size_mismatch: str | None = None


def _check_item(item: _Item) -> _Item:
    try:
        label_image = read_image(item.label_path)
        label_size = label_image.size
        try:
            label = label_array(label_image, item.label_path)
            item.counts = np.bincount(label.ravel(), minlength=256)
        except DatasetError:
            if label_image.mode not in ("RGB", "RGBA"):
                raise
            item.colour = True
        if item.image_path is not None:
            image_size = read_image(item.image_path).size
            if image_size != label_size:
                item.size_mismatch = (f"{item.image_id} (image {image_size[0]}x{image_size[1]}, "
                                      f"label {label_size[0]}x{label_size[1]})")
    except (ImageReadError, DatasetError) as error:
        item.error = str(error)
    return item


def _dataset_items(dataset_path: Path, ids: Iterable[str] | None):
    """Items to check plus the names of labels/images that have no partner."""
    labels, images = label_dir(dataset_path), image_dir(dataset_path)
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        items = [_Item(i, find_image(dataset_path, i), label_path(dataset_path, i)) for i in ids]
        missing_labels = [str(item.label_path) for item in items if not item.label_path.is_file()]
        items = [item for item in items if item.label_path.is_file()]
        return items, missing_labels, [], []

    label_files = sorted(labels.glob("*.png")) if labels.is_dir() else []
    other_labels = sorted(p.name for p in labels.iterdir()
                          if p.suffix.lower() in IMAGE_EXTENSIONS and p.suffix != ".png"
                          ) if labels.is_dir() else []
    image_files: dict[str, Path] = {}
    if images.is_dir():
        preference = {ext: rank for rank, ext in enumerate(IMAGE_EXTENSIONS)}
        for path in sorted(images.iterdir(), key=lambda p: preference.get(p.suffix.lower(), 99)):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                image_files.setdefault(path.stem, path)
    items = [_Item(p.stem, image_files.get(p.stem), p) for p in label_files]
    stems = {p.stem for p in label_files}
    unlabelled = sorted(path.name for stem, path in image_files.items() if stem not in stems)
    return items, [], unlabelled, other_labels


def audit_dataset(
    dataset_path: str | Path,
    num_classes: int | None = None,
    ids: Iterable[str] | None = None,
    progress: bool = True,
) -> AuditReport:
    """Read every label (and its image) once and report each trap; modifies nothing.

    `ids=None` checks the whole `VOC2007/SegmentationClass` folder; otherwise only those ids.
    """
    dataset_path = Path(dataset_path)
    report = AuditReport(label_folder=label_dir(dataset_path))
    items, missing_labels, unlabelled, other_labels = _dataset_items(dataset_path, ids)
    report.num_labels = len(items)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(tqdm(pool.map(_check_item, items), total=len(items), disable=not progress,
                            desc="Checking labels", unit="label"))
    counts = np.zeros(256, np.int64)
    for item in results:
        if item.counts is not None:
            counts += item.counts
    report.value_counts = {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    fatal, warnings, passed = report.fatal, report.warnings, report.passed

    if not items and not missing_labels:
        hint = (f" Found {len(other_labels)} non-PNG files there ({name_files(other_labels)}): "
                "labels must be PNG, JPEG compression changes the class values."
                if other_labels else "")
        fatal.append(f"No .png labels found in {label_dir(dataset_path)}.{hint}")
        return report
    if other_labels:
        warnings.append(f"{len(other_labels)} files in {label_dir(dataset_path)} are not .png and "
                        f"are ignored: {name_files(other_labels)}. Labels must be PNG.")

    # Readability and pairing.
    unreadable = [item.error for item in results if item.error]
    if unreadable:
        fatal.append(f"{len(unreadable)} files cannot be read; replace or remove them "
                     f"(and their partner): " + " | ".join(unreadable[:MAX_NAMED])
                     + (f" | and {len(unreadable) - MAX_NAMED} more" if len(unreadable) > MAX_NAMED
                        else ""))
    else:
        passed.append(f"All {len(items)} labels and their images can be read.")
    no_image = [item.image_id for item in results if item.image_path is None]
    if no_image or missing_labels:
        if no_image:
            fatal.append(f"{len(no_image)} labels have no image in {image_dir(dataset_path)} "
                         f"(looked for .jpg/.png/.bmp/.tif): {name_files(no_image)}. "
                         "Add the images or remove these labels.")
        if missing_labels:
            fatal.append(f"{len(missing_labels)} ids in the split have no label: "
                         f"{name_files(missing_labels)}. "
                         "Add the labels or rerun voc_annotation.py.")
    else:
        passed.append("Every label has its image.")
    if unlabelled:
        warnings.append(f"{len(unlabelled)} images have no label and are not used: "
                        f"{name_files(unlabelled)} "
                        "(fine if they are detection-only or test images).")

    # Label format.
    report.colour_labels = [item.label_path for item in results if item.colour]
    if report.colour_labels:
        fatal.append(f"{len(report.colour_labels)} labels are RGB/RGBA colour images, not class "
                     f"indices: {name_files(p.name for p in report.colour_labels)}. Save labels as "
                     "single-channel L or P PNGs; `python voc_annotation.py --fix_labels True` "
                     "converts exact VOC-palette colours.")
    else:
        passed.append("Labels are single-channel (L or P) class-index images.")

    sizes = [item.size_mismatch for item in results if item.size_mismatch]
    if sizes:
        fatal.append(f"{len(sizes)} labels differ in size from their image: {name_files(sizes)}. "
                     "A label must have exactly its image's width and height.")
    else:
        passed.append("Every label has the same size as its image.")

    _check_values(report, results, counts, num_classes)
    return report


def _check_values(report: AuditReport, results: list[_Item], counts: np.ndarray,
                  num_classes: int | None) -> None:
    fatal, warnings, passed = report.fatal, report.warnings, report.passed
    values = set(report.value_counts)
    objects = values - {0, IGNORE_VALUE}
    if not values:
        return
    if not objects and values == {0, IGNORE_VALUE}:
        report.binary_labels = [item.label_path for item in results
                                if item.counts is not None and item.counts[IGNORE_VALUE]]
        fatal.append(
            "检测到标签中像素点的值仅包含0与255，数据格式有误。"
            "二分类问题需要将标签修改为背景的像素点值为0，目标的像素点值为1。\n"
            f"          The labels contain only the values 0 and 255: they are 0/255 binary "
            f"masks ({len(report.binary_labels)} with 255: "
            f"{name_files(p.name for p in report.binary_labels)}). 255 means 'ignore' (the VOC "
            "border value), so the objects would never be learned; object pixels must hold 1. "
            "`python voc_annotation.py --fix_labels True` rewrites 255 as 1 (the originals are "
            "copied to SegmentationClass.bak/ first).")
        return
    if not objects:
        fatal.append("检测到标签中仅仅包含背景像素点，数据格式有误，请仔细检查数据集格式。\n"
                     "          The labels contain only background (0) pixels: there is "
                     "nothing to learn. Object pixels must hold their class index 1, 2, ...")
        return

    background_only = [item.label_path.name for item in results if item.counts is not None
                       and not np.delete(item.counts, [0, IGNORE_VALUE]).any()]
    if background_only:
        warnings.append(f"{len(background_only)} labels contain only background: "
                        f"{name_files(background_only)} (fine if these images have no objects).")
    else:
        passed.append("Every label contains at least one object pixel.")

    if num_classes is None:
        top = max(objects)
        passed.append(f"Class values used: {sorted(objects)}"
                      + (" (+255 = ignore)" if IGNORE_VALUE in values else "")
                      + f"; num_classes (background included) should be {top + 1}.")
        return
    too_big = sorted(v for v in objects if v >= num_classes)
    if too_big:
        files = [item.label_path.name for item in results if item.counts is not None
                 and item.counts[num_classes:IGNORE_VALUE].any()]
        fatal.append(f"Label values {too_big} are >= num_classes = {num_classes} (and not 255), so "
                     f"they would silently be ignored. Files: {name_files(files)}. Raise "
                     f"num_classes to {max(too_big) + 1} or relabel these pixels.")
    else:
        passed.append(f"All label values are < num_classes = {num_classes} or 255 (ignore).")


def _backup(path: Path, backup_dir: Path) -> None:
    backup_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, backup_dir / path.name)


def colour_to_index(rgb: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Map exact VOC-palette colours to indices; returns indices and the colours not found."""
    palette = voc_palette().astype(np.int64)
    codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    order = np.argsort(codes)
    pixels = rgb[..., :3].astype(np.int64)
    pixel_codes = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    slot = np.clip(np.searchsorted(codes[order], pixel_codes), 0, 255)
    found = codes[order][slot] == pixel_codes
    unknown = [(c >> 16 & 255, c >> 8 & 255, c & 255)
               for c in np.unique(pixel_codes[~found]).tolist()]
    return order[slot].astype(np.uint8), unknown


def fix_label_files(report: AuditReport) -> list[str]:
    """Rewrite fixable labels in place after backing them up to `SegmentationClass.bak/`.

    0/255 binary masks become 0/1; RGB/RGBA labels in exact VOC colours become palette
    indices. Returns one line per action; labels with other colours are left untouched.
    """
    backup_dir = report.label_folder.with_name(report.label_folder.name + ".bak")
    messages = []
    for path in report.binary_labels:
        label = read_label(path)
        _backup(path, backup_dir)
        save_label(np.where(label == IGNORE_VALUE, 1, label), path)
    if report.binary_labels:
        messages.append(f"Rewrote {len(report.binary_labels)} 0/255 labels as 0/1 "
                        f"(originals in {backup_dir}).")
    converted, unfixable = 0, []
    for path in report.colour_labels:
        indices, unknown = colour_to_index(np.asarray(read_image(path).convert("RGB")))
        if unknown:
            shown = ", ".join(str(c) for c in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            unfixable.append(f"{path.name} (colours {shown}{more})")
            continue
        _backup(path, backup_dir)
        save_label(indices, path)
        converted += 1
    if converted:
        messages.append(f"Converted {converted} VOC-colour labels to class indices "
                        f"(originals in {backup_dir}).")
    if unfixable:
        messages.append(f"Left {len(unfixable)} colour labels unchanged, they use colours outside "
                        f"the VOC palette: {name_files(unfixable)}. Convert them yourself.")
    return messages
