"""labelme JSON -> VOC image + palette PNG, drawn with PIL, checked pixel by pixel."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

import json_to_dataset
from utils.errors import UserError
from utils.labelme import LabelmeError, labelme_to_label, shape_mask

CLASSES = ["_background_", "cat", "dog", "bird"]


def shape(label, points, shape_type):
    return {"label": label, "points": points, "shape_type": shape_type, "group_id": None,
            "flags": {}}


def write_json(path, shapes, image=None, image_path=None):
    data = {"version": "3.16.7", "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": 40, "imageWidth": 60}
    if image is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data["imageData"] = base64.b64encode(buffer.getvalue()).decode()
    path.write_text(json.dumps(data))


def run(tmp_path, *extra):
    json_to_dataset.main(["--json_path", str(tmp_path / "before"),
                          "--jpgs_path", str(tmp_path / "JPEGImages"),
                          "--pngs_path", str(tmp_path / "SegmentationClass"),
                          "--classes", *CLASSES, *extra])


def test_polygon_rectangle_and_circle_are_rasterised_with_class_indices(tmp_path, capsys):
    (tmp_path / "before").mkdir()
    shapes = [
        shape("cat", [[2, 2], [20, 2], [20, 20], [2, 20]], "polygon"),
        shape("dog", [[50, 30], [30, 10]], "rectangle"),  # corners given in reverse order
        shape("bird", [[10, 30], [10, 35]], "circle"),  # centre, then a point at radius 5
    ]
    write_json(tmp_path / "before" / "1.json", shapes, image=Image.new("RGBA", (60, 40), "red"))
    run(tmp_path)
    assert "Saved 1.jpg and 1.png" in capsys.readouterr().out

    label = Image.open(tmp_path / "SegmentationClass" / "1.png")
    assert label.mode == "P" and label.size == (60, 40)
    assert label.getpalette()[3:6] == [128, 0, 0]
    values = np.asarray(label)
    assert values[10, 10] == 1 and values[2, 2] == 1 and values[20, 20] == 1
    assert values[20, 40] == 2 and values[10, 30] == 2 and values[30, 50] == 2
    assert values[30, 10] == 3 and values[30, 14] == 3 and values[30, 16] == 0
    assert values[0, 0] == 0 and values[38, 58] == 0
    assert np.bincount(values.ravel(), minlength=4)[1] == 19 * 19
    assert np.bincount(values.ravel(), minlength=4)[2] == 21 * 21
    image = Image.open(tmp_path / "JPEGImages" / "1.jpg")
    assert image.mode == "RGB" and image.size == (60, 40)
    assert np.asarray(image)[20, 30, 0] > 240


def test_image_path_relative_to_the_json_and_later_shapes_on_top(tmp_path):
    (tmp_path / "before").mkdir()
    Image.new("RGB", (60, 40), (0, 0, 255)).save(tmp_path / "before" / "photo.jpg")
    shapes = [shape("cat", [[0, 0], [59, 39]], "rectangle"),
              shape("dog", [[30, 20]], "point"),
              shape("bird", [[0, 39], [59, 39]], "line")]
    write_json(tmp_path / "before" / "2.a.json", shapes, image_path="photo.jpg")
    image, label = labelme_to_label(tmp_path / "before" / "2.a.json", CLASSES)
    assert image.size == (60, 40)
    assert label[20, 30] == 2 and label[20, 25] == 2 and label[20, 24] == 1
    assert label[39, 30] == 3 and label[35, 30] == 3 and label[30, 30] == 1
    run(tmp_path)
    assert (tmp_path / "SegmentationClass" / "2.png").is_file()  # stem: text before the first dot


def test_unknown_class_names_the_file_the_name_and_the_known_classes(tmp_path):
    (tmp_path / "before").mkdir()
    write_json(tmp_path / "before" / "3.json", [shape("zebra", [[1, 1], [5, 5]], "rectangle")],
               image=Image.new("RGB", (60, 40)))
    with pytest.raises(LabelmeError) as error:
        run(tmp_path)
    message = str(error.value)
    assert "3.json" in message and "'zebra'" in message and "_background_, cat, dog" in message


def test_missing_image_and_empty_folder_are_clear_errors(tmp_path):
    (tmp_path / "before").mkdir()
    with pytest.raises(LabelmeError, match="No .json files"):
        run(tmp_path)
    write_json(tmp_path / "before" / "4.json", [], image_path="absent.jpg")
    with pytest.raises(UserError, match="absent.jpg"):
        run(tmp_path)


def test_unsupported_shape_type_is_rejected():
    with pytest.raises(ValueError, match="mask"):
        shape_mask((10, 10), [[1, 1]], "mask")
