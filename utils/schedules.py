"""Learning-rate scaling by batch size and the per-epoch cos/step schedules."""

import dataclasses
import math
from collections.abc import Callable

OPTIMIZER_TYPES = ("adam", "sgd")
LR_DECAY_TYPES = ("cos", "step")

# (min, max) limits on the scaled initial LR; the minimum LR uses 1% of both.
_LR_LIMITS = {"adam": (1e-4, 1e-4), "sgd": (5e-4, 1e-1)}


def check_optimizer_type(optimizer_type: str) -> None:
    if optimizer_type not in OPTIMIZER_TYPES:
        raise ValueError(
            f"Unknown optimizer_type {optimizer_type!r}; expected one of {OPTIMIZER_TYPES}."
        )


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def fit_learning_rates(
    batch_size: int, Init_lr: float, Min_lr: float, optimizer_type: str, nbs: int = 16
) -> tuple[float, float]:
    """Scales the LRs by batch_size / nbs and clamps them to per-optimizer limits.

    As in the original, this pins Adam to 1e-4 / 1e-6 whatever `Init_lr` is.
    """
    check_optimizer_type(optimizer_type)
    lr_min, lr_max = _LR_LIMITS[optimizer_type]
    init_lr_fit = _clamp(batch_size / nbs * Init_lr, lr_min, lr_max)
    min_lr_fit = _clamp(batch_size / nbs * Min_lr, lr_min * 1e-2, lr_max * 1e-2)
    return init_lr_fit, min_lr_fit


@dataclasses.dataclass(frozen=True)
class WarmupCosineSchedule:
    """Quadratic warm-up, cosine decay, then a constant `min_lr` tail (YOLOX style)."""

    lr: float
    min_lr: float
    total_iters: float
    warmup_iters: float
    warmup_lr_start: float
    no_aug_iters: float

    def __call__(self, epoch: int) -> float:
        if epoch <= self.warmup_iters:
            progress = (epoch / self.warmup_iters) ** 2
            return float((self.lr - self.warmup_lr_start) * progress + self.warmup_lr_start)
        if epoch >= self.total_iters - self.no_aug_iters:
            return float(self.min_lr)
        decay_iters = self.total_iters - self.warmup_iters - self.no_aug_iters
        cosine = math.cos(math.pi * (epoch - self.warmup_iters) / decay_iters)
        return float(self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + cosine))


@dataclasses.dataclass(frozen=True)
class StepSchedule:
    """Multiplies `lr` by `decay_rate` every `step_size` epochs."""

    lr: float
    decay_rate: float
    step_size: float

    def __call__(self, epoch: int) -> float:
        return float(self.lr * self.decay_rate ** (epoch // self.step_size))


def get_lr_scheduler(
    lr_decay_type: str,
    lr: float,
    min_lr: float,
    total_iters: int,
    warmup_iters_ratio: float = 0.05,
    warmup_lr_ratio: float = 0.1,
    no_aug_iter_ratio: float = 0.05,
    step_num: int = 10,
) -> Callable[[int], float]:
    """Returns f(epoch) -> lr for `keras.callbacks.LearningRateScheduler`, epoch 0-based.

    Invalid settings raise here, before training starts, rather than at the first epoch.
    """
    if lr_decay_type == "cos":
        return WarmupCosineSchedule(
            lr=lr,
            min_lr=min_lr,
            total_iters=total_iters,
            warmup_iters=min(max(warmup_iters_ratio * total_iters, 1), 3),
            warmup_lr_start=max(warmup_lr_ratio * lr, 1e-6),
            no_aug_iters=min(max(no_aug_iter_ratio * total_iters, 1), 15),
        )
    if lr_decay_type == "step":
        if lr <= 0 or min_lr < 0:
            raise ValueError(
                f"The step schedule needs lr > 0 and min_lr >= 0, got lr={lr}, min_lr={min_lr}."
            )
        if step_num < 2:
            raise ValueError(f"step_num must be at least 2, got {step_num}.")
        step_size = total_iters / step_num
        if step_size < 1:
            raise ValueError(
                f"step_size must above 1. total_iters / step_num = {total_iters} / {step_num} "
                f"< 1: UnFreeze_Epoch must be at least step_num ({step_num}), "
                "or use lr_decay_type='cos'."
            )
        decay_rate = (min_lr / lr) ** (1 / (step_num - 1))
        return StepSchedule(lr=lr, decay_rate=decay_rate, step_size=step_size)
    raise ValueError(f"Unknown lr_decay_type {lr_decay_type!r}; expected one of {LR_DECAY_TYPES}.")

