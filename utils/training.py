"""Two-phase U-Net training: model set-up, frozen then unfrozen `fit`, resumable state.

`train(cfg)` is everything train.py and train_medical.py do. Every user mistake is found before
the first epoch and before anything is written to save_dir (utils.training_checks).
"""

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras

from nets.unet import Unet, freeze_backbone
from utils.callbacks import LossHistory, shared_callbacks, training_callbacks
from utils.checkpoints import TrainingStateCheckpoint
from utils.dataloader import make_dataset, steps_per_epoch
from utils.dataset import VOCLayout, as_layout
from utils.distribute import (
    Strategy,
    check_batch_sizes,
    check_same_start,
    clean_worker_dir,
    distribute_batches,
    select_strategy,
    worker_dir,
)
from utils.precise_bn import PreciseBatchNorm
from utils.precision import dtype_policy
from utils.recipe import apply_weight_decay, compile_for_training
from utils.run_info import describe_run, write_json
from utils.schedules import get_lr_scheduler
from utils.settings import check_settings
from utils.training_checks import (
    Phase,
    TrainingError,
    check_dataset,
    check_writable,
    find_resume_state,
    plan_phases,
    print_step_warning,
    resume_settings,
    warn_about_precision,
)
from utils.training_state import (
    STATE_DIR,
    describe_interrupt,
    restore_callback_states,
)
from utils.utils import show_config
from utils.weights import check_weights_file, load_weights


@dataclass
class TrainingResult:
    model: keras.Model
    log_dir: Path
    epoch: int  # epochs completed (1-based count)
    history: dict[str, list[float]] = field(default_factory=dict)


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


def build_model(cfg: Any, strategy: Strategy,
                resume_folder: Path | None) -> keras.Model:
    """The U-Net with weight decay, its weights from the training state or model_path."""
    with strategy.scope():
        model = Unet([*cfg.input_shape, 3], cfg.num_classes, cfg.backbone)
        apply_weight_decay(model, cfg.weight_decay)
        if resume_folder is not None:
            model.load_weights(resume_folder / "model.weights.h5")
            print(f"Resumed weights from {resume_folder / 'model.weights.h5'}.")
        elif cfg.model_path:
            load_weights(model, cfg.model_path, cfg.backbone, strict=False)
    return model


def show_training_config(cfg: Any, num_train: int, num_val: int, replicas: int) -> None:
    """The original's configuration table, then the settings it did not print."""
    batch_note = f" (global, split over {replicas} devices)" if replicas > 1 else ""
    keys = ("num_classes", "backbone", "model_path", "input_shape", "Init_Epoch", "Freeze_Epoch",
            "UnFreeze_Epoch", "Freeze_batch_size", "Unfreeze_batch_size", "Freeze_Train",
            "Init_lr", "Min_lr", "optimizer_type", "momentum", "lr_decay_type", "save_period",
            "save_dir")
    table = {key: getattr(cfg, key) for key in keys}
    for key in ("Freeze_batch_size", "Unfreeze_batch_size"):
        table[key] = f"{table[key]}{batch_note}"
    table.update(num_workers=f"{cfg.num_workers} (ignored: the input pipeline parallelises)",
                 num_train=num_train, num_val=num_val)
    extra = ("weight_decay", "eval_flag", "eval_period", "best_metric", "dice_loss",
             "focal_loss", "seed", "resume", "mixed_precision")
    table.update({key: getattr(cfg, key) for key in extra})
    show_config(**table)


def compile_phase(cfg: Any, model: keras.Model, phase: Phase, optimizer_store: dict | None):
    """Freeze or unfreeze the backbone, compile with a new optimizer (Keras 3 needs one per
    phase) and restore its saved variables when resuming; returns the phase's LR schedule."""
    if cfg.Freeze_Train:
        frozen = freeze_backbone(model, cfg.backbone, frozen=phase.frozen)
        if phase.frozen:
            # the original counts the input layer among the frozen ones
            print(f"Freeze the first {frozen + 1} layers of total {len(model.layers)} layers.")
    init_lr_fit, min_lr_fit = compile_for_training(model, cfg, phase.batch_size)
    # Built here, eagerly: left to the first train step, the slot variables are created while
    # tracing it, at about 25 ms each (11 s of the 40 s first step of ResNet50's unfrozen phase).
    model.optimizer.build(model.trainable_variables)
    if optimizer_store:
        if len(optimizer_store) != len(model.optimizer.variables):
            raise TrainingError(
                f"resume: the saved optimizer has {len(optimizer_store)} variables but this run "
                f"needs {len(model.optimizer.variables)}; optimizer_type or mixed_precision "
                "differ from the interrupted run, use the same values.")
        model.optimizer.load_own_variables(optimizer_store)
    return get_lr_scheduler(cfg.lr_decay_type, init_lr_fit, min_lr_fit, cfg.UnFreeze_Epoch)


def phase_datasets(cfg: Any, layout: VOCLayout, strategy: Strategy, phase: Phase,
                   splits: tuple[list[str], list[str]]) -> list:
    """The phase's training and validation batches, each worker reading only its share."""
    def batches(ids: list[str], *, train: bool):
        return distribute_batches(
            strategy, phase.batch_size,
            lambda per_replica, pipelines, index: make_dataset(
                layout, ids, cfg.input_shape, phase.batch_size, cfg.num_classes, train=train,
                seed=cfg.seed, initial_epoch=phase.start, pipeline=(pipelines, index),
                replica_batch=per_replica))

    return [batches(splits[0], train=True), batches(splits[1], train=False) if splits[1] else None]


def precise_bn_callback(cfg: Any, layout: VOCLayout, phase: Phase,
                        train_ids: list[str]) -> PreciseBatchNorm | None:
    """With precise_bn_images, the callback that re-estimates batch-norm statistics from the
    first precise_bn_images training images (without augmentation), in full phase batches."""
    if not cfg.precise_bn_images:
        return None
    ids = train_ids[:max(cfg.precise_bn_images, phase.batch_size)]
    dataset = make_dataset(layout, ids, cfg.input_shape, phase.batch_size, cfg.num_classes,
                           train=False, seed=cfg.seed)
    batches = steps_per_epoch(len(ids), phase.batch_size)
    return PreciseBatchNorm(lambda: (images for images, _ in dataset.take(batches)))


def train(
    cfg: Any,
    strategy: Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    *,
    dataset_layout: str = "auto",
) -> TrainingResult:
    """Run train.py's whole job for a config from `load_config` (see train.py for the keys).

    `dataset_layout` is "voc", "medical" (train_medical.py) or "auto" (told by the folders).

    `strategy` overrides the one chosen from train_gpu and TF_CONFIG; `callbacks` are added to
    every `fit`. A non-chief worker writes everything to a private folder (see
    `utils.distribute.worker_dir`), of which only its training state is kept.
    """
    check_settings(cfg)
    if cfg.model_path and not cfg.resume:
        check_weights_file(cfg.model_path)
    strategy = strategy or select_strategy(cfg.train_gpu)
    print(f"Number of devices: {strategy.num_replicas_in_sync}")
    if cfg.precise_bn_images and strategy.num_replicas_in_sync > 1:
        raise TrainingError(f"precise_bn_images = {cfg.precise_bn_images} works on one device "
                            f"only, and this run has {strategy.num_replicas_in_sync}; set it "
                            "to 0 (large global batches need it least).")
    check_batch_sizes(strategy, {"Freeze_batch_size": cfg.Freeze_batch_size,
                                 "Unfreeze_batch_size": cfg.Unfreeze_batch_size})
    save_dir = worker_dir(cfg.save_dir, strategy)
    resume_folder, state, optimizer_store = None, None, {}
    start = cfg.Init_Epoch
    if cfg.resume:
        resume_folder, state, optimizer_store = find_resume_state(cfg, save_dir)
        start = state["epoch"]
    phases = plan_phases(cfg, start)
    if not phases:
        raise TrainingError(f"Nothing to train: Init_Epoch = {cfg.Init_Epoch} is not below "
                            f"UnFreeze_Epoch = {cfg.UnFreeze_Epoch}.")
    layout = as_layout(cfg.VOCdevkit_path, dataset_layout)
    splits = check_dataset(cfg, layout, phases)
    check_writable(save_dir)
    check_same_start(strategy, start)

    show_training_config(cfg, len(splits[0]), len(splits[1]), strategy.num_replicas_in_sync)
    print_step_warning(cfg, len(splits[0]))
    warn_about_precision(cfg)
    keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and backend: same initial weights
    try:
        with dtype_policy(cfg.mixed_precision), sigterm_as_interrupt():
            model = build_model(cfg, strategy, resume_folder)
            # Only once the weights have loaded: a failed start leaves save_dir as it was.
            write_json(save_dir / "config.json", describe_run(
                cfg, num_train=len(splits[0]), num_val=len(splits[1]),
                devices=strategy.num_replicas_in_sync, start_epoch=start))
            log_dir = save_dir / (state["log_dir"] if state else
                                  datetime.now().strftime("loss_%Y_%m_%d_%H_%M_%S"))
            shared = shared_callbacks(cfg, save_dir, log_dir, layout, splits[1])
            if state is not None:
                restore_callback_states(shared, state["callbacks"])
            for phase in phases:
                # The saved optimizer state continues only the phase it was saved in.
                resumes = state is not None and phase.first and state["phase"] == phase.number
                with strategy.scope():
                    schedule = compile_phase(cfg, model, phase,
                                             optimizer_store if resumes else None)
                state_saver = TrainingStateCheckpoint(save_dir, shared, {
                    "phase": phase.number, "log_dir": log_dir.name,
                    "settings": resume_settings(cfg)})
                run_phase(model, phase, phase_datasets(cfg, layout, strategy, phase, splits),
                          training_callbacks(shared, schedule, state_saver, callbacks,
                                             precise_bn_callback(cfg, layout, phase, splits[0])),
                          splits)
    except KeyboardInterrupt:
        print(f"\n{describe_interrupt(save_dir)}")
        raise
    clean_worker_dir(save_dir, strategy, keep=STATE_DIR)
    history = next(c for c in shared if isinstance(c, LossHistory))
    return TrainingResult(model, log_dir, phases[-1].end,
                          {"loss": history.losses, "val_loss": history.val_loss})


def run_phase(model: keras.Model, phase: Phase, datasets: list,
              callbacks: list[keras.callbacks.Callback],
              splits: tuple[list[str], list[str]]) -> None:
    """One `fit` from the phase's first epoch to its last."""
    train_ids, val_ids = splits
    print(f"Train on {len(train_ids)} samples, val on {len(val_ids)} samples, "
          f"with batch size {phase.batch_size}.")
    model.fit(
        datasets[0],
        steps_per_epoch=steps_per_epoch(len(train_ids), phase.batch_size),
        validation_data=datasets[1],
        validation_steps=steps_per_epoch(len(val_ids), phase.batch_size) or None,
        epochs=phase.end,
        initial_epoch=phase.start,
        shuffle=False,  # make_dataset already shuffles, reproducibly
        callbacks=callbacks,
    )
