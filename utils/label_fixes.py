"""Repairs of the two fixable label traps the audit finds, each file backed up first.

0/255 binary masks become 0/1; RGB/RGBA labels drawn in exact VOC colours become the palette
indices of those colours. Originals go to `SegmentationClass.bak/` next to the label folder.
"""

import shutil
from pathlib import Path

import numpy as np

from utils.dataset import IGNORE_VALUE, name_files, read_label, save_label, voc_palette
from utils.dataset_audit import AuditReport
from utils.utils import read_image


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
