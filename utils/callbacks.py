"""Training callbacks: loss history and curves, the val mIoU, the CSV log, and the order of
every callback in each `fit` (`training_callbacks`; the checkpoints are in checkpoints.py).

Callbacks with counters or histories follow the `Stateful` protocol, so `--resume` continues an
interrupted run exactly where it stopped.
"""

import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import scipy.signal
from matplotlib.figure import Figure
from PIL import Image

from utils.backend import is_tensorflow
from utils.checkpoints import NaNGuard, TrainingStateCheckpoint, WeightsCheckpoint
from utils.dataset import VOCLayout, as_layout
from utils.evaluation import evaluate_split
from utils.predictor import Predictor
from utils.utils import read_image

# Val images whose predicted overlay TensorBoard shows at each evaluation.
TENSORBOARD_IMAGES = 3


def _write_lines(path: Path, values: Sequence[float]) -> None:
    path.write_text("".join(f"{v}\n" for v in values), encoding="utf-8")


def save_curve_figure(path: Path, curves: list[dict], ylabel: str, title: str) -> None:
    """Draw line curves (kwargs for `Axes.plot` plus `x`, `y`) with the original's styling."""
    figure = Figure()
    axes = figure.subplots()
    for curve in curves:
        curve = dict(curve)
        axes.plot(curve.pop("x"), curve.pop("y"), **curve)
    axes.grid(True)
    axes.set_xlabel("Epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(loc="upper right")
    figure.savefig(path)


class LossHistory(keras.callbacks.Callback):
    """Writes epoch_loss.txt / epoch_val_loss.txt and plots epoch_loss.png after every epoch."""

    state_key = "loss_history"

    def __init__(self, log_dir: str | Path, *, val_loss_flag: bool = True):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.val_loss_flag = val_loss_flag
        self.losses: list[float] = []
        self.val_loss: list[float] = []
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.losses.append(float(logs["loss"]))
        if self.val_loss_flag:
            self.val_loss.append(float(logs["val_loss"]))
        self._write()

    def get_state(self) -> dict[str, Any]:
        return {"losses": self.losses, "val_loss": self.val_loss}

    def set_state(self, state: dict[str, Any]) -> None:
        self.losses, self.val_loss = list(state["losses"]), list(state["val_loss"])
        self._write()

    def _write(self) -> None:
        _write_lines(self.log_dir / "epoch_loss.txt", self.losses)
        if self.val_loss_flag:
            _write_lines(self.log_dir / "epoch_val_loss.txt", self.val_loss)
        if self.losses:
            self.loss_plot()

    def loss_plot(self) -> None:
        """The original's curve: raw losses plus Savitzky-Golay smoothing once there are enough."""
        epochs = list(range(len(self.losses)))
        series = [("train loss", self.losses, "red", "green")]
        if self.val_loss_flag:
            series.append(("val loss", self.val_loss, "coral", "#8B4513"))
        window = 5 if len(self.losses) < 25 else 15
        curves = [dict(x=epochs, y=y, color=c, linewidth=2, label=name) for name, y, c, _ in series]
        if len(self.losses) >= window:
            curves += [
                dict(x=epochs, y=scipy.signal.savgol_filter(y, window, 3), color=smooth_color,
                     linestyle="--", linewidth=2, label=f"smooth {name}")
                for name, y, _, smooth_color in series
            ]
        save_curve_figure(self.log_dir / "epoch_loss.png", curves, "Loss", "A Loss Curve")


class EvalCallback(keras.callbacks.Callback):
    """Every `period` epochs, the val-split mIoU computed exactly as get_miou.py computes it.

    Predictions go to a temporary folder inside `log_dir`, never the working directory, and are
    removed afterwards. The mIoU (in %) goes to epoch_miou.txt, epoch_miou.png and the epoch's
    logs as `val_miou`, which every later callback sees (TensorBoard, the CSV log, the best
    checkpoint, the progress line); TensorBoard also gets the first val images' overlays.
    """

    state_key = "eval"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        image_ids: Sequence[str],
        dataset: str | Path | VOCLayout,
        log_dir: str | Path,
        *,
        eval_flag: bool = True,
        period: int = 1,
    ):
        super().__init__()
        self.input_shape = list(input_shape)
        self.num_classes = num_classes
        self.image_ids = [line.split()[0] for line in image_ids if line.strip()]
        self.dataset = dataset
        self.log_dir = Path(log_dir)
        self.eval_flag = eval_flag
        self.period = period
        self.miou_out_path = self.log_dir / ".temp_miou_out"
        self.mious: list[float] = [0]
        self.epoches: list[int] = [0]
        self._predictor = None
        self._writer = None
        if self.eval_flag:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._write()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epoch = epoch + 1
        if not self.eval_flag or epoch % self.period:
            return
        if self._predictor is None:
            self._predictor = Predictor(model=self.model, num_classes=self.num_classes,
                                        input_shape=self.input_shape)
        print("Get miou.")
        result = evaluate_split(self._predictor, self.dataset, self.image_ids, self.miou_out_path,
                                self.num_classes)
        self.mious.append(float(result["mIoU"]) * 100)
        self.epoches.append(epoch)
        if logs is not None:
            logs["val_miou"] = self.mious[-1]
        self._write()
        self._log_overlays(epoch)
        print("Get miou done.")
        shutil.rmtree(self.miou_out_path, ignore_errors=True)

    def _log_overlays(self, epoch: int) -> None:
        """The first val images drawn with their predicted classes, for TensorBoard."""
        if not tensorboard_available():
            return
        import tensorflow as tf

        layout = as_layout(self.dataset)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "validation"))
        with self._writer.as_default(step=epoch):
            for image_id in self.image_ids[:TENSORBOARD_IMAGES]:
                classes = self.miou_out_path / "detection-results" / f"{image_id}.png"
                if classes.is_file():  # a skipped image has no prediction
                    overlay = self._predictor.draw(read_image(layout.image_path(image_id)),
                                                   np.asarray(Image.open(classes)))
                    tf.summary.image(f"prediction/{image_id}", np.asarray(overlay)[None])
        self._writer.flush()

    def get_state(self) -> dict[str, Any]:
        return {"mious": self.mious, "epoches": self.epoches}

    def set_state(self, state: dict[str, Any]) -> None:
        self.mious, self.epoches = list(state["mious"]), list(state["epoches"])
        if self.eval_flag:
            self._write()

    def _write(self) -> None:
        _write_lines(self.log_dir / "epoch_miou.txt", self.mious)
        curve = dict(x=self.epoches, y=self.mious, color="red", linewidth=2, label="train miou")
        save_curve_figure(self.log_dir / "epoch_miou.png", [curve], "Miou", "A Miou Curve")


class TrainingLog(keras.callbacks.CSVLogger):
    """training_log.csv; with mIoU evaluation on, its val_miou column is empty in the epochs
    without one (CSVLogger takes its columns from the first epoch). Without validation it has
    no val_ columns, where CSVLogger would add them filled with NA."""

    def __init__(self, path: Path, *, with_miou: bool, validated: bool = True):
        super().__init__(str(path), append=True)
        self.with_miou, self.validated = with_miou, validated

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        if self.with_miou:
            logs.setdefault("val_miou", "")
        if self.keys is None and not self.validated:
            self.keys = sorted(logs)
        super().on_epoch_end(epoch, logs)


def tensorboard_available() -> bool:
    """TensorBoard events are written with tf.summary: on the TensorFlow backend, when the
    tensorboard package is installed."""
    return is_tensorflow() and importlib.util.find_spec("tensorboard") is not None


def tensorboard_or_nothing(log_dir: Path) -> keras.callbacks.Callback:
    if tensorboard_available():
        return keras.callbacks.TensorBoard(str(log_dir))
    why = ("`pip install tensorboard` to get them" if is_tensorflow() else
           f"they need the TensorFlow backend, and KERAS_BACKEND is {keras.backend.backend()}")
    print(f"TensorBoard events are not written: {why}. The curves and the CSV log are.")
    return keras.callbacks.Callback()


def shared_callbacks(cfg: Any, save_dir: Path, log_dir: Path, layout: VOCLayout,
                     val_ids: Sequence[str]) -> list[keras.callbacks.Callback]:
    """The callback instances both phases share, so counters, best value and histories run on
    across the phase switch as in the original; in the order of `training_callbacks`.
    Without val images the checkpoints follow the training loss and nothing is evaluated."""
    validated = bool(val_ids)
    periodic = "ep{epoch:03d}-loss{loss:.3f}" + ("-val_loss{val_loss:.3f}" if validated else "")
    return [
        NaNGuard(),
        EvalCallback(cfg.input_shape, cfg.num_classes, val_ids, layout, log_dir,
                     eval_flag=cfg.eval_flag and validated, period=cfg.eval_period),
        tensorboard_or_nothing(log_dir),
        LossHistory(log_dir, val_loss_flag=validated),
        WeightsCheckpoint(save_dir / f"{periodic}.weights.h5", "periodic",
                          period=cfg.save_period),
        WeightsCheckpoint(save_dir / "last_epoch_weights.weights.h5", "last"),
        WeightsCheckpoint(save_dir / "best_epoch_weights.weights.h5", "best",
                          monitor=cfg.best_metric if validated else "loss", save_best_only=True),
        TrainingLog(log_dir / "training_log.csv", with_miou=cfg.eval_flag and validated,
                    validated=validated),
    ]


def training_callbacks(shared: list[keras.callbacks.Callback], schedule: Any,
                       state_saver: TrainingStateCheckpoint,
                       extra: Sequence[keras.callbacks.Callback] = (),
                       precise_bn: keras.callbacks.Callback | None = None,
                       ) -> list[keras.callbacks.Callback]:
    """One phase's callbacks, in the order Keras runs them at every epoch end:

    1. NaNGuard, first: a non-finite loss raises before anything of the epoch is saved;
    2. PreciseBatchNorm, if on: the statistics are re-estimated before anything reads them;
    3. the phase's LearningRateScheduler, which puts learning_rate into the logs;
    4. the mIoU evaluation, which puts val_miou into the logs of its epochs;
    5. TensorBoard, LossHistory, the periodic, last and best checkpoints and the CSV log, which
       read those logs (the shared instances, in that order);
    6. TrainingStateCheckpoint, which stores what all of them did;
    7. the caller's extra callbacks (Keras' progress line comes after all of these).
    """
    guard, *rest = shared
    scheduler = keras.callbacks.LearningRateScheduler(schedule, verbose=1)
    return [guard, *([precise_bn] if precise_bn else []), scheduler, *rest, state_saver,
            *extra]
