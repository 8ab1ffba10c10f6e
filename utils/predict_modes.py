"""predict.py's modes: segment typed image paths, a video or camera, a folder; time the model;
export to ONNX (float32 or int8), a TensorFlow SavedModel or TFLite; predict with the ONNX model."""

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from utils.backend import require_tensorflow
from utils.dataset import DatasetError
from utils.errors import UserError
from utils.exports import EXPORT_ON_TENSORFLOW
from utils.onnx_export import ONNX_ON_TENSORFLOW, export_onnx, onnx_forward
from utils.predictor import Predictor
from utils.settings import check_settings
from utils.utils import ImageReadError, list_images, read_image


class PredictError(UserError, ValueError):
    """A video, folder or dataset the mode cannot use; the message says what to set."""


def has_display() -> bool:
    """Windows and macOS always have one; on Linux a DISPLAY or WAYLAND_DISPLAY is needed."""
    return sys.platform != "linux" or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def predict_images(predictor: Predictor, cfg: Any) -> None:
    """Ask for file names until an empty line or EOF; show each result or save it headless."""
    show = has_display()
    while True:
        try:
            img = input("Input image filename:").strip()
        except EOFError:
            return
        if not img:
            return
        try:
            image = read_image(img)
        except ImageReadError:
            print("Open Error! Try again!")
            continue
        r_image = predictor.detect_image(image, count=cfg.count, name_classes=cfg.name_classes)
        if show:
            r_image.show()
        else:
            Path(cfg.dir_save_path).mkdir(parents=True, exist_ok=True)
            path = Path(cfg.dir_save_path) / Path(img).name
            r_image.save(path)
            print(f"No display: result saved to {path}")


def predict_video(predictor: Predictor, cfg: Any) -> None:
    """Segment every frame of a camera or video, with an FPS overlay; ESC quits."""
    show = has_display()
    if not show and not cfg.video_save_path:
        raise PredictError("there is no display to show the video on; set --video_save_path "
                           "out.avi to save it instead.")
    capture = cv2.VideoCapture(cfg.video_path)
    ok, frame = capture.read()
    if not ok:
        raise PredictError(
            "未能正确读取摄像头（视频），请注意是否正确安装摄像头（是否正确填写视频路径）。"
            f" Cannot read the camera or video {cfg.video_path!r}: check that the camera is "
            "connected or that the path is right."
        )
    writer = None
    if cfg.video_save_path:
        size = (frame.shape[1], frame.shape[0])
        writer = cv2.VideoWriter(cfg.video_save_path, cv2.VideoWriter_fourcc(*"XVID"),
                                 cfg.video_fps, size)
        if not writer.isOpened():
            raise PredictError(f"Cannot write the video {cfg.video_save_path} with the XVID "
                             "codec; use a path ending in .avi.")
    fps = 0.0
    while ok:
        t1 = time.perf_counter()
        rgb = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        frame = cv2.cvtColor(np.asarray(predictor.detect_image(rgb)), cv2.COLOR_RGB2BGR)
        fps = (fps + 1.0 / max(time.perf_counter() - t1, 1e-9)) / 2
        print("fps= %.2f" % fps)
        frame = cv2.putText(frame, "fps= %.2f" % fps, (0, 40), cv2.FONT_HERSHEY_SIMPLEX, 1,
                            (0, 255, 0), 2)
        if writer is not None:
            writer.write(frame)
        if show:
            cv2.imshow("video", frame)
            if cv2.waitKey(1) & 0xFF == 27:
                break
        ok, frame = capture.read()
    print("Video Detection Done!")
    capture.release()
    if writer is not None:
        print("Save processed video to the path :" + cfg.video_save_path)
        writer.release()
    if show:
        cv2.destroyAllWindows()


def predict_folder(predictor: Predictor, cfg: Any) -> None:
    """Segment every image of dir_origin_path into dir_save_path, under the same names."""
    origin, out = Path(cfg.dir_origin_path), Path(cfg.dir_save_path)
    if not origin.is_dir():
        raise PredictError(f"dir_origin_path {origin} is not a folder.")
    paths = list_images(origin)
    if not paths:
        print(f"No .jpg/.jpeg/.png/.bmp/.tif/.tiff images in {origin}.")
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(paths):
        predictor.detect_image(read_image(path)).save(out / path.name)


def export_int8(predictor: Predictor, cfg: Any) -> None:
    """Export float32 to a temporary file, quantize it into onnx_save_path, report agreement."""
    from utils.quantize import calibration_files, quantize_int8

    try:
        images = calibration_files(cfg.VOCdevkit_path, cfg.calibration_images)
    except DatasetError as error:
        raise PredictError(f"{error}\nint8 calibration reads the val split of VOCdevkit_path: "
                           "set --VOCdevkit_path to your dataset.") from None
    with tempfile.TemporaryDirectory() as work:
        fp32_path = Path(work) / "float32.onnx"
        export_onnx(predictor.model, fp32_path, simplify=cfg.simplify)
        quantize_int8(fp32_path, cfg.onnx_save_path, images, cfg.input_shape)
    int8 = Predictor(forward=onnx_forward(cfg.onnx_save_path, cfg.input_shape),
                     **predictor.config)
    same = [np.mean(np.asarray(predictor.get_miou_png(image))
                    == np.asarray(int8.get_miou_png(image)))
            for image in map(read_image, images[:4])]
    print(f"int8 and float32 class maps agree on {100 * np.mean(same):.2f}% of the pixels of "
          f"{len(same)} calibration images.")


def predict_fps(predictor: Predictor, cfg: Any) -> None:
    """Seconds per image of the model call, crop and argmax, as the original times them."""
    tact_time = predictor.get_FPS(read_image(cfg.fps_image_path), cfg.test_interval)
    fps = 1 / tact_time if tact_time > 0 else float("inf")
    print(f"{tact_time} seconds, {fps}FPS, @batch_size 1 ({tact_time * 1000:.1f} ms)")


def export_float32(predictor: Predictor, cfg: Any) -> None:
    export_onnx(predictor.model, cfg.onnx_save_path, simplify=cfg.simplify)


def export(predictor: Predictor, cfg: Any) -> None:
    (export_int8 if cfg.quantize == "int8" else export_float32)(predictor, cfg)


def export_savedmodel(predictor: Predictor, cfg: Any) -> None:
    from utils import exports

    exports.export_savedmodel(predictor.model, cfg.savedmodel_path)


def export_tflite(predictor: Predictor, cfg: Any) -> None:
    from utils import exports

    exports.export_tflite(predictor.model, cfg.tflite_path)


# Every mode of settings.PREDICT_MODES; predict_onnx runs `predict` on the ONNX model.
MODES = {"predict": predict_images, "video": predict_video, "fps": predict_fps,
         "dir_predict": predict_folder, "export_onnx": export, "predict_onnx": predict_images,
         "export_savedmodel": export_savedmodel, "export_tflite": export_tflite}

# Modes that convert through a TensorFlow graph, with what to do on another backend.
TENSORFLOW_MODES = {"export_onnx": ONNX_ON_TENSORFLOW, "export_savedmodel": EXPORT_ON_TENSORFLOW,
                    "export_tflite": EXPORT_ON_TENSORFLOW}


def run_predict(cfg: Any) -> None:
    """predict.py: build the predictor (on the ONNX model for predict_onnx), run the mode."""
    check_settings(cfg)
    if cfg.mode in TENSORFLOW_MODES:
        require_tensorflow(f"--mode {cfg.mode}", TENSORFLOW_MODES[cfg.mode])
    settings = Predictor.settings_of(cfg)
    if cfg.mode == "predict_onnx":
        predictor = Predictor(forward=onnx_forward(cfg.onnx_save_path, cfg.input_shape),
                              **settings)
        print(f"{cfg.onnx_save_path} model loaded.")
    else:
        predictor = Predictor(**settings)
    MODES[cfg.mode](predictor, cfg)
