"""Speed of the U-Net on this machine: `python benchmark.py`, or `--quick` for a one-minute run.

Sections: the float32 matmul roof; bare-model inference at batch 1 (TensorFlow graph, XLA,
onnxruntime float32, bfloat16, onnxruntime int8); the predictor end to end against the bare
model; one training step of train.py's model, loss and optimizer (each configuration in its own
process, which also gives its peak RSS); the training input pipeline; with --model_path and
--VOCdevkit_path, the val mIoU and class-map agreement of each precision. Every figure is the
min and median over repeats after warm-up. Results go to benchmark.json and benchmark.md.
"""

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import onnxruntime
import tensorflow as tf
from PIL import Image

from nets.unet import Unet as build_unet
from unet import Unet, cpu_has_bfloat16, export_onnx, onnx_forward
from utils.dataloader import make_dataset, read_split
from utils.dataset_audit import SPLITS_DIR, image_dir, label_dir, save_label
from utils.demo_data import LARGE_SIZE, make_scene
from utils.flops import count_flops
from utils.metrics import evaluate_split
from utils.quantize import calibration_files, quantize_int8

SECTIONS = ("roof", "inference", "predictor", "training", "pipeline", "accuracy")
# tf_fp32 freezes the loaded weights into the graph (the predictor's default); tf_fp32_live reads
# them from the variables on every call, as training's evaluation does.
BACKENDS = ("tf_fp32", "tf_fp32_live", "tf_fp32_xla", "ort_fp32", "tf_bf16", "ort_int8")
TRAINING = ((256, 4), (512, 2))
RESULT_PREFIX = "BENCHMARK_RESULT "
CPU_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def time_call(call: Callable[[], object], repeats: int, warmup: int = 2) -> dict:
    """Seconds per call, min and median over `repeats` after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"s_min": round(min(times), 4), "s_median": round(statistics.median(times), 4)}


def machine_info() -> dict:
    """CPU, cores, relevant instruction sets, library versions and the load average."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = set(cpuinfo.split())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def bench_roof(repeats: int, sizes: tuple[int, ...] = (1024, 2048)) -> dict:
    """Float32 (and bfloat16) square-matmul GFLOP/s in TensorFlow, best over `sizes`: the roof
    that the % figures refer to."""
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


@contextlib.contextmanager
def quiet():
    """Silence the predictor's configuration tables and export messages."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def make_predictor(backend: str, settings: dict, work: Path, calibration: list[Path]) -> Unet:
    """The predictor running one backend; ONNX models are exported once per input shape."""
    if backend == "tf_fp32_live":
        return Unet(model=Unet(**settings).model, **settings)
    if backend.startswith("tf"):
        return Unet(**settings, jit_compile=backend.endswith("xla"),
                    precision="bfloat16" if backend == "tf_bf16" else "float32")
    h, w = settings["input_shape"]
    fp32_path = work / f"unet_{h}x{w}.onnx"
    if not fp32_path.is_file():
        export_onnx(Unet(**settings).model, fp32_path, simplify=False)
    path = fp32_path
    if backend == "ort_int8":
        path = work / f"unet_{h}x{w}_int8.onnx"
        if not path.is_file():
            quantize_int8(fp32_path, path, calibration, (h, w))
    return Unet(forward=onnx_forward(path, (h, w)), **settings)


def bench_inference(args, sizes, weights, work, image, calibration, roof) -> tuple[list, list]:
    """Bare-model rows per size and backend; predictor end-to-end rows at the largest size."""
    inference, predictor_rows = [], []
    for size in sizes:
        settings = dict(model_path=weights, num_classes=args.num_classes, backbone=args.backbone,
                        input_shape=[size, size])
        flops = count_flops(build_unet((size, size, 3), args.num_classes, args.backbone))
        x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        reference = None
        for backend in args.backends:
            with quiet():
                predictor = make_predictor(backend, settings, work, calibration)
            row = {"size": size, "backend": backend,
                   **time_call(lambda p=predictor, x=x: p.forward(x), args.repeats)}
            row["gflops"] = round(flops / row["s_min"] / 1e9, 1)
            row["pct_roof"] = round(100 * row["gflops"] / roof, 1) if roof else None
            classes = np.asarray(predictor.get_miou_png(image))
            if reference is None:
                reference = classes
            # agreement is only meaningful for trained weights (random ones give ~uniform output)
            row["agreement_vs_first"] = (round(float(np.mean(classes == reference)), 5)
                                         if args.model_path else None)
            inference.append(row)
            print(f"inference {size}x{size} {backend}: {row['s_min']} s min, "
                  f"{row['s_median']} s median, {row['gflops']} GFLOP/s")
            if size == max(sizes) and "predictor" in args.sections:
                predictor_rows += bench_predictor(predictor, backend, row, image, flops, roof,
                                                  args.repeats)
            del predictor
            keras.backend.clear_session()
            gc.collect()
    return inference, predictor_rows


def bench_predictor(predictor, backend, bare, image, flops, roof, repeats) -> list[dict]:
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
        row["pct_roof"] = round(100 * row["gflops"] / roof, 1) if roof else None
        rows.append(row)
        print(f"predictor {backend} {name} on {image.width}x{image.height}: {row['s_min']} s, "
              f"overhead {row['overhead_pct']}% over the bare model")
    return rows


def peak_rss_gib() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec, whereas
    ru_maxrss keeps the parent's peak across fork + exec; ru_maxrss is the fallback."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        kib = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 2**20


def train_step_child(spec: dict) -> dict:
    """In a fresh process: one train.py step (model, loss, optimizer, unfrozen) timed, + RSS."""
    from utils.config import load_config
    from utils.training import Phase, build_model, compile_phase, dtype_policy

    size, batch, classes = spec["size"], spec["batch"], spec["num_classes"]
    cfg = load_config(Path(__file__).with_name("train.py"), [
        "--num_classes", str(classes), "--backbone", spec["backbone"], "--model_path", '""',
        "--input_shape", str(size), str(size), "--mixed_precision", spec["precision"],
        "--Unfreeze_batch_size", str(batch)])
    with dtype_policy(cfg.mixed_precision), quiet():
        model = build_model(cfg, tf.distribute.get_strategy(), None)
        compile_phase(cfg, model, Phase(False, batch, 0, cfg.UnFreeze_Epoch, True), None)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32)
    # 16x16-pixel blocks of random classes; class `classes` is the ignore channel, as in the data
    labels = rng.integers(0, classes + 1, (batch, size // 16, size // 16)).repeat(16, 1)
    y = tf.constant(np.eye(classes + 1, dtype=np.float32)[labels.repeat(16, 2)])
    timing = time_call(lambda: model.train_on_batch(x, y), spec["repeats"], warmup=1)
    rss_gib = peak_rss_gib()
    flops = 3 * count_flops(build_unet((size, size, 3), classes, spec["backbone"])) * batch
    return {**{k: spec[k] for k in ("size", "batch", "precision")}, **timing,
            "images_per_s": round(batch / timing["s_min"], 2),
            "gflops": round(flops / timing["s_min"] / 1e9, 1), "peak_rss_gib": round(rss_gib, 2)}


def bench_training(args, configs, precisions, roof) -> list[dict]:
    """Each (size, batch, precision) in its own process, so peak RSS and caches don't mix."""
    rows = []
    for size, batch in configs:
        for precision in precisions:
            spec = dict(size=size, batch=batch, precision=precision, repeats=args.train_repeats,
                        num_classes=args.num_classes, backbone=args.backbone)
            child = subprocess.run(
                [sys.executable, __file__, "--train_child", json.dumps(spec)],
                capture_output=True, text=True, check=False)
            lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if child.returncode or not lines:
                raise RuntimeError(f"training step {spec} failed:\n{child.stderr[-3000:]}")
            row = json.loads(lines[-1][len(RESULT_PREFIX):])
            row["pct_roof"] = round(100 * row["gflops"] / roof, 1) if roof else None
            rows.append(row)
            print(f"training {size}x{size} batch {batch} {precision}: {row['s_min']} s/step, "
                  f"{row['images_per_s']} images/s, {row['gflops']} GFLOP/s, "
                  f"peak RSS {row['peak_rss_gib']} GiB")
    return rows


def bench_pipeline(
    size: int = 512,
    num_classes: int = 21,
    batch_size: int = 8,
    num_images: int = 32,
    batches: int = 8,
    repeats: int = 5,
) -> dict:
    """Training pipeline images/s at size x size with full augmentation, from 500x375 JPEGs."""
    with tempfile.TemporaryDirectory() as root:
        image_dir(root).mkdir(parents=True)
        label_dir(root).mkdir(parents=True)
        ids = [f"{i:04d}" for i in range(num_images)]
        for i, image_id in enumerate(ids):
            image, label = make_scene(np.random.default_rng(i), LARGE_SIZE)
            Image.fromarray(image).save(image_dir(root) / f"{image_id}.jpg", quality=90)
            save_label(label, label_dir(root) / f"{image_id}.png")

        batches_out = iter(make_dataset(ids, (size, size), batch_size, num_classes, True, root))
        for _ in range(batches):  # warm-up: thread pools, autotuning, file cache
            next(batches_out)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(batches):
                next(batches_out)
            rates.append(batches * batch_size / (time.perf_counter() - start))
    result = {
        "input": f"{size}x{size}, {num_classes} classes, batch {batch_size}, "
                 f"{LARGE_SIZE[0]}x{LARGE_SIZE[1]} JPEG sources",
        "images_per_s_min": round(min(rates), 1),
        "images_per_s_median": round(statistics.median(rates), 1),
    }
    print(f"pipeline ({result['input']}): {result['images_per_s_median']} images/s median, "
          f"{result['images_per_s_min']} min over {repeats} x {batches} batches")
    return result


def bench_accuracy(args, work: Path) -> list[dict]:
    """Val mIoU of each backend with the trained weights, and pixel agreement with the first."""
    ids = read_split(Path(args.VOCdevkit_path) / SPLITS_DIR / "val.txt")
    calibration = calibration_files(args.VOCdevkit_path, args.calibration_images or 32)
    settings = dict(model_path=args.model_path, num_classes=args.num_classes,
                    backbone=args.backbone, input_shape=list(args.eval_shape))
    rows, reference = [], None
    for backend in args.backends:
        with quiet():
            predictor = make_predictor(backend, settings, work, calibration)
            predictor.forward(np.zeros((4, *args.eval_shape, 3), np.float32))  # warm-up
            start = time.perf_counter()
            mIoU = evaluate_split(predictor, args.VOCdevkit_path, ids, work / backend,
                                  args.num_classes, progress=False)["mIoU"]
            seconds = time.perf_counter() - start
        maps = [np.asarray(Image.open(work / backend / "detection-results" / f"{i}.png"))
                for i in ids]
        reference = reference or {"mIoU": mIoU, "maps": maps}
        same = sum(int(np.sum(a == b)) for a, b in zip(maps, reference["maps"], strict=True))
        row = {"backend": backend, "shape": list(args.eval_shape), "images": len(ids),
               "mIoU": round(100 * mIoU, 2),
               "mIoU_delta_points": round(100 * (mIoU - reference["mIoU"]), 2),
               "pixel_agreement": round(same / sum(m.size for m in maps), 5),
               "s_per_image": round(seconds / len(ids), 4)}
        rows.append(row)
        print(f"accuracy {backend}: mIoU {row['mIoU']} ({row['mIoU_delta_points']:+} points), "
              f"{100 * row['pixel_agreement']:.2f}% of pixels as {args.backends[0]}")
        del predictor
        keras.backend.clear_session()
    return rows


def _find(rows, **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def check_targets(results: dict) -> list[dict]:
    """The issue's targets, each as a ratio measured in this run (rows whose data ran)."""
    targets = []

    def add(name, goal, measured, passed):
        if measured is not None:
            targets.append({"target": name, "goal": goal, "measured": round(measured, 3),
                            "met": bool(passed(measured))})

    inference, predictor = results.get("inference", []), results.get("predictor", [])
    training, accuracy = results.get("training", []), results.get("accuracy", [])
    for row in inference:
        if row["backend"] == "tf_fp32":
            add(f"fp32 inference {row['size']}² % of roof", ">= 95", row["pct_roof"],
                lambda v: v >= 95)
            int8 = _find(inference, size=row["size"], backend="ort_int8")
            if int8:
                add(f"int8 inference {row['size']}² speed-up vs fp32", ">= 2.5",
                    row["s_min"] / int8["s_min"], lambda v: v >= 2.5)
    fp32 = _find(predictor, backend="tf_fp32", call="get_miou_png")
    if fp32:
        add(f"predictor end to end {fp32['size']}² % of roof", ">= 92", fp32["pct_roof"],
            lambda v: v >= 92)
        add(f"pre/post-processing {fp32['size']}² % of model time", "<= 5",
            fp32["overhead_pct"], lambda v: v <= 5)
        for backend, goal in (("tf_bf16", 1.9), ("ort_int8", 2.5)):
            other = _find(predictor, backend=backend, call="get_miou_png")
            if other:
                add(f"{backend} end to end speed-up vs fp32", f">= {goal}",
                    fp32["s_min"] / other["s_min"], lambda v, g=goal: v >= g)
    for row in training:
        if row["precision"] != "float32":
            continue
        name = f"{row['size']}² batch {row['batch']}"
        add(f"fp32 training {name} % of roof", ">= 85", row["pct_roof"], lambda v: v >= 85)
        bf16 = _find(training, size=row["size"], batch=row["batch"], precision="bfloat16")
        if bf16:
            add(f"bf16 training {name} speed-up", ">= 1.8", row["s_min"] / bf16["s_min"],
                lambda v: v >= 1.8)
        if row["size"] == 512:
            add(f"fp32 training {name} peak RSS GiB", "<= 4.5", row["peak_rss_gib"],
                lambda v: v <= 4.5)
    if "pipeline" in results:
        add("input pipeline images/s", ">= 60", results["pipeline"]["images_per_s_median"],
            lambda v: v >= 60)
    for row in accuracy[1:]:
        add(f"{row['backend']} val mIoU points vs {accuracy[0]['backend']}", "within 1",
            row["mIoU_delta_points"], lambda v: abs(v) <= 1)
        if row["backend"] == "tf_bf16":
            add("tf_bf16 class maps agreeing with fp32 %", ">= 99",
                100 * row["pixel_agreement"], lambda v: v >= 99)
    return targets


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if row.get(c) is None else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(results: dict) -> str:
    """All sections as Markdown tables."""
    machine, settings = results["machine"], results["settings"]
    flags = ", ".join(f for f, present in machine["cpu_flags"].items() if present)
    parts = [
        "# Benchmark",
        f"{machine['cpu']}, {machine['cores']} cores ({flags}); TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}, onnxruntime "
        f"{machine['onnxruntime']}; load average {machine['load_average_start']} at the start, "
        f"{machine.get('load_average_end')} at the end. {settings['backbone']} U-Net, "
        f"{settings['num_classes']} classes, weights: {settings['weights']}.",
    ]
    if "roof" in results:
        roof = results["roof"]
        parts.append(f"Roof: float32 matmul **{roof['float32_gflops']} GFLOP/s** (best square "
                     f"size {roof['float32_matmul']}; bfloat16: {roof['bfloat16_gflops']}).")
    tables = [
        ("Inference, batch 1 (bare model)", "inference",
         ["size", "backend", "s_min", "s_median", "gflops", "pct_roof", "agreement_vs_first"]),
        ("Predictor end to end (500x375 JPEG)", "predictor",
         ["size", "backend", "call", "s_min", "s_median", "bare_s_min", "overhead_pct", "gflops",
          "pct_roof"]),
        ("Training step (train.py model, loss, optimizer; unfrozen)", "training",
         ["size", "batch", "precision", "s_min", "s_median", "images_per_s", "gflops", "pct_roof",
          "peak_rss_gib"]),
        ("Val accuracy per backend", "accuracy",
         ["backend", "shape", "images", "mIoU", "mIoU_delta_points", "pixel_agreement",
          "s_per_image"]),
        ("Targets (ratios from this run)", "targets", ["target", "goal", "measured", "met"]),
    ]
    for title, key, columns in tables:
        if results.get(key):
            parts.append(f"## {title}\n\n{markdown_table(results[key], columns)}")
        if key == "training" and "pipeline" in results:
            pipeline = results["pipeline"]
            parts.append(f"## Input pipeline\n\n{pipeline['input']}: "
                         f"{pipeline['images_per_s_median']} images/s median "
                         f"({pipeline['images_per_s_min']} min).")
    return "\n\n".join(parts) + "\n"


def write_inputs(folder: Path, args) -> tuple[str, Image.Image, list[Path]]:
    """Seeded random weights (unless --model_path), the 500x375 JPEG and calibration images."""
    weights = args.model_path
    if not weights:
        keras.utils.set_random_seed(0)
        model = build_unet((64, 64, 3), args.num_classes, args.backbone)
        weights = str(folder / "random.weights.h5")
        model.save_weights(weights)
    paths = []
    for i in range(args.calibration_images or (4 if args.quick else 8)):
        path = folder / f"scene_{i}.jpg"
        Image.fromarray(make_scene(np.random.default_rng(i), LARGE_SIZE)[0]).save(path,
                                                                                  quality=90)
        paths.append(path)
    return weights, Image.open(paths[0]).convert("RGB"), paths


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: 256² only (or --size), 2 repeats, no bfloat16, "
                             "tf_fp32_live or 512² training")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                        help="what to run (default: all but accuracy, which needs --model_path "
                             "and --VOCdevkit_path)")
    parser.add_argument("--pipeline", action="store_true",
                        help="only the input pipeline (same as --sections pipeline)")
    parser.add_argument("--size", type=int, nargs="+", default=None,
                        help="square inference sizes (default 512 256; --quick 256); with "
                             "--quick also the training and pipeline size")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 5)")
    parser.add_argument("--train_repeats", type=int, default=None, help="timed steps (3)")
    parser.add_argument("--batch_size", type=int, default=8, help="pipeline batch size")
    parser.add_argument("--num_classes", type=int, default=21)
    parser.add_argument("--backbone", default="vgg", choices=("vgg", "resnet50"))
    parser.add_argument("--model_path", default="", help="trained weights (default: random)")
    parser.add_argument("--VOCdevkit_path", default="",
                        help="with --model_path: val split for the accuracy section")
    parser.add_argument("--eval_shape", type=int, nargs=2, default=None,
                        help="accuracy section input [h, w] (default: the first size)")
    parser.add_argument("--calibration_images", type=int, default=None,
                        help="int8 calibration images (default: 8 for speed, 4 with --quick; "
                             "32 for accuracy, as predict.py)")
    parser.add_argument("--json", default="benchmark.json", help="results file")
    parser.add_argument("--md", default="benchmark.md", help="Markdown table file")
    parser.add_argument("--train_child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sections is None:
        args.sections = ["pipeline"] if args.pipeline else [
            s for s in SECTIONS if s != "accuracy" or (args.model_path and args.VOCdevkit_path)]
    args.size = args.size or ([256] if args.quick else [512, 256])
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.train_repeats = args.train_repeats or (2 if args.quick else 3)
    args.eval_shape = args.eval_shape or [args.size[0]] * 2
    if args.quick:
        quick = [b for b in args.backends if b not in ("tf_bf16", "tf_fp32_live")]
        args.backends = quick or args.backends
    if "accuracy" in args.sections and not (args.model_path and args.VOCdevkit_path):
        parser.error("the accuracy section needs --model_path and --VOCdevkit_path")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.train_child:
        print(RESULT_PREFIX + json.dumps(train_step_child(json.loads(args.train_child))))
        return {}
    start = time.perf_counter()
    results = {"machine": machine_info(), "settings": {
        "quick": args.quick, "sizes": args.size, "repeats": args.repeats,
        "train_repeats": args.train_repeats, "num_classes": args.num_classes,
        "backbone": args.backbone, "weights": args.model_path or "random (seeded)"}}
    if cpu_has_bfloat16() is False:
        print("Note: this CPU has no bfloat16 instructions; bfloat16 figures are emulated.")
    roof = None
    if "roof" in args.sections:
        results["roof"] = bench_roof(args.repeats)
        roof = results["roof"]["float32_gflops"]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        weights, image, calibration = write_inputs(work, args)
        if {"inference", "predictor"} & set(args.sections):
            results["inference"], results["predictor"] = bench_inference(
                args, args.size, weights, work, image, calibration, roof)
        if "accuracy" in args.sections:
            results["accuracy"] = bench_accuracy(args, work / "accuracy")
    if "training" in args.sections:
        configs = [(args.size[0], 4)] if args.quick else TRAINING
        precisions = ["float32"] if args.quick else ["float32", "bfloat16"]
        results["training"] = bench_training(args, configs, precisions, roof)
    if "pipeline" in args.sections:
        pipeline_size = args.size[0] if args.quick else 512
        results["pipeline"] = bench_pipeline(
            pipeline_size, args.num_classes, args.batch_size, num_images=8 if args.quick else 32,
            batches=2 if args.quick else 8, repeats=args.repeats)
    results["targets"] = check_targets(results)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - start, 1)

    markdown = to_markdown(results)
    print("\n" + markdown)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    Path(args.md).write_text(markdown)
    print(f"Results written to {args.json} and {args.md} in {results['seconds']} s.")
    return results


if __name__ == "__main__":
    main()
