"""The sample pictures shipped in img/, drawn from code: `python -m utils.sample_images`.

street.jpg is a street-like scene (sky, buildings, road, cars, people, trees) for the
original's first step, `python predict.py` with its VOC weights, and for the fps mode;
demo_1..4.jpg and demo_large.jpg are scenes like the demo dataset's, for the demo model.
The same seed always gives the same pictures.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from utils.demo_data import write_sample_pictures

# ---- Sample pictures ---------------------------------------------------------------------------
# Where the pictures go.
img_dir = "img"
# The same seed always gives the same pictures.
seed = 0

STREET_SIZE = (640, 480)  # (w, h)


def _muted(rng: np.random.Generator, low: int = 60, high: int = 200) -> tuple[int, int, int]:
    grey = rng.integers(low, high)
    return tuple(int(np.clip(grey + rng.integers(-25, 26), 0, 255)) for _ in range(3))


def _car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, w: float):
    """A side view of a car whose wheels touch y, from x to x + w."""
    h = w * 0.38
    body = tuple(int(c) for c in rng.integers(30, 230, 3))
    draw.rounded_rectangle([x, y - h, x + w, y - 0.25 * h], radius=h * 0.2, fill=body)
    draw.polygon([(x + 0.2 * w, y - h), (x + 0.3 * w, y - 1.6 * h), (x + 0.7 * w, y - 1.6 * h),
                  (x + 0.82 * w, y - h)], fill=body)
    draw.polygon([(x + 0.26 * w, y - h), (x + 0.33 * w, y - 1.5 * h),
                  (x + 0.67 * w, y - 1.5 * h), (x + 0.76 * w, y - h)], fill=(60, 80, 100))
    for centre in (x + 0.22 * w, x + 0.78 * w):
        r = 0.28 * h
        draw.ellipse([centre - r, y - 2 * r, centre + r, y], fill=(20, 20, 20))


def _person(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, h: float):
    """A standing person whose feet touch y."""
    clothes = tuple(int(c) for c in rng.integers(20, 200, 3))
    head = h * 0.12
    draw.ellipse([x - head / 2, y - h, x + head / 2, y - h + head], fill=(205, 160, 130))
    draw.rectangle([x - h * 0.1, y - h + head, x + h * 0.1, y - h * 0.45], fill=clothes)
    draw.rectangle([x - h * 0.08, y - h * 0.45, x + h * 0.08, y], fill=(40, 40, 70))


def street_scene(rng: np.random.Generator, size: tuple[int, int] = STREET_SIZE) -> np.ndarray:
    """An RGB street-like picture (uint8, h x w x 3)."""
    w, h = size
    horizon = int(h * 0.45)
    sky = np.linspace([120, 170, 230], [225, 235, 245], horizon)[:, None, :]
    pixels = np.zeros((h, w, 3))
    pixels[:horizon] = sky
    pixels[horizon:] = (95, 95, 90)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)

    x = 0
    while x < w:  # a row of buildings with windows
        width, top = rng.integers(60, 140), horizon - rng.integers(60, int(h * 0.4))
        draw.rectangle([x, top, x + width, horizon + 20], fill=_muted(rng))
        for wy in range(int(top) + 10, horizon, 22):
            for wx in range(int(x) + 8, int(x + width) - 14, 20):
                draw.rectangle([wx, wy, wx + 10, wy + 12], fill=(70, 90, 110))
        x += width + rng.integers(0, 10)
    draw.rectangle([0, horizon + 20, w, horizon + 40], fill=(150, 150, 145))  # pavement
    road_top = horizon + 40
    draw.polygon([(0, road_top), (w, road_top), (w, h), (0, h)], fill=(70, 70, 72))
    for lane_x in range(0, w, 80):  # lane markings
        draw.rectangle([lane_x, (road_top + h) / 2 - 3, lane_x + 40, (road_top + h) / 2 + 3],
                       fill=(230, 230, 220))
    for _ in range(2):  # trees on the pavement
        tx = rng.uniform(0.05, 0.95) * w
        draw.rectangle([tx - 5, horizon - 20, tx + 5, horizon + 30], fill=(90, 60, 30))
        draw.ellipse([tx - 35, horizon - 90, tx + 35, horizon - 10], fill=(50, 120, 50))
    for _ in range(rng.integers(2, 4)):
        _person(draw, rng, rng.uniform(0.05, 0.95) * w, horizon + 38, rng.uniform(70, 100))
    for lane in (0, 1):
        car_w = rng.uniform(150, 220) * (1 + 0.3 * lane)
        _car(draw, rng, rng.uniform(0, w - car_w), road_top + 60 + lane * 90, car_w)
    image = image.filter(ImageFilter.GaussianBlur(0.7))
    noise = rng.normal(0, 4, (h, w, 3))
    return np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8)


def write_samples(img_dir: str | Path = "img", seed: int = 0) -> list[Path]:
    """street.jpg and the demo-like pictures in `img_dir`."""
    img_dir = Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    street = img_dir / "street.jpg"
    Image.fromarray(street_scene(np.random.default_rng([seed, 3 * 10**6]))).save(street,
                                                                                 quality=90)
    return [street, *write_sample_pictures(img_dir, seed)]


def main(argv: list[str] | None = None) -> None:
    from utils.config import load_config

    cfg = load_config(__file__, argv)
    written = write_samples(cfg.img_dir, cfg.seed)
    print(f"Wrote {', '.join(p.name for p in written)} to {cfg.img_dir}/.")


if __name__ == "__main__":
    from utils.cli import run

    run(main)
