"""Segmentation metrics from an int64 confusion matrix, plus the files get_miou.py writes.

Per-class scores are NaN where their denominator is zero (fix of SPEC D6): a class absent from
both ground truth and prediction has IoU NaN, a class absent from the ground truth has Recall
NaN, a class never predicted has Precision NaN. Means are `nanmean`s, so such classes are left
out instead of counting as 0; plots, the CSV and metrics.json show them as n/a / null.
"""

import csv
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from tqdm import tqdm

from utils.dataloader import resolve_files
from utils.dataset_audit import DatasetError, find_image, image_dir
from utils.utils import read_image


def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Confusion matrix (rows ground truth, columns prediction); GT values >= n are ignored."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    keep = (a >= 0) & (a < n)
    index = n * a[keep].astype(np.int64) + b[keep].astype(np.int64)
    return np.bincount(index, minlength=n**2).reshape(n, n).astype(np.int64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def per_class_iu(hist: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN); NaN for a class in neither ground truth nor prediction."""
    diag = np.diag(hist)
    return _ratio(diag, hist.sum(1) + hist.sum(0) - diag)


def per_class_PA_Recall(hist: np.ndarray) -> np.ndarray:
    """Recall (the original's PA) = TP / GT pixels; NaN for a class absent from the GT."""
    return _ratio(np.diag(hist), hist.sum(1))


def per_class_Precision(hist: np.ndarray) -> np.ndarray:
    """Precision = TP / predicted pixels; NaN for a class never predicted."""
    return _ratio(np.diag(hist), hist.sum(0))


def per_Accuracy(hist: np.ndarray) -> float:
    """Pixel accuracy over all non-ignored pixels; NaN when there are none."""
    return float(_ratio(np.diag(hist).sum(), hist.sum()))


def nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def _percent(value: float) -> str:
    return "n/a" if np.isnan(value) else str(round(float(value) * 100, 2))


def _read_label(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found.")
    array = np.asarray(read_image(path))
    if array.ndim != 2:
        raise ValueError(
            f"{path}: {what} has shape {array.shape}; it must be a single-channel (L or P) PNG "
            "whose pixel values are class indices."
        )
    return array


def compute_mIoU(
    gt_dir: str | Path,
    pred_dir: str | Path,
    png_name_list: Sequence[str],
    num_classes: int,
    name_classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Accumulate the confusion matrix of `<pred_dir>/<id>.png` against `<gt_dir>/<id>.png`.

    Returns (hist, IoUs, PA_Recall, Precision) and prints the original's summary lines.
    """
    print("Num classes", num_classes)
    hist = np.zeros((num_classes, num_classes), np.int64)
    for ind, name in enumerate(png_name_list):
        gt_path, pred_path = Path(gt_dir) / f"{name}.png", Path(pred_dir) / f"{name}.png"
        label = _read_label(gt_path, "label")
        pred = _read_label(pred_path, "detection result (run get_miou.py with miou_mode 0 or 1)")
        if label.shape != pred.shape:
            raise ValueError(
                f"{gt_path} is {label.shape[1]}x{label.shape[0]} but its prediction {pred_path} "
                f"is {pred.shape[1]}x{pred.shape[0]}: the label must have its image's size."
            )
        if pred.max() >= num_classes:
            raise ValueError(
                f"{pred_path} holds class {pred.max()} but num_classes is {num_classes}; "
                "predict again with the right num_classes."
            )
        hist += fast_hist(label, pred, num_classes)
        if name_classes is not None and ind > 0 and ind % 10 == 0:
            miou, mpa = nanmean(per_class_iu(hist)), nanmean(per_class_PA_Recall(hist))
            print(f"{ind:d} / {len(png_name_list):d}: mIou-{100 * miou:0.2f}%; "
                  f"mPA-{100 * mpa:0.2f}%; Accuracy-{100 * per_Accuracy(hist):0.2f}%")
    IoUs, PA_Recall, Precision = (
        per_class_iu(hist), per_class_PA_Recall(hist), per_class_Precision(hist)
    )
    if name_classes is not None:
        for i in range(num_classes):
            print(
                "===>" + name_classes[i] + ":\tIou-" + _percent(IoUs[i])
                + "; Recall (equal to the PA)-" + _percent(PA_Recall[i])
                + "; Precision-" + _percent(Precision[i])
            )
    print(
        "===> mIoU: " + _percent(nanmean(IoUs)) + "; mPA: " + _percent(nanmean(PA_Recall))
        + "; Accuracy: " + _percent(per_Accuracy(hist))
    )
    return hist, IoUs, PA_Recall, Precision


def summarize(
    hist: np.ndarray,
    IoUs: np.ndarray,
    PA_Recall: np.ndarray,
    Precision: np.ndarray,
    name_classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The results as fractions (None for n/a): mIoU, mPA, accuracy, per_class, hist."""

    def value(v: float) -> float | None:
        return None if np.isnan(v) else float(v)

    names = _names(name_classes, len(hist))
    per_class = [
        {"name": name, "IoU": value(i), "Recall": value(r), "Precision": value(p)}
        for name, i, r, p in zip(names, IoUs, PA_Recall, Precision, strict=True)
    ]
    return {
        "mIoU": value(nanmean(IoUs)),
        "mPA": value(nanmean(PA_Recall)),
        "accuracy": value(per_Accuracy(hist)),
        "present_classes": [n for n, iou in zip(names, IoUs, strict=True) if not np.isnan(iou)],
        "per_class": per_class,
        "hist": hist,
    }


def _names(name_classes: Sequence[str] | None, num_classes: int) -> list[str]:
    return [str(n) for n in name_classes] if name_classes else [str(i) for i in range(num_classes)]


def draw_plot_func(
    values: np.ndarray,
    name_classes: Sequence[str],
    plot_title: str,
    x_label: str,
    output_path: str | Path,
    tick_font_size: int = 12,
) -> None:
    """Horizontal royal-blue bars with value labels, saved to a file (never shown, D16)."""
    values = np.asarray(values, np.float64)
    fig = Figure(figsize=(6.4, max(4.8, 0.3 * len(values) + 1.5)))
    ax = fig.add_subplot()
    ax.barh(range(len(values)), np.nan_to_num(values), color="royalblue")
    ax.set_title(plot_title, fontsize=tick_font_size + 2)
    ax.set_xlabel(x_label, fontsize=tick_font_size)
    ax.set_yticks(range(len(values)), list(name_classes), fontsize=tick_font_size)
    for i, val in enumerate(values):
        text = " n/a" if np.isnan(val) else (f" {val:.2f}" if val < 1.0 else f" {val}")
        ax.text(0 if np.isnan(val) else val, i, text, color="royalblue", va="center",
                fontweight="bold")
    ax.set_xlim(0, max(1.0, np.nanmax(values, initial=0)) * 1.15)
    fig.tight_layout()
    fig.savefig(output_path)


def show_results(
    miou_out_path: str | Path,
    hist: np.ndarray,
    IoUs: np.ndarray,
    PA_Recall: np.ndarray,
    Precision: np.ndarray,
    name_classes: Sequence[str] | None,
    tick_font_size: int = 12,
) -> dict[str, Any]:
    """Write mIoU/mPA/Recall/Precision plots, confusion_matrix.csv and metrics.json."""
    out = Path(miou_out_path)
    out.mkdir(parents=True, exist_ok=True)
    names = _names(name_classes, len(hist))
    plots = [
        ("mIoU", IoUs, "mIoU = {:.2f}%", "Intersection over Union"),
        ("mPA", PA_Recall, "mPA = {:.2f}%", "Pixel Accuracy"),
        ("Recall", PA_Recall, "mRecall = {:.2f}%", "Recall"),
        ("Precision", Precision, "mPrecision = {:.2f}%", "Precision"),
    ]
    for stem, values, title, x_label in plots:
        path = out / f"{stem}.png"
        draw_plot_func(values, names, title.format(nanmean(values) * 100), x_label, path,
                       tick_font_size)
        print(f"Save {stem} out to {path}")

    path = out / "confusion_matrix.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([" "] + names)
        writer.writerows([name] + [str(x) for x in row] for name, row in zip(names, hist,
                                                                             strict=True))
    print(f"Save confusion_matrix out to {path}")

    summary = summarize(hist, IoUs, PA_Recall, Precision, names)
    path = out / "metrics.json"
    path.write_text(json.dumps({k: v for k, v in summary.items() if k != "hist"}, indent=2))
    print(f"Save metrics out to {path}")
    return summary


def _image_file(dataset_path: str | Path, image_id: str) -> Path:
    path = find_image(dataset_path, image_id)
    if path is None:
        raise DatasetError(f"{image_dir(dataset_path) / image_id}.jpg: image not found (nor "
                           ".png/.bmp/.tif); add it or remove the id from the split file.")
    return path


def check_labels(dataset_path: str | Path, ids: Sequence[str]) -> None:
    """Before predicting: each id has an image and a label of the same size (both named)."""
    for image_path, label_path in resolve_files(dataset_path, ids):
        with Image.open(image_path) as image, Image.open(label_path) as label:
            if image.size != label.size:
                raise DatasetError(
                    f"{label_path}: label is {label.size[0]}x{label.size[1]} but its image "
                    f"{image_path} is {image.size[0]}x{image.size[1]}; they must match."
                )


def predict_split(
    predictor: Any,
    dataset_path: str | Path,
    ids: Sequence[str],
    out_dir: str | Path,
    batch_size: int = 4,
    progress: bool = True,
) -> Path:
    """Write `<out_dir>/detection-results/<id>.png` (class indices) for each id; returns the dir."""
    pred_dir = Path(out_dir) / "detection-results"
    pred_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(ids), disable=not progress, desc="Predict") as bar:
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            images = [read_image(_image_file(dataset_path, i)) for i in batch]
            for image_id, png in zip(batch, predictor.get_miou_pngs(images), strict=True):
                png.save(pred_dir / f"{image_id}.png")
            bar.update(len(batch))
    return pred_dir


def evaluate_split(
    predictor: Any,
    dataset_path: str | Path,
    ids: Sequence[str],
    out_dir: str | Path,
    num_classes: int,
    name_classes: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every id, then score against the labels: what get_miou.py and training share."""
    check_labels(dataset_path, ids)
    pred_dir = predict_split(predictor, dataset_path, ids, out_dir, batch_size, progress)
    gt_dir = Path(dataset_path) / "VOC2007" / "SegmentationClass"
    results = compute_mIoU(gt_dir, pred_dir, ids, num_classes, name_classes)
    return summarize(*results, name_classes)
