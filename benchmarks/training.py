"""One training step of train.py's model, loss and optimizer (unfrozen phase), each
(size, batch, precision) timed in its own child process, which also gives its peak RSS."""

from typing import Any

import keras

from benchmarks.harness import (
    child_result,
    peak_rss_gib,
    percent_of,
    quiet,
    start_child,
    synthetic_batch,
    time_call,
    train_config,
)
from nets.unet import Unet as build_unet
from utils.flops import count_flops

# (size, batch) of the full run; --quick times (first size, 4).
CONFIGS = ((256, 4), (512, 2))


def image_shape(size: int | list[int]) -> list[int]:
    """[height, width] of a square's side or of [height, width]."""
    return [size, size] if isinstance(size, int) else list(size)


def train_model(spec: dict, strategy: Any, precision: str = "float32") -> keras.Model:
    """train.py's U-Net, compiled as its unfrozen phase at `spec`'s size and batch, with
    random weights, under `strategy` and `precision`."""
    from utils.precision import dtype_policy
    from utils.training import Phase, build_model, compile_phase

    shape, batch = image_shape(spec["size"]), spec["batch"]
    cfg = train_config(spec["num_classes"], "--backbone", spec["backbone"], "--model_path", '""',
                       "--input_shape", *map(str, shape), "--mixed_precision", precision,
                       "--Unfreeze_batch_size", str(batch))
    phase = Phase(frozen=False, batch_size=batch, start=0, end=cfg.UnFreeze_Epoch, first=True)
    with dtype_policy(cfg.mixed_precision), quiet():
        model = build_model(cfg, strategy, None)
        with strategy.scope():
            compile_phase(cfg, model, phase, None)
    return model


def train_step(spec: dict) -> dict:
    """In a child process: `train_on_batch` timed on a synthetic batch, and the peak RSS."""
    from utils.distribute import default_strategy

    size, batch, classes = spec["size"], spec["batch"], spec["num_classes"]
    model = train_model(spec, default_strategy(), spec["precision"])
    x, y = synthetic_batch(batch, size, classes)
    timing = time_call(lambda: model.train_on_batch(x, y), spec["repeats"], warmup=1)
    rss_gib = peak_rss_gib()  # before the model built for counting FLOPs adds to it
    flops = 3 * count_flops(build_unet((*image_shape(size), 3), classes, spec["backbone"])) * batch
    return {**{k: spec[k] for k in ("size", "batch", "precision")}, **timing,
            "images_per_s": round(batch / timing["s_min"], 2),
            "gflops": round(flops / timing["s_min"] / 1e9, 1),
            "peak_rss_gib": round(rss_gib, 2)}


def bench_training(cfg: Any, configs: list[tuple[int, int]], precisions: list[str],
                   roof: float | None) -> list[dict]:
    """Each (size, batch, precision) in its own process, so peak RSS and caches don't mix."""
    rows = []
    for size, batch in configs:
        for precision in precisions:
            spec = dict(size=size, batch=batch, precision=precision, repeats=cfg.train_repeats,
                        num_classes=cfg.num_classes, backbone=cfg.backbone)
            row = child_result(start_child("train_step", spec), f"training step {spec}")
            row["pct_roof"] = percent_of(row["gflops"], roof)
            rows.append(row)
            print(f"training {size}x{size} batch {batch} {precision}: {row['s_min']} s/step, "
                  f"{row['images_per_s']} images/s, {row['gflops']} GFLOP/s, "
                  f"peak RSS {row['peak_rss_gib']} GiB")
    return rows
