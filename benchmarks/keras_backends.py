"""The same U-Net on each Keras backend (TensorFlow, JAX, PyTorch): inference at batch 1 through
the predictor's forward, and one training step of train.py's model, loss and optimizer; each
backend in a child process of its own, since Keras reads KERAS_BACKEND once per process."""

import os
from typing import Any

import numpy as np

from benchmarks.harness import (
    child_result,
    free_memory,
    percent_of,
    start_child,
    synthetic_batch,
    time_call,
)
from utils.backend import FRAMEWORKS

KERAS_BACKENDS = tuple(FRAMEWORKS)
# (size, batch) of the training step; inference runs at batch 1 and the same size.
STEP = (256, 4)


def time_inference(spec: dict) -> tuple[dict, float]:
    """The predictor's forward at batch 1: its timing, and the FLOPs of one call."""
    from nets.unet import Unet
    from utils.flops import count_flops
    from utils.predictor import keras_forward

    size = spec["size"]
    model = Unet((size, size, 3), spec["num_classes"], spec["backbone"])
    forward = keras_forward(model, freeze=True)
    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    return time_call(lambda: forward(x), spec["repeats"]), count_flops(model)


def backend_step(spec: dict) -> dict:
    """In a child process: the forward and the training step timed on this backend."""
    import keras

    from benchmarks.training import train_model
    from utils.distribute import default_strategy

    size, batch, classes = spec["size"], spec["batch"], spec["num_classes"]
    inference, flops = time_inference(spec)
    free_memory()
    trainer = train_model(spec, default_strategy())
    images, targets = synthetic_batch(batch, size, classes)
    training = time_call(lambda: trainer.train_on_batch(images, targets),
                         spec["train_repeats"], warmup=1)
    return {"backend": keras.backend.backend(), "size": size, "batch": batch,
            "infer_s_min": inference["s_min"], "infer_s_median": inference["s_median"],
            "infer_gflops": round(flops / inference["s_min"] / 1e9, 1),
            "train_s_min": training["s_min"], "train_s_median": training["s_median"],
            "train_gflops": round(3 * flops * batch / training["s_min"] / 1e9, 1)}


def bench_keras_backends(cfg: Any, roof: float | None) -> list[dict]:
    """One row per backend in cfg.keras_backends, its speeds as % of this run's roof and as
    ratios to the first backend's."""
    size, batch = (cfg.size[0], 2) if cfg.quick else STEP
    rows = []
    for backend in cfg.keras_backends:
        spec = dict(size=size, batch=batch, num_classes=cfg.num_classes, backbone=cfg.backbone,
                    repeats=cfg.repeats, train_repeats=cfg.train_repeats)
        child = start_child("backend_step", spec, env={**os.environ, "KERAS_BACKEND": backend})
        row = child_result(child, f"the {backend} backend")
        for kind in ("infer", "train"):
            row[f"{kind}_pct_roof"] = percent_of(row[f"{kind}_gflops"], roof)
            first = rows[0][f"{kind}_s_min"] if rows else row[f"{kind}_s_min"]
            row[f"{kind}_speed_vs_first"] = round(first / row[f"{kind}_s_min"], 2)
        rows.append(row)
        print(f"{backend}: inference {row['infer_s_min']} s ({row['infer_gflops']} GFLOP/s), "
              f"training step {row['train_s_min']} s ({row['train_gflops']} GFLOP/s)")
    return rows
