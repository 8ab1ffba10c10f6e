"""Evaluate a trained U-Net on the VOC val split: predictions, mIoU table, plots and metrics.json.

The predictor settings (model_path, backbone, input_shape, ...) are set in unet.py or here with
`--name value`; num_classes below is shared with the predictor.
"""

from utils.cli import run
from utils.config import load_config
from utils.evaluation import run_get_miou

# ---- What to compute --------------------------------------------------------------------------
# 0: the whole pipeline, predictions then mIoU. 1: predictions only. 2: mIoU only.
miou_mode = 0
# Number of classes + 1 (background), e.g. 2 + 1.
num_classes = 21
# Names of the classes, in index order (e.g. ["_background_", "cat", "dog"]).
name_classes = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                "pottedplant", "sheep", "sofa", "train", "tvmonitor"]

# ---- Files ------------------------------------------------------------------------------------
# Folder holding the VOC dataset.
VOCdevkit_path = "VOCdevkit"
# Folder for the predictions (detection-results/), tables and plots.
miou_out_path = "miou_out"
# Score an ONNX model (e.g. predict.py --mode export_onnx --quantize int8) instead of model_path.
onnx_path = ""


def main(argv: list[str] | None = None) -> None:
    run_get_miou(load_config(__file__, argv, include=["unet.py"]))


if __name__ == "__main__":
    run(main)
