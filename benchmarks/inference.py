"""Inference on the CPU: the matmul roof the % figures refer to, the bare model per backend at
batch 1, the predictor end to end against it, and the val accuracy of each backend."""

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from benchmarks.harness import (
    child_result,
    free_memory,
    percent_of,
    quiet,
    start_child,
    time_call,
)
from nets.unet import Unet as build_unet
from utils.flops import count_flops

# TensorFlow, onnxruntime, PIL and the predictor are imported where they are used, so that the
# modules the GPU run shares with this one never import them.
if TYPE_CHECKING:
    from PIL import Image

    from utils.predictor import Predictor


def bench_roof(repeats: int, sizes: tuple[int, ...] = (1024, 2048)) -> dict:
    """Float32 (and bfloat16) square-matmul GFLOP/s in TensorFlow, best over `sizes`: the roof
    that the % figures refer to."""
    import tensorflow as tf

    matmul = tf.function(tf.linalg.matmul)
    result = {}
    for dtype in (tf.float32, tf.bfloat16):
        best = 0.0
        for n in sizes:
            a = tf.cast(tf.random.normal((n, n)), dtype)
            timing = time_call(lambda a=a: matmul(a, a).numpy(), repeats)
            gflops = 2 * n**3 / timing["s_min"] / 1e9
            if gflops > best:
                best, result[f"{dtype.name}_matmul"] = gflops, n
        result[f"{dtype.name}_gflops"] = round(best, 1)
    print(f"roof: float32 matmul {result['float32_gflops']} GFLOP/s "
          f"({result['float32_matmul']}²; bfloat16 {result['bfloat16_gflops']})")
    return result


def write_inputs(folder: Path, cfg: Any) -> tuple[str, "Image.Image", list[Path]]:
    """Seeded random weights (unless model_path), the 500x375 JPEG and calibration images."""
    from PIL import Image

    from utils.demo_data import LARGE_SIZE, make_scene

    weights = cfg.model_path
    if not weights:
        keras.utils.set_random_seed(0)
        model = build_unet((64, 64, 3), cfg.num_classes, cfg.backbone)
        weights = str(folder / "random.weights.h5")
        model.save_weights(weights)
    paths = []
    for i in range(cfg.calibration_images or (4 if cfg.quick else 8)):
        path = folder / f"scene_{i}.jpg"
        scene = make_scene(np.random.default_rng(i), LARGE_SIZE)[0]
        Image.fromarray(scene).save(path, quality=90)
        paths.append(path)
    return weights, Image.open(paths[0]).convert("RGB"), paths


def onnx_export(spec: dict) -> dict:
    """A child process's job: export the predictor's model of `spec["settings"]` to ONNX at
    `spec["path"]`. tf2onnx needs about 40x the weights' size while it converts, which a
    child process returns to the system when it ends."""
    from utils.onnx_export import export_onnx
    from utils.predictor import Predictor

    with quiet():
        max_difference = export_onnx(Predictor(**spec["settings"]).model, spec["path"],
                                     simplify=False)
    return {"path": spec["path"], "max_difference": max_difference}


def make_predictor(backend: str, settings: dict, work: Path,
                   calibration: list[Path]) -> "Predictor":
    """The predictor running one backend, in its steady state (frozen where it freezes); ONNX
    models are exported once per input shape."""
    from utils.onnx_export import onnx_forward
    from utils.predictor import Predictor
    from utils.quantize import quantize_int8

    if backend == "tf_fp32_live":
        return Predictor(model=Predictor(**settings).model, **settings)
    if backend.startswith("tf"):
        predictor = Predictor(**settings, jit_compile=backend.endswith("xla"),
                              precision="bfloat16" if backend == "tf_bf16" else "float32")
        predictor.settle()
        return predictor
    h, w = settings["input_shape"]
    fp32_path = work / f"unet_{h}x{w}.onnx"
    if not fp32_path.is_file():
        child = start_child("onnx_export", {"settings": settings, "path": str(fp32_path)})
        child_result(child, f"ONNX export at {h}x{w}")
    path = fp32_path
    if backend == "ort_int8":
        path = work / f"unet_{h}x{w}_int8.onnx"
        if not path.is_file():
            quantize_int8(fp32_path, path, calibration, (h, w))
    return Predictor(forward=onnx_forward(path, (h, w)), **settings)


def bench_inference(cfg: Any, weights: str, work: Path, image: "Image.Image",
                    calibration: list[Path], roof: float | None) -> tuple[list, list]:
    """Bare-model rows per size and backend; predictor end-to-end rows at the largest size."""
    inference, predictor_rows = [], []
    for size in cfg.size:
        settings = dict(model_path=weights, num_classes=cfg.num_classes, backbone=cfg.backbone,
                        input_shape=[size, size])
        flops = count_flops(build_unet((size, size, 3), cfg.num_classes, cfg.backbone))
        x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        reference = None
        for backend in cfg.backends:
            with quiet():
                predictor = make_predictor(backend, settings, work, calibration)
            row = {"size": size, "backend": backend,
                   **time_call(lambda p=predictor, x=x: p.forward(x), cfg.repeats)}
            row["gflops"] = round(flops / row["s_min"] / 1e9, 1)
            row["pct_roof"] = percent_of(row["gflops"], roof)
            classes = np.asarray(predictor.get_miou_png(image))
            if reference is None:
                reference = classes
            # agreement is only meaningful for trained weights (random ones give ~uniform output)
            row["agreement_vs_first"] = (round(float(np.mean(classes == reference)), 5)
                                         if cfg.model_path else None)
            inference.append(row)
            print(f"inference {size}x{size} {backend}: {row['s_min']} s min, "
                  f"{row['s_median']} s median, {row['gflops']} GFLOP/s")
            if size == max(cfg.size) and "predictor" in cfg.sections:
                predictor_rows += bench_predictor(predictor, backend, row, image, flops, roof,
                                                  cfg.repeats)
            del predictor
            free_memory()
    return inference, predictor_rows


def bench_predictor(predictor: "Predictor", backend: str, bare: dict, image: "Image.Image",
                    flops: float, roof: float | None, repeats: int) -> list[dict]:
    """`get_miou_png` (and `detect_image` for TF float32) on the image vs the bare model call."""
    calls = {"get_miou_png": lambda: predictor.get_miou_png(image)}
    if backend == "tf_fp32":
        calls["detect_image"] = lambda: predictor.detect_image(image)
    rows = []
    for name, call in calls.items():
        row = {"size": bare["size"], "backend": backend, "call": name,
               **time_call(call, repeats), "bare_s_min": bare["s_min"]}
        row["overhead_pct"] = round(100 * (row["s_min"] / bare["s_min"] - 1), 1)
        row["gflops"] = round(flops / row["s_min"] / 1e9, 1)
        row["pct_roof"] = percent_of(row["gflops"], roof)
        rows.append(row)
        print(f"predictor {backend} {name} on {image.width}x{image.height}: {row['s_min']} s, "
              f"overhead {row['overhead_pct']}% over the bare model")
    return rows


def bench_accuracy(cfg: Any, work: Path) -> list[dict]:
    """Val mIoU of each backend with the trained weights, and pixel agreement with the first."""
    from PIL import Image

    from utils.dataset import as_layout
    from utils.evaluation import evaluate_split
    from utils.quantize import calibration_files

    layout = as_layout(cfg.VOCdevkit_path)  # VOC or medical, by its folders
    ids = layout.read_split("val")
    calibration = calibration_files(layout, cfg.calibration_images or 32)
    settings = dict(model_path=cfg.model_path, num_classes=cfg.num_classes,
                    backbone=cfg.backbone, input_shape=list(cfg.eval_shape))
    rows, reference = [], None
    for backend in cfg.backends:
        with quiet():
            predictor = make_predictor(backend, settings, work, calibration)
            predictor.forward(np.zeros((4, *cfg.eval_shape, 3), np.float32))  # warm-up
            start = time.perf_counter()
            mIoU = evaluate_split(predictor, layout, ids, work / backend, cfg.num_classes,
                                  progress=False)["mIoU"]
            seconds = time.perf_counter() - start
        maps = [np.asarray(Image.open(work / backend / "detection-results" / f"{i}.png"))
                for i in ids]
        reference = reference or {"mIoU": mIoU, "maps": maps}
        same = sum(int(np.sum(a == b)) for a, b in zip(maps, reference["maps"], strict=True))
        row = {"backend": backend, "shape": list(cfg.eval_shape), "images": len(ids),
               "mIoU": round(100 * mIoU, 2),
               "mIoU_delta_points": round(100 * (mIoU - reference["mIoU"]), 2),
               "pixel_agreement": round(same / sum(m.size for m in maps), 5),
               "s_per_image": round(seconds / len(ids), 4)}
        rows.append(row)
        print(f"accuracy {backend}: mIoU {row['mIoU']} ({row['mIoU_delta_points']:+} points), "
              f"{100 * row['pixel_agreement']:.2f}% of pixels as {cfg.backends[0]}")
        del predictor
        free_memory()
    return rows
