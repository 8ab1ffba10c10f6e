"""train.py, predict.py, get_miou.py and summary.py on the backend that KERAS_BACKEND names,
in one process; tests/test_backends.py runs it once per backend and reads results.json.

    python tests/backend_run.py DATASET OUT START_WEIGHTS [--data-parallel]

Training starts from START_WEIGHTS (written on TensorFlow), so its losses are comparable with
TensorFlow's; the class maps of START_WEIGHTS on the val images go to start_maps.npy, those of
the same weights as the original's Keras 2 file (START_WEIGHTS with the suffix .legacy.h5) to
legacy_maps.npy, those of the checkpoint trained here to own_maps.npy. With --data-parallel
(JAX with two virtual CPU devices), a short run trains on one device and then on both
(results.json gets the largest weight difference), and the training runs after it train on
both devices too.
"""

import io
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import get_miou  # noqa: E402
import predict  # noqa: E402
import summary  # noqa: E402
import train as train_script  # noqa: E402
from utils.backend import BackendError  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.dataset import as_layout  # noqa: E402
from utils.distribute import KerasDistribution  # noqa: E402
from utils.predictor import Predictor  # noqa: E402
from utils.training import train  # noqa: E402
from utils.utils import read_image  # noqa: E402

SHAPE = ["--num_classes", "4", "--backbone", "vgg", "--input_shape", "32", "32"]
# 1 frozen + 2 unfrozen epochs of 2 SGD steps; the interrupted run stops inside phase 2.
TRAIN = [*SHAPE, "--Freeze_batch_size", "2", "--Unfreeze_batch_size", "2", "--Freeze_Epoch",
         "1", "--UnFreeze_Epoch", "3", "--save_period", "3", "--eval_period", "2",
         "--optimizer_type", "sgd", "--Init_lr", "1e-3", "--train_gpu", "[]"]
NAMES = ["--name_classes", "background", "circle", "square", "triangle"]


class InterruptAfter(keras.callbacks.Callback):
    """Ctrl-C right after epoch `epochs` ended (and its state was saved)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def config(dataset: Path, save_dir: Path, start: Path, *extra: str):
    return load_config(train_script.__file__, [*TRAIN, "--model_path", str(start),
                                               "--VOCdevkit_path", str(dataset),
                                               "--save_dir", str(save_dir), *extra])


def legacy_path(start: Path) -> Path:
    """Where the start weights lie as the original repository's Keras 2 `.h5` file."""
    return start.with_name(start.name.replace(".weights.h5", ".legacy.h5"))


def largest_difference(a: keras.Model, b: keras.Model) -> float:
    return max(float(np.max(np.abs(x - y)))
               for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def class_maps(model_path: Path, images: list) -> np.ndarray:
    predictor = Predictor(model_path=str(model_path), num_classes=4, backbone="vgg",
                          input_shape=(32, 32))
    return np.stack(predictor.predict_classes(images))


def train_resume_and_mix(dataset: Path, out: Path, start: Path) -> dict:
    straight = train(config(dataset, out / "straight", start))
    interrupted = False
    try:
        train(config(dataset, out / "resumed", start), callbacks=[InterruptAfter(2)])
    except KeyboardInterrupt:
        interrupted = True
    resumed = train(config(dataset, out / "resumed", start, "--resume", "True"))
    mixed = train(config(dataset, out / "bfloat16", start, "--UnFreeze_Epoch", "1",
                         "--mixed_precision", "bfloat16", "--eval_flag", "False"))
    return {"loss": straight.history["loss"], "val_loss": straight.history["val_loss"],
            "interrupted": interrupted, "resumed_loss": resumed.history["loss"],
            "resume_difference": largest_difference(straight.model, resumed.model),
            "bfloat16_loss": mixed.history["loss"]}


def run_scripts(dataset: Path, out: Path, start: Path, image_paths: list[Path]) -> dict:
    model = ["--model_path", str(out / "straight" / "last_epoch_weights.weights.h5"), *SHAPE]
    stdin, sys.stdin = sys.stdin, io.StringIO(f"{image_paths[0]}\n")
    try:
        predict.main([*model, "--mode", "predict", "--dir_save_path", str(out / "predict")])
    finally:
        sys.stdin = stdin
    predict.main([*model, "--mode", "dir_predict", "--dir_origin_path",
                  str(image_paths[0].parent), "--dir_save_path", str(out / "dir_predict")])
    predict.main([*model, "--mode", "fps", "--fps_image_path", str(image_paths[0]),
                  "--test_interval", "3"])
    video = out / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    for i in range(3):
        writer.write(np.full((40, 48, 3), 60 * i, np.uint8))
    writer.release()
    predict.main([*model, "--mode", "video", "--video_path", str(video), "--video_save_path",
                  str(out / "out.avi")])
    get_miou.main(["--model_path", str(start), *SHAPE, *NAMES, "--VOCdevkit_path",
                   str(dataset), "--miou_out_path", str(out / "miou_out")])
    summary.main(SHAPE)
    return {"refusals": tensorflow_only_refusals(dataset, out, start),
            "miou": json.loads((out / "miou_out" / "metrics.json").read_text())["mIoU"],
            "dir_predict": sorted(p.name for p in (out / "dir_predict").iterdir()),
            "video_frames": int(cv2.VideoCapture(str(out / "out.avi")).get(
                cv2.CAP_PROP_FRAME_COUNT))}


def tensorflow_only_refusals(dataset: Path, out: Path, start: Path) -> list[str]:
    """The one-line messages of an ONNX export and of a TF_CONFIG cluster on this backend."""
    messages = []
    try:
        predict.main(["--mode", "export_onnx", "--model_path", str(start), *SHAPE,
                      "--onnx_save_path", str(out / "never.onnx")])
    except BackendError as error:
        messages.append(str(error))
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                          "task": {"type": "worker", "index": 0}})
    try:
        train(config(dataset, out / "never", start))
    except BackendError as error:
        messages.append(str(error))
    finally:
        del os.environ["TF_CONFIG"]
    return messages


def data_parallel(dataset: Path, out: Path, start: Path) -> dict:
    """One frozen epoch of global batch 2 on one device, then on two."""
    argv = ["--UnFreeze_Epoch", "1",
            "--eval_flag", "False"]
    one = train(config(dataset, out / "one_device", start, *argv),
                strategy=KerasDistribution())
    two = train(config(dataset, out / "two_devices", start, *argv))
    return {"devices": len(two.model.trainable_variables[0].value.sharding.device_set),
            "data_parallel_difference": largest_difference(one.model, two.model),
            "losses": [one.history["loss"], two.history["loss"]]}


def main(dataset: Path, out: Path, start: Path, parallel: bool) -> None:
    results = {"backend": keras.backend.backend()}
    layout = as_layout(dataset)
    ids = (dataset / "VOC2007" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    image_paths = [layout.image_path(i) for i in ids]
    images = [read_image(path) for path in image_paths]
    np.save(out / "start_maps.npy", class_maps(start, images))
    np.save(out / "legacy_maps.npy", class_maps(legacy_path(start), images))
    if parallel:
        results |= data_parallel(dataset, out, start)
    results |= train_resume_and_mix(dataset, out, start)
    # Predicting single images needs one device: a batch of 1 does not split over two.
    keras.distribution.set_distribution(None)
    np.save(out / "own_maps.npy",
            class_maps(out / "straight" / "last_epoch_weights.weights.h5", images))
    results |= run_scripts(dataset, out, start, image_paths)
    results["tensorflow_imported"] = "tensorflow" in sys.modules
    (out / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), "--data-parallel" in sys.argv)
