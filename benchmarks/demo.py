"""What `make demo` computes: the arithmetic of its training run in TFLOP, counted from the
Makefile's settings, and its unfrozen training step, in the environment the demo target exports,
timed as a share of the matmul roof."""

import os
import re
import shlex
from pathlib import Path
from typing import Any

from benchmarks.harness import child_result, percent_of, start_child, train_config
from utils.config import load_config
from utils.dataset import split_ids

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def demo_settings(makefile: Path = MAKEFILE) -> tuple[list[str], int, list[str]]:
    """make demo's train.py arguments (DEMO_TRAIN), image count (DEMO_IMAGES) and
    voc_annotation.py arguments (DEMO_SPLIT)."""
    text = makefile.read_text(encoding="utf-8").replace("\\\n", " ")
    values = dict(re.findall(r"^(DEMO_\w+)\s*:?=\s*(.*)$", text, flags=re.M))
    return (shlex.split(values["DEMO_TRAIN"]), int(values["DEMO_IMAGES"]),
            shlex.split(values.get("DEMO_SPLIT", "")))


def demo_environment(makefile: Path = MAKEFILE) -> dict[str, str]:
    """The variables the demo target exports (`demo: export NAME ?= value`), where the
    environment does not set them already, as make does."""
    text = makefile.read_text(encoding="utf-8")
    exported = dict(re.findall(r"^demo:\s*export\s+(\w+)\s*\?=\s*(\S*)\s*$", text, flags=re.M))
    return {name: os.environ.get(name, value) for name, value in exported.items()}


def training_arithmetic(cfg: Any, num_train: int, num_val: int) -> dict:
    """FLOPs of a whole train.py run, by part: the frozen steps (forward, plus backward
    through the trainable decoder), the unfrozen steps (3 x forward), the val loss of every
    epoch, the mIoU evaluations and the precise batch norm; convolutions and batch norm only,
    as `utils.flops` counts them."""
    from nets.unet import Unet, freeze_backbone
    from utils.dataloader import steps_per_epoch
    from utils.flops import count_flops, layer_flops
    from utils.precise_bn import trainable_batch_norms
    from utils.training import plan_phases

    model = Unet((*cfg.input_shape, 3), cfg.num_classes, cfg.backbone)
    forward = count_flops(model)
    has_batch_norm = {False: bool(trainable_batch_norms(model))}
    freeze_backbone(model, cfg.backbone)
    trainable = sum(layer_flops(layer) for layer in model.layers if layer.trainable)
    has_batch_norm[True] = bool(trainable_batch_norms(model))
    step_flops = {True: forward + 2 * trainable, False: 3 * forward}  # per image, by frozen
    flops = dict.fromkeys(("frozen", "unfrozen", "val_loss", "evaluation", "precise_bn"), 0.0)
    for phase in plan_phases(cfg, cfg.Init_Epoch):
        epochs = phase.end - phase.start
        images = epochs * steps_per_epoch(num_train, phase.batch_size) * phase.batch_size
        flops["frozen" if phase.frozen else "unfrozen"] += images * step_flops[phase.frozen]
        flops["val_loss"] += epochs * num_val * forward
        # precise batch norm: one forward pass of its images per epoch whose batch norms train
        if has_batch_norm[phase.frozen]:
            flops["precise_bn"] += epochs * min(cfg.precise_bn_images, num_train) * forward
    if cfg.eval_flag:
        evaluations = cfg.UnFreeze_Epoch // cfg.eval_period - cfg.Init_Epoch // cfg.eval_period
        flops["evaluation"] = evaluations * num_val * forward
    return {**flops, "unfrozen_step": step_flops[False] * cfg.Unfreeze_batch_size}


def demo_arithmetic(makefile: Path = MAKEFILE) -> tuple[Any, dict]:
    """make demo's train.py settings, and the arithmetic of its run in TFLOP (the unfrozen
    step in GFLOP)."""
    args, num_images, split_args = demo_settings(makefile)
    cfg = train_config(int(args[args.index("--num_classes") + 1]), *args)
    annotation = load_config(MAKEFILE.parent / "voc_annotation.py", split_args)
    split = split_ids([f"{i:04d}" for i in range(num_images)], annotation.trainval_percent,
                      annotation.train_percent)
    flops = training_arithmetic(cfg, len(split["train"]), len(split["val"]))
    step = flops.pop("unfrozen_step")
    return cfg, {"tflop": round(sum(flops.values()) / 1e12, 2),
                 **{f"{k}_tflop": round(v / 1e12, 2) for k, v in flops.items()},
                 "unfrozen_step_gflop": round(step / 1e9, 1),
                 "num_train": len(split["train"]), "num_val": len(split["val"])}


def bench_demo(cfg: Any, roof: float | None) -> dict:
    """The demo's arithmetic, and its unfrozen step (shape, batch, backbone) timed in a child."""
    demo, result = demo_arithmetic()
    spec = dict(size=list(demo.input_shape), batch=demo.Unfreeze_batch_size,
                precision="float32", repeats=cfg.train_repeats, num_classes=demo.num_classes,
                backbone=demo.backbone)
    exported = demo_environment()
    step = child_result(start_child("train_step", spec, {**os.environ, **exported}),
                        f"demo training step {spec}")
    result.update(shape="x".join(map(str, demo.input_shape)), backbone=demo.backbone,
                  environment=" ".join(f"{name}={value}" for name, value in exported.items()),
                  batch=demo.Unfreeze_batch_size, step_s_min=step["s_min"],
                  step_gflops=step["gflops"], pct_roof=percent_of(step["gflops"], roof),
                  training_s_estimate=round(result["tflop"] * 1e3 / step["gflops"]))
    print(f"demo: {result['tflop']} TFLOP in all; unfrozen step "
          f"{result['unfrozen_step_gflop']} GFLOP in {step['s_min']} s = {step['gflops']} "
          f"GFLOP/s ({result['pct_roof']} % of the roof); training ~{result['training_s_estimate']}"
          " s at that rate")
    return result
