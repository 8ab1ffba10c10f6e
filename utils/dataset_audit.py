"""Checks a dataset for the traps that make training learn silent garbage; changes nothing.

Shared by voc_annotation.py (the whole folder) and train.py (its split ids). Each trap gets a
plain-language verdict; fatal ones name the files and say how to fix them.
"""

import functools
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.dataset import (
    IGNORE_VALUE,
    MAX_NAMED,
    MEDICAL_THRESHOLD,
    DatasetError,
    VOCLayout,
    as_layout,
    check_same_size,
    name_files,
)
from utils.utils import IMAGE_EXTENSIONS, ImageReadError, read_image

FORMAT_HELP = (
    "JPEGImages中的图片应当为.jpg文件、SegmentationClass中的图片应当为.png文件。"
    " (images go in JPEGImages as .jpg, labels in SegmentationClass as .png)\n"
    "如果格式有误，参考: (if the format is wrong, see:)\n"
    "https://github.com/bubbliiiing/segmentation-format-fix"
)


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
    foreground_share: float | None = None  # medical layout: share of class-1 (dark) pixels

    def print_table(self) -> None:
        """Pixel values and their counts, in the original's table format."""
        print("打印像素点的值与数量。 (pixel values and their counts)")
        print("-" * 37)
        print("| %15s | %15s |" % ("Key", "Value"))
        print("-" * 37)
        for value, count in sorted(self.value_counts.items()):
            print("| %15s | %15s |" % (str(value), str(count)))
            print("-" * 37)

    def print_verdicts(self) -> None:
        """One line per passed check and per warning; fatal findings are raised instead."""
        for message in self.passed:
            print(f"[ok]      {message}")
        for message in self.warnings:
            print(f"[warning] {message}")

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


def _check_item(layout: VOCLayout, item: _Item) -> _Item:
    try:
        label_image = read_image(item.label_path)
        label_size = label_image.size
        try:
            label = layout.label_values(label_image, item.label_path)
            item.counts = np.bincount(label.ravel(), minlength=256)
        except DatasetError:
            if label_image.mode not in ("RGB", "RGBA"):
                raise
            item.colour = True
        if item.image_path is not None:
            image_size = read_image(item.image_path).size
            try:
                check_same_size(item.image_path, image_size, item.label_path, label_size)
            except DatasetError as error:
                item.size_mismatch = str(error)
    except (ImageReadError, DatasetError) as error:
        item.error = str(error)
    return item


def _joined(messages: list[str]) -> str:
    """At most MAX_NAMED messages joined by |, then how many more there are."""
    more = f" | and {len(messages) - MAX_NAMED} more" if len(messages) > MAX_NAMED else ""
    return " | ".join(messages[:MAX_NAMED]) + more


def _dataset_items(layout: VOCLayout, ids: Iterable[str] | None):
    """Items to check plus the names of labels/images that have no partner."""
    labels, images = layout.label_dir, layout.image_dir
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        items = [_Item(i, layout.find_image(i), layout.label_path(i)) for i in ids]
        missing_labels = [str(item.label_path) for item in items if not item.label_path.is_file()]
        items = [item for item in items if item.label_path.is_file()]
        return items, missing_labels, [], []

    label_files = sorted(labels.glob("*.png")) if labels.is_dir() else []
    other_labels = sorted(p.name for p in labels.iterdir()
                          if p.suffix.lower() in IMAGE_EXTENSIONS and p.suffix != ".png"
                          ) if labels.is_dir() else []
    image_files: dict[str, Path] = {}
    if images.is_dir():
        preference = {ext: rank for rank, ext in enumerate(layout.image_extensions)}
        for path in sorted(images.iterdir(), key=lambda p: preference.get(p.suffix.lower(), 99)):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                image_files.setdefault(path.stem, path)
    items = [_Item(p.stem, image_files.get(p.stem), p) for p in label_files]
    stems = {p.stem for p in label_files}
    unlabelled = sorted(path.name for stem, path in image_files.items() if stem not in stems)
    return items, [], unlabelled, other_labels


def audit_dataset(
    dataset: str | Path | VOCLayout,
    num_classes: int | None = None,
    ids: Iterable[str] | None = None,
    *,
    progress: bool = True,
) -> AuditReport:
    """Read every label (and its image) once and report each trap; modifies nothing.

    `ids=None` checks the whole label folder; otherwise only those ids.
    """
    layout = as_layout(dataset)
    report = AuditReport(label_folder=layout.label_dir)
    items, missing_labels, unlabelled, other_labels = _dataset_items(layout, ids)
    report.num_labels = len(items)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(tqdm(pool.map(functools.partial(_check_item, layout), items),
                            total=len(items), disable=not progress, desc="Checking labels",
                            unit="label"))
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
        fatal.append(f"No .png labels found in {layout.label_dir}.{hint}")
        return report
    if other_labels:
        warnings.append(f"{len(other_labels)} files in {layout.label_dir} are not .png and "
                        f"are ignored: {name_files(other_labels)}. Labels must be PNG.")

    # Readability and pairing.
    unreadable = [item.error for item in results if item.error]
    if unreadable:
        fatal.append(f"{len(unreadable)} files cannot be read; replace or remove them "
                     f"(and their partner): {_joined(unreadable)}")
    else:
        passed.append(f"All {len(items)} labels and their images can be read.")
    no_image = [item.image_id for item in results if item.image_path is None]
    if no_image or missing_labels:
        if no_image:
            fatal.append(f"{len(no_image)} labels have no image in {layout.image_dir} "
                         f"(looked for {'/'.join(layout.image_extensions)}): "
                         f"{name_files(no_image)}. Add the images or remove these labels.")
        if missing_labels:
            fatal.append(f"{len(missing_labels)} ids in the split have no label: "
                         f"{name_files(missing_labels)}. "
                         f"Add the labels or rerun {layout.annotation_script}.")
    else:
        passed.append("Every label has its image.")
    if unlabelled:
        warnings.append(f"{len(unlabelled)} images have no label and are not used: "
                        f"{name_files(unlabelled)} "
                        "(fine if they are detection-only or test images).")

    # Label format.
    report.colour_labels = [item.label_path for item in results if item.colour]
    colour_names = name_files(p.name for p in report.colour_labels)
    if report.colour_labels and layout.kind == "medical":
        fatal.append(f"{len(report.colour_labels)} masks are colour images: {colour_names}. "
                     "Save masks as greyscale (L) PNGs, dark (0) on the target, white (255) "
                     "elsewhere.")
    elif report.colour_labels:
        fatal.append(f"{len(report.colour_labels)} labels are RGB/RGBA colour images, not class "
                     f"indices: {colour_names}. Save labels as single-channel L or P PNGs; "
                     "`python voc_annotation.py --fix_labels True` converts exact VOC-palette "
                     "colours.")
    else:
        passed.append("Labels are single-channel images.")

    sizes = [item.size_mismatch for item in results if item.size_mismatch]
    if sizes:
        fatal.append(f"{len(sizes)} labels differ in size from their image: {_joined(sizes)}")
    else:
        passed.append("Every label has the same size as its image.")

    if layout.kind == "medical":
        _check_mask_values(report, results, counts, num_classes)
    else:
        _check_values(report, results, counts, num_classes)
    return report


def _check_mask_values(report: AuditReport, results: list[_Item], counts: np.ndarray,
                       num_classes: int | None) -> None:
    """Verdicts on 0/255 masks, where a value <= 127.5 (dark) is class 1, the rest class 0."""
    fatal, warnings, passed = report.fatal, report.warnings, report.passed
    total = int(counts.sum())
    if not total:
        return
    first_light = int(MEDICAL_THRESHOLD) + 1  # values below it are class 1
    dark = int(counts[:first_light].sum())
    report.foreground_share = dark / total
    if set(report.value_counts) == {0, 1}:
        fatal.append("The masks hold only the values 0 and 1: class indices, not the 0/255 "
                     "masks this layout expects, so every pixel would be class 1. Save the "
                     "masks with the target 0 (dark) and the rest 255, or put class-index "
                     "labels in the VOC layout (VOC2007/SegmentationClass).")
        return
    grey_dark = int(counts[1:first_light].sum())
    grey_light = int(counts[first_light:255].sum())
    if grey_dark or grey_light:
        files = [item.label_path.name for item in results
                 if item.counts is not None and item.counts[1:255].any()]
        warnings.append(
            f"{grey_dark + grey_light} pixels ({(grey_dark + grey_light) / total:.2%}) in "
            f"{len(files)} masks have grey values other than 0 and 255: {name_files(files)}. "
            f"The rule 'value <= 127.5 is class 1' made {grey_dark} of them class 1 and "
            f"{grey_light} class 0. Masks resized with interpolation or saved as JPEG get such "
            "values; check that the thresholded masks are what you meant.")
    else:
        passed.append("Labels are 0/255 masks, as this layout expects: dark (0) pixels are "
                      "class 1 (the target), white (255) pixels class 0.")
    if dark == 0:
        fatal.append("No mask has a dark pixel (value <= 127): class 1, the target, never "
                     "occurs and there is nothing to learn. In this layout the target is drawn "
                     "dark (0) on white (255); invert masks drawn the other way round.")
        return
    if dark == total:
        fatal.append("Every mask pixel is dark (value <= 127), so every pixel is class 1 and "
                     "class 0 never occurs. Draw the target dark (0) and the rest white (255).")
        return
    if report.foreground_share > 0.5:
        warnings.append(
            f"{report.foreground_share:.1%} of the mask pixels are dark (class 1, the target). "
            "In this layout the target is drawn dark on white and is usually the smaller part "
            "(membranes are about 22% of EM slices). If your masks draw the target white on "
            "black, invert them, or the model learns the background as the target.")
    else:
        passed.append(f"{report.foreground_share:.1%} of the mask pixels are class 1 (dark).")
    empty = [item.label_path.name for item in results
             if item.counts is not None and not item.counts[:first_light].any()]
    if empty:
        warnings.append(f"{len(empty)} masks have no dark (class 1) pixel: {name_files(empty)} "
                        "(fine if these images have no target).")
    if num_classes is not None and num_classes != 2:
        warnings.append(f"num_classes = {num_classes}, but masks of this layout have two "
                        "classes (0 and 1); use num_classes = 2.")


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
