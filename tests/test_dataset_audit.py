"""The label audit: one dataset per trap, each built here, and the verdict it must produce."""

import numpy as np
import pytest
from conftest import write_voc_item
from PIL import Image

from utils.dataset import DatasetError, read_label, split_ids, voc_palette
from utils.dataset_audit import audit_dataset
from utils.label_fixes import colour_to_index, fix_label_files


def write_pair(root, image_id, label, image_size=None, image_ext=".jpg"):
    """A mid-grey image (label-sized unless told) and the label PNG; returns the label path."""
    label = np.asarray(label, np.uint8)
    return write_voc_item(root, image_id, image_size or label.shape[::-1], label, image_ext)


def square_label(value=1, size=8):
    label = np.zeros((size, size), np.uint8)
    label[2:5, 2:5] = value
    return label


def test_clean_dataset_counts_values_and_passes(tmp_path):
    write_pair(tmp_path, "a", square_label(1))
    label = square_label(2)
    label[0, :] = 255
    write_pair(tmp_path, "b", label)
    report = audit_dataset(tmp_path, num_classes=3, progress=False)
    assert report.fatal == [] and report.warnings == []
    assert report.value_counts == {0: 64 + 64 - 9 - 9 - 8, 1: 9, 2: 9, 255: 8}
    report.raise_if_fatal()  # nothing to raise


def test_binary_0_255_masks_are_fatal_and_explained(tmp_path, capsys):
    for i in range(3):
        write_pair(tmp_path, f"m{i}", square_label(255))
    report = audit_dataset(tmp_path, progress=False)
    assert len(report.fatal) == 1
    assert "255" in report.fatal[0] and "--fix_labels" in report.fatal[0]
    assert sorted(p.name for p in report.binary_labels) == ["m0.png", "m1.png", "m2.png"]
    with pytest.raises(DatasetError, match="0/255"):
        report.raise_if_fatal()
    report.print_table()
    table = capsys.readouterr().out
    assert "|             255 |              27 |" in table
    assert "|               0 |             165 |" in table


def test_fix_binary_masks_backs_up_and_rewrites_as_0_1(tmp_path):
    path = write_pair(tmp_path, "m", square_label(255))
    original = path.read_bytes()
    report = audit_dataset(tmp_path, progress=False)
    messages = fix_label_files(report)
    assert "Rewrote 1" in messages[0]
    backup = tmp_path / "VOC2007" / "SegmentationClass.bak" / "m.png"
    assert backup.read_bytes() == original
    np.testing.assert_array_equal(read_label(path), square_label(1))
    assert audit_dataset(tmp_path, progress=False).fatal == []


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_labels_are_fatal_and_named(tmp_path, mode):
    write_pair(tmp_path, "fine", square_label(1))
    path = write_pair(tmp_path, "colour", square_label(1))
    Image.new(mode, (8, 8)).save(path)
    report = audit_dataset(tmp_path, progress=False)
    assert any("colour.png" in m and "RGB" in m for m in report.fatal)
    assert [p.name for p in report.colour_labels] == ["colour.png"]
    with pytest.raises(DatasetError, match="colour.png"):
        read_label(path)


def test_fix_maps_voc_colours_and_keeps_unknown_colours_fatal(tmp_path):
    palette = voc_palette()
    voc = palette[square_label(15)]  # person (192, 128, 128) on black
    voc[0, 0] = (224, 224, 192)  # VOC void border colour -> 255
    voc_path = write_pair(tmp_path, "voc", square_label(1))
    Image.fromarray(voc).save(voc_path)
    odd = voc.copy()
    odd[7, 7] = (12, 34, 56)
    odd_path = write_pair(tmp_path, "odd", square_label(1))
    Image.fromarray(odd).save(odd_path)
    odd_bytes = odd_path.read_bytes()

    messages = fix_label_files(audit_dataset(tmp_path, progress=False))
    expected = square_label(15)
    expected[0, 0] = 255
    np.testing.assert_array_equal(read_label(voc_path), expected)
    assert (tmp_path / "VOC2007" / "SegmentationClass.bak" / "voc.png").is_file()
    assert odd_path.read_bytes() == odd_bytes
    assert any("odd.png" in m and "(12, 34, 56)" in m for m in messages)
    after = audit_dataset(tmp_path, progress=False)
    assert any("odd.png" in m for m in after.fatal) and "voc.png" not in " ".join(after.fatal)


def test_colour_to_index_reports_unknown_colours():
    rgb = np.array([[[0, 0, 0], [128, 0, 0], [1, 2, 3]]], np.uint8)
    indices, unknown = colour_to_index(rgb)
    assert indices[0, :2].tolist() == [0, 1]
    assert unknown == [(1, 2, 3)]


def test_voc_palette_matches_the_original_colours():
    palette = voc_palette()
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[20].tolist() == [0, 64, 128] and palette[21].tolist() == [128, 64, 128]
    assert palette[255].tolist() == [224, 224, 192]


def test_values_at_or_above_num_classes_are_fatal_except_255(tmp_path):
    write_pair(tmp_path, "ok", square_label(2))
    write_pair(tmp_path, "high", square_label(5))
    assert audit_dataset(tmp_path, num_classes=6, progress=False).fatal == []
    report = audit_dataset(tmp_path, num_classes=3, progress=False)
    assert len(report.fatal) == 1
    assert "[5]" in report.fatal[0] and "high.png" in report.fatal[0]
    assert "ok.png" not in report.fatal[0]
    without = audit_dataset(tmp_path, progress=False)
    assert without.fatal == [] and any("should be 6" in m for m in without.passed)


def test_background_only_label_warns_and_background_only_dataset_is_fatal(tmp_path):
    write_pair(tmp_path, "empty", np.zeros((8, 8)))
    report = audit_dataset(tmp_path, progress=False)
    assert len(report.fatal) == 1 and "background" in report.fatal[0]
    write_pair(tmp_path, "object", square_label(1))
    report = audit_dataset(tmp_path, progress=False)
    assert report.fatal == []
    assert len(report.warnings) == 1 and "empty.png" in report.warnings[0]


def test_size_mismatch_is_fatal(tmp_path):
    write_pair(tmp_path, "a", square_label(1))
    write_pair(tmp_path, "wide", square_label(1), image_size=(10, 8))
    report = audit_dataset(tmp_path, progress=False)
    assert len(report.fatal) == 1
    assert "wide.png: label is 8x8 but its image" in report.fatal[0]
    assert "wide.jpg is 10x8" in report.fatal[0]


def test_unpaired_files(tmp_path):
    write_pair(tmp_path, "a", square_label(1))
    write_pair(tmp_path, "no_image", square_label(1), image_ext=None)
    Image.new("RGB", (8, 8)).save(tmp_path / "VOC2007" / "JPEGImages" / "no_label.jpg")
    report = audit_dataset(tmp_path, progress=False)
    assert len(report.fatal) == 1 and "no_image" in report.fatal[0]
    assert len(report.warnings) == 1 and "no_label.jpg" in report.warnings[0]


def test_other_image_extensions_count_as_images(tmp_path):
    write_pair(tmp_path, "a", square_label(1), image_ext=".png")
    write_pair(tmp_path, "b", square_label(1), image_ext=".bmp")
    assert audit_dataset(tmp_path, progress=False).fatal == []


def test_given_ids_must_all_have_labels_and_images(tmp_path):
    write_pair(tmp_path, "a", square_label(1))
    report = audit_dataset(tmp_path, ids=["a", "ghost"], progress=False)
    assert len(report.fatal) == 1 and "ghost.png" in report.fatal[0]


def test_truncated_and_empty_files_are_fatal_and_named(tmp_path):
    write_pair(tmp_path, "a", square_label(1))
    write_pair(tmp_path, "cut", square_label(1))
    image = tmp_path / "VOC2007" / "JPEGImages" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(image)
    image.write_bytes(image.read_bytes()[:300])
    write_pair(tmp_path, "zero", square_label(1))
    (tmp_path / "VOC2007" / "SegmentationClass" / "zero.png").write_bytes(b"")
    report = audit_dataset(tmp_path, progress=False)
    assert len(report.fatal) == 1
    assert "cut.jpg" in report.fatal[0] and "zero.png" in report.fatal[0]
    assert "0 bytes" in report.fatal[0]


def test_many_files_are_named_ten_then_counted(tmp_path):
    for i in range(13):
        path = write_pair(tmp_path, f"rgb{i:02d}", square_label(1))
        Image.new("RGB", (8, 8)).save(path)
    report = audit_dataset(tmp_path, progress=False)
    assert "rgb09.png and 3 more" in report.fatal[0] and "rgb10" not in report.fatal[0]


def test_no_png_labels_mentions_jpeg_labels(tmp_path):
    labels = tmp_path / "VOC2007" / "SegmentationClass"
    labels.mkdir(parents=True)
    Image.new("L", (8, 8)).save(labels / "a.jpg")
    report = audit_dataset(tmp_path, progress=False)
    assert len(report.fatal) == 1 and "a.jpg" in report.fatal[0]


def test_split_is_sorted_reproducible_and_matches_the_original_draws():
    ids = [f"{i:02d}" for i in range(10)]
    splits = split_ids(ids[::-1], 0.8, 0.75, seed=0)
    assert splits == split_ids(ids, 0.8, 0.75, seed=0)
    # The original: random.seed(0); tv = random.sample(range(10), 8) -> [6, 9, 0, 2, 4, 3, 5, 1];
    # random.sample(tv, 6) -> [1, 0, 4, 9, 3, 2], over the (here sorted) file list.
    assert splits["test"] == ["07", "08"]
    assert splits["val"] == ["05", "06"]
    assert splits["train"] == ["00", "01", "02", "03", "04", "09"]
    assert splits["trainval"] == sorted(splits["train"] + splits["val"])
