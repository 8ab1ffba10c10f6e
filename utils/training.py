"""Two-phase U-Net training: checks, model set-up, frozen then unfrozen `fit`, resumable state.

`train(cfg)` is everything train.py does (SPEC §10). All user mistakes are found before the
first epoch and before anything is written to save_dir, and raised as `TrainingError` with a
message saying what to change.
"""

import copy
import importlib.util
import signal
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nets.unet import BACKBONES, Unet, check_input_shape, freeze_backbone
from utils.callbacks import (
    STATE_DIR,
    EvalCallback,
    LossHistory,
    NaNGuard,
    NonFiniteLossError,
    TrainingStateCheckpoint,
    WeightsCheckpoint,
    find_training_state,
    load_training_state,
)
from utils.dataloader import make_dataset, read_split, steps_per_epoch
from utils.dataset_audit import DatasetError, audit_dataset
from utils.distribute import (
    DistributeError,
    check_batch_sizes,
    check_same_start,
    clean_worker_dir,
    distribute_batches,
    select_strategy,
    worker_dir,
)
from utils.precision import POLICIES, dtype_policy
from utils.recipe import apply_weight_decay, compile_for_training
from utils.schedules import (
    LR_DECAY_TYPES,
    OPTIMIZER_TYPES,
    get_lr_scheduler,
)
from utils.utils import show_config
from utils.weights import CheckpointWriteError, load_weights

# mixed_precision values; False is kept for configs written as the PyTorch sibling's `fp16 = False`.
PRECISIONS = (*POLICIES, False)
# The original warns when fewer optimizer steps than these are planned (adam / sgd).
WANTED_STEPS = {"adam": 1.5e4, "sgd": 5e4}
SMALL_DATASET = {
    True: "数据集过小，无法进行训练，请扩充数据集。",
    False: "数据集过小，无法继续进行训练，请扩充数据集。",
}
# Settings a resumed run must share with the run that wrote the training state.
RESUME_KEYS = ("backbone", "num_classes", "input_shape", "Freeze_Train", "Freeze_Epoch")


class TrainingError(ValueError):
    """A setting, dataset or state problem found before (or stopping) training; says the fix."""


# Errors whose message is the whole story: train.py prints them without a traceback.
USER_ERRORS = (TrainingError, DatasetError, DistributeError, NonFiniteLossError,
               CheckpointWriteError)


@dataclass
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


@dataclass
class TrainingResult:
    model: keras.Model
    log_dir: Path
    epoch: int  # epochs completed (1-based count)
    history: dict[str, list[float]] = field(default_factory=dict)


def plan_phases(cfg: Any, start: int) -> list[Phase]:
    """The original's phases: frozen [start, Freeze_Epoch), then unfrozen to UnFreeze_Epoch."""
    phases = []
    if cfg.Freeze_Train and start < cfg.Freeze_Epoch:
        phases.append(Phase(True, cfg.Freeze_batch_size, start, cfg.Freeze_Epoch, True))
    if cfg.Freeze_Train:
        start = max(start, cfg.Freeze_Epoch)
    if start < cfg.UnFreeze_Epoch:
        phases.append(Phase(False, cfg.Unfreeze_batch_size, start, cfg.UnFreeze_Epoch, not phases))
    return phases


def check_settings(cfg: Any) -> None:
    """Reject impossible settings with a message naming the parameter and what to use instead."""
    if cfg.backbone not in BACKBONES:
        raise TrainingError(f"backbone = {cfg.backbone!r} is not supported; use one of "
                            f"{sorted(BACKBONES)}.")
    if cfg.optimizer_type not in OPTIMIZER_TYPES:
        raise TrainingError(f"optimizer_type = {cfg.optimizer_type!r} is not supported; use one "
                            f"of {OPTIMIZER_TYPES}.")
    if cfg.lr_decay_type not in LR_DECAY_TYPES:
        raise TrainingError(f"lr_decay_type = {cfg.lr_decay_type!r} is not supported; use one "
                            f"of {LR_DECAY_TYPES}.")
    if cfg.mixed_precision not in PRECISIONS:
        raise TrainingError(f"mixed_precision = {cfg.mixed_precision!r}; use \"float32\" (off), "
                            "\"float16\" (NVIDIA GPUs) or \"bfloat16\" (recent GPUs and CPUs).")
    if int(cfg.num_classes) < 2:
        raise TrainingError(f"num_classes = {cfg.num_classes}, but it counts the background too: "
                            "use the number of object classes + 1 (at least 2).")
    if len(np.ravel(cfg.cls_weights)) != cfg.num_classes:
        raise TrainingError(f"cls_weights has {len(np.ravel(cfg.cls_weights))} values but "
                            f"num_classes = {cfg.num_classes}; give one weight per class.")
    try:
        check_input_shape(cfg.input_shape)
        get_lr_scheduler(cfg.lr_decay_type, cfg.Init_lr, cfg.Min_lr, cfg.UnFreeze_Epoch)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    positive = ("Freeze_batch_size", "Unfreeze_batch_size", "UnFreeze_Epoch", "save_period",
                "eval_period")
    for name in positive:
        if int(getattr(cfg, name)) < 1:
            raise TrainingError(f"{name} = {getattr(cfg, name)}; it must be at least 1.")
    if cfg.Init_lr <= 0 or cfg.Min_lr < 0 or cfg.weight_decay < 0:
        raise TrainingError(f"Init_lr = {cfg.Init_lr}, Min_lr = {cfg.Min_lr}, weight_decay = "
                            f"{cfg.weight_decay}: need Init_lr > 0 and Min_lr, weight_decay >= 0.")
    if cfg.Freeze_Train and cfg.Freeze_Epoch > cfg.UnFreeze_Epoch:
        raise TrainingError(f"Freeze_Epoch = {cfg.Freeze_Epoch} is after UnFreeze_Epoch = "
                            f"{cfg.UnFreeze_Epoch} (the total number of epochs); lower it.")
    if cfg.model_path and not cfg.resume and not Path(cfg.model_path).is_file():
        raise TrainingError(
            f"model_path = {cfg.model_path!r} does not exist. Checkpoints are written to logs/ "
            "during training and downloaded weights go to model_data/; set model_path to an "
            "existing file, or to \"\" to train from random weights.")


def check_dataset(cfg: Any, phases: list[Phase]) -> tuple[list[str], list[str]]:
    """Read the splits, check each phase has a full batch, audit the labels; returns the ids."""
    splits = Path(cfg.VOCdevkit_path) / "VOC2007" / "ImageSets" / "Segmentation"
    train_ids, val_ids = read_split(splits / "train.txt"), read_split(splits / "val.txt")
    for name, ids in (("train.txt", train_ids), ("val.txt", val_ids)):
        if not ids:
            raise TrainingError(f"{splits / name} is empty: run voc_annotation.py to split the "
                                "dataset (every split needs at least one batch of images).")
    for phase in phases:
        if len(train_ids) < phase.batch_size or len(val_ids) < phase.batch_size:
            name = "Freeze_batch_size" if phase.frozen else "Unfreeze_batch_size"
            raise TrainingError(
                f"{SMALL_DATASET[phase.first]} Dataset too small: {len(train_ids)} training and "
                f"{len(val_ids)} validation images, but {name} = {phase.batch_size} and every "
                "epoch needs at least one full batch of each. Add images, lower the batch size, "
                "or give the validation split more images (train_percent in voc_annotation.py).")
    report = audit_dataset(cfg.VOCdevkit_path, cfg.num_classes, ids=train_ids + val_ids)
    for message in report.warnings:
        print(f"[warning] {message}")
    report.raise_if_fatal()
    return train_ids, val_ids


def check_writable(save_dir: str | Path) -> None:
    """Fail now, not after the first epoch, if checkpoints cannot be written to save_dir."""
    try:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=save_dir):
            pass
    except OSError as error:
        raise TrainingError(f"save_dir = {str(save_dir)!r} is not writable ({error}); choose "
                            "another folder or fix its permissions.") from None


def find_resume_state(cfg: Any) -> tuple[Path, dict, dict]:
    """The training state to continue from, checked against the current settings."""
    folder = find_training_state(cfg.save_dir)
    if folder is None:
        raise TrainingError(f"resume = True but {Path(cfg.save_dir) / 'training_state'} does not "
                            "exist: no interrupted run to continue in this save_dir. Point "
                            "save_dir to that run's folder, or train with resume = False.")
    state, optimizer_store = load_training_state(folder)
    for key in RESUME_KEYS:
        value = getattr(cfg, key)
        value = list(value) if isinstance(value, (list, tuple)) else value
        if state["settings"][key] != value:
            raise TrainingError(f"resume: {key} = {value!r} but the run in {folder} used "
                                f"{state['settings'][key]!r}; use the same value to continue it.")
    if state["epoch"] >= cfg.UnFreeze_Epoch:
        raise TrainingError(f"resume: the run in {folder} already finished {state['epoch']} "
                            f"epochs (UnFreeze_Epoch = {cfg.UnFreeze_Epoch}); raise UnFreeze_Epoch "
                            "to train longer.")
    return folder, state, optimizer_store


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (D15): the same seed gives the same initial weights."""
    keras.utils.set_random_seed(seed)


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


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a job scheduler) stops training like Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_model(cfg: Any, strategy: tf.distribute.Strategy, resume_folder: Path | None):
    """The U-Net with weight decay, its weights from the training state or model_path."""
    with strategy.scope():
        model = Unet([*cfg.input_shape, 3], cfg.num_classes, cfg.backbone)
        apply_weight_decay(model, cfg.weight_decay)
        if resume_folder is not None:
            model.load_weights(resume_folder / "model.weights.h5")
            print(f"Resumed weights from {resume_folder / 'model.weights.h5'}.")
        elif cfg.model_path:
            try:
                load_weights(model, cfg.model_path, cfg.backbone, strict=False)
            except (ValueError, FileNotFoundError) as error:
                raise TrainingError(str(error)) from None
    return model


def show_training_config(cfg: Any, num_train: int, num_val: int, replicas: int) -> None:
    batch_note = f" (global, split over {replicas} devices)" if replicas > 1 else ""
    keys = ("num_classes", "backbone", "model_path", "input_shape", "Init_Epoch", "Freeze_Epoch",
            "UnFreeze_Epoch", "Freeze_batch_size", "Unfreeze_batch_size", "Freeze_Train",
            "Init_lr", "Min_lr", "optimizer_type", "momentum", "lr_decay_type", "save_period",
            "save_dir", "num_workers")
    table = {key: getattr(cfg, key) for key in keys}
    for key in ("Freeze_batch_size", "Unfreeze_batch_size"):
        table[key] = f"{table[key]}{batch_note}"
    table.update(num_train=num_train, num_val=num_val)
    extra = ("weight_decay", "eval_flag", "eval_period", "dice_loss", "focal_loss", "seed",
             "resume", "mixed_precision")
    table.update({key: getattr(cfg, key) for key in extra})
    show_config(**table)


def make_callbacks(cfg: Any, log_dir: Path, val_ids: list[str]) -> dict:
    """The callback instances both phases share (as in the original), in their run order.

    NaNGuard comes first, so a bad epoch raises before anything of it is saved.
    """
    save_dir = Path(cfg.save_dir)
    if importlib.util.find_spec("tensorboard"):
        tensorboard = keras.callbacks.TensorBoard(str(log_dir))
    else:
        print("TensorBoard events are not written: `pip install tensorboard` to get them.")
        tensorboard = keras.callbacks.Callback()
    return {
        "nan_guard": NaNGuard(),
        "tensorboard": tensorboard,
        "loss_history": LossHistory(log_dir),
        "periodic": WeightsCheckpoint(
            save_dir / "ep{epoch:03d}-loss{loss:.3f}-val_loss{val_loss:.3f}.weights.h5",
            period=cfg.save_period),
        "last": WeightsCheckpoint(save_dir / "last_epoch_weights.weights.h5"),
        "best": WeightsCheckpoint(save_dir / "best_epoch_weights.weights.h5",
                                  save_best_only=True),
        "eval": EvalCallback(cfg.input_shape, cfg.num_classes, val_ids, cfg.VOCdevkit_path,
                             log_dir, eval_flag=cfg.eval_flag, period=cfg.eval_period),
        "csv": keras.callbacks.CSVLogger(str(log_dir / "training_log.csv"), append=True),
    }


def train(
    cfg: Any,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainingResult:
    """Run train.py's whole job for a config from `load_config` (see train.py for the keys).

    `strategy` overrides the one chosen from train_gpu and TF_CONFIG; `callbacks` are added to
    every `fit`. On a non-chief worker everything is written to a private folder (see
    `utils.distribute.worker_dir`), of which only the training state is kept.
    """
    check_settings(cfg)
    strategy = strategy or select_strategy(cfg.train_gpu)
    print(f"Number of devices: {strategy.num_replicas_in_sync}")
    check_batch_sizes(strategy, {"Freeze_batch_size": cfg.Freeze_batch_size,
                                 "Unfreeze_batch_size": cfg.Unfreeze_batch_size})
    cfg = copy.copy(cfg)
    cfg.save_dir = str(worker_dir(cfg.save_dir, strategy))
    resume_folder, state, optimizer_store = None, None, {}
    start = cfg.Init_Epoch
    if cfg.resume:
        resume_folder, state, optimizer_store = find_resume_state(cfg)
        start = state["epoch"]
    phases = plan_phases(cfg, start)
    if not phases:
        raise TrainingError(f"Nothing to train: Init_Epoch = {cfg.Init_Epoch} is not below "
                            f"UnFreeze_Epoch = {cfg.UnFreeze_Epoch}.")
    train_ids, val_ids = check_dataset(cfg, phases)
    check_writable(cfg.save_dir)
    check_same_start(strategy, start)

    show_training_config(cfg, len(train_ids), len(val_ids), strategy.num_replicas_in_sync)
    print_step_warning(cfg, len(train_ids))
    seed_everything(cfg.seed)
    with dtype_policy(cfg.mixed_precision), sigterm_as_interrupt():
        model = build_model(cfg, strategy, resume_folder)
        if state is None:
            log_dir = Path(cfg.save_dir) / datetime.now().strftime("loss_%Y_%m_%d_%H_%M_%S")
        else:
            log_dir = Path(cfg.save_dir) / state["log_dir"]
        settings = {key: list(v) if isinstance(v := getattr(cfg, key), (list, tuple)) else v
                    for key in RESUME_KEYS}
        shared = make_callbacks(cfg, log_dir, val_ids)
        stateful = {k: shared[k] for k in ("loss_history", "periodic", "last", "best", "eval")}
        if state is not None:
            for name, callback in stateful.items():
                callback.set_state(state["callbacks"][name])
        state_saver = TrainingStateCheckpoint(
            cfg.save_dir, stateful, {"log_dir": log_dir.name, "settings": settings})
        for phase in phases:
            # The saved optimizer state continues only the phase it was saved in.
            resumes = state is not None and phase.first and state["phase"] == phase.number
            run_phase(cfg, model, strategy, phase, (train_ids, val_ids),
                      [*shared.values(), state_saver, *callbacks],
                      optimizer_store if resumes else None)
    clean_worker_dir(Path(cfg.save_dir), strategy, keep=STATE_DIR)
    history = {"loss": shared["loss_history"].losses, "val_loss": shared["loss_history"].val_loss}
    return TrainingResult(model, log_dir, phases[-1].end, history)


def compile_phase(cfg: Any, model: keras.Model, phase: Phase, optimizer_store: dict | None):
    """Freeze or unfreeze the backbone, then compile with a new optimizer (required by Keras 3)."""
    if cfg.Freeze_Train:
        frozen = freeze_backbone(model, cfg.backbone, frozen=phase.frozen)
        if phase.frozen:
            # the original counts the input layer among the frozen ones
            print(f"Freeze the first {frozen + 1} layers of total {len(model.layers)} layers.")
    init_lr_fit, min_lr_fit = compile_for_training(model, cfg, phase.batch_size)
    if optimizer_store:
        model.optimizer.build(model.trainable_variables)
        if len(optimizer_store) != len(model.optimizer.variables):
            raise TrainingError(
                f"resume: the saved optimizer has {len(optimizer_store)} variables but this run "
                f"needs {len(model.optimizer.variables)}; optimizer_type or mixed_precision "
                "differ from the interrupted run, use the same values.")
        model.optimizer.load_own_variables(optimizer_store)
    return get_lr_scheduler(cfg.lr_decay_type, init_lr_fit, min_lr_fit, cfg.UnFreeze_Epoch)


def run_phase(
    cfg: Any,
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    phase: Phase,
    splits: tuple[list[str], list[str]],
    callbacks: list[keras.callbacks.Callback],
    optimizer_store: dict | None,
) -> None:
    """Compile for one phase and fit it; per phase: optimizer, LR schedule, datasets.

    `callbacks` are the shared instances, in order; the phase's LR scheduler goes in before
    CSVLogger, which records its learning_rate.
    """
    with strategy.scope():
        schedule = compile_phase(cfg, model, phase, optimizer_store)
    for callback in callbacks:
        if isinstance(callback, TrainingStateCheckpoint):
            callback.phase = phase.number
    csv_index = next(i for i, c in enumerate(callbacks)
                     if isinstance(c, keras.callbacks.CSVLogger))
    callbacks = callbacks[:csv_index] + [
        keras.callbacks.LearningRateScheduler(schedule, verbose=1)] + callbacks[csv_index:]
    train_ids, val_ids = splits
    datasets = [
        distribute_batches(
            strategy, phase.batch_size,
            lambda per_replica, pipelines, index, ids=ids, is_train=is_train: make_dataset(
                ids, cfg.input_shape, phase.batch_size, cfg.num_classes, is_train,
                cfg.VOCdevkit_path, seed=cfg.seed, initial_epoch=phase.start,
                pipeline=(pipelines, index), replica_batch=per_replica))
        for ids, is_train in ((train_ids, True), (val_ids, False))
    ]
    print(f"Train on {len(train_ids)} samples, val on {len(val_ids)} samples, "
          f"with batch size {phase.batch_size}.")
    model.fit(
        datasets[0],
        steps_per_epoch=steps_per_epoch(len(train_ids), phase.batch_size),
        validation_data=datasets[1],
        validation_steps=steps_per_epoch(len(val_ids), phase.batch_size),
        epochs=phase.end,
        initial_epoch=phase.start,
        shuffle=False,  # make_dataset already shuffles, reproducibly
        callbacks=callbacks,
    )


def describe_interrupt(save_dir: str | Path) -> str:
    """What Ctrl-C / SIGTERM left behind: the last complete state, and how to continue."""
    folder = find_training_state(save_dir)
    if folder is None:
        return "Training interrupted before the first epoch ended; nothing was saved."
    epoch = load_training_state(folder)[0]["epoch"]
    return (f"Training interrupted. The state after epoch {epoch} is in {folder}: "
            "rerun with --resume True to continue from there.")

