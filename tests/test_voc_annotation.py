"""voc_annotation.py end to end: split files, printed strings, audit exit codes, --fix_labels."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_voc_item
from PIL import Image

import voc_annotation
from utils.dataset import DatasetError, read_label, voc_palette

SCRIPT = Path(voc_annotation.__file__)


def write_labels(root, ids, value=1):
    """8x8 images whose labels hold `value` in a 4x4 square; returns the label folder."""
    label = np.zeros((8, 8), np.uint8)
    label[2:6, 2:6] = value
    for image_id in ids:
        write_voc_item(root, image_id, (8, 8), label)
    return root / "VOC2007" / "SegmentationClass"


def run(root, *args):
    voc_annotation.main(["--VOCdevkit_path", str(root), *args])


def split_files(root):
    folder = root / "VOC2007" / "ImageSets" / "Segmentation"
    return {name: (folder / f"{name}.txt").read_text() for name in ("trainval", "train", "val",
                                                                     "test")}


def test_split_is_exact_and_independent_of_creation_order(tmp_path, capsys):
    ids = [f"img{i}" for i in range(10)]
    write_labels(tmp_path / "a", ids)
    write_labels(tmp_path / "b", [ids[i] for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)])
    run(tmp_path / "a")
    out = capsys.readouterr().out
    run(tmp_path / "b")
    assert split_files(tmp_path / "a") == split_files(tmp_path / "b")
    # The original (random.seed(0) over the sorted list) leaves index 3 out of train.
    splits = split_files(tmp_path / "a")
    assert splits["val"] == "img3\n"
    assert splits["train"] == "".join(f"{i}\n" for i in ids if i != "img3")
    assert splits["trainval"] == "".join(f"{i}\n" for i in ids) and splits["test"] == ""
    assert "train and val size 10\ntrain size 9\n" in out
    assert "Generate txt in ImageSets done." in out
    assert "|               1 |             160 |" in out


def test_trainval_percent_leaves_a_test_set(tmp_path):
    write_labels(tmp_path, [f"{i}" for i in range(10)])
    run(tmp_path, "--trainval_percent", "0.8", "--seed", "1")
    splits = split_files(tmp_path)
    assert len(splits["test"].split()) == 2 and len(splits["trainval"].split()) == 8
    assert set(splits["test"].split()).isdisjoint(splits["trainval"].split())


def test_binary_masks_stop_with_an_error_and_change_nothing(tmp_path):
    labels = write_labels(tmp_path, ["a", "b"], value=255)
    before = (labels / "a.png").read_bytes()
    with pytest.raises(DatasetError) as error:
        run(tmp_path)
    assert "255" in str(error.value) and "--fix_labels True" in str(error.value)
    assert (labels / "a.png").read_bytes() == before
    assert not (tmp_path / "VOC2007" / "SegmentationClass.bak").exists()


def test_fix_labels_repairs_binary_masks_with_a_backup(tmp_path, capsys):
    labels = write_labels(tmp_path, ["a", "b"], value=255)
    before = (labels / "a.png").read_bytes()
    run(tmp_path, "--fix_labels", "True")
    assert (tmp_path / "VOC2007" / "SegmentationClass.bak" / "a.png").read_bytes() == before
    assert set(np.unique(read_label(labels / "b.png"))) == {0, 1}
    assert "Rewrote 2 0/255 labels as 0/1" in capsys.readouterr().out


def test_fix_labels_converts_voc_colour_labels(tmp_path):
    labels = write_labels(tmp_path, ["a"], value=2)
    Image.fromarray(voc_palette()[read_label(labels / "a.png")]).save(labels / "a.png")
    with pytest.raises(DatasetError, match="a.png"):
        run(tmp_path)
    run(tmp_path, "--fix_labels", "True", "--num_classes", "3")
    assert read_label(labels / "a.png")[3, 3] == 2


def test_num_classes_flags_out_of_range_values(tmp_path):
    write_labels(tmp_path, ["a"], value=4)
    run(tmp_path, "--num_classes", "5")
    with pytest.raises(DatasetError, match=r"\[4\] are >= num_classes = 4"):
        run(tmp_path, "--num_classes", "4")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="SegmentationClass: folder not found"):
        run(tmp_path)


def test_fatal_audit_exits_non_zero_from_the_command_line(tmp_path):
    write_labels(tmp_path, ["a"], value=255)
    result = subprocess.run([sys.executable, str(SCRIPT), "--VOCdevkit_path", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "error: The dataset has problems" in result.stderr
    assert "0/255 binary masks" in result.stderr
    assert "Generate txt in ImageSets done." in result.stdout
