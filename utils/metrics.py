"""Segmentation metrics from an int64 confusion matrix (rows ground truth, columns prediction).

Per-class scores are NaN where their denominator is zero: a class absent from both ground truth
and prediction has IoU NaN, a class absent from the ground truth has Recall NaN, a class never
predicted has Precision NaN. Means are `nanmean`s, so such classes are left out instead of
counting as 0 and dragging the mean down.
"""

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


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


def per_class_Dice(hist: np.ndarray) -> np.ndarray:
    """Dice = F1 = 2 TP / (2 TP + FP + FN), the medical papers' overlap score; NaN for a class
    in neither ground truth nor prediction."""
    return _ratio(2 * np.diag(hist), hist.sum(1) + hist.sum(0))


def per_Accuracy(hist: np.ndarray) -> float:
    """Pixel accuracy over all non-ignored pixels; NaN when there are none."""
    return float(_ratio(np.diag(hist).sum(), hist.sum()))


def nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def summarize(
    hist: np.ndarray,
    IoUs: np.ndarray,
    PA_Recall: np.ndarray,
    Precision: np.ndarray,
    name_classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The results as fractions (None for n/a): mIoU, mPA, mDice, accuracy, per_class, hist."""

    def value(v: float) -> float | None:
        return None if np.isnan(v) else float(v)

    names = class_names(name_classes, len(hist))
    dice = per_class_Dice(hist)
    per_class = [
        {"name": name, "IoU": value(i), "Recall": value(r), "Precision": value(p),
         "Dice": value(d)}
        for name, i, r, p, d in zip(names, IoUs, PA_Recall, Precision, dice, strict=True)
    ]
    return {
        "mIoU": value(nanmean(IoUs)),
        "mPA": value(nanmean(PA_Recall)),
        "mDice": value(nanmean(dice)),
        "accuracy": value(per_Accuracy(hist)),
        "present_classes": [n for n, iou in zip(names, IoUs, strict=True) if not np.isnan(iou)],
        "per_class": per_class,
        "hist": hist,
    }


def class_names(name_classes: Sequence[str] | None, num_classes: int) -> list[str]:
    """The given names, or the class indices as text when there are none."""
    return [str(n) for n in name_classes] if name_classes else [str(i) for i in range(num_classes)]


def per_class_scores(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IoU, Recall, Precision) per class."""
    return per_class_iu(hist), per_class_PA_Recall(hist), per_class_Precision(hist)


