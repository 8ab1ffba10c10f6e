"""Image helpers shared by training and inference: reading, RGB conversion, letterbox, scaling."""

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
GRAY = (128, 128, 128)


class ImageReadError(UserError, ValueError):
    """An image or label file that cannot be read; the message names the file."""


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image; any failure (0-byte, truncated, not an image) names the file.

    EXIF orientation is deliberately not applied, like the original: labels are drawn on the
    stored pixels, so rotating only the image would misalign them.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes); replace or remove it.")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(
            f"{path}: cannot be read as an image ({error}); "
            "it is truncated or not an image file, replace or remove it."
        ) from error
    return image


def cvtColor(image: Image.Image) -> Image.Image:
    """Convert any PIL image (grey, palette, RGBA, CMYK, 16-bit) to 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        array = np.clip(np.round(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    return image.convert("RGB")


def letterbox_geometry(image_size: tuple[int, int], target_size: tuple[int, int]):
    """For an image (iw, ih) boxed into (w, h): resized (nw, nh) and paste offset (dx, dy)."""
    iw, ih = image_size
    w, h = target_size
    scale = min(w / iw, h / ih)
    nw, nh = max(1, int(iw * scale)), max(1, int(ih * scale))
    return nw, nh, (w - nw) // 2, (h - nh) // 2


def resize_image(image: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, int, int]:
    """Letterbox: bicubic resize keeping aspect ratio, centred on grey; size is (w, h)."""
    nw, nh, dx, dy = letterbox_geometry(image.size, size)
    canvas = Image.new("RGB", size, GRAY)
    canvas.paste(image.resize((nw, nh), Image.BICUBIC), (dx, dy))
    return canvas, nw, nh


def preprocess_input(image: np.ndarray) -> np.ndarray:
    """Scale pixel values from [0, 255] to [-1, 1], as the original weights expect."""
    return image / 127.5 - 1.0


def show_config(**kwargs: Any) -> None:
    """Print a two-column table of settings, as the original does."""
    print("Configurations:")
    print("-" * 70)
    print("|%25s | %40s|" % ("keys", "values"))
    print("-" * 70)
    for key, value in kwargs.items():
        print("|%25s | %40s|" % (str(key), str(value)))
    print("-" * 70)


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (any of IMAGE_EXTENSIONS, case-insensitive), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
