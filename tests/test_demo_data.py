"""The synthetic demo dataset: deterministic, VOC-format, with classes and 255 borders; the
demo writes only into folders of its own and cleans exactly what it wrote."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import REPO
from PIL import Image

from utils.config import read_parameter_block
from utils.dataset import read_label, voc_palette
from utils.dataset_audit import audit_dataset
from utils.demo_data import CLASS_HUES, main, make_scene, write_demo_dataset
from utils.demo_manifest import clean_demo
from utils.sample_images import write_samples


def generate(root, num_images=6, seed=0):
    write_demo_dataset(root / "VOCdevkit", num_images, root / "img", seed)
    folder = root / "VOCdevkit" / "VOC2007"
    images, labels = folder / "JPEGImages", folder / "SegmentationClass"
    return sorted(images.iterdir()), sorted(labels.iterdir())


def test_same_arguments_give_identical_files(tmp_path):
    first = generate(tmp_path / "a")
    second = generate(tmp_path / "b")
    for a, b in zip(first[0] + first[1], second[0] + second[1], strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    other = generate(tmp_path / "c", seed=1)
    assert other[1][0].read_bytes() != first[1][0].read_bytes()


def test_files_are_voc_format_with_all_classes_and_borders(tmp_path):
    images, labels = generate(tmp_path, num_images=12)
    assert [p.name for p in images][:2] == ["demo_0000.jpg", "demo_0001.jpg"] and len(images) == 12
    values = set()
    for image_file, label_file in zip(images, labels, strict=True):
        label = Image.open(label_file)
        assert label.mode == "P" and label.size == (128, 128) == Image.open(image_file).size
        assert label.getpalette()[:12] == voc_palette()[:4].ravel().tolist()
        values |= set(np.unique(np.asarray(label)).tolist())
    assert values == {0, 1, 2, 3, 255}
    report = audit_dataset(tmp_path / "VOCdevkit", num_classes=4, progress=False)
    assert report.fatal == [] and report.warnings == []
    for name in ("demo_1.jpg", "demo_2.jpg", "demo_3.jpg", "demo_4.jpg"):
        assert Image.open(tmp_path / "img" / name).size == (128, 128)
    assert Image.open(tmp_path / "img" / "demo_large.jpg").size == (500, 375)


def test_every_object_is_outlined_by_ignore_pixels():
    _, label = make_scene(np.random.default_rng(3))
    objects = (label > 0) & (label < 255)
    # No object pixel touches background directly: a 2 px 255 band lies between them.
    padded = np.pad(label, 1, constant_values=255)  # the image edge is not background
    for dy, dx in ((0, 1), (1, 0), (2, 1), (1, 2)):
        neighbour = padded[dy:dy + label.shape[0], dx:dx + label.shape[1]]
        assert not (objects & (neighbour == 0)).any()
    border = label == 255
    assert border.any() and border.sum() < objects.sum()


def test_objects_are_15_to_45_percent_of_the_height():
    for seed in range(10):
        _, label = make_scene(np.random.default_rng(seed))
        rows = np.nonzero((label > 0).any(axis=1))[0]
        assert rows.max() - rows.min() + 1 >= 0.12 * 128


def test_command_line_prints_a_summary_and_a_rerun_replaces_the_demo_files(tmp_path, capsys):
    dataset = tmp_path / "VOCdevkit" / "demo"
    main(["--out", str(dataset), "--num_images", "3", "--outputs", str(tmp_path / "logs")])
    assert "Wrote 3 demo images" in capsys.readouterr().out
    labels = dataset / "VOC2007" / "SegmentationClass"
    (dataset / "VOC2007" / "ImageSets" / "Segmentation").mkdir(parents=True)
    (dataset / "VOC2007" / "ImageSets" / "Segmentation" / "train.txt").write_text("demo_0000\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "ep001.weights.h5").write_bytes(b"an earlier demo run")
    main(["--out", str(dataset), "--num_images", "2", "--outputs", str(tmp_path / "logs")])
    assert sorted(p.name for p in labels.iterdir()) == ["demo_0000.png", "demo_0001.png"]
    assert read_label(labels / "demo_0001.png").shape == (128, 128)
    assert not (dataset / "VOC2007" / "ImageSets").exists() and not (tmp_path / "logs").exists()


def test_the_demo_refuses_folders_holding_files_it_did_not_write(tmp_path, user_error):
    dataset = tmp_path / "demo"
    write_demo_dataset(dataset, 2)
    mine = dataset / "VOC2007" / "JPEGImages" / "mine.jpg"
    mine.write_bytes(b"a user's picture")
    message = user_error(main, ["--out", str(dataset), "--num_images", "2"])
    assert str(mine) in message and "did not write" in message
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes.txt").write_text("mine")
    message = user_error(main, ["--out", str(tmp_path / "other"), "--outputs", str(logs)])
    assert str(logs / "notes.txt") in message
    assert not (tmp_path / "other").exists()
    for folder in (".", str(tmp_path), ""):
        message = user_error(main, ["--out", str(dataset / "x"), "--outputs", folder])
        assert "cannot be a demo folder" in message
    assert mine.read_bytes() == b"a user's picture" and (logs / "notes.txt").exists()


def test_clean_demo_deletes_exactly_what_the_demo_wrote(tmp_path):
    users = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages"
    users.mkdir(parents=True)
    (users / "cat.jpg").write_bytes(b"the user's own dataset")
    dataset, logs = tmp_path / "VOCdevkit" / "demo", tmp_path / "logs" / "demo"
    write_demo_dataset(dataset, 4, outputs=[logs])
    (logs / "loss_1").mkdir(parents=True)
    (logs / "loss_1" / "epoch_loss.txt").write_text("0.5\n")
    beside = dataset / "VOC2007" / "JPEGImages" / "added_later.jpg"
    beside.write_bytes(b"added after the demo")
    assert clean_demo(dataset) == 9  # 4 images, 4 labels and the training log
    assert not logs.exists() and (tmp_path / "logs").is_dir()
    assert sorted(p.name for p in dataset.rglob("*")) == ["JPEGImages", "VOC2007",
                                                           "added_later.jpg"]
    assert (users / "cat.jpg").read_bytes() == b"the user's own dataset"
    assert clean_demo(dataset) == 0


def test_shipped_sample_pictures_are_the_generated_ones(tmp_path):
    fps_default = next(p.source for p in read_parameter_block(REPO / "predict.py").parameters
                       if p.name == "fps_image_path")
    assert fps_default == '"img/street.jpg"' and (REPO / "img" / "street.jpg").is_file()
    written = write_samples(tmp_path)
    assert [p.name for p in written] == ["street.jpg", "demo_1.jpg", "demo_2.jpg", "demo_3.jpg",
                                         "demo_4.jpg", "demo_large.jpg"]
    for path in written:
        shipped = np.asarray(Image.open(REPO / "img" / path.name), np.float64)
        fresh = np.asarray(Image.open(path), np.float64)
        assert shipped.shape == fresh.shape and np.abs(shipped - fresh).mean() < 1.0, path.name
    assert Image.open(REPO / "img" / "street.jpg").size == (640, 480)


def test_class_hues_lean_per_class_unless_random_colours():
    def object_hues(class_hues):
        """Per class, the circular mean hue (0-1) of each object's pixels."""
        hues = {1: [], 2: [], 3: []}
        for seed in range(40):
            image, label = make_scene(np.random.default_rng(seed), class_hues=class_hues)
            hue = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)[..., 0] / 256 * 2 * np.pi
            for class_id, values in hues.items():
                if (label == class_id).any():
                    values.append(np.exp(1j * hue[label == class_id]).mean())
        return {c: np.array(v) / np.abs(v) for c, v in hues.items()}

    for class_id, unit in object_hues(True).items():
        mean = unit.mean()  # concentrated around the family hue
        assert abs(mean) > 0.6
        centre = np.exp(2j * np.pi * CLASS_HUES[class_id])
        assert abs(np.angle(mean / centre)) < 0.5
    assert max(abs(unit.mean()) for unit in object_hues(False).values()) < 0.45


# ---- make demo, then make clean-demo, in a copy of the repository ---------------------------

# One short frozen epoch each: this checks where the demos write, not how they train.
TINY_DEMO = ("DEMO_IMAGES=20", "DEMO_SHAPE=--num_classes 4 --backbone vgg --input_shape 32 32",
             "DEMO_TRAIN=--num_classes 4 --backbone vgg --model_path \"\" --input_shape 32 32 "
             "--Freeze_Epoch 1 --UnFreeze_Epoch 1 --Freeze_batch_size 2 "
             "--Unfreeze_batch_size 2 --eval_period 1 --train_gpu []",
             "DEMO_MEDICAL_IMAGES=10",
             "DEMO_MEDICAL_TRAIN=--backbone vgg --model_path \"\" --input_shape 32 32 "
             "--Freeze_Epoch 1 --UnFreeze_Epoch 1 --Freeze_batch_size 2 "
             "--Unfreeze_batch_size 2 --eval_period 1 --train_gpu []",
             "DEMO_MEDICAL_MODEL=--model_path logs/demo_medical/best_epoch_weights.weights.h5 "
             "--num_classes 2 --backbone vgg --input_shape 32 32")


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".venv" not in p.parts}


def make(repo: Path, *targets: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "-o", ".venv/.installed", *targets], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_make_demo_and_clean_demo_leave_a_users_files_byte_identical(tmp_path):
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    repo = tmp_path / "repo"
    for name in listed.splitlines():
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    (repo / ".venv").symlink_to(Path(sys.prefix))
    users = repo / "VOCdevkit" / "VOC2007"
    for name, content in [("JPEGImages/cat.jpg", b"jpeg"), ("SegmentationClass/cat.png", b"png"),
                          ("ImageSets/Segmentation/train.txt", b"cat\n")]:
        (users / name).parent.mkdir(parents=True, exist_ok=True)
        (users / name).write_bytes(content)
    for name in ("Images/slice.png", "Labels/slice.png"):  # a user's own medical dataset
        (repo / "Medical_Datasets" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (16, 16), 255).save(repo / "Medical_Datasets" / name)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(repo / "img" / "mine.jpg")
    (repo / "logs" / "my_run").mkdir()
    (repo / "logs" / "my_run" / "last_epoch_weights.weights.h5").write_bytes(b"weights")
    before = snapshot(repo)

    done = make(repo, "demo", "demo-medical", *TINY_DEMO)
    after = snapshot(repo)
    new = sorted(set(after) - set(before))
    assert all(n.startswith(("VOCdevkit/demo/", "logs/demo/", "Medical_Datasets/demo/",
                             "logs/demo_medical/")) for n in new), new
    assert {k: after[k] for k in before} == before
    for name in ("VOCdevkit/demo/demo_manifest.json", "logs/demo/best_epoch_weights.weights.h5",
                 "logs/demo/img_out/street.jpg", "logs/demo/miou_out/metrics.json",
                 "Medical_Datasets/demo/demo_manifest.json",
                 "logs/demo_medical/miou_out/metrics.json"):
        assert name in new
    assert "===>membrane:" in done.stdout and "mDice" in done.stdout

    make(repo, "clean-demo")
    assert snapshot(repo) == before
    for folder in ("VOCdevkit/demo", "logs/demo", "Medical_Datasets/demo", "logs/demo_medical"):
        assert not (repo / folder).exists()
