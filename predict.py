"""Segment single images, a video or camera, or a folder; time the model; export it (ONNX,
TensorFlow SavedModel, TFLite).

The predictor settings (model_path, num_classes, backbone, input_shape, mix_type, ...) are set
in unet.py and can be overridden here with `--name value` like every parameter below.
"""

from utils.cli import run
from utils.config import load_config
from utils.predict_modes import run_predict

# ---- Mode -------------------------------------------------------------------------------------
# "predict" one image at a time, "video" a camera or video file, "fps" timing, "dir_predict" a
# whole folder, "export_onnx" write an ONNX model, "predict_onnx" run it, "export_savedmodel" a
# TensorFlow SavedModel, "export_tflite" a TFLite (LiteRT) model.
mode = "predict"

# ---- predict ----------------------------------------------------------------------------------
# Print the pixel count and ratio of each class.
count = False
# Class names for the count table, in index order.
name_classes = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                "pottedplant", "sheep", "sofa", "train", "tvmonitor"]

# ---- video ------------------------------------------------------------------------------------
# Camera index (0 = first webcam) or path of a video file.
video_path: int | str = 0
# Where to save the processed video ("" = don't save), e.g. "video_out.avi".
video_save_path = ""
# Frame rate of the saved video.
video_fps = 25.0

# ---- fps --------------------------------------------------------------------------------------
# How many runs to time (more runs = more accurate).
test_interval = 100
# The image to time.
fps_image_path = "img/street.jpg"

# ---- dir_predict ------------------------------------------------------------------------------
# Folder of images to segment.
dir_origin_path = "img/"
# Where results are saved (also in predict mode when there is no display).
dir_save_path = "img_out/"

# ---- export_onnx and predict_onnx -------------------------------------------------------------
# Simplify the graph with onnx-simplifier if it is installed.
simplify = True
# Path of the ONNX model.
onnx_save_path = "model_data/models.onnx"
# "" writes a float32 model, "int8" a statically quantized one (faster on CPUs with VNNI).
quantize = ""
# With quantize "int8": how many val images calibrate the activation ranges.
calibration_images = 32
# With quantize "int8": the dataset whose val split gives the calibration images.
VOCdevkit_path = "VOCdevkit"

# ---- export_savedmodel and export_tflite ------------------------------------------------------
# Folder of the TensorFlow SavedModel.
savedmodel_path = "model_data/saved_model"
# Path of the TFLite model, ending in .tflite.
tflite_path = "model_data/model.tflite"


def main(argv: list[str] | None = None) -> None:
    run_predict(load_config(__file__, argv, include=["unet.py"]))


if __name__ == "__main__":
    run(main)
