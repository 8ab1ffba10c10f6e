"""Scoring a model on a split: predict every image, then compare with the labels, file by file.

get_miou.py and training's mIoU evaluation run the same `evaluate_split`, so the figure in
epoch_miou.txt is the one get_miou.py reports for the same weights.
"""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.dataset import VOCLayout, as_layout
from utils.errors import MissingFileError, UserError
from utils.metrics import (
    fast_hist,
    nanmean,
    per_Accuracy,
    per_class_iu,
    per_class_PA_Recall,
    per_class_scores,
    summarize,
)
from utils.metrics_report import print_class_results, show_results
from utils.predictor import Predictor
from utils.utils import read_image


class ClassMapError(UserError, ValueError):
    """A label or prediction that is not a map of class indices of the expected size."""


class EvaluationError(UserError, ValueError):
    """Not one image of the split could be scored."""


def read_class_map(path: Path, what: str) -> np.ndarray:
    """A single-channel PNG of class indices; names the file and what it should be."""
    if not path.is_file():
        raise MissingFileError(f"{path}: {what} not found.")
    array = np.asarray(read_image(path))
    if array.ndim != 2:
        raise ClassMapError(
            f"{path}: {what} has shape {array.shape}; it must be a single-channel (L or P) PNG "
            "whose pixel values are class indices."
        )
    return array


def _class_maps(gt_path: Path, pred_path: Path, num_classes: int,
                layout: VOCLayout | None) -> tuple[np.ndarray, np.ndarray]:
    """A label (its classes by the layout's rule) and its prediction, or an error naming the
    file that cannot be scored."""
    if layout is None:
        label = read_class_map(gt_path, "label")
    elif not gt_path.is_file():
        raise MissingFileError(f"{gt_path}: label not found.")
    else:
        label = layout.read_label(gt_path)
    pred = read_class_map(pred_path, "detection result (run get_miou.py with miou_mode 0 or 1)")
    if label.shape != pred.shape:
        raise ClassMapError(
            f"{gt_path} is {label.shape[1]}x{label.shape[0]} but its prediction {pred_path} "
            f"is {pred.shape[1]}x{pred.shape[0]}: the label must have its image's size."
        )
    if pred.max() >= num_classes:
        raise ClassMapError(
            f"{pred_path} holds class {pred.max()} but num_classes is {num_classes}; "
            "predict again with the right num_classes."
        )
    return label, pred


def score_split(gt_dir: str | Path | VOCLayout, pred_dir: str | Path, ids: Sequence[str],
                num_classes: int, name_classes: Sequence[str] | None = None,
                ) -> tuple[np.ndarray, list[dict]]:
    """The confusion matrix of `<pred_dir>/<id>.png` against the labels (`<gt_dir>/<id>.png`,
    or a layout's labels read by its class rule), and the ids skipped (with the reason) because
    a file was missing, unreadable or of another size, as the original's `Skipping:` lines did.
    Nothing scored at all is an error."""
    layout = gt_dir if isinstance(gt_dir, VOCLayout) else None
    gt_dir = layout.label_dir if layout else gt_dir
    print("Num classes", num_classes)
    hist = np.zeros((num_classes, num_classes), np.int64)
    skipped = []
    for ind, name in enumerate(ids):
        try:
            label, pred = _class_maps(Path(gt_dir) / f"{name}.png", Path(pred_dir) / f"{name}.png",
                                      num_classes, layout)
        except (UserError, OSError) as error:
            print(f"Skipping: {error}")
            skipped.append({"id": name, "reason": str(error)})
            continue
        hist += fast_hist(label, pred, num_classes)
        if name_classes is not None and ind > 0 and ind % 10 == 0:
            miou, mpa = nanmean(per_class_iu(hist)), nanmean(per_class_PA_Recall(hist))
            print(f"{ind:d} / {len(ids):d}: mIou-{100 * miou:0.2f}%; "
                  f"mPA-{100 * mpa:0.2f}%; Accuracy-{100 * per_Accuracy(hist):0.2f}%")
    if len(skipped) == len(ids):
        reasons = " | ".join(item["reason"] for item in skipped[:3])
        raise EvaluationError(f"none of the {len(ids)} images could be scored: {reasons}")
    print_class_results(hist, name_classes)
    return hist, skipped


def compute_mIoU(
    gt_dir: str | Path,
    pred_dir: str | Path,
    png_name_list: Sequence[str],
    num_classes: int,
    name_classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The original's call: (hist, IoUs, PA_Recall, Precision) of the predictions in pred_dir;
    unscorable files are skipped with a message."""
    hist, _ = score_split(gt_dir, pred_dir, png_name_list, num_classes, name_classes)
    return (hist, *per_class_scores(hist))


def predict_split(
    predictor: Predictor,
    dataset: str | Path | VOCLayout,
    ids: Sequence[str],
    out_dir: str | Path,
    batch_size: int = 4,
    *,
    progress: bool = True,
) -> tuple[Path, list[dict]]:
    """Write `<out_dir>/detection-results/<id>.png` (class indices) for each id whose image can
    be read; returns the folder and the ids skipped, with the reason."""
    layout = as_layout(dataset)
    pred_dir = Path(out_dir) / "detection-results"
    pred_dir.mkdir(parents=True, exist_ok=True)
    skipped = []
    with tqdm(total=len(ids), disable=not progress, desc="Predict") as bar:
        for start in range(0, len(ids), batch_size):
            batch, images = [], []
            for image_id in ids[start : start + batch_size]:
                try:
                    images.append(read_image(layout.image_path(image_id)))
                    batch.append(image_id)
                except UserError as error:
                    print(f"Skipping: {error}")
                    skipped.append({"id": image_id, "reason": str(error)})
            for image_id, png in zip(batch, predictor.get_miou_pngs(images) if images else [],
                                     strict=True):
                png.save(pred_dir / f"{image_id}.png")
            bar.update(len(ids[start : start + batch_size]))
    return pred_dir, skipped


def evaluate_split(
    predictor: Predictor,
    dataset: str | Path | VOCLayout,
    ids: Sequence[str],
    out_dir: str | Path,
    num_classes: int,
    name_classes: Sequence[str] | None = None,
    batch_size: int = 4,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every id, then score against the labels: what get_miou.py and training share.
    The summary lists under `skipped` the ids whose image, label or prediction did not fit."""
    layout = as_layout(dataset)
    pred_dir, skipped = predict_split(predictor, layout, ids, out_dir, batch_size,
                                      progress=progress)
    predicted = [i for i in ids if i not in {item["id"] for item in skipped}]
    hist, unscored = score_split(layout, pred_dir, predicted, num_classes, name_classes)
    return {**summarize(hist, *per_class_scores(hist), name_classes),
            "skipped": skipped + unscored}


def print_speed(seconds: float, num_images: int) -> None:
    """Wall time per image, file reading and writing included: compare models with it."""
    print(f"{num_images} images in {seconds:.1f} s "
          f"({seconds / max(num_images, 1) * 1000:.0f} ms per image).")


def run_get_miou(cfg: Any) -> dict[str, Any] | None:
    """get_miou.py: miou_mode 0 predicts the val split and scores it, 1 only predicts, 2 only
    scores the predictions already in miou_out_path; returns the scores (None for mode 1)."""
    from utils.onnx_export import onnx_forward
    from utils.run_info import describe_run
    from utils.settings import check_settings

    check_settings(cfg)
    layout = as_layout(cfg.VOCdevkit_path)
    ids = layout.read_split("val")
    if not ids:
        raise EvaluationError(f"{layout.split_file('val')} is empty: there is nothing to score. "
                              "Keep some images for validation, e.g. "
                              f"`python {layout.annotation_script} --train_percent 0.9`.")
    if cfg.miou_mode in (0, 1):
        print("Load model.")
        settings = Predictor.settings_of(cfg)
        forward = onnx_forward(cfg.onnx_path, cfg.input_shape) if cfg.onnx_path else None
        predictor = Predictor(forward=forward, **settings)
        print("Load model done.")
        print("Get predict result.")
        start = time.perf_counter()
    if cfg.miou_mode == 1:
        predict_split(predictor, layout, ids, cfg.miou_out_path)
        print("Get predict result done.")
        print_speed(time.perf_counter() - start, len(ids))
        return None
    if cfg.miou_mode == 0:
        summary = evaluate_split(predictor, layout, ids, cfg.miou_out_path, cfg.num_classes,
                                 cfg.name_classes)
        hist, skipped = summary["hist"], summary["skipped"]
        print_speed(time.perf_counter() - start, len(ids))
    else:
        print("Get miou.")
        pred_dir = Path(cfg.miou_out_path) / "detection-results"
        hist, skipped = score_split(layout, pred_dir, ids, cfg.num_classes, cfg.name_classes)
    print("Get miou done.")
    run = describe_run(cfg, num_images=len(ids), num_scored=len(ids) - len(skipped))
    return show_results(cfg.miou_out_path, hist, *per_class_scores(hist), cfg.name_classes,
                        run=run, skipped=skipped)
