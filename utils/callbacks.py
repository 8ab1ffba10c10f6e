"""Training callbacks: loss history and curves, mIoU evaluation, checkpoints and resumable state.

Stateful callbacks expose `get_state()` / `set_state(state)` so that `TrainingStateCheckpoint`
can store them with the weights and optimizer at every epoch end, and `--resume` can continue
an interrupted run exactly where it stopped (SPEC §9, §10; fixes D17).
"""

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import scipy.signal
from matplotlib.figure import Figure

from unet import Unet as Predictor
from utils.metrics import evaluate_split
from utils.weights import CheckpointWriteError, save_weights_atomic

STATE_DIR = "training_state"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; nothing from the bad epoch was saved."""


def _write_lines(path: Path, values: Sequence[float]) -> None:
    path.write_text("".join(f"{v}\n" for v in values), encoding="utf-8")


def _save_curve_figure(path: Path, curves: list[dict], ylabel: str, title: str) -> None:
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

    def __init__(self, log_dir: str | Path, val_loss_flag: bool = True):
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
        _save_curve_figure(self.log_dir / "epoch_loss.png", curves, "Loss", "A Loss Curve")


class EvalCallback(keras.callbacks.Callback):
    """Every `period` epochs, the val-split mIoU computed exactly as get_miou.py computes it.

    Predictions go to a temporary folder inside `log_dir` (not the working directory, D17),
    removed afterwards; mIoU (in %) goes to epoch_miou.txt and epoch_miou.png.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        image_ids: Sequence[str],
        dataset_path: str | Path,
        log_dir: str | Path,
        eval_flag: bool = True,
        period: int = 1,
        name_classes: Sequence[str] | None = None,
        batch_size: int = 4,
    ):
        super().__init__()
        self.input_shape = list(input_shape)
        self.num_classes = num_classes
        self.image_ids = [line.split()[0] for line in image_ids if line.strip()]
        self.dataset_path = dataset_path
        self.log_dir = Path(log_dir)
        self.eval_flag = eval_flag
        self.period = period
        self.name_classes = name_classes
        self.batch_size = batch_size
        self.miou_out_path = self.log_dir / ".temp_miou_out"
        self.mious: list[float] = [0]
        self.epoches: list[int] = [0]
        self._predictor = None
        if self.eval_flag:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._write()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epoch = epoch + 1
        if not self.eval_flag or epoch % self.period:
            return
        if self._predictor is None:
            self._predictor = Predictor(
                model=self.model, num_classes=self.num_classes, input_shape=self.input_shape
            )
        print("Get miou.")
        result = evaluate_split(
            self._predictor, self.dataset_path, self.image_ids, self.miou_out_path,
            self.num_classes, self.name_classes, batch_size=self.batch_size,
        )
        self.mious.append(float(result["mIoU"]) * 100)
        self.epoches.append(epoch)
        self._write()
        print("Get miou done.")
        shutil.rmtree(self.miou_out_path, ignore_errors=True)

    def get_state(self) -> dict[str, Any]:
        return {"mious": self.mious, "epoches": self.epoches}

    def set_state(self, state: dict[str, Any]) -> None:
        self.mious, self.epoches = list(state["mious"]), list(state["epoches"])
        if self.eval_flag:
            self._write()

    def _write(self) -> None:
        _write_lines(self.log_dir / "epoch_miou.txt", self.mious)
        curve = dict(x=self.epoches, y=self.mious, color="red", linewidth=2, label="train miou")
        _save_curve_figure(self.log_dir / "epoch_miou.png", [curve], "Miou", "A Miou Curve")


class WeightsCheckpoint(keras.callbacks.Callback):
    """Keras 2 `ModelCheckpoint(save_weights_only=True, period=...)` semantics, written atomically.

    `filepath` is formatted with `epoch` (1-based) and the epoch logs, e.g.
    "ep{epoch:03d}-loss{loss:.3f}-val_loss{val_loss:.3f}.weights.h5". The period counter and the
    best value persist across phases (and, through get_state, across resumes), as in the original.
    """

    def __init__(
        self,
        filepath: str | Path,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        period: int = 1,
    ):
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.period = period
        self.epochs_since_last_save = 0
        self.best = math.inf

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save < self.period:
            return
        self.epochs_since_last_save = 0
        if self.save_best_only:
            current = float(logs[self.monitor])
            if not current < self.best:
                return
            self.best = current
        save_weights_atomic(self.model, self.filepath.format(epoch=epoch + 1, **logs))

    def get_state(self) -> dict[str, Any]:
        return {"epochs_since_last_save": self.epochs_since_last_save, "best": self.best}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epochs_since_last_save = int(state["epochs_since_last_save"])
        self.best = float(state["best"])


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, before any checkpoint of that epoch is written.

    Must come first in the callback list: raising aborts `fit` without an `on_epoch_end`.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._check((logs or {}).get("loss"), f"epoch {self.epoch} batch {batch + 1}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for key in ("loss", "val_loss"):
            self._check(logs.get(key), f"epoch {epoch + 1} ({key})")

    def _check(self, value: Any, where: str) -> None:
        if value is not None and not np.isfinite(float(value)):
            raise NonFiniteLossError(
                f"loss became {float(value)} at {where}: lower Init_lr, check the labels "
                "(run voc_annotation.py to audit them), or turn mixed_precision off. Nothing "
                "from this epoch was saved: last_epoch_weights.weights.h5 and the training "
                "state hold the last good epoch."
            )


def _state_dirs(save_dir: Path) -> tuple[Path, Path, Path]:
    return save_dir / STATE_DIR, save_dir / f"{STATE_DIR}.tmp", save_dir / f"{STATE_DIR}.old"


def save_training_state(save_dir: str | Path, model: keras.Model, state: dict[str, Any]) -> None:
    """Write weights, optimizer variables and `state` to save_dir/training_state atomically.

    Everything goes to a temporary folder first, then replaces the previous state by renames,
    so an interruption at any point leaves one complete state (`load_training_state` falls
    back to training_state.old if it stopped between the two renames).
    """
    final, tmp, old = _state_dirs(Path(save_dir))
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        model.save_weights(tmp / "model.weights.h5")
        store: dict[str, np.ndarray] = {}
        model.optimizer.save_own_variables(store)
        np.savez(tmp / "optimizer.npz", **store)
        (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(
            f"{tmp} could not be written ({error}). Free disk space or set save_dir to another "
            f"folder; {final} keeps the previous epoch's state."
        ) from error
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def find_training_state(save_dir: str | Path) -> Path | None:
    """The folder of the latest complete training state in save_dir, or None."""
    final, _, old = _state_dirs(Path(save_dir))
    for folder in (final, old):
        if (folder / "state.json").is_file():
            return folder
    return None


def load_training_state(folder: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read state.json and the stored optimizer variables of a training-state folder."""
    folder = Path(folder)
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    with np.load(folder / "optimizer.npz") as optimizer_store:
        return state, dict(optimizer_store)


class TrainingStateCheckpoint(keras.callbacks.Callback):
    """Saves the resumable state after every epoch; must be the last callback in the list."""

    def __init__(
        self,
        save_dir: str | Path,
        stateful: dict[str, keras.callbacks.Callback],
        info: dict[str, Any],
    ):
        super().__init__()
        self.save_dir = Path(save_dir)
        self.stateful = stateful
        self.info = info
        self.phase = 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state = {
            "epoch": epoch + 1,
            "phase": self.phase,
            **self.info,
            "callbacks": {name: cb.get_state() for name, cb in self.stateful.items()},
        }
        save_training_state(self.save_dir, self.model, state)
