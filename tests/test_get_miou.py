"""get_miou.py end to end on a tiny VOC folder: modes 0, 1 and 2, and its error messages."""

import json
import re

import numpy as np
import pytest
from PIL import Image

import get_miou
from nets.unet import Unet as build_unet
from utils.dataset import DatasetError
from utils.predictor import Predictor

SIZES = {"a": (40, 30), "b": (29, 52), "c": (64, 64)}
NAMES = ["background", "cat", "dog"]


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (w, h) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(
            root / "JPEGImages" / f"{name}.jpg")
        label = np.zeros((h, w), np.uint8)
        label[: h // 2] = 1
        label[-3:, :5] = 2
        label[:, -2:] = 255  # border pixels are ignored
        Image.fromarray(label).save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("a\nb\n\nc\n")
    return tmp_path


def args(tmp_path, mode, *extra):
    return ["--miou_mode", str(mode), "--num_classes", "3", "--name_classes", *NAMES,
            "--VOCdevkit_path", str(tmp_path / "VOCdevkit"),
            "--miou_out_path", str(tmp_path / "miou_out"), "--model_path", "",
            "--input_shape", "64", "64", *extra]


def test_mode_0_writes_everything(voc, capsys):
    get_miou.main(args(voc, 0))
    out = voc / "miou_out"
    for name, size in SIZES.items():
        png = Image.open(out / "detection-results" / f"{name}.png")
        assert png.mode == "L" and png.size == size and np.asarray(png).max() < 3
    for stem in ("mIoU", "mPA", "Recall", "Precision"):
        assert (out / f"{stem}.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["name"] for c in metrics["per_class"]] == NAMES
    assert 0 <= metrics["accuracy"] <= 1
    rows = (out / "confusion_matrix.csv").read_text().splitlines()
    counts = np.array([[int(v) for v in row.split(",")[1:]] for row in rows[1:]])
    assert counts.sum() == sum((w - 2) * h for w, h in SIZES.values())  # all but the 255s
    printed = capsys.readouterr().out
    assert "Load model done." in printed and "Get miou done." in printed
    assert "===>cat:\tIou-" in printed


def test_mode_1_then_mode_2(voc, capsys):
    get_miou.main(args(voc, 1))
    results = voc / "miou_out" / "detection-results"
    assert sorted(p.stem for p in results.iterdir()) == ["a", "b", "c"]
    assert not (voc / "miou_out" / "metrics.json").exists()

    # perfect predictions (the labels with 255 -> 0) must score 1 for every class
    for name in SIZES:
        label = np.asarray(Image.open(voc / "VOCdevkit/VOC2007/SegmentationClass" / f"{name}.png"))
        Image.fromarray(np.where(label == 255, 0, label).astype(np.uint8)).save(
            results / f"{name}.png")
    get_miou.main(args(voc, 2))
    metrics = json.loads((voc / "miou_out" / "metrics.json").read_text())
    assert metrics["mIoU"] == metrics["mPA"] == metrics["accuracy"] == 1.0
    assert "===> mIoU: 100.0; mPA: 100.0; Accuracy: 100.0" in capsys.readouterr().out


def test_errors_name_the_files(voc, tmp_path, user_error):
    message = user_error(get_miou.main, args(voc, 2))  # no predictions at all
    assert "none of the 3 images could be scored" in message
    assert re.search(r"detection-results[/\\]a\.png", message)
    message = user_error(get_miou.main, args(voc, 0, "--num_classes", "4"))
    assert "name_classes has 3 names but num_classes is 4" in message
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5.*utils\.downloads.*logs/"):
        get_miou.main(args(voc, 0, "--model_path", str(tmp_path / "nothere.h5")))
    (voc / "VOCdevkit/VOC2007/ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt.*voc_annotation\.py"):
        get_miou.main(args(voc, 0))


def test_checkpoint_with_other_class_count(voc, tmp_path):
    model = build_unet((64, 64, 3), 2, "vgg")
    path = tmp_path / "two.weights.h5"
    model.save_weights(path)
    with pytest.raises(ValueError, match=r"2 classes, model has 3"):
        get_miou.main(args(voc, 0, "--model_path", str(path)))


def test_a_label_of_another_size_is_skipped_and_listed(voc, capsys):
    Image.new("L", (10, 10)).save(voc / "VOCdevkit/VOC2007/SegmentationClass/b.png")
    get_miou.main(args(voc, 0))  # exits normally: the other images are scored
    assert re.search(r"Skipping: .*b\.png is 10x10 but its prediction .*b\.png is 29x52",
                     capsys.readouterr().out)
    metrics = json.loads((voc / "miou_out" / "metrics.json").read_text())
    assert [item["id"] for item in metrics["skipped"]] == ["b"]
    rows = (voc / "miou_out" / "confusion_matrix.csv").read_text().splitlines()
    counts = np.array([[int(v) for v in row.split(",")[1:]] for row in rows[1:]])
    assert counts.sum() == sum((w - 2) * h for name, (w, h) in SIZES.items() if name != "b")


def test_metrics_json_describes_the_run(voc):
    get_miou.main(args(voc, 0))
    run = json.loads((voc / "miou_out" / "metrics.json").read_text())["run"]
    assert run["settings"]["num_classes"] == 3 and run["settings"]["input_shape"] == [64, 64]
    assert run["settings"]["name_classes"] == NAMES and run["settings"]["miou_mode"] == 0
    assert run["num_images"] == 3 and run["num_scored"] == 3
    assert run["versions"]["keras"] and run["versions"]["tensorflow"]
    assert run["commit"] is None or len(run["commit"].split("+")[0]) == 40


def colour_classifier_onnx(path, weights):
    """A tiny ONNX model with the exported U-Net's interface: softmax(images @ weights) NHWC."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["output"], axis=-1)],
        "colours",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["N", 64, 64, 3])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["N", 64, 64, 3])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_onnx_path_scores_the_onnx_model(voc, capsys):
    pytest.importorskip("onnxruntime")
    weights = np.array([[4, -2, 0], [-3, 5, 1], [0, 1, -4]], np.float32)
    colour_classifier_onnx(voc / "colours.onnx", weights)
    get_miou.main(args(voc, 0, "--onnx_path", str(voc / "colours.onnx")))
    assert "ms per image" in capsys.readouterr().out

    def reference(batch):
        logits = batch @ weights
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)

    predictor = Predictor(forward=reference, num_classes=3, input_shape=[64, 64])
    for name in SIZES:
        image = Image.open(voc / "VOCdevkit/VOC2007/JPEGImages" / f"{name}.jpg")
        expected = np.asarray(predictor.get_miou_png(image))
        got = np.asarray(Image.open(voc / "miou_out/detection-results" / f"{name}.png"))
        assert len(np.unique(expected)) > 1 and np.mean(got == expected) >= 0.999
