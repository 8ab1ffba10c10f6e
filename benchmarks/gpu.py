"""`--device gpu`: the accelerator benchmark on any Keras backend (JAX or TensorFlow); it never
imports TensorFlow (but on its backend), onnxruntime, PIL or the predictor."""

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from benchmarks.harness import free_memory, synthetic_batch, time_call, train_config
from benchmarks.report import NO_XLA_ON_JAX, gpu_markdown, write_results
from benchmarks.targets import GPU_TARGETS, evaluate
from nets.unet import Unet as build_unet
from utils.errors import UserError
from utils.flops import count_flops
from utils.machine import cpu_name
from utils.precision import dtype_policy
from utils.recipe import apply_weight_decay, compile_for_training

GPU_BACKENDS = ("jax", "tensorflow")
ENV_NAMES = ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_FLAGS",
             "JAX_COMPILATION_CACHE_DIR", "TF_GPU_ALLOCATOR", "CUDA_VISIBLE_DEVICES")


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


class NoGpuError(UserError, RuntimeError):
    """--device gpu on a machine or Keras backend without a GPU to measure."""


def gpu_machine_info(*, allow_cpu: bool) -> dict:
    """Card(s), backend and versions; exits with a message when the backend sees no GPU."""
    backend = keras.backend.backend()
    if backend not in GPU_BACKENDS:
        raise NoGpuError(f"--device gpu supports the Keras backends {GPU_BACKENDS}, not "
                         f"{backend!r}; set KERAS_BACKEND=jax or tensorflow.")
    gpus, kinds = gpu_devices(backend)
    if not gpus and not allow_cpu:
        raise NoGpuError(f"no GPU visible to {backend} (devices: {', '.join(kinds)}); install "
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
    info["env"] = {name: os.environ[name] for name in ENV_NAMES if name in os.environ}
    return info


def gpu_model(cfg: Any, precision: str, *, xla: bool,
              train_batch: int | None = None) -> keras.Model:
    """A fresh U-Net under `precision`, XLA on or off, returning the class map (argmax on the
    device); with `train_batch`, compiled as train.py's unfrozen phase for that batch instead."""
    free_memory()
    size = cfg.size[0]
    with dtype_policy(precision):
        model = build_unet((size, size, 3), cfg.num_classes, cfg.backbone)
        if train_batch is None:
            model = keras.Model(model.input, keras.ops.argmax(model.output, axis=-1))
            model.compile(jit_compile=xla)
            return model
        recipe = train_config(cfg.num_classes)
        apply_weight_decay(model, recipe.weight_decay)
        compile_for_training(model, recipe, train_batch, jit_compile=xla)
    return model


def is_out_of_memory(error: BaseException) -> bool:
    """TensorFlow's ResourceExhaustedError, or XLA's RESOURCE_EXHAUSTED runtime error (JAX,
    and TensorFlow with XLA): the errors a too-large batch raises."""
    name = type(error).__name__
    return name == "ResourceExhaustedError" or (
        name in ("XlaRuntimeError", "JaxRuntimeError", "InternalError")
        and "RESOURCE_EXHAUSTED" in str(error))


def train_row(cfg: Any, precision: str, batch: int, flops: float, *, xla: bool) -> dict | None:
    """One training step timed (the loss read back to the host waits for the device), the
    first step (tracing and compiling) apart; None, memory freed, if the batch does not fit."""
    try:
        model = gpu_model(cfg, precision, xla=xla, train_batch=batch)
        x, y = synthetic_batch(batch, cfg.size[0], cfg.num_classes)
        losses = []

        def step():
            losses.append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))

        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        timing = time_call(step, cfg.train_repeats, warmup=1)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        print(f"training {precision} batch {batch}: out of memory ({type(error).__name__})",
              flush=True)
        free_memory()
        return None
    row = {"size": cfg.size[0], "batch": batch, "precision": precision, "xla": xla, **timing,
           "images_per_s": round(batch / timing["s_min"], 1),
           "tflops": round(3 * flops * batch / timing["s_min"] / 1e12, 2),
           "first_step_s": round(first, 1),
           "loss_scaling": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
           "loss_finite": bool(np.isfinite(losses[-1]))}
    free_memory()
    return row


def largest_batch(try_batch: Callable[[int], dict | None], start: int, start_row: dict | None,
                  cap: int, out_of_time: Callable[[], bool]) -> tuple[dict | None, list[dict]]:
    """Double the batch from `start` (tried: `start_row`, None if it did not fit: then halve)
    until one does not fit or passes `cap`: the largest row that fit, and every batch tried."""
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


def inference_rows(cfg: Any, precision: str, flops: float, *, xla: bool) -> list[dict]:
    """Inference per batch size: forward pass and argmax on the device, the class map copied
    to the host. XLA off on JAX is reported as not applicable rather than timed."""
    base = {"size": cfg.size[0], "precision": precision, "xla": xla}
    if not xla and keras.backend.backend() == "jax":
        return [{**base, "batch": None, "note": NO_XLA_ON_JAX}]
    model, rows = gpu_model(cfg, precision, xla=xla), []
    for batch in cfg.infer_batch:
        x, _ = synthetic_batch(batch, cfg.size[0], cfg.num_classes)
        timing = time_call(lambda x=x: model.predict_on_batch(x), cfg.repeats)
        rows.append({**base, "batch": batch, **timing,
                     "images_per_s": round(batch / timing["s_min"], 1),
                     "tflops": round(flops * batch / timing["s_min"] / 1e12, 2)})
    return rows


def on_off(xla: bool) -> str:
    return "on" if xla else "off"


class GpuRun:
    """One --device gpu run: its results so far, written after every measurement (so a run cut
    short keeps them), and the time budget after which no new measurement starts."""

    def __init__(self, cfg: Any):
        self.cfg, self.start = cfg, time.perf_counter()
        size = cfg.size[0]
        self.flops = count_flops(build_unet((size, size, 3), cfg.num_classes, cfg.backbone))
        self.results = {"machine": gpu_machine_info(allow_cpu=cfg.allow_cpu), "settings": {
            "device": "gpu", "quick": cfg.quick, "size": size, "precisions": cfg.precisions,
            "inference_batches": cfg.infer_batch, "common_batch": cfg.common_batch,
            "max_batch": cfg.max_batch, "repeats": cfg.repeats,
            "train_repeats": cfg.train_repeats, "time_budget_s": cfg.time_budget,
            "num_classes": cfg.num_classes, "backbone": cfg.backbone,
            "gflop_forward": round(self.flops / 1e9, 1)}, "training": [], "inference": [],
            "largest_batch": [], "skipped": []}

    def save(self) -> None:
        self.results["targets"] = evaluate(self.results, GPU_TARGETS)
        self.results["seconds"] = round(time.perf_counter() - self.start, 1)
        write_results(self.results, self.cfg.json, self.cfg.md)

    def out_of_time(self, what: str) -> bool:
        budget = self.cfg.time_budget
        if not budget or time.perf_counter() - self.start <= budget:
            return False
        self.results["skipped"].append(what)
        print(f"skipped (past --time_budget {budget} s): {what}", flush=True)
        return True

    def train(self, precision: str, batch: int, *, xla: bool) -> dict | None:
        """One training row (None if out of memory), recorded and saved."""
        row = train_row(self.cfg, precision, batch, self.flops, xla=xla)
        if row:
            self.results["training"].append(row)
            print(f"training {precision} batch {batch} XLA {on_off(xla)}: "
                  f"{row['s_min']} s/step ({row['s_median']} median), {row['images_per_s']} "
                  f"images/s, {row['tflops']} TFLOP/s, first step {row['first_step_s']} s",
                  flush=True)
        self.save()
        return row

    def inference(self, precision: str, *, xla: bool) -> None:
        for row in inference_rows(self.cfg, precision, self.flops, xla=xla):
            self.results["inference"].append(row)
            figures = (row["note"] if "note" in row else f"{row['s_min']} s "
                       f"({row['s_median']} median), {row['images_per_s']} images/s")
            batch = row["batch"] or "all"
            print(f"inference {precision} batch {batch} XLA {on_off(xla)}: {figures}",
                  flush=True)
        self.save()

    def largest(self, precision: str, common_row: dict | None) -> None:
        """The largest-batch search from the common batch, recorded and saved."""
        cfg = self.cfg
        best, tried = largest_batch(
            lambda batch: self.train(precision, batch, xla=True), cfg.common_batch, common_row,
            cfg.max_batch, lambda: self.out_of_time(f"largest batch {precision}"))
        self.results["largest_batch"].append({
            "precision": precision, "largest_batch": best and best["batch"],
            "images_per_s": best and best["images_per_s"], "row": best, "tried": tried,
            "capped": bool(best) and best["batch"] * 2 > cfg.max_batch})
        print(f"largest batch {precision}: {best and best['batch']} (tried "
              f"{[t['batch'] for t in tried]})", flush=True)
        self.save()


def run_gpu(cfg: Any) -> dict:
    """Common-batch training per precision, inference with XLA on and off, training with XLA
    off (TensorFlow), then the largest batch per precision (not with --quick)."""
    run = GpuRun(cfg)
    machine, common = run.results["machine"], {}
    print(f"GPU benchmark on {machine['device']}, Keras {machine['keras']} on "
          f"{machine['backend']}, {cfg.size[0]}²", flush=True)
    for precision in cfg.precisions:
        if not run.out_of_time(f"training {precision} batch {cfg.common_batch}"):
            common[precision] = run.train(precision, cfg.common_batch, xla=True)
    for target in evaluate(run.results, GPU_TARGETS):
        print(f"target {target['target']}: {target['measured']} ({target['goal']}: "
              f"{'met' if target['met'] else 'missed'})", flush=True)
    for precision in cfg.precisions:
        for xla in (True, False):
            if not run.out_of_time(f"inference {precision} XLA {on_off(xla)}"):
                run.inference(precision, xla=xla)
    if not cfg.quick and machine["backend"] != "jax":
        for precision in cfg.precisions:
            if not run.out_of_time(f"training {precision} batch {cfg.common_batch} XLA off"):
                run.train(precision, cfg.common_batch, xla=False)
    for precision in [] if cfg.quick else [p for p in cfg.precisions if p in common]:
        run.largest(precision, common[precision])
    run.save()
    print("\n" + gpu_markdown(run.results))
    print(f"Results written to {cfg.json} and {cfg.md} in {run.results['seconds']} s.",
          flush=True)
    return run.results
