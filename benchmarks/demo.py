"""What `make demo` computes: the arithmetic of its training run in TFLOP, counted from the
Makefile's settings, and its unfrozen training step timed as a share of the matmul roof."""

import re
import shlex
from pathlib import Path
from typing import Any

from benchmarks.harness import child_result, percent_of, start_child, train_config
from utils.config import load_config
from utils.dataset import split_ids

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def demo_settings(makefile: Path = MAKEFILE) -> tuple[list[str], int]:
    """make demo's train.py arguments (DEMO_TRAIN) and image count (DEMO_IMAGES)."""
    text = makefile.read_text(encoding="utf-8").replace("\\\n", " ")
    values = dict(re.findall(r"^(DEMO_\w+)\s*:?=\s*(.*)$", text, flags=re.M))
    return shlex.split(values["DEMO_TRAIN"]), int(values["DEMO_IMAGES"])


def training_arithmetic(cfg: Any, num_train: int, num_val: int) -> dict:
    """FLOPs of a whole train.py run, by part: the frozen steps (forward, plus backward
    through the trainable decoder), the unfrozen steps (3 x forward), the val loss of every
    epoch, the mIoU evaluations and the precise batch norm; convolutions and batch norm only,
    as `utils.flops` counts them."""
    from nets.unet import Unet, freeze_backbone
    from utils.flops import count_flops, layer_flops
    from utils.precise_bn import trainable_batch_norms

    model = Unet((*cfg.input_shape, 3), cfg.num_classes, cfg.backbone)
    forward = count_flops(model)
    freeze_backbone(model, cfg.backbone)
    trainable = sum(layer_flops(layer) for layer in model.layers if layer.trainable)
    frozen_epochs = cfg.Freeze_Epoch if cfg.Freeze_Train else 0
    frozen = frozen_epochs * (num_train // cfg.Freeze_batch_size) * cfg.Freeze_batch_size
    unfrozen = ((cfg.UnFreeze_Epoch - frozen_epochs) * (num_train // cfg.Unfreeze_batch_size)
                * cfg.Unfreeze_batch_size)
    evaluations = cfg.UnFreeze_Epoch // cfg.eval_period if cfg.eval_flag else 0
    # precise batch norm: one forward pass of its images per epoch whose batch norms train
    recalibrated = (cfg.UnFreeze_Epoch - frozen_epochs
                    + (frozen_epochs if trainable_batch_norms(model) else 0))
    precise_bn = min(cfg.precise_bn_images, num_train) * recalibrated
    return {"frozen": frozen * (forward + 2 * trainable), "unfrozen": unfrozen * 3 * forward,
            "val_loss": cfg.UnFreeze_Epoch * num_val * forward,
            "evaluation": evaluations * num_val * forward,
            "precise_bn": precise_bn * forward,
            "unfrozen_step": 3 * forward * cfg.Unfreeze_batch_size}


def demo_arithmetic(makefile: Path = MAKEFILE) -> tuple[Any, dict]:
    """make demo's train.py settings, and the arithmetic of its run in TFLOP (the unfrozen
    step in GFLOP)."""
    args, num_images = demo_settings(makefile)
    cfg = train_config(int(args[args.index("--num_classes") + 1]), *args)
    annotation = load_config(MAKEFILE.parent / "voc_annotation.py", [])  # the demo's split
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
    step = child_result(start_child("train_step", spec), f"demo training step {spec}")
    result.update(shape="x".join(map(str, demo.input_shape)), backbone=demo.backbone,
                  batch=demo.Unfreeze_batch_size, step_s_min=step["s_min"],
                  step_gflops=step["gflops"], pct_roof=percent_of(step["gflops"], roof),
                  training_s_estimate=round(result["tflop"] * 1e3 / step["gflops"]))
    print(f"demo: {result['tflop']} TFLOP in all; unfrozen step "
          f"{result['unfrozen_step_gflop']} GFLOP in {step['s_min']} s = {step['gflops']} "
          f"GFLOP/s ({result['pct_roof']} % of the roof); training ~{result['training_s_estimate']}"
          " s at that rate")
    return result
