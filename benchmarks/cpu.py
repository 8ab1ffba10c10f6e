"""The CPU run: each section asked for, in order, then the targets and the report."""

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import keras

from benchmarks.demo import bench_demo
from benchmarks.inference import bench_accuracy, bench_inference, bench_roof, write_inputs
from benchmarks.keras_backends import bench_keras_backends
from benchmarks.pipeline import bench_pipeline
from benchmarks.report import write_results
from benchmarks.strategy import bench_strategy
from benchmarks.targets import CPU_TARGETS, evaluate
from benchmarks.training import CONFIGS, bench_training
from utils.machine import CPU_FLAGS, cpu_flags, cpu_has_bfloat16, cpu_name, onednn_enabled


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict:
    """CPU, cores, relevant instruction sets, library versions and the load average."""
    import onnxruntime
    import tensorflow as tf

    flags = cpu_flags() or set()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS},
        # oneDNN runs the convolutions and matmuls; this cap lowers its instruction set (and the
        # roof) below what the flags say, e.g. SSE41 to stand in for a slower CPU
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "onednn": onednn_enabled(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_average_start": load_average(),
    }


def run_cpu(cfg: Any) -> dict:
    """Run the sections of `cfg.sections`, write cfg.json and cfg.md; returns the results."""
    start = time.perf_counter()
    results: dict = {"machine": machine_info(), "settings": {
        "quick": cfg.quick, "sizes": cfg.size, "repeats": cfg.repeats,
        "train_repeats": cfg.train_repeats, "num_classes": cfg.num_classes,
        "backbone": cfg.backbone, "weights": cfg.model_path or "random (seeded)"}}
    if cpu_has_bfloat16() is False:
        print("Note: this CPU has no bfloat16 instructions; bfloat16 figures are emulated.")
    roof = None
    if "roof" in cfg.sections:
        results["roof"] = bench_roof(cfg.repeats)
        roof = results["roof"]["float32_gflops"]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        weights, image, calibration = write_inputs(work, cfg)
        if {"inference", "predictor"} & set(cfg.sections):
            results["inference"], results["predictor"] = bench_inference(
                cfg, weights, work, image, calibration, roof)
        if "accuracy" in cfg.sections:
            results["accuracy"] = bench_accuracy(cfg, work / "accuracy")
    if "training" in cfg.sections:
        configs = [(cfg.size[0], 4)] if cfg.quick else list(CONFIGS)
        precisions = ["float32"] if cfg.quick else ["float32", "bfloat16"]
        results["training"] = bench_training(cfg, configs, precisions, roof)
    if "pipeline" in cfg.sections:
        results["pipeline"] = bench_pipeline(
            cfg.size[0] if cfg.quick else 512, cfg.num_classes, cfg.batch_size,
            num_images=8 if cfg.quick else 32, batches=2 if cfg.quick else 8,
            repeats=cfg.repeats)
    if "demo" in cfg.sections:
        results["demo"] = bench_demo(cfg, roof)
    if "strategy" in cfg.sections:
        results["strategy"] = bench_strategy(cfg)
    if "backends" in cfg.sections:
        results["backends"] = bench_keras_backends(cfg, roof)
    results["targets"] = evaluate(results, CPU_TARGETS)
    results["machine"]["load_average_end"] = load_average()
    results["seconds"] = round(time.perf_counter() - start, 1)

    markdown = write_results(results, cfg.json, cfg.md)
    print("\n" + markdown)
    print(f"Results written to {cfg.json} and {cfg.md} in {results['seconds']} s.")
    return results
