"""Which rules each setting must follow, in one list, checked before any work starts.

A rule about the model, the optimizer or the schedule is written once, beside the code that
owns it (`nets.unet`, `utils.schedules`); this module applies it to whichever settings a script
has and names the parameter. The checks of every script go through `check_settings`.
"""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nets.unet import check_backbone, check_input_shape, check_num_classes
from utils.downloads import RELEASES
from utils.errors import UserError
from utils.precision import POLICIES
from utils.schedules import LR_DECAY_TYPES, OPTIMIZER_TYPES, get_lr_scheduler

PREDICT_MODES = ("predict", "video", "fps", "dir_predict", "export_onnx", "predict_onnx",
                 "export_savedmodel", "export_tflite")
BENCHMARK_SECTIONS = ("roof", "inference", "predictor", "training", "pipeline", "demo",
                      "accuracy", "strategy", "backends")
# tf_fp32 freezes the loaded weights into the graph (the predictor's default); tf_fp32_live reads
# them from the variables on every call, as training's evaluation does.
# tensorflow, jax and torch compare the Keras backends (the "backends" section).
BENCHMARK_BACKENDS = ("tf_fp32", "tf_fp32_live", "tf_fp32_xla", "ort_fp32", "tf_bf16",
                      "ort_int8", "tensorflow", "jax", "torch")
# Inference precisions: float16 has no fast CPU path and gains nothing over bfloat16 on GPUs.
INFERENCE_PRECISIONS = ("float32", "bfloat16")
CHOICES: dict[str, tuple] = {
    "optimizer_type": OPTIMIZER_TYPES,
    "lr_decay_type": LR_DECAY_TYPES,
    # False is kept for configs written as the PyTorch sibling's `fp16 = False`
    "mixed_precision": (*POLICIES, False),
    "precision": INFERENCE_PRECISIONS,
    "mix_type": (0, 1, 2),
    "mode": PREDICT_MODES,
    "miou_mode": (0, 1, 2),
    "quantize": ("", "int8"),
    "device": ("cpu", "gpu"),
    "best_metric": ("val_loss", "val_miou"),
}
# Settings that list several of their choices.
LIST_CHOICES: dict[str, tuple] = {
    "weights": tuple(RELEASES),
    "sections": BENCHMARK_SECTIONS,
    "backends": BENCHMARK_BACKENDS,
    "precisions": tuple(POLICIES),
}
# Lists of sizes or batch sizes: whole numbers above 0.
SIZE_LISTS = ("size", "eval_shape", "infer_batch")
WHOLE_NUMBERS = ("num_classes", "Init_Epoch", "Freeze_Epoch", "UnFreeze_Epoch",
                 "Freeze_batch_size", "Unfreeze_batch_size", "save_period", "eval_period", "seed",
                 "test_interval", "calibration_images", "num_workers", "precise_bn_images")
AT_LEAST_ONE = ("Freeze_batch_size", "Unfreeze_batch_size", "UnFreeze_Epoch", "save_period",
                "eval_period", "test_interval")
NOT_NEGATIVE = ("Init_Epoch", "Freeze_Epoch", "Min_lr", "weight_decay", "calibration_images",
                "precise_bn_images")
# Rules owned by the model builder: they raise ValueError with the fix in the message.
MODEL_RULES: dict[str, Callable[[Any], object]] = {
    "backbone": check_backbone,
    "num_classes": check_num_classes,
    "input_shape": check_input_shape,
}


class SettingsError(UserError, ValueError):
    """A setting that cannot work; the message names it and what to use instead."""


def check_settings(settings: Mapping[str, Any] | object) -> None:
    """Raise SettingsError for the first setting that breaks its rule; names not present (a
    script without that parameter) are skipped."""
    values = settings if isinstance(settings, Mapping) else vars(settings)

    def given(*names: str) -> bool:
        return all(name in values and values[name] is not None for name in names)

    for name in WHOLE_NUMBERS:
        if given(name) and (isinstance(values[name], bool)
                            or not isinstance(values[name], (int, np.integer))):
            raise SettingsError(f"{name} = {values[name]!r}; it must be a whole number.")
    for name, choices in CHOICES.items():
        if given(name) and values[name] not in choices:
            raise SettingsError(f"{name} = {values[name]!r} is not supported; use one of "
                                f"{list(choices)}.")
    for name, choices in LIST_CHOICES.items():
        for item in values.get(name) or []:
            if item not in choices:
                raise SettingsError(f"{name} has {item!r}, which is not supported; use any of "
                                    f"{list(choices)}.")
    for name in SIZE_LISTS:
        if given(name) and not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                   and v > 0 for v in values[name]):
            raise SettingsError(f"{name} = {values[name]}; use whole numbers above 0.")
    for name, rule in MODEL_RULES.items():
        if given(name):
            try:
                rule(values[name])
            except (ValueError, TypeError) as error:
                raise SettingsError(str(error)) from None
    for name in AT_LEAST_ONE:
        if given(name) and values[name] < 1:
            raise SettingsError(f"{name} = {values[name]}; it must be at least 1.")
    for name in NOT_NEGATIVE:
        if given(name) and values[name] < 0:
            raise SettingsError(f"{name} = {values[name]}; it must not be negative.")
    if given("Init_lr") and values["Init_lr"] <= 0:
        raise SettingsError(f"Init_lr = {values['Init_lr']}; it must be above 0.")
    _check_combinations(values, given)


def _check_combinations(values: Mapping[str, Any], given: Callable[..., bool]) -> None:
    """Rules between two or more settings."""
    if given("cls_weights", "num_classes"):
        count = len(np.ravel(values["cls_weights"]))
        if count != values["num_classes"]:
            raise SettingsError(f"cls_weights has {count} values but num_classes = "
                                f"{values['num_classes']}; give one weight per class.")
    if given("name_classes", "num_classes") and values.get("count", True):
        count = len(values["name_classes"])
        if count != values["num_classes"]:
            raise SettingsError(f"name_classes has {count} names but num_classes is "
                                f"{values['num_classes']}; pass --name_classes with one name "
                                "per class.")
    if given("Freeze_Train", "Freeze_Epoch", "UnFreeze_Epoch") and values["Freeze_Train"] \
            and values["Freeze_Epoch"] > values["UnFreeze_Epoch"]:
        raise SettingsError(f"Freeze_Epoch = {values['Freeze_Epoch']} is after UnFreeze_Epoch = "
                            f"{values['UnFreeze_Epoch']} (the total number of epochs); lower it.")
    if given("best_metric", "eval_flag") and values["best_metric"] == "val_miou" \
            and not values["eval_flag"]:
        raise SettingsError("best_metric = \"val_miou\" needs the mIoU evaluation: set "
                            "eval_flag = True, or follow \"val_loss\".")
    if given("eval_shape") and values["eval_shape"] and len(values["eval_shape"]) != 2:
        raise SettingsError(f"eval_shape = {values['eval_shape']}; give two numbers: height "
                            "width.")
    if given("sections") and "accuracy" in values["sections"] and not (
            values.get("model_path") and values.get("VOCdevkit_path")):
        raise SettingsError("the accuracy section needs --model_path and --VOCdevkit_path: "
                            "trained weights and the dataset whose val split it scores.")
    if given("lr_decay_type", "Init_lr", "Min_lr", "UnFreeze_Epoch"):
        try:
            get_lr_scheduler(values["lr_decay_type"], values["Init_lr"], values["Min_lr"],
                             values["UnFreeze_Epoch"])
        except ValueError as error:
            raise SettingsError(str(error)) from None
