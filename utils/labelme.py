"""labelme JSON -> VOC image + palette label, rasterised with PIL: labelme is not needed, and
its changing return types across versions do not matter.

Shapes are drawn in file order, later ones over earlier ones, with labelme's own rules
(lines and line strips 10 px wide, points as discs of radius 5).
"""

import base64
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from utils.dataset import save_label
from utils.errors import UserError
from utils.utils import cvtColor, read_image

LINE_WIDTH = 10
POINT_RADIUS = 5


class LabelmeError(UserError, ValueError):
    """A labelme file that cannot be converted; the message names it."""


def shape_mask(size: tuple[int, int], points: Sequence, shape_type: str | None) -> np.ndarray:
    """Boolean (h, w) mask of one labelme shape on an image of size (w, h)."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    xy = [tuple(float(v) for v in point) for point in points]
    shape_type = shape_type or "polygon"
    if shape_type == "circle":
        (cx, cy), (px, py) = xy[:2]
        r = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy[:2]
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    elif shape_type in ("line", "linestrip"):
        draw.line(xy, fill=1, width=LINE_WIDTH)
    elif shape_type == "point":
        cx, cy = xy[0]
        r = POINT_RADIUS
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    elif shape_type == "polygon":
        draw.polygon(xy, outline=1, fill=1)
    else:
        raise ValueError(f"unsupported shape_type {shape_type!r} (polygon, rectangle, circle, "
                         "line, linestrip and point are supported)")
    return np.asarray(mask, bool)


def _load_image(data: dict, json_file: Path) -> Image.Image:
    """The image embedded as base64 `imageData`, else the file `imagePath` next to the JSON."""
    if data.get("imageData"):
        try:
            image = Image.open(io.BytesIO(base64.b64decode(data["imageData"])))
            image.load()
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise LabelmeError(f"{json_file}: imageData cannot be decoded ({error}).") from error
        return cvtColor(image)
    if not data.get("imagePath"):
        raise LabelmeError(f"{json_file}: has neither imageData nor imagePath.")
    return cvtColor(read_image(json_file.parent / data["imagePath"]))


def labelme_to_label(
    json_file: str | Path, classes: Sequence[str]
) -> tuple[Image.Image, np.ndarray]:
    """The RGB image of a labelme JSON and its label: each pixel holds its class's index."""
    json_file = Path(json_file)
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LabelmeError(f"{json_file}: not a valid labelme JSON file ({error}).") from error
    image = _load_image(data, json_file)
    label = np.zeros((image.height, image.width), np.uint8)
    for shape in data.get("shapes", []):
        name = shape["label"]
        if name not in classes:
            raise LabelmeError(f"{json_file}: class {name!r} is not in `classes`; add it there. "
                             f"Known classes: {', '.join(classes)}.")
        try:
            mask = shape_mask(image.size, shape["points"], shape.get("shape_type"))
        except (ValueError, IndexError) as error:
            raise LabelmeError(f"{json_file}: shape {name!r}: {error}") from error
        label[mask] = list(classes).index(name)
    return image, label


def convert_folder(
    json_path: str | Path, jpgs_path: str | Path, pngs_path: str | Path, classes: Sequence[str]
) -> list[str]:
    """Convert every `*.json` in `json_path`; returns the stems written."""
    json_files = sorted(Path(json_path).glob("*.json"))
    if not json_files:
        raise LabelmeError(f"No .json files found in {json_path}.")
    Path(jpgs_path).mkdir(parents=True, exist_ok=True)
    Path(pngs_path).mkdir(parents=True, exist_ok=True)
    stems = []
    for json_file in json_files:
        image, label = labelme_to_label(json_file, classes)
        stem = json_file.name.split(".")[0]
        image.save(Path(jpgs_path) / f"{stem}.jpg")
        save_label(label, Path(pngs_path) / f"{stem}.png")
        print(f"Saved {stem}.jpg and {stem}.png")
        stems.append(stem)
    return stems
