"""Regenerate README's pictures in docs/ from the demo run: `make docs` (runs `make demo` first
if its checkpoint is missing).

Writes demo_overlay.png (inputs beside the predictor's mix_type 0 overlay), loss.png and
miou_curve.png (the curves train.py drew in the newest loss_* folder of log_dir) and
miou_per_class.png (get_miou.py's per-class IoU bars on the val split). Every picture is made by
the code that makes it for users; this script only arranges and shrinks them.
"""

import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from utils.errors import MissingFileError

model_path = "logs/demo/best_epoch_weights.weights.h5"  # the checkpoint to show (make demo's)
num_classes = 4  # number of classes + 1 (background) of that checkpoint
backbone = "resnet50"  # encoder of that checkpoint: vgg or resnet50
input_shape = [64, 64]  # [height, width] the checkpoint was trained at
name_classes = ["background", "circle", "square", "triangle"]  # class names, in index order
images = ["img/demo_1.jpg", "img/demo_2.jpg", "img/demo_3.jpg"]  # inputs shown in the overlay
log_dir = "logs/demo"  # training's save_dir: its newest loss_* folder holds the curves
VOCdevkit_path = "VOCdevkit/demo"  # dataset whose val split gives the per-class bars
out_dir = "docs"  # where the PNGs go
max_kb = 150  # fewer colours, then a warning, when a picture is larger (they are committed)


def save_small_png(image: Image.Image, path: Path, max_bytes: int) -> int:
    """Save as an optimised palette PNG of 256 colours, or fewer (down to 64) while it is larger
    than max_bytes; plots and small photos look the same. Returns the size in bytes."""
    for colours in (256, 128, 64):
        image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True)
        if path.stat().st_size <= max_bytes:
            break
    return path.stat().st_size


def overlay_figure(unet, image_paths: list[str], names: list[str]) -> Image.Image:
    """Inputs on the top row, the predictor's overlays below, a colour legend at the bottom."""
    from utils.utils import read_image

    inputs = [read_image(p) for p in image_paths]
    overlays = [unet.detect_image(image) for image in inputs]
    figure = Figure(figsize=(2.6 * len(inputs), 4.6), dpi=100)
    axes = figure.subplots(2, len(inputs), squeeze=False)
    for column, (image, overlay) in enumerate(zip(inputs, overlays, strict=True)):
        for row, (picture, title) in enumerate([(image, "input"), (overlay, "prediction")]):
            axes[row, column].imshow(np.asarray(picture))
            axes[row, column].set_title(f"{title}: {Path(image_paths[column]).name}", fontsize=9)
            axes[row, column].axis("off")
    legend = [Patch(color=unet.colors[i] / 255, label=name) for i, name in enumerate(names)]
    figure.legend(handles=legend, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return _to_image(figure)


def _to_image(figure: Figure) -> Image.Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def newest_curves(save_dir: str | Path) -> Path:
    """The newest loss_* folder with a loss curve (training writes one per run)."""
    folders = sorted(p.parent for p in Path(save_dir).glob("loss_*/epoch_loss.png"))
    if not folders:
        raise MissingFileError(f"no {save_dir}/loss_*/epoch_loss.png: run make demo first.")
    return folders[-1]


def main(argv: list[str] | None = None) -> None:
    from unet import Unet
    from utils.config import load_config

    cfg = load_config(__file__, argv)
    if not Path(cfg.model_path).is_file():
        raise MissingFileError(f"{cfg.model_path} not found: run make demo first.")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(model_path=cfg.model_path, num_classes=cfg.num_classes,
                    backbone=cfg.backbone, input_shape=cfg.input_shape)
    limit = cfg.max_kb * 1024
    sizes = {"demo_overlay.png": save_small_png(
        overlay_figure(Unet(**settings, mix_type=0), cfg.images, cfg.name_classes),
        out / "demo_overlay.png", limit)}

    curves = newest_curves(cfg.log_dir)
    for source, target in [("epoch_loss.png", "loss.png"), ("epoch_miou.png", "miou_curve.png")]:
        sizes[target] = save_small_png(Image.open(curves / source), out / target, limit)

    import get_miou

    with tempfile.TemporaryDirectory() as work:
        get_miou.main(["--model_path", cfg.model_path, "--num_classes", str(cfg.num_classes),
                       "--backbone", cfg.backbone, "--input_shape", *map(str, cfg.input_shape),
                       "--name_classes", *cfg.name_classes, "--VOCdevkit_path",
                       cfg.VOCdevkit_path, "--miou_out_path", work])
        sizes["miou_per_class.png"] = save_small_png(Image.open(Path(work) / "mIoU.png"),
                                                     out / "miou_per_class.png", limit)

    for name, size in sizes.items():
        note = f"  (larger than {cfg.max_kb} KB)" if size > cfg.max_kb * 1024 else ""
        print(f"{out / name}: {size / 1024:.0f} KB{note}")


if __name__ == "__main__":
    from utils.cli import run

    run(main)
