"""Segment single images, a video or camera, or a folder; time the model; export to ONNX.

The predictor settings (model_path, num_classes, backbone, input_shape, mix_type, ...) live in
unet.py's `_defaults` and can be overridden here with `--name value` like every parameter below.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from unet import Unet, export_onnx, onnx_forward
from utils.config import load_config, read_dict_help
from utils.dataset_audit import DatasetError
from utils.utils import ImageReadError, list_images, read_image

# ---------------------------------------------------------------------------------------------
#   mode: "predict" one image at a time, "video" a camera or video file, "fps" timing,
#   "dir_predict" a whole folder, "export_onnx" write an ONNX model, "predict_onnx" run it.
# ---------------------------------------------------------------------------------------------
mode = "predict"
# predict mode: print the pixel count and ratio of each class
count = False
# class names for the count table, in index order
name_classes = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
# video mode: camera index (0 = first webcam) or path of a video file
video_path = 0
# video mode: where to save the processed video ("" = don't save), e.g. "video_out.avi"
video_save_path = ""
# video mode: frame rate of the saved video
video_fps = 25.0
# fps mode: how many runs to time (more runs = more accurate)
test_interval = 100
# fps mode: the image to time
fps_image_path = "img/street.jpg"
# dir_predict mode: folder of images to segment
dir_origin_path = "img/"
# dir_predict mode (and predict mode without a display): where results are saved
dir_save_path = "img_out/"
# export_onnx mode: simplify the graph with onnx-simplifier if it is installed
simplify = True
# export_onnx / predict_onnx mode: path of the ONNX model
onnx_save_path = "model_data/models.onnx"
# export_onnx mode: "" writes a float32 model, "int8" a statically quantized one (CPU speed-up)
quantize = ""
# export_onnx mode with quantize "int8": how many val images calibrate the activation ranges
calibration_images = 32
# export_onnx mode with quantize "int8": the dataset whose val split gives calibration images
VOCdevkit_path = "VOCdevkit"

MODES = ("predict", "video", "fps", "dir_predict", "export_onnx", "predict_onnx")
QUANTIZE = ("", "int8")


def has_display() -> bool:
    """Windows and macOS always have one; on Linux a DISPLAY or WAYLAND_DISPLAY is needed."""
    return sys.platform != "linux" or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def predict_images(unet: Unet, cfg, show: bool) -> None:
    """Ask for file names until an empty line or EOF; show each result or save it headless."""
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
        r_image = unet.detect_image(image, count=cfg.count, name_classes=cfg.name_classes)
        if show:
            r_image.show()
        else:
            Path(cfg.dir_save_path).mkdir(parents=True, exist_ok=True)
            path = Path(cfg.dir_save_path) / Path(img).name
            r_image.save(path)
            print(f"No display: result saved to {path}")


def predict_video(unet: Unet, cfg, show: bool) -> None:
    """Segment every frame of a camera or video, with an FPS overlay; ESC quits."""
    if not show and not cfg.video_save_path:
        raise SystemExit("error: there is no display to show the video on; "
                         "set --video_save_path out.avi to save it instead.")
    capture = cv2.VideoCapture(cfg.video_path)
    ok, frame = capture.read()
    if not ok:
        raise ValueError(
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
            raise ValueError(f"Cannot write the video {cfg.video_save_path} with the XVID "
                             "codec; use a path ending in .avi.")
    fps = 0.0
    while ok:
        t1 = time.perf_counter()
        rgb = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        frame = cv2.cvtColor(np.asarray(unet.detect_image(rgb)), cv2.COLOR_RGB2BGR)
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


def predict_folder(unet: Unet, cfg) -> None:
    """Segment every image of dir_origin_path into dir_save_path, under the same names."""
    origin, out = Path(cfg.dir_origin_path), Path(cfg.dir_save_path)
    if not origin.is_dir():
        raise SystemExit(f"error: dir_origin_path {origin} is not a folder.")
    paths = list_images(origin)
    if not paths:
        print(f"No .jpg/.jpeg/.png/.bmp/.tif/.tiff images in {origin}.")
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(paths):
        unet.detect_image(read_image(path)).save(out / path.name)


def export_int8(unet: Unet, cfg) -> None:
    """Export float32 to a temporary file, quantize it into onnx_save_path, report agreement."""
    from utils.quantize import calibration_files, quantize_int8

    try:
        images = calibration_files(cfg.VOCdevkit_path, cfg.calibration_images)
    except DatasetError as error:
        raise SystemExit(f"error: {error}\nint8 calibration reads the val split of "
                         "VOCdevkit_path: set --VOCdevkit_path to your dataset.") from None
    with tempfile.TemporaryDirectory() as work:
        fp32_path = Path(work) / "float32.onnx"
        export_onnx(unet.model, fp32_path, cfg.simplify)
        quantize_int8(fp32_path, cfg.onnx_save_path, images, cfg.input_shape)
    int8 = Unet(forward=onnx_forward(cfg.onnx_save_path, cfg.input_shape), **unet.config)
    same = [np.mean(np.asarray(unet.get_miou_png(image)) == np.asarray(int8.get_miou_png(image)))
            for image in map(read_image, images[:4])]
    print(f"int8 and float32 class maps agree on {100 * np.mean(same):.2f}% of the pixels of "
          f"{len(same)} calibration images.")


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(__file__, argv, extra=Unet._defaults,
                      extra_help=read_dict_help(Path(__file__).with_name("unet.py"), "_defaults"))
    if cfg.mode not in MODES:
        raise SystemExit("error: Please specify the correct mode: "
                         f"{', '.join(repr(m) for m in MODES)} (got {cfg.mode!r}).")
    if cfg.count and len(cfg.name_classes) != cfg.num_classes:
        raise SystemExit(f"error: name_classes has {len(cfg.name_classes)} names but "
                         f"num_classes is {cfg.num_classes}; pass --name_classes, one per class.")
    if cfg.quantize not in QUANTIZE:
        raise SystemExit(f"error: quantize is {cfg.quantize!r}; use \"\" (float32) or \"int8\".")
    settings = {key: getattr(cfg, key) for key in Unet._defaults}

    if cfg.mode == "predict_onnx":
        unet = Unet(forward=onnx_forward(cfg.onnx_save_path, cfg.input_shape), **settings)
        print(f"{cfg.onnx_save_path} model loaded.")
        predict_images(unet, cfg, has_display())
        return
    unet = Unet(**settings)
    if cfg.mode == "predict":
        predict_images(unet, cfg, has_display())
    elif cfg.mode == "video":
        predict_video(unet, cfg, has_display())
    elif cfg.mode == "fps":
        tact_time = unet.get_FPS(read_image(cfg.fps_image_path), cfg.test_interval)
        fps = 1 / tact_time if tact_time > 0 else float("inf")
        print(f"{tact_time} seconds, {fps}FPS, @batch_size 1 ({tact_time * 1000:.1f} ms)")
    elif cfg.mode == "dir_predict":
        predict_folder(unet, cfg)
    elif cfg.mode == "export_onnx" and cfg.quantize == "int8":
        export_int8(unet, cfg)
    elif cfg.mode == "export_onnx":
        export_onnx(unet.model, cfg.onnx_save_path, cfg.simplify)


if __name__ == "__main__":
    main()
