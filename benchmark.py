"""Speed of the U-Net on this machine: `python benchmark.py`, or `--quick` for a one-minute run.

Sections: the float32 matmul roof; bare-model inference at batch 1 (TensorFlow graph, XLA,
onnxruntime float32, bfloat16, onnxruntime int8); the predictor end to end against the bare
model; one training step of train.py's model, loss and optimizer (each configuration in its own
process, which also gives its peak RSS); the training input pipeline; with --model_path and
--VOCdevkit_path, the val mIoU and class-map agreement of each precision; with --strategy,
training steps on 1 and on 2 worker processes of a local multi-worker cluster. Every figure is
the min and median over repeats after warm-up. Results go to benchmark.json and benchmark.md.

`--device gpu` instead measures a GPU on any Keras backend (TensorFlow, or JAX without
TensorFlow or onnxruntime installed): training images/s at 512² for float32, float16 and
bfloat16 at a common batch and at the largest batch that fits, inference at batch 1 and 8, XLA
on and off; results go to benchmark_gpu.json and benchmark_gpu.md (`--allow_cpu` runs the same
code on a CPU, for tests).
"""

import argparse
import ast
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
from types import SimpleNamespace
from typing import TYPE_CHECKING

import keras
import numpy as np

from nets.unet import Unet as build_unet
from utils.flops import count_flops
from utils.precision import POLICIES, dtype_policy

# TensorFlow, onnxruntime, PIL and the predictor are imported where the CPU sections use them:
# `--device gpu` runs on any Keras backend, e.g. JAX on a machine without them.
if TYPE_CHECKING:
    from PIL import Image

    from unet import Unet

SECTIONS = ("roof", "inference", "predictor", "training", "pipeline", "accuracy", "strategy")
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


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    return next((line.split(":", 1)[1].strip() for line in read_cpuinfo().splitlines()
                 if line.startswith("model name")), platform.processor())


def machine_info() -> dict:
    """CPU, cores, relevant instruction sets, library versions and the load average."""
    import onnxruntime
    import tensorflow as tf

    flags = set(read_cpuinfo().split())
    return {
        "cpu": cpu_name(),
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


@contextlib.contextmanager
def quiet():
    """Silence the predictor's configuration tables and export messages."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def make_predictor(backend: str, settings: dict, work: Path, calibration: list[Path]) -> "Unet":
    """The predictor running one backend; ONNX models are exported once per input shape."""
    from unet import Unet, export_onnx, onnx_forward
    from utils.quantize import quantize_int8

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


def synthetic_batch(batch: int, size: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Random images and one-hot targets made of 16x16-pixel blocks of random classes; class
    `classes` is the ignore channel, as in the data."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, classes + 1, (batch, size // 16, size // 16)).repeat(16, 1)
    return x, np.eye(classes + 1, dtype=np.float32)[labels.repeat(16, 2)]


def train_step_child(spec: dict) -> dict:
    """In a fresh process: one train.py step (model, loss, optimizer, unfrozen) timed, + RSS."""
    import tensorflow as tf

    from utils.config import load_config
    from utils.training import Phase, build_model, compile_phase

    size, batch, classes = spec["size"], spec["batch"], spec["num_classes"]
    cfg = load_config(Path(__file__).with_name("train.py"), [
        "--num_classes", str(classes), "--backbone", spec["backbone"], "--model_path", '""',
        "--input_shape", str(size), str(size), "--mixed_precision", spec["precision"],
        "--Unfreeze_batch_size", str(batch)])
    with dtype_policy(cfg.mixed_precision), quiet():
        model = build_model(cfg, tf.distribute.get_strategy(), None)
        compile_phase(cfg, model, Phase(False, batch, 0, cfg.UnFreeze_Epoch, True), None)
    x, y = (tf.constant(v) for v in synthetic_batch(batch, size, classes))
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


class StepTimes(keras.callbacks.Callback):
    """Seconds between consecutive `fit` steps; the first step (tracing) is not counted."""

    def on_train_begin(self, logs=None):
        self.ends, self.steps = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        if len(self.ends) > 1:
            self.steps.append(self.ends[-1] - self.ends[-2])


def strategy_child(spec: dict) -> dict:
    """One worker process: train.py's model, loss and optimizer under the strategy train.py
    would pick (multi-worker when TF_CONFIG is set), `fit` on synthetic batches, step times."""
    import tensorflow as tf

    from utils.config import load_config
    from utils.distribute import distribute_batches, select_strategy
    from utils.training import Phase, build_model, compile_phase

    size, batch, classes = spec["size"], spec["batch"], spec["num_classes"]
    strategy = select_strategy([0])
    cfg = load_config(Path(__file__).with_name("train.py"), [
        "--num_classes", str(classes), "--backbone", spec["backbone"], "--model_path", '""',
        "--input_shape", str(size), str(size), "--Unfreeze_batch_size", str(batch)])
    with quiet():
        model = build_model(cfg, strategy, None)
        with strategy.scope():
            compile_phase(cfg, model, Phase(False, batch, 0, cfg.UnFreeze_Epoch, True), None)
    x, y = synthetic_batch(batch, size, classes)
    data = distribute_batches(strategy, batch, lambda per_replica, pipelines, index: (
        tf.data.Dataset.from_tensors((x[:per_replica], y[:per_replica])).repeat()))
    times = StepTimes()
    model.fit(data, steps_per_epoch=spec["repeats"] + 2, epochs=1, verbose=0, callbacks=[times])
    steps = times.steps[1:]  # the second step may still finish tracing on some workers
    return {"s_min": round(min(steps), 4), "s_median": round(statistics.median(steps), 4),
            "replicas": strategy.num_replicas_in_sync}


def bench_strategy(args) -> list[dict]:
    """The same global batch on 1 process and on 2 workers of a local cluster (TF_CONFIG on
    127.0.0.1), the cores split between them: the cost of the gradient all-reduce."""
    from utils.distribute import local_cluster

    size, batch = (64, 2) if args.quick else (256, 4)
    cores = os.cpu_count() or 1
    spec = dict(size=size, batch=batch, repeats=args.train_repeats + 1,
                num_classes=args.num_classes, backbone=args.backbone)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    rows = []
    for workers in (1, 2):
        threads = max(1, cores // workers)
        cluster = local_cluster(workers) if workers > 1 else [None]
        processes = [subprocess.Popen(
            [sys.executable, __file__, "--strategy_child", json.dumps(spec)], text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**env, "TF_NUM_INTRAOP_THREADS": str(threads),
                 **({"TF_CONFIG": tf_config} if tf_config else {})})
            for tf_config in cluster]
        outputs = [process.communicate(timeout=1800) for process in processes]
        if any(process.returncode for process in processes):
            raise RuntimeError(f"{workers}-worker training failed:\n{outputs[0][1][-3000:]}")
        line = next(line for line in outputs[0][0].splitlines() if line.startswith(RESULT_PREFIX))
        row = {"workers": workers, "threads_per_worker": threads, "size": size,
               "global_batch": batch, **json.loads(line[len(RESULT_PREFIX):])}
        row["images_per_s"] = round(batch / row["s_median"], 2)
        row["speed_vs_1_worker"] = round(rows[0]["s_median"] / row["s_median"], 3) if rows else 1
        rows.append(row)
        print(f"{workers} worker(s) x {threads} thread(s), {size}x{size}, global batch {batch}: "
              f"{row['s_median']} s/step median, {row['images_per_s']} images/s")
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
    from PIL import Image

    from utils.dataloader import make_dataset
    from utils.dataset_audit import image_dir, label_dir, save_label
    from utils.demo_data import LARGE_SIZE, make_scene

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
    from PIL import Image

    from utils.dataloader import read_split
    from utils.dataset_audit import SPLITS_DIR
    from utils.metrics import evaluate_split
    from utils.quantize import calibration_files

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
        ("Data-parallel workers on this machine (train.py model, loss, optimizer)", "strategy",
         ["workers", "threads_per_worker", "size", "global_batch", "replicas", "s_min",
          "s_median", "images_per_s", "speed_vs_1_worker"]),
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


def write_inputs(folder: Path, args) -> tuple[str, "Image.Image", list[Path]]:
    """Seeded random weights (unless --model_path), the 500x375 JPEG and calibration images."""
    from PIL import Image

    from utils.demo_data import LARGE_SIZE, make_scene

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


# --device gpu: the accelerator benchmark on any Keras backend (JAX or TensorFlow), which imports
# only Keras, NumPy and the backend-agnostic model, loss and schedule modules.
GPU_BACKENDS = ("jax", "tensorflow")
MIXED_GOAL = 2.0  # mixed-precision training images/s vs float32
NO_XLA_ON_JAX = "n/a: Keras on JAX always compiles with XLA (jit_compile=False runs op by op)"


def gpu_devices(backend: str) -> tuple[list[str], list[str]]:
    """The names of the GPUs the Keras backend sees, and the kinds of all its devices."""
    if backend == "jax":
        import jax

        devices = jax.devices()
        gpus = [d.device_kind for d in devices if d.platform in ("gpu", "cuda", "rocm")]
        return gpus, sorted({d.platform for d in devices})
    import tensorflow as tf

    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return gpus, sorted({d.device_type.lower() for d in tf.config.list_physical_devices()})


def gpu_machine_info(allow_cpu: bool) -> dict:
    """Card(s), backend and versions; exits with a message when the backend sees no GPU."""
    backend = keras.backend.backend()
    if backend not in GPU_BACKENDS:
        raise SystemExit(f"--device gpu supports the Keras backends {GPU_BACKENDS}, not "
                         f"{backend!r}; set KERAS_BACKEND=jax or tensorflow.")
    gpus, kinds = gpu_devices(backend)
    if not gpus and not allow_cpu:
        raise SystemExit(f"no GPU visible to {backend} (devices: {', '.join(kinds)}); install "
                         "tensorflow[and-cuda] or jax[cuda12], or pass --allow_cpu to run the "
                         "GPU benchmark's code on the CPU (for tests: its figures mean nothing).")
    info = {"device": gpus[0] if gpus else f"CPU ({cpu_name()}; --allow_cpu)", "gpus": gpus,
            "on_gpu": bool(gpus), "backend": backend, "keras": keras.__version__,
            "python": platform.python_version(), "cores": os.cpu_count()}
    if backend == "jax":
        import jax

        info["jax"] = jax.__version__
        # JAX's default lets float32 convolutions and matmuls use TF32 on Ampere and later
        info["float32_matmul"] = (jax.config.jax_default_matmul_precision
                                  or "JAX default (TF32 on Ampere and later)")
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            info["memory_limit_gib"] = round(stats["bytes_limit"] / 2**30, 1)
    else:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
        info["float32_matmul"] = "TF32 allowed" if tf32 else "float32"
    names = ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_FLAGS",
             "JAX_COMPILATION_CACHE_DIR", "TF_GPU_ALLOCATOR", "CUDA_VISIBLE_DEVICES")
    info["env"] = {name: os.environ[name] for name in names if name in os.environ}
    return info


def train_defaults(num_classes: int) -> dict:
    """train.py's parameter block (optimizer, LR, loss flags, weight decay...), run without the
    script's imports, which need TensorFlow."""
    from utils.config import read_parameter_block

    _, statements = read_parameter_block(Path(__file__).with_name("train.py"))
    namespace = {"np": np}
    for statement in statements:
        if isinstance(statement, ast.Assign):
            exec(compile(ast.Module([statement], []), "train.py", "exec"), namespace)
            if statement.targets[0].id == "num_classes":
                namespace["num_classes"] = num_classes
    return namespace


def gpu_model(args, precision: str, xla: bool, train_batch: int | None = None) -> keras.Model:
    """A fresh U-Net under `precision`, compiled with or without XLA. For inference it returns
    the class map (argmax on the device); with `train_batch`, it is compiled as train.py's
    unfrozen phase: its loss, f_score metric, optimizer and learning rate for that batch."""
    from utils.recipe import apply_weight_decay, compile_for_training

    keras.backend.clear_session()
    gc.collect()
    size = args.size[0]
    with dtype_policy(precision):
        model = build_unet((size, size, 3), args.num_classes, args.backbone)
        if train_batch is None:
            model = keras.Model(model.input, keras.ops.argmax(model.output, axis=-1))
            model.compile(jit_compile=xla)
            return model
        cfg = SimpleNamespace(**train_defaults(args.num_classes))
        apply_weight_decay(model, cfg.weight_decay)
        compile_for_training(model, cfg, train_batch, jit_compile=xla)
    return model


def gpu_inputs(batch: int, size: int, num_classes: int):
    """Random images in [-1, 1] and one-hot labels of 16x16-pixel class blocks (the last
    channel is the ignore class, as in the data), made on the device."""
    ops = keras.ops
    x = keras.random.uniform((batch, size, size, 3), -1.0, 1.0, seed=0)
    blocks = keras.random.randint((batch, size // 16, size // 16), 0, num_classes + 1, seed=1)
    labels = ops.repeat(ops.repeat(blocks, 16, axis=1), 16, axis=2)
    return x, ops.one_hot(labels, num_classes + 1)


def is_out_of_memory(error: BaseException) -> bool:
    """TensorFlow's ResourceExhaustedError, or XLA's RESOURCE_EXHAUSTED runtime error (JAX,
    and TensorFlow with XLA): the errors a too-large batch raises."""
    name = type(error).__name__
    return name == "ResourceExhaustedError" or (
        name in ("XlaRuntimeError", "JaxRuntimeError", "InternalError")
        and "RESOURCE_EXHAUSTED" in str(error))


def gpu_train_row(args, precision: str, batch: int, xla: bool, flops: float) -> dict:
    """One training step timed; the loss is read back to the host, which waits for the device.
    The first step (tracing and compiling) is timed apart."""
    model = gpu_model(args, precision, xla, train_batch=batch)
    x, y = gpu_inputs(batch, args.size[0], args.num_classes)
    losses = []

    def step():
        losses.append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    timing = time_call(step, args.train_repeats, warmup=1)
    return {"size": args.size[0], "batch": batch, "precision": precision, "xla": xla, **timing,
            "images_per_s": round(batch / timing["s_min"], 1),
            "tflops": round(3 * flops * batch / timing["s_min"] / 1e12, 2),
            "first_step_s": round(first, 1),
            "loss_scaling": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
            "loss_finite": bool(np.isfinite(losses[-1]))}


def try_train_row(args, precision: str, batch: int, xla: bool, flops: float) -> dict | None:
    """`gpu_train_row`, or None (after freeing the device memory) if the batch does not fit."""
    row = None
    try:
        row = gpu_train_row(args, precision, batch, xla, flops)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        print(f"training {precision} batch {batch}: out of memory ({type(error).__name__})",
              flush=True)
    keras.backend.clear_session()
    gc.collect()
    return row


def largest_batch(try_batch: Callable[[int], dict | None], start: int, start_row: dict | None,
                  cap: int, out_of_time: Callable[[], bool]) -> tuple[dict | None, list[dict]]:
    """Double the batch from `start` (already tried: `start_row`, None if out of memory) until
    one does not fit or the next would pass `cap`; halve it instead if `start` did not fit.
    Returns the row of the largest batch that fit and every batch tried."""
    best, tried = start_row, [{"batch": start, "fits": start_row is not None}]
    batch = start * 2 if start_row else start // 2
    while 1 <= batch <= cap and not out_of_time():
        row = try_batch(batch)
        tried.append({"batch": batch, "fits": row is not None})
        if start_row is None and row is not None:
            return row, tried
        if start_row is not None and row is None:
            break
        best = row or best
        batch = batch * 2 if start_row else batch // 2
    return best, tried


def gpu_inference_rows(args, precision: str, xla: bool, flops: float) -> list[dict]:
    """Inference per batch size: forward pass and argmax on the device, the class map copied
    to the host. XLA off on JAX is reported as not applicable rather than timed."""
    base = {"size": args.size[0], "precision": precision, "xla": xla}
    if not xla and keras.backend.backend() == "jax":
        return [{**base, "batch": None, "note": NO_XLA_ON_JAX}]
    model, rows = gpu_model(args, precision, xla), []
    for batch in args.infer_batch:
        x, _ = gpu_inputs(batch, args.size[0], args.num_classes)
        timing = time_call(lambda x=x: model.predict_on_batch(x), args.repeats)
        rows.append({**base, "batch": batch, **timing,
                     "images_per_s": round(batch / timing["s_min"], 1),
                     "tflops": round(flops * batch / timing["s_min"] / 1e12, 2)})
    return rows


def gpu_targets(results: dict) -> list[dict]:
    """Mixed-precision training images/s over float32's (XLA on): at the common batch, and
    each at its largest batch."""
    targets, training = [], results.get("training", [])
    common = results["settings"]["common_batch"]
    largest = {r["precision"]: r for r in results.get("largest_batch", []) if r.get("row")}
    fp32 = _find(training, precision="float32", batch=common, xla=True)
    for precision in ("float16", "bfloat16"):
        pairs = [(f"batch {common}", fp32, _find(training, precision=precision, batch=common,
                                                 xla=True))]
        if "float32" in largest and precision in largest:
            pairs.append(("largest batch each", largest["float32"]["row"],
                          largest[precision]["row"]))
        for name, base, mixed in pairs:
            if base and mixed:
                ratio = mixed["images_per_s"] / base["images_per_s"]
                targets.append({"target": f"{precision} training {mixed['size']}² images/s vs "
                                          f"float32, {name}", "goal": f">= {MIXED_GOAL}",
                                "measured": round(ratio, 3), "met": ratio >= MIXED_GOAL})
    return targets


def gpu_markdown(results: dict) -> str:
    """The accelerator run as Markdown tables."""
    machine, settings = results["machine"], results["settings"]
    versions = ", ".join(f"{k} {machine[k]}" for k in ("keras", "jax", "tensorflow")
                         if k in machine)
    memory = (f", {machine['memory_limit_gib']} GiB usable" if "memory_limit_gib" in machine
              else "")
    env = ", ".join(f"{k}={v}" for k, v in machine["env"].items()) or "none set"
    parts = [
        "# GPU benchmark",
        f"**{machine['device']}** ({len(machine['gpus'])} GPU(s) visible{memory}); Keras on "
        f"{machine['backend']} ({versions}); float32 matmuls: {machine['float32_matmul']}; "
        f"environment: {env}. "
        f"{settings['backbone']} U-Net, {settings['num_classes']} classes, "
        f"{settings['size']}², random weights; forward pass {settings['gflop_forward']} "
        "GFLOP/image (training counted as 3x). Times are min/median over repeats after "
        "warm-up; the device is synchronised by copying the result to the host.",
        "Training: one `train_on_batch` of train.py's unfrozen phase (its loss, f_score "
        "metric, optimizer and learning rate); first_step_s includes tracing and compiling. "
        "Inference: forward pass + argmax on the device, class map copied to the host."
        + (f" XLA off: {NO_XLA_ON_JAX}." if machine["backend"] == "jax" else ""),
    ]
    largest = [{**r, "tried": ", ".join(f"{t['batch']} {'fits' if t['fits'] else 'OOM'}"
                                        for t in r["tried"])}
               for r in results.get("largest_batch", [])]
    tables = [
        ("Training step", results.get("training"),
         ["size", "batch", "precision", "xla", "s_min", "s_median", "images_per_s", "tflops",
          "first_step_s", "loss_scaling", "loss_finite"]),
        (f"Largest training batch (doubling, capped at {settings['max_batch']})", largest,
         ["precision", "largest_batch", "images_per_s", "capped", "tried"]),
        ("Inference", results.get("inference"),
         ["size", "batch", "precision", "xla", "s_min", "s_median", "images_per_s", "tflops",
          "note"]),
        ("Targets (ratios from this run)", results.get("targets"),
         ["target", "goal", "measured", "met"]),
    ]
    for title, rows, columns in tables:
        if rows:
            parts.append(f"## {title}\n\n{markdown_table(rows, columns)}")
    return "\n\n".join(parts) + "\n"


def save_results(results: dict, args, markdown: str) -> None:
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    Path(args.md).write_text(markdown)


class GpuRun:
    """One --device gpu run: its results so far, written after every measurement (so a run cut
    short keeps them), and the time budget after which no new measurement starts."""

    def __init__(self, args):
        self.args, self.start = args, time.perf_counter()
        size = args.size[0]
        self.flops = count_flops(build_unet((size, size, 3), args.num_classes, args.backbone))
        self.results = {"machine": gpu_machine_info(args.allow_cpu), "settings": {
            "device": "gpu", "quick": args.quick, "size": size, "precisions": args.precisions,
            "inference_batches": args.infer_batch, "common_batch": args.common_batch,
            "max_batch": args.max_batch, "repeats": args.repeats,
            "train_repeats": args.train_repeats, "time_budget_s": args.time_budget,
            "num_classes": args.num_classes, "backbone": args.backbone,
            "gflop_forward": round(self.flops / 1e9, 1)}, "training": [], "inference": [],
            "largest_batch": [], "skipped": []}

    def save(self) -> None:
        self.results["targets"] = gpu_targets(self.results)
        self.results["seconds"] = round(time.perf_counter() - self.start, 1)
        save_results(self.results, self.args, gpu_markdown(self.results))

    def out_of_time(self, what: str) -> bool:
        budget = self.args.time_budget
        if not budget or time.perf_counter() - self.start <= budget:
            return False
        self.results["skipped"].append(what)
        print(f"skipped (past --time_budget {budget} s): {what}", flush=True)
        return True

    def train(self, precision: str, batch: int, xla: bool) -> dict | None:
        """One training row (None if out of memory), recorded and saved."""
        row = try_train_row(self.args, precision, batch, xla, self.flops)
        if row:
            self.results["training"].append(row)
            print(f"training {precision} batch {batch} XLA {'on' if xla else 'off'}: "
                  f"{row['s_min']} s/step ({row['s_median']} median), {row['images_per_s']} "
                  f"images/s, {row['tflops']} TFLOP/s, first step {row['first_step_s']} s",
                  flush=True)
        self.save()
        return row

    def inference(self, precision: str, xla: bool) -> None:
        for row in gpu_inference_rows(self.args, precision, xla, self.flops):
            self.results["inference"].append(row)
            figures = (row["note"] if "note" in row else f"{row['s_min']} s "
                       f"({row['s_median']} median), {row['images_per_s']} images/s")
            batch = row["batch"] or "all"
            print(f"inference {precision} batch {batch} XLA {'on' if xla else 'off'}: {figures}",
                  flush=True)
        self.save()

    def largest(self, precision: str, common_row: dict | None) -> None:
        """The largest-batch search from the common batch, recorded and saved."""
        args = self.args
        best, tried = largest_batch(
            lambda batch: self.train(precision, batch, True), args.common_batch, common_row,
            args.max_batch, lambda: self.out_of_time(f"largest batch {precision}"))
        self.results["largest_batch"].append({
            "precision": precision, "largest_batch": best and best["batch"],
            "images_per_s": best and best["images_per_s"], "row": best, "tried": tried,
            "capped": bool(best) and best["batch"] * 2 > args.max_batch})
        print(f"largest batch {precision}: {best and best['batch']} (tried "
              f"{[t['batch'] for t in tried]})", flush=True)
        self.save()


def run_gpu(args) -> dict:
    """--device gpu: training at the common batch per precision (the mixed-precision target
    first), inference with XLA on and off, training with XLA off (TensorFlow), then the largest
    batch per precision (not with --quick)."""
    run = GpuRun(args)
    machine, common = run.results["machine"], {}
    print(f"GPU benchmark on {machine['device']}, Keras {machine['keras']} on "
          f"{machine['backend']}, {args.size[0]}²", flush=True)
    for precision in args.precisions:
        if not run.out_of_time(f"training {precision} batch {args.common_batch}"):
            common[precision] = run.train(precision, args.common_batch, True)
    for target in gpu_targets(run.results):
        print(f"target {target['target']}: {target['measured']} ({target['goal']}: "
              f"{'met' if target['met'] else 'missed'})", flush=True)
    for precision in args.precisions:
        for xla in (True, False):
            if not run.out_of_time(f"inference {precision} XLA {'on' if xla else 'off'}"):
                run.inference(precision, xla)
    if not args.quick and machine["backend"] != "jax":
        for precision in args.precisions:
            if not run.out_of_time(f"training {precision} batch {args.common_batch} XLA off"):
                run.train(precision, args.common_batch, False)
    for precision in [] if args.quick else [p for p in args.precisions if p in common]:
        run.largest(precision, common[precision])
    run.save()
    print("\n" + gpu_markdown(run.results))
    print(f"Results written to {args.json} and {args.md} in {run.results['seconds']} s.",
          flush=True)
    return run.results


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    gpu = parser.add_argument_group(
        "--device gpu", "the accelerator benchmark on any Keras backend (KERAS_BACKEND=jax or "
        "tensorflow; needs neither TensorFlow nor onnxruntime under JAX): training images/s "
        "at a common batch and at the largest batch that fits, and inference, each for "
        "float32 / float16 / bfloat16 with XLA on and off")
    gpu.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                     help="cpu: the sections above (default); gpu: the accelerator benchmark "
                          "(default size 512; --json/--md default benchmark_gpu.json/.md)")
    gpu.add_argument("--allow_cpu", action="store_true",
                     help="with --device gpu: run its code on the CPU when no GPU is visible "
                          "(for tests) instead of exiting with an error")
    gpu.add_argument("--precisions", nargs="+", choices=tuple(POLICIES),
                     default=list(POLICIES), help="in this order (default: all three)")
    gpu.add_argument("--infer_batch", type=int, nargs="+", default=[1, 8],
                     help="inference batch sizes (default 1 8)")
    gpu.add_argument("--common_batch", type=int, default=16,
                     help="training batch every precision is timed at (default 16)")
    gpu.add_argument("--max_batch", type=int, default=128,
                     help="cap of the largest-batch search, which doubles the batch from "
                          "--common_batch until out of memory (default 128; --quick: none)")
    gpu.add_argument("--time_budget", type=float, default=None,
                     help="seconds after which no new measurement starts (default 400, "
                          "--quick 150; 0: no limit)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: 256² only (or --size), 2 repeats, no bfloat16, "
                             "tf_fp32_live or 512² training; with --device gpu about 3 "
                             "minutes: 3 repeats, no largest-batch search")
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
    parser.add_argument("--json", default=None, help="results file (default benchmark.json)")
    parser.add_argument("--md", default=None, help="Markdown file (default benchmark.md)")
    parser.add_argument("--strategy", action="store_true",
                        help="only the multi-worker section: training steps on 1 process vs 2 "
                             "workers of a local TF_CONFIG cluster (same global batch)")
    parser.add_argument("--train_child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--strategy_child", default="", help=argparse.SUPPRESS)
    add_gpu_arguments(parser)
    args = parser.parse_args(argv)
    if args.device == "gpu":
        return gpu_defaults(args)
    args.json, args.md = args.json or "benchmark.json", args.md or "benchmark.md"
    if args.sections is None:
        args.sections = ["pipeline"] if args.pipeline else ["strategy"] if args.strategy else [
            s for s in SECTIONS if s != "strategy"
            and (s != "accuracy" or (args.model_path and args.VOCdevkit_path))]
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


def gpu_defaults(args):
    """--device gpu's defaults: 512², 10 timed calls and 5 timed steps (--quick: 3 and 3)."""
    args.size = args.size or [512]
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.train_repeats = args.train_repeats or (3 if args.quick else 5)
    if args.time_budget is None:
        args.time_budget = 150 if args.quick else 400
    args.json, args.md = args.json or "benchmark_gpu.json", args.md or "benchmark_gpu.md"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.device == "gpu":
        return run_gpu(args)
    if args.train_child:
        print(RESULT_PREFIX + json.dumps(train_step_child(json.loads(args.train_child))))
        return {}
    if args.strategy_child:
        print(RESULT_PREFIX + json.dumps(strategy_child(json.loads(args.strategy_child))))
        return {}
    start = time.perf_counter()
    results = {"machine": machine_info(), "settings": {
        "quick": args.quick, "sizes": args.size, "repeats": args.repeats,
        "train_repeats": args.train_repeats, "num_classes": args.num_classes,
        "backbone": args.backbone, "weights": args.model_path or "random (seeded)"}}
    from unet import cpu_has_bfloat16

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
    if "strategy" in args.sections:
        results["strategy"] = bench_strategy(args)
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
