"""The synthetic demo dataset: deterministic, VOC-format, with classes and 255 borders."""

import cv2
import numpy as np
from PIL import Image

from utils.dataset import read_label, voc_palette
from utils.dataset_audit import audit_dataset
from utils.demo_data import CLASS_HUES, main, make_scene, write_demo_dataset


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
        assert label.mode == "P" and label.size == (160, 120) == Image.open(image_file).size
        assert label.getpalette()[:12] == voc_palette()[:4].ravel().tolist()
        values |= set(np.unique(np.asarray(label)).tolist())
    assert values == {0, 1, 2, 3, 255}
    report = audit_dataset(tmp_path / "VOCdevkit", num_classes=4, progress=False)
    assert report.fatal == [] and report.warnings == []
    for name in ("demo_1.jpg", "demo_2.jpg", "demo_3.jpg", "demo_4.jpg"):
        assert Image.open(tmp_path / "img" / name).size == (160, 120)
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
        assert rows.max() - rows.min() + 1 >= 0.12 * 120


def test_command_line_prints_a_summary_and_removes_stale_demo_files(tmp_path, capsys):
    main(["--out", str(tmp_path / "VOCdevkit"), "--num_images", "3",
          "--img_dir", str(tmp_path / "img")])
    assert "Wrote 3 demo images" in capsys.readouterr().out
    labels = tmp_path / "VOCdevkit" / "VOC2007" / "SegmentationClass"
    mine = labels / "mine.png"
    Image.new("L", (4, 4)).save(mine)
    main(["--out", str(tmp_path / "VOCdevkit"), "--num_images", "2",
          "--img_dir", str(tmp_path / "img")])
    assert sorted(p.name for p in labels.iterdir()) == ["demo_0000.png", "demo_0001.png",
                                                         "mine.png"]
    assert read_label(labels / "demo_0001.png").shape == (120, 160)


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
