"""The synthetic EM dataset: Medical_Datasets layout, 0/255 membrane labels, membranes 2-4 px
wide and dark but not the only dark things, deterministic, and cleaned exactly."""

import cv2
import numpy as np
from conftest import REPO
from PIL import Image

from utils import demo_manifest
from utils.em_data import main, make_em_slice, write_cell_picture, write_em_dataset


def generate(root, num_images=4, seed=0):
    write_em_dataset(root, num_images, seed)
    return sorted((root / "Images").iterdir()), sorted((root / "Labels").iterdir())


def slices(count=6):
    return [make_em_slice(np.random.default_rng([7, i])) for i in range(count)]


def test_files_are_greyscale_slices_with_0_255_labels(tmp_path):
    images, labels = generate(tmp_path / "em", num_images=5)
    assert [p.name for p in images] == [f"cell_{i:04d}.png" for i in range(5)]
    assert [p.name for p in labels] == [p.name for p in images]
    for image_file, label_file in zip(images, labels, strict=True):
        image, label = Image.open(image_file), Image.open(label_file)
        assert image.mode == label.mode == "L" and image.size == label.size == (128, 128)
        assert set(np.unique(np.asarray(label)).tolist()) == {0, 255}


def test_membranes_cover_about_a_fifth_and_are_2_to_4_px_wide():
    membranes = [(label == 0).astype(np.uint8) for _, label in slices()]
    share = np.mean([m.mean() for m in membranes])
    assert 0.12 < share < 0.35
    total = sum(int(m.sum()) for m in membranes)
    # Nothing 5 px across fits in a membrane (but at a few junctions); 2 px across mostly does.
    fits_5 = sum(int(cv2.erode(m, np.ones((5, 5), np.uint8)).sum()) for m in membranes)
    fits_2 = sum(int(cv2.erode(m, np.ones((2, 2), np.uint8)).sum()) for m in membranes)
    assert fits_5 < 0.05 * total and fits_2 > 0.4 * total


def test_membranes_are_dark_but_not_everything_dark_is_membrane():
    pairs = slices()
    membrane = np.concatenate([image[label == 0] for image, label in pairs]).astype(float)
    other = np.concatenate([image[label == 255] for image, label in pairs]).astype(float)
    assert other.mean() - membrane.mean() > 50
    assert (other < np.median(membrane)).mean() > 0.002  # the organelles


def test_same_arguments_give_identical_files(tmp_path):
    first, second = generate(tmp_path / "a"), generate(tmp_path / "b")
    for a, b in zip(first[0] + first[1], second[0] + second[1], strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    other = generate(tmp_path / "c", seed=1)
    assert other[0][0].read_bytes() != first[0][0].read_bytes()
    assert other[1][0].read_bytes() != first[1][0].read_bytes()


def test_cleaning_deletes_exactly_what_the_demo_wrote(tmp_path, capsys):
    users = tmp_path / "Medical_Datasets" / "mine" / "Images"
    users.mkdir(parents=True)
    (users / "slice.png").write_bytes(b"the user's own slice")
    dataset, logs = tmp_path / "Medical_Datasets" / "demo", tmp_path / "logs" / "demo_medical"
    write_em_dataset(dataset, 3, outputs=[logs])
    splits = dataset / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("cell_0000\n")
    logs.mkdir(parents=True)
    (logs / "epoch_loss.txt").write_text("0.5\n")
    demo_manifest.main([str(dataset)])
    assert "Deleted 8 files" in capsys.readouterr().out  # 3 images, 3 labels, split, log
    assert not dataset.exists() and not logs.exists()
    assert (users / "slice.png").read_bytes() == b"the user's own slice"


def test_the_demo_refuses_folders_holding_files_it_did_not_write(tmp_path, user_error):
    dataset = tmp_path / "demo"
    write_em_dataset(dataset, 2)
    mine = dataset / "Images" / "mine.png"
    mine.write_bytes(b"a user's slice")
    message = user_error(main, ["--out", str(dataset), "--num_images", "2"])
    assert str(mine) in message and "did not write" in message
    assert mine.read_bytes() == b"a user's slice"
    assert sorted(p.name for p in (dataset / "Labels").iterdir()) == ["cell_0000.png",
                                                                      "cell_0001.png"]


def test_command_line_writes_the_slices_and_the_cell_picture(tmp_path, capsys):
    dataset, picture = tmp_path / "demo", tmp_path / "img" / "cell.png"
    main(["--out", str(dataset), "--num_images", "2", "--cell_image", str(picture)])
    summary = capsys.readouterr().out
    assert "Wrote 2 EM slices" in summary and "% of pixels" in summary
    image = Image.open(picture)
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (256, 256)
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 2]).all() and pixels.std() > 20
    demo_manifest.clean_demo(dataset)
    assert not picture.exists()


def test_shipped_cell_picture_is_the_generated_one(tmp_path):
    fresh = np.asarray(Image.open(write_cell_picture(tmp_path / "cell.png")))
    shipped = Image.open(REPO / "img" / "cell.png")
    assert shipped.mode == "RGB" and np.array_equal(np.asarray(shipped), fresh)
