"""What get_miou.py reports: the per-class lines it prints, its plots, CSV and metrics.json.

Classes with an undefined score (NaN) are shown as n/a in the text and plots and as null in
metrics.json.
"""

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from utils.metrics import (
    class_names,
    nanmean,
    per_Accuracy,
    per_class_Dice,
    per_class_scores,
    summarize,
)


def percent(value: float) -> str:
    return "n/a" if np.isnan(value) else str(round(float(value) * 100, 2))


def print_class_results(hist: np.ndarray, name_classes: Sequence[str] | None) -> None:
    """The original's closing lines: one per class when names are given, then the means."""
    IoUs, PA_Recall, Precision = per_class_scores(hist)
    dice = per_class_Dice(hist)
    if name_classes is not None:
        for i, name in enumerate(name_classes):
            print("===>" + name + ":\tIou-" + percent(IoUs[i]) + "; Recall (equal to the PA)-"
                  + percent(PA_Recall[i]) + "; Precision-" + percent(Precision[i])
                  + "; Dice-" + percent(dice[i]))
    print("===> mIoU: " + percent(nanmean(IoUs)) + "; mPA: " + percent(nanmean(PA_Recall))
          + "; Accuracy: " + percent(per_Accuracy(hist)) + "; mDice: " + percent(nanmean(dice)))


def draw_plot_func(
    values: np.ndarray,
    name_classes: Sequence[str],
    plot_title: str,
    x_label: str,
    output_path: str | Path,
    tick_font_size: int = 12,
) -> None:
    """Horizontal royal-blue bars with value labels, saved to a file (never shown: a window
    would block a headless run)."""
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
    *,
    run: dict[str, Any] | None = None,
    skipped: Sequence[dict] = (),
) -> dict[str, Any]:
    """Write mIoU/mPA/Recall/Precision plots, confusion_matrix.csv and metrics.json; `run`
    (settings, versions, commit) heads metrics.json and `skipped` lists the ids left out."""
    out = Path(miou_out_path)
    out.mkdir(parents=True, exist_ok=True)
    names = class_names(name_classes, len(hist))
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

    summary = {**summarize(hist, IoUs, PA_Recall, Precision, names), "skipped": list(skipped)}
    path = out / "metrics.json"
    written = {**({"run": run} if run else {}),
               **{k: v for k, v in summary.items() if k != "hist"}}
    path.write_text(json.dumps(written, indent=2))
    print(f"Save metrics out to {path}")
    return summary
