"""What train.py compiles a model with — optimizer with its batch-scaled LR, loss, f_score
metric, L2 weight decay — in plain Keras, so the GPU benchmark uses it on any backend."""

from typing import Any

import keras
import numpy as np

from utils.losses import LossFn, build_loss, f_score
from utils.optimizers import make_optimizer
from utils.schedules import fit_learning_rates


def apply_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """L2 on every conv kernel, set on the built variables: Keras 3 ignores the original's
    `add_loss` outside `call`. Keras adds it to the loss for trainable kernels only;
    `compile_for_training` adds the frozen ones' constant."""
    if weight_decay <= 0:
        return
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.regularizer = keras.regularizers.L2(weight_decay)


def frozen_weight_decay(model: keras.Model) -> float:
    """The L2 penalty of the kernels that are frozen now: a constant for the phase, which
    Keras leaves out of the loss (it regularises trainable variables only)."""
    trainable = {id(v) for v in model.trainable_variables}
    return sum(float(keras.ops.convert_to_numpy(v.regularizer(v)))
               for v in model.weights
               if getattr(v, "regularizer", None) is not None and id(v) not in trainable)


def plus_constant(loss: LossFn, constant: float) -> LossFn:
    """`loss` + `constant`, under the same name (Keras logs it as "loss" either way)."""
    if not constant:
        return loss

    def shifted(y_true, y_pred):
        return loss(y_true, y_pred) + constant

    shifted.__name__ = getattr(loss, "__name__", "loss")
    return shifted


def compile_for_training(
    model: keras.Model, cfg: Any, batch_size: int, *, jit_compile: bool | str = "auto"
) -> tuple[float, float]:
    """Compile with a new optimizer whose LR is scaled to `batch_size` (the original's rule);
    returns that phase's (Init_lr, Min_lr) for its schedule.

    The loss includes the weight decay of the frozen kernels, as the original's did: without
    it, the frozen phase's val_loss is lower by that constant than the unfrozen phase's, and
    best_epoch_weights would keep a frozen-phase epoch however well the later ones do."""
    init_lr, min_lr = fit_learning_rates(batch_size, cfg.Init_lr, cfg.Min_lr, cfg.optimizer_type)
    loss = build_loss(np.asarray(cfg.cls_weights, np.float32), dice_loss=cfg.dice_loss,
                      focal_loss=cfg.focal_loss)
    model.compile(
        optimizer=make_optimizer(cfg.optimizer_type, init_lr, cfg.momentum),
        loss=plus_constant(loss, frozen_weight_decay(model)),
        metrics=[f_score()],
        jit_compile=jit_compile,
    )
    return init_lr, min_lr
