"""Image helpers: reading with named errors, RGB conversion of every mode, letterbox, scaling."""

import numpy as np
import pytest
from PIL import Image

from utils.utils import (
    ImageReadError,
    cvtColor,
    letterbox_geometry,
    preprocess_input,
    read_image,
    resize_image,
    show_config,
)


def test_read_image_names_bad_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    good = tmp_path / "good.jpg"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(good, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])

    with pytest.raises(ImageReadError, match=r"empty\.jpg: the file is empty"):
        read_image(empty)
    with pytest.raises(ImageReadError, match=r"notes\.jpg: cannot be read"):
        read_image(text)
    with pytest.raises(ImageReadError, match=r"truncated\.jpg: cannot be read"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match=r"missing\.jpg: file not found"):
        read_image(tmp_path / "missing.jpg")
    assert read_image(good).size == (40, 30)


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("L", (4, 3), 77), (77, 77, 77)),
        (Image.new("RGBA", (4, 3), (1, 2, 3, 0)), (1, 2, 3)),
        (Image.new("CMYK", (4, 3), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.fromarray(np.full((3, 4), 65535, np.uint16)), (255, 255, 255)),
        (Image.fromarray(np.full((3, 4), 32896, np.uint16)), (128, 128, 128)),
        (Image.fromarray(np.full((3, 4), 200, np.uint16)), (200, 200, 200)),
    ],
    ids=["grey", "rgba", "cmyk", "16bit-max", "16bit-mid", "16bit-small-values"],
)
def test_cvtcolor_gives_8bit_rgb(image, expected):
    rgb = cvtColor(image)
    assert rgb.mode == "RGB" and rgb.size == (4, 3)
    assert tuple(np.asarray(rgb)[0, 0]) == expected


def test_palette_image_uses_its_colours():
    image = Image.new("P", (2, 2), 1)
    image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    assert tuple(np.asarray(cvtColor(image))[0, 0]) == (128, 0, 0)


def test_letterbox_centres_on_grey():
    image = Image.new("RGB", (100, 50), (255, 0, 0))
    boxed, nw, nh = resize_image(image, (64, 64))
    assert (nw, nh) == (64, 32)
    pixels = np.asarray(boxed)
    assert tuple(pixels[0, 0]) == (128, 128, 128) and tuple(pixels[15, 10]) == (128, 128, 128)
    assert tuple(pixels[16, 10]) == (255, 0, 0) and tuple(pixels[47, 10]) == (255, 0, 0)
    assert tuple(pixels[48, 10]) == (128, 128, 128)
    assert letterbox_geometry((45, 90), (96, 64)) == (32, 64, 32, 0)
    assert letterbox_geometry((10000, 1), (64, 64))[:2] == (64, 1)  # never a zero-size resize


def test_preprocess_and_show_config(capsys):
    np.testing.assert_allclose(preprocess_input(np.array([0.0, 127.5, 255.0])), [-1, 0, 1])
    show_config(num_classes=21, backbone="vgg")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Configurations:" and lines[1] == "-" * 70
    assert lines[2] == "|%25s | %40s|" % ("keys", "values")
    assert lines[4] == "|%25s | %40s|" % ("num_classes", "21")
