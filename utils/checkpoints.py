"""Callbacks that write what training keeps: the weights checkpoints with the original's
period and best semantics, the per-epoch training state, and the guard that keeps a
non-finite loss out of both."""

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.errors import UserError
from utils.training_state import callback_states, save_training_state
from utils.weights import save_weights_atomic

# Metrics for which a higher value is better; for the others (losses) lower is better.
HIGHER_IS_BETTER = ("val_miou",)


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or Inf; nothing from the bad epoch was saved."""


class WeightsCheckpoint(keras.callbacks.Callback):
    """Keras 2 `ModelCheckpoint(save_weights_only=True, period=...)` semantics, written atomically.

    `filepath` is formatted with `epoch` (1-based) and the epoch logs, e.g.
    "ep{epoch:03d}-loss{loss:.3f}-val_loss{val_loss:.3f}.weights.h5". The period counter and the
    best value persist across phases (and, through get_state, across resumes), as in the original.
    With `save_best_only`, epochs whose logs lack `monitor` (no mIoU evaluation) are passed.
    """

    def __init__(
        self,
        filepath: str | Path,
        state_key: str,
        monitor: str = "val_loss",
        *,
        save_best_only: bool = False,
        period: int = 1,
    ):
        super().__init__()
        self.filepath = str(filepath)
        self.state_key = state_key
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.period = period
        self.epochs_since_last_save = 0
        self.sign = -1.0 if monitor in HIGHER_IS_BETTER else 1.0
        self.best = math.inf  # of sign * value: lower is better

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save < self.period:
            return
        self.epochs_since_last_save = 0
        if self.save_best_only:
            if self.monitor not in logs:
                return
            current = self.sign * float(logs[self.monitor])
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


class TrainingStateCheckpoint(keras.callbacks.Callback):
    """Saves the resumable state after every epoch: last in the list, after everything it
    records has run."""

    def __init__(self, save_dir: str | Path, callbacks: list[keras.callbacks.Callback],
                 info: dict[str, Any]):
        super().__init__()
        self.save_dir, self.callbacks, self.info = Path(save_dir), callbacks, info

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        state = {"epoch": epoch + 1, **self.info, "callbacks": callback_states(self.callbacks)}
        save_training_state(self.save_dir, self.model, state)


