"""Evaluate a trained U-Net on the VOC val split: predictions, mIoU table, plots and metrics.json.

The predictor settings (model_path, backbone, input_shape, ...) are set in unet.py's `_defaults`
or here with `--name value`; num_classes below is shared with the predictor.
"""

import time
from pathlib import Path

from unet import Unet, onnx_forward
from utils.config import load_config, read_dict_help
from utils.dataloader import read_split
from utils.metrics import (
    compute_mIoU,
    evaluate_split,
    per_class_iu,
    per_class_PA_Recall,
    per_class_Precision,
    predict_split,
    show_results,
)

# ---------------------------------------------------------------------------------------------
#   miou_mode chooses what to compute:
#   0: the whole pipeline, predictions then mIoU. 1: predictions only. 2: mIoU only.
# ---------------------------------------------------------------------------------------------
miou_mode = 0
# number of classes + 1 (background), e.g. 2 + 1
num_classes = 21
# names of the classes, in index order (e.g. ["_background_", "cat", "dog"])
name_classes = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
# folder holding the VOC dataset
VOCdevkit_path = "VOCdevkit"
# folder for the predictions (detection-results/), tables and plots
miou_out_path = "miou_out"
# score an ONNX model (e.g. predict.py --mode export_onnx --quantize int8) instead of model_path
onnx_path = ""


def print_speed(seconds: float, num_images: int) -> None:
    """Wall time per image, file reading and writing included: compare models with it."""
    print(f"{num_images} images in {seconds:.1f} s "
          f"({seconds / max(num_images, 1) * 1000:.0f} ms per image).")


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(__file__, argv, extra=Unet._defaults,
                      extra_help=read_dict_help(Path(__file__).with_name("unet.py"), "_defaults"))
    if cfg.miou_mode not in (0, 1, 2):
        raise SystemExit(f"error: miou_mode is {cfg.miou_mode!r}; use 0, 1 or 2.")
    if len(cfg.name_classes) != cfg.num_classes:
        raise SystemExit(
            f"error: name_classes has {len(cfg.name_classes)} names but num_classes is "
            f"{cfg.num_classes}; pass --name_classes with one name per class."
        )
    voc = Path(cfg.VOCdevkit_path) / "VOC2007"
    ids = read_split(voc / "ImageSets/Segmentation/val.txt")
    gt_dir = voc / "SegmentationClass"
    pred_dir = Path(cfg.miou_out_path) / "detection-results"

    if cfg.miou_mode in (0, 1):
        print("Load model.")
        settings = {key: getattr(cfg, key) for key in Unet._defaults}
        if cfg.onnx_path:
            unet = Unet(forward=onnx_forward(cfg.onnx_path, cfg.input_shape), **settings)
        else:
            unet = Unet(**settings)
        print("Load model done.")
        print("Get predict result.")
        start = time.perf_counter()
    if cfg.miou_mode == 1:
        predict_split(unet, cfg.VOCdevkit_path, ids, cfg.miou_out_path)
        print("Get predict result done.")
        print_speed(time.perf_counter() - start, len(ids))
        return
    if cfg.miou_mode == 0:  # the same call as training's evaluation callback
        hist = evaluate_split(unet, cfg.VOCdevkit_path, ids, cfg.miou_out_path, cfg.num_classes,
                              cfg.name_classes)["hist"]
        print_speed(time.perf_counter() - start, len(ids))
        IoUs, PA_Recall, Precision = (
            per_class_iu(hist), per_class_PA_Recall(hist), per_class_Precision(hist)
        )
    else:
        print("Get miou.")
        hist, IoUs, PA_Recall, Precision = compute_mIoU(gt_dir, pred_dir, ids, cfg.num_classes,
                                                        cfg.name_classes)
    print("Get miou done.")
    show_results(cfg.miou_out_path, hist, IoUs, PA_Recall, Precision, cfg.name_classes)


if __name__ == "__main__":
    main()
