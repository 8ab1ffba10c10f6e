"""What train.py settles before the first epoch: the phases, the dataset's splits and audit,
a writable save_dir, the state to resume from, and the advice the original printed.

Every user mistake found here raises TrainingError with a message saying what to change,
before anything is written to save_dir.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.backend import accelerators
from utils.dataset import TOO_SMALL, TOO_SMALL_TO_CONTINUE, VOCLayout
from utils.dataset_audit import audit_dataset
from utils.errors import UserError
from utils.training_state import STATE_DIR, find_training_state, load_training_state

# The original warns when fewer optimizer steps than these are planned (adam / sgd).
WANTED_STEPS = {"adam": 1.5e4, "sgd": 5e4}
# Below this share of class-1 mask pixels, training prints advice about the loss.
SMALL_FOREGROUND = 0.3
# Settings a resumed run must share with the run that wrote the training state.
RESUME_KEYS = ("backbone", "num_classes", "input_shape", "Freeze_Train", "Freeze_Epoch",
               "best_metric")


class TrainingError(UserError, ValueError):
    """A dataset, folder or training-state problem found before training; says the fix."""


@dataclass(kw_only=True)
class Phase:
    """One `fit` call: the frozen-backbone phase or the unfrozen one."""

    frozen: bool
    batch_size: int
    start: int
    end: int
    first: bool  # the phase the run starts with (picks the original's "too small" message)

    @property
    def number(self) -> int:
        return 1 if self.frozen else 2


def plan_phases(cfg: Any, start: int) -> list[Phase]:
    """The original's phases: frozen [start, Freeze_Epoch), then unfrozen to UnFreeze_Epoch."""
    phases = []
    if cfg.Freeze_Train and start < cfg.Freeze_Epoch:
        phases.append(Phase(frozen=True, batch_size=cfg.Freeze_batch_size, start=start,
                            end=cfg.Freeze_Epoch, first=True))
    if cfg.Freeze_Train:
        start = max(start, cfg.Freeze_Epoch)
    if start < cfg.UnFreeze_Epoch:
        phases.append(Phase(frozen=False, batch_size=cfg.Unfreeze_batch_size, start=start,
                            end=cfg.UnFreeze_Epoch, first=not phases))
    return phases


def check_dataset(cfg: Any, layout: VOCLayout, phases: list[Phase]) -> tuple[list[str], list[str]]:
    """Read the splits, check each phase has a full batch, audit the labels; returns the ids.

    An empty val split (train_percent = 1) means training without validation: checkpoints and
    the best weights then follow the training loss, as the original's medical training did.
    """
    train_ids, val_ids = layout.read_split("train"), layout.read_split("val")
    if not train_ids:
        raise TrainingError(f"{layout.split_file('train')} is empty: run "
                            f"{layout.annotation_script} to split the dataset (training needs "
                            "at least one batch of images).")
    if not val_ids and cfg.best_metric == "val_miou":
        raise TrainingError(f"best_metric = \"val_miou\" but {layout.split_file('val')} is "
                            "empty: give the validation split images (train_percent below 1) "
                            "or follow \"val_loss\".")
    for phase in phases:
        if len(train_ids) < phase.batch_size or 0 < len(val_ids) < phase.batch_size:
            name = "Freeze_batch_size" if phase.frozen else "Unfreeze_batch_size"
            raise TrainingError(
                f"{TOO_SMALL if phase.first else TOO_SMALL_TO_CONTINUE} Dataset too small: "
                f"{len(train_ids)} training and {len(val_ids)} validation images, but {name} = "
                f"{phase.batch_size} and every epoch needs at least one full batch of each. Add "
                "images, lower the batch size, or give the validation split more images "
                f"(train_percent in {layout.annotation_script}).")
    report = audit_dataset(layout, cfg.num_classes, ids=train_ids + val_ids)
    for message in report.warnings:
        print(f"[warning] {message}")
    report.raise_if_fatal()
    if not val_ids:
        print(f"No validation images ({layout.split_file('val')} is empty): no val_loss or "
              "mIoU; the periodic and best checkpoints follow the training loss.")
    print_imbalance_advice(cfg, report.foreground_share)
    return train_ids, val_ids


def print_imbalance_advice(cfg: Any, foreground_share: float | None) -> None:
    """Masks whose target is a small share of the pixels: with plain cross-entropy a model
    trained from scratch predicts only background for many steps. On synthetic EM slices (23%
    membrane, ResNet50 from scratch, batch 4, evaluated every 24 steps) it first did better
    at step 96; with dice or focal loss at step 72, with focal + dice loss at step 48."""
    if foreground_share is None or foreground_share >= SMALL_FOREGROUND or cfg.focal_loss \
            or cfg.dice_loss:
        return
    print(f"[advice] The target (class 1) is {foreground_share:.1%} of the mask pixels. With "
          "plain cross-entropy a model first predicts only background for a while; "
          "--focal_loss True (with --dice_loss True, sooner still) gets past that in fewer "
          "steps.")


def check_writable(save_dir: Path) -> None:
    """Fail now, not after the first epoch, if checkpoints cannot be written to save_dir."""
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=save_dir):
            pass
    except OSError as error:
        raise TrainingError(f"save_dir = {str(save_dir)!r} is not writable ({error}); choose "
                            "another folder or fix its permissions.") from None


def find_resume_state(cfg: Any, save_dir: Path) -> tuple[Path, dict, dict]:
    """The training state to continue from, checked against the current settings."""
    folder = find_training_state(save_dir)
    if folder is None:
        raise TrainingError(f"resume = True but {save_dir / STATE_DIR} does not exist: no "
                            "interrupted run to continue in this save_dir. Point save_dir to "
                            "that run's folder, or train with resume = False.")
    state, optimizer_store = load_training_state(folder)
    for key, value in resume_settings(cfg).items():
        if state["settings"].get(key, value) != value:  # states of older runs lack some keys
            raise TrainingError(f"resume: {key} = {value!r} but the run in {folder} used "
                                f"{state['settings'][key]!r}; use the same value to continue it.")
    if state["epoch"] >= cfg.UnFreeze_Epoch:
        raise TrainingError(f"resume: the run in {folder} already finished {state['epoch']} "
                            f"epochs (UnFreeze_Epoch = {cfg.UnFreeze_Epoch}); raise UnFreeze_Epoch "
                            "to train longer.")
    return folder, state, optimizer_store


def resume_settings(cfg: Any) -> dict[str, Any]:
    """The settings stored with the training state, as JSON stores them (lists, not tuples)."""
    return {key: list(value) if isinstance(value := getattr(cfg, key), (list, tuple)) else value
            for key in RESUME_KEYS}


def warn_about_precision(cfg: Any) -> None:
    """float16 is for NVIDIA GPUs: TensorFlow has no fast float16 kernels on the CPU, where a
    VGG U-Net training step runs about 70x slower than in float32."""
    if cfg.mixed_precision == "float16" and not accelerators():
        print("[Warning] mixed_precision = \"float16\" without a GPU: float16 CPU "
              "kernels are very slow. Use \"bfloat16\" (fast on CPUs with AVX512_BF16 or AMX) "
              "or \"float32\".")


def print_step_warning(cfg: Any, num_train: int) -> None:
    """The original's advice when the planned number of optimizer steps is small."""
    wanted = WANTED_STEPS[cfg.optimizer_type]
    epoch_steps = num_train // cfg.Unfreeze_batch_size
    total = epoch_steps * cfg.UnFreeze_Epoch
    if total > wanted or epoch_steps == 0:
        return
    print(f"\n[Warning] With the {cfg.optimizer_type} optimizer, at least {wanted:.0f} training "
          "steps in total are recommended.")
    print(f"[Warning] This run has {num_train} training images, Unfreeze_batch_size "
          f"{cfg.Unfreeze_batch_size} and {cfg.UnFreeze_Epoch} epochs: {total} steps in total.")
    print(f"[Warning] Since {total} < {wanted:.0f}, consider UnFreeze_Epoch = "
          f"{int(wanted // epoch_steps + 1)}.")
