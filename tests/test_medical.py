"""The medical layout: its label rule, padding, audit verdicts, splits, training without val,
scoring, and the original's medical checkpoint."""

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image
from test_predictor import H, W, random_image, reference_classes
from test_weights import decoder_renamer, randomize, write_legacy

import get_miou
import train_medical
import voc_annotation_medical
from nets.unet import Unet as build_unet
from unet import Unet
from utils.dataloader import make_dataset
from utils.dataset import DatasetError, MedicalLayout, VOCLayout, as_layout
from utils.dataset_audit import audit_dataset
from utils.em_data import make_em_slice
from utils.evaluation import evaluate_split
from utils.predictor import Predictor

SIZE = (64, 64)


def write_item(root, image_id, image, mask):
    """A greyscale slice and its 0/255 mask in the medical layout."""
    for folder, array in (("Images", image), ("Labels", mask)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(array, np.uint8)).save(root / folder / f"{image_id}.png")


@pytest.fixture
def medical(tmp_path):
    """Six synthetic EM slices with their masks (no split files yet)."""
    root = tmp_path / "Medical_Datasets"
    for index in range(6):
        image, mask = make_em_slice(np.random.default_rng([3, index]), SIZE)
        write_item(root, f"{index}", image, mask)
    return root


def test_label_rule_127_is_class_1_and_128_is_class_0(tmp_path):
    layout = MedicalLayout(tmp_path)
    values = np.array([[0, 127, 128, 255]], np.uint8)
    write_item(tmp_path, "a", values, values)
    assert layout.read_label(layout.label_path("a")).tolist() == [[1, 1, 0, 0]]
    Image.fromarray(values).convert("1").save(tmp_path / "Labels" / "bilevel.png")
    assert layout.read_label(tmp_path / "Labels" / "bilevel.png").tolist() == [[1, 1, 0, 0]]
    Image.fromarray(values).convert("RGB").save(tmp_path / "Labels" / "grey_rgb.png")
    assert layout.read_label(tmp_path / "Labels" / "grey_rgb.png").tolist() == [[1, 1, 0, 0]]
    sixteen = Image.fromarray(values.astype(np.uint16) * 257)  # 0, 32639, 32896, 65535
    sixteen.save(tmp_path / "Labels" / "sixteen.png")
    assert Image.open(tmp_path / "Labels" / "sixteen.png").mode.startswith("I")
    assert layout.read_label(tmp_path / "Labels" / "sixteen.png").tolist() == [[1, 1, 0, 0]]
    Image.new("RGB", (4, 1), (200, 0, 0)).save(tmp_path / "Labels" / "red.png")
    with pytest.raises(DatasetError, match=r"red\.png: the label is a RGB colour image"):
        layout.read_label(tmp_path / "Labels" / "red.png")


def test_layout_is_told_by_its_folders(medical, tmp_path, make_voc):
    assert type(as_layout(medical)) is MedicalLayout
    assert type(as_layout(make_voc(2, 2))) is VOCLayout
    assert type(as_layout(tmp_path / "nothing_yet")) is VOCLayout
    assert type(as_layout(tmp_path / "nothing_yet", "medical")) is MedicalLayout
    with pytest.raises(DatasetError, match="layout 'coco' is unknown"):
        as_layout(medical, "coco")


def test_letterbox_padding_is_ignored_not_membrane(tmp_path):
    """A 64x32 slice in a 64x64 input: the 16 padded rows above and below are ignore, while
    the original padded medical labels with 0, which its rule turned into membrane."""
    mask = np.full((32, 64), 255, np.uint8)
    mask[:, 10:13] = 0  # a vertical membrane
    write_item(tmp_path, "wide", np.full((32, 64), 180, np.uint8), mask)
    layout = MedicalLayout(tmp_path)
    _, targets = next(iter(make_dataset(layout, ["wide"], (64, 64), 1, 2, train=False)))
    classes = np.argmax(targets[0], -1)
    assert targets.shape == (1, 64, 64, 3)
    assert (classes[:16] == 2).all() and (classes[48:] == 2).all()
    assert (classes[16:48, 10:13] == 1).all()
    assert (classes[16:48, 14:] == 0).all()


def test_audit_accepts_0_255_masks(medical):
    report = audit_dataset(medical, 2, progress=False)
    assert not report.fatal and not report.warnings
    assert any("0/255 masks, as this layout expects" in m for m in report.passed)
    masks = [np.asarray(Image.open(p)) for p in sorted((medical / "Labels").glob("*.png"))]
    share = np.mean([(m == 0).mean() for m in masks])
    assert report.foreground_share == pytest.approx(share)
    assert 0.1 < share < 0.35


def test_audit_reports_grey_values_and_how_the_rule_split_them(medical):
    mask = np.asarray(Image.open(medical / "Labels" / "2.png")).copy()
    mask[0, :10], mask[1, :6] = 100, 200
    Image.fromarray(mask).save(medical / "Labels" / "2.png")
    report = audit_dataset(medical, 2, progress=False)
    assert not report.fatal
    (warning,) = report.warnings
    assert warning.startswith("16 pixels") and "in 1 masks" in warning and "2.png" in warning
    assert "made 10 of them class 1 and 6 class 0" in warning


@pytest.mark.parametrize("fill, verdict", [
    (255, "No mask has a dark pixel"), (0, "Every mask pixel is dark"),
    (1, "The masks hold only the values 0 and 1: class indices")])
def test_audit_refuses_masks_with_one_class(medical, fill, verdict):
    for path in (medical / "Labels").glob("*.png"):
        mask = np.full(SIZE, fill, np.uint8)
        mask[:8] = 0 if fill == 1 else fill  # 0/1 class-index labels
        Image.fromarray(mask).save(path)
    report = audit_dataset(medical, 2, progress=False)
    assert any(verdict in message for message in report.fatal)


def test_audit_warns_about_inverted_masks_and_class_count(medical):
    for path in (medical / "Labels").glob("*.png"):
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)
    report = audit_dataset(medical, 3, progress=False)
    assert not report.fatal
    assert any("invert them" in w for w in report.warnings)
    assert any("use num_classes = 2" in w for w in report.warnings)


def test_audit_names_colour_masks_missing_images_and_size_mismatches(medical):
    Image.new("RGB", SIZE, (255, 0, 0)).save(medical / "Labels" / "1.png")
    (medical / "Images" / "3.png").unlink()
    Image.new("L", (32, 64), 255).save(medical / "Labels" / "4.png")
    fatal = " | ".join(audit_dataset(medical, 2, progress=False).fatal)
    assert "1 masks are colour images: 1.png" in fatal and "greyscale" in fatal
    assert re.search(r"1 labels have no image in .*Images \(looked for \.png/", fatal)
    assert "4.png: label is 32x64 but its image" in fatal


def test_voc_annotation_medical_puts_every_image_in_train(medical, capsys):
    voc_annotation_medical.main(["--VOCdevkit_path", str(medical)])
    splits = medical / "ImageSets" / "Segmentation"
    assert (splits / "train.txt").read_text().split() == [str(i) for i in range(6)]
    assert (splits / "val.txt").read_text() == ""
    out = capsys.readouterr().out
    assert "train size 6" in out and "as this layout expects" in out


def test_train_medical_without_val_follows_the_training_loss(medical, tmp_path, capsys,
                                                              user_error):
    voc_annotation_medical.main(["--VOCdevkit_path", str(medical)])
    message = user_error(get_miou.main, ["--miou_mode", "2", "--VOCdevkit_path", str(medical)])
    assert "val.txt is empty" in message
    assert "python voc_annotation_medical.py --train_percent 0.9" in message
    save_dir = tmp_path / "logs"
    train_medical.main(["--train_gpu", "[]", "--model_path", "", "--input_shape", "32", "32",
                        "--Freeze_Epoch", "1", "--UnFreeze_Epoch", "2", "--save_period", "2",
                        "--VOCdevkit_path", str(medical), "--save_dir", str(save_dir)])
    out = capsys.readouterr().out
    assert "No validation images" in out and "val on 0 samples" in out
    assert "[advice] The target (class 1) is" in out and "--focal_loss True" in out
    names = sorted(p.name for p in save_dir.glob("*.weights.h5"))
    assert len(names) == 3 and names[:2] == ["best_epoch_weights.weights.h5",
                                             "ep002-loss" + names[1][10:]]
    assert re.fullmatch(r"ep002-loss\d+\.\d{3}\.weights\.h5", names[1])
    (log_dir,) = save_dir.glob("loss_*")
    assert len((log_dir / "epoch_loss.txt").read_text().split()) == 2
    assert not (log_dir / "epoch_val_loss.txt").exists()
    assert not (log_dir / "epoch_miou.txt").exists()
    with open(log_dir / "training_log.csv", newline="") as f:
        header = next(csv.reader(f))
    assert "loss" in header and not any(name.startswith("val_") for name in header)


def test_get_miou_scores_the_medical_layout_with_dice(medical, tmp_path):
    """Every pixel predicted as membrane: IoU and Dice follow from the thresholded masks."""
    (medical / "ImageSets" / "Segmentation").mkdir(parents=True)
    (medical / "ImageSets" / "Segmentation" / "val.txt").write_text("0\n1\n")
    membrane = sum(int((np.asarray(Image.open(medical / "Labels" / f"{i}.png")) <= 127).sum())
                   for i in (0, 1))
    total = 2 * SIZE[0] * SIZE[1]
    always_membrane = Predictor(forward=lambda b: np.eye(2, dtype=np.float32)[
        np.ones(b.shape[:3], int)], num_classes=2, input_shape=[32, 32])
    results = evaluate_split(always_membrane, medical, ["0", "1"], tmp_path / "pred", 2,
                             progress=False)
    assert np.array_equal(results["hist"], [[0, total - membrane], [0, membrane]])
    assert results["per_class"][1]["Dice"] == pytest.approx(2 * membrane / (membrane + total))

    out = tmp_path / "miou_out"
    (out / "detection-results").mkdir(parents=True)
    for i in (0, 1):
        Image.fromarray(np.ones(SIZE, np.uint8)).save(out / "detection-results" / f"{i}.png")
    get_miou.main(["--miou_mode", "2", "--num_classes", "2", "--name_classes", "background",
                   "membrane", "--VOCdevkit_path", str(medical), "--miou_out_path", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_class"][1]["Dice"] == pytest.approx(2 * membrane / (membrane + total))
    assert metrics["per_class"][1]["IoU"] == pytest.approx(membrane / total)


def test_original_medical_checkpoint_predicts_like_the_original(tmp_path):
    """unet_voc_medical.h5 as the original saved it (VGG, 2 classes, auto-named decoder) loads
    strictly and gives the original pipeline's classes on a greyscale slice."""
    source = randomize(build_unet((H, W, 3), 2, "vgg"), seed=4)
    head = source.get_layer("final_conv")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(5).normal(0, 3.0, kernel.shape), bias])
    path = write_legacy(tmp_path / "unet_voc_medical.h5", source, decoder_renamer("vgg", 1))
    unet = Unet(model_path=str(path), num_classes=2, backbone="vgg", input_shape=[H, W])
    for seed, size in ((1, (80, 60)), (2, (64, 96))):
        slice_ = random_image(size, seed).convert("L")  # EM slices are greyscale
        expected = reference_classes(source, slice_)
        assert 0.05 < expected.mean() < 0.95  # both classes occur
        assert np.mean(np.asarray(unet.get_miou_png(slice_)) == expected) >= 0.999
