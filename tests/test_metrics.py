"""Metrics on hand-counted confusion matrices, the files show_results writes, evaluate_split."""

import csv
import json
import re

import numpy as np
import pytest
from conftest import write_voc_item
from PIL import Image

from utils.evaluation import EvaluationError, compute_mIoU, evaluate_split, score_split
from utils.metrics import (
    fast_hist,
    per_Accuracy,
    per_class_Dice,
    per_class_iu,
    per_class_PA_Recall,
    per_class_Precision,
)
from utils.metrics_report import show_results
from utils.predictor import Predictor

# 4 classes; 255 is ignored; class 3 is absent from both GT and prediction (the prediction of
# 3 falls on an ignored pixel).
GT = np.array([[0, 0, 0, 1], [1, 2, 255, 255]], np.uint8)
PRED = np.array([[0, 0, 1, 1], [2, 2, 0, 3]], np.uint8)
# rows GT, columns prediction
HIST = np.array([[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
NAMES = ["background", "cat", "dog", "bird"]


def test_fast_hist_ignores_gt_outside_the_classes():
    hist = fast_hist(GT, PRED, 4)
    assert hist.dtype == np.int64
    assert np.array_equal(hist, HIST)


def test_per_class_metrics_by_hand():
    iou, recall = per_class_iu(HIST), per_class_PA_Recall(HIST)
    precision = per_class_Precision(HIST)
    np.testing.assert_allclose(iou[:3], [2 / 3, 1 / 3, 1 / 2])
    np.testing.assert_allclose(recall[:3], [2 / 3, 1 / 2, 1])
    np.testing.assert_allclose(precision[:3], [1, 1 / 2, 1 / 2])
    assert np.isnan(iou[3]) and np.isnan(recall[3]) and np.isnan(precision[3])  # n/a, not 0
    assert per_Accuracy(HIST) == pytest.approx(4 / 6)


def test_dice_is_f1_by_hand():
    dice = per_class_Dice(HIST)
    # background TP 2, FP 0, FN 1; cat TP 1, FP 1, FN 1; dog TP 1, FP 1, FN 0
    np.testing.assert_allclose(dice[:3], [4 / 5, 2 / 4, 2 / 3])
    precision, recall = per_class_Precision(HIST)[:3], per_class_PA_Recall(HIST)[:3]
    np.testing.assert_allclose(dice[:3], 2 * precision * recall / (precision + recall))
    assert np.isnan(dice[3])


def test_class_predicted_but_absent_from_gt():
    hist = fast_hist(np.array([0, 0]), np.array([0, 3]), 4)
    assert per_class_iu(hist)[3] == 0  # a false positive is a real 0, not n/a
    assert per_class_Precision(hist)[3] == 0
    assert np.isnan(per_class_PA_Recall(hist)[3])


def write_pngs(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / f"{name}.png")


def test_compute_miou_and_show_results(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_pngs(gt, {"a": GT, "b": GT})
    write_pngs(pred, {"a": PRED, "b": GT.clip(0, 2)})  # b: perfect on the valid pixels
    hist, iou, recall, precision = compute_mIoU(gt, pred, ["a", "b"], 4, NAMES)
    assert np.array_equal(hist, HIST + np.diag([3, 2, 1, 0]))
    out = capsys.readouterr().out
    assert "Num classes 4" in out
    # b adds 3/2/1 correct pixels: IoU background 5/6, cat 3/5, dog 2/3
    assert "===>background:\tIou-83.33; Recall (equal to the PA)-83.33; Precision-100.0" in out
    assert "===>bird:\tIou-n/a; Recall (equal to the PA)-n/a; Precision-n/a" in out
    miou = (5 / 6 + 3 / 5 + 2 / 3) / 3  # bird left out of the mean
    assert f"===> mIoU: {round(miou * 100, 2)}; mPA: " in out
    assert f"Accuracy: {round(10 / 12 * 100, 2)}" in out
    # Dice = 2 TP / (GT + predicted): background 10/11, cat 6/8, dog 4/5
    assert "Precision-100.0; Dice-90.91" in out
    assert f"; mDice: {round((10 / 11 + 6 / 8 + 4 / 5) / 3 * 100, 2)}" in out

    summary = show_results(tmp_path / "out", hist, iou, recall, precision, NAMES)
    out = capsys.readouterr().out
    for stem in ("mIoU", "mPA", "Recall", "Precision"):
        assert Image.open(tmp_path / "out" / f"{stem}.png").size[0] > 100
        assert f"Save {stem} out to" in out
    with open(tmp_path / "out" / "confusion_matrix.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [" "] + NAMES
    assert rows[1] == ["background", "5", "1", "0", "0"]
    assert rows[4] == ["bird", "0", "0", "0", "0"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mIoU"] == pytest.approx(miou) == summary["mIoU"]
    assert metrics["accuracy"] == pytest.approx(10 / 12)
    assert metrics["per_class"][3] == {"name": "bird", "IoU": None, "Recall": None,
                                       "Precision": None, "Dice": None}
    assert metrics["per_class"][2]["Dice"] == pytest.approx(4 / 5)
    assert metrics["mDice"] == pytest.approx((10 / 11 + 6 / 8 + 4 / 5) / 3)
    assert metrics["per_class"][1]["IoU"] == pytest.approx(3 / 5)
    assert metrics["present_classes"] == ["background", "cat", "dog"]


def test_unscorable_files_are_skipped_and_named(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    rgb, big = np.zeros((2, 4, 3), np.uint8), np.zeros((3, 4), np.uint8)
    write_pngs(gt, {"a": GT, "missing": GT, "rgb": rgb, "big": big, "bad": GT})
    write_pngs(pred, {"a": PRED, "rgb": PRED, "big": PRED, "bad": np.full((2, 4), 9, np.uint8)})
    hist, skipped = score_split(gt, pred, ["a", "missing", "nogt", "rgb", "big", "bad"], 4)
    assert np.array_equal(hist, HIST)  # "a" alone is scored
    reasons = {item["id"]: item["reason"] for item in skipped}
    assert list(reasons) == ["missing", "nogt", "rgb", "big", "bad"]
    assert re.search(r"pred[/\\]missing\.png: detection result", reasons["missing"])
    assert re.search(r"gt[/\\]nogt\.png: label not found", reasons["nogt"])
    assert re.search(r"rgb\.png: label has shape \(2, 4, 3\)", reasons["rgb"])
    assert re.search(r"big\.png is 4x3 but its prediction .*big\.png is 4x2", reasons["big"])
    assert "bad.png holds class 9 but num_classes is 4" in reasons["bad"]
    assert capsys.readouterr().out.count("Skipping: ") == 5
    with pytest.raises(EvaluationError, match=r"none of the 2 images could be scored: .*rgb"):
        score_split(gt, pred, ["rgb", "big"], 4)
    assert np.array_equal(compute_mIoU(gt, pred, ["a", "big"], 4)[0], HIST)


def write_voc_labels(root, labels, image_ext=".jpg"):
    for name, label in labels.items():
        write_voc_item(root, name, label.shape[::-1], label, image_ext)


def test_evaluate_split_with_a_fixed_prediction(tmp_path):
    """Every pixel predicted as class 1: scores follow from the label counts alone."""
    label = np.zeros((10, 20), np.uint8)
    label[:, :5] = 1  # 50 cat pixels, 150 background, 20 of them ignored:
    label[:2, 10:] = 255
    write_voc_labels(tmp_path / "VOCdevkit", {"x": label, "y": label}, image_ext=".png")
    unet = Predictor(forward=lambda b: np.eye(3, dtype=np.float32)[np.ones(b.shape[:3], int)],
                num_classes=3, input_shape=[32, 64])
    results = evaluate_split(unet, tmp_path / "VOCdevkit", ["x", "y"], tmp_path / "out", 3,
                             progress=False)
    for name in ("x", "y"):
        png = Image.open(tmp_path / "out" / "detection-results" / f"{name}.png")
        assert png.mode == "L" and png.size == (20, 10) and set(np.unique(png)) == {1}
    assert np.array_equal(results["hist"], [[0, 260, 0], [0, 100, 0], [0, 0, 0]])
    assert results["mIoU"] == pytest.approx((0 + 100 / 360) / 2)  # class 2 absent: n/a
    assert results["accuracy"] == pytest.approx(100 / 360)
    assert results["per_class"][2]["IoU"] is None


def test_evaluate_split_skips_missing_and_mismatched_files(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_voc_labels(root, {"ok": np.zeros((8, 8), np.uint8), "small": np.zeros((8, 8), np.uint8)})
    Image.fromarray(np.zeros((4, 8), np.uint8)).save(root / "VOC2007/SegmentationClass/small.png")
    Image.new("RGB", (8, 8)).save(root / "VOC2007/JPEGImages/nolabel.jpg")
    unet = Predictor(forward=lambda b: np.ones((*b.shape[:3], 2), np.float32), num_classes=2,
                     input_shape=[32, 32])
    results = evaluate_split(unet, root, ["ok", "nolabel", "noimage", "small"], tmp_path / "out",
                             2, progress=False)
    assert results["hist"].sum() == 64  # "ok" alone
    reasons = {item["id"]: item["reason"] for item in results["skipped"]}
    assert sorted(reasons) == ["noimage", "nolabel", "small"]
    assert "noimage.jpg: image not found" in reasons["noimage"]
    assert re.search(r"nolabel\.png: label not found", reasons["nolabel"])
    assert re.search(r"small\.png is 8x4 but its prediction .* is 8x8", reasons["small"])
