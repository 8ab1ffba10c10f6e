"""The results as Markdown tables, and the one writer of the JSON and Markdown files."""

import json
from pathlib import Path

NO_XLA_ON_JAX = "n/a: Keras on JAX always compiles with XLA (jit_compile=False runs op by op)"
TARGET_COLUMNS = ["target", "goal", "measured", "met"]
# (title, results key, columns) of the CPU run's tables, in order
CPU_TABLES = [
    ("Inference, batch 1 (bare model)", "inference",
     ["size", "backend", "s_min", "s_median", "gflops", "pct_roof", "agreement_vs_first"]),
    ("Predictor end to end (500x375 JPEG)", "predictor",
     ["size", "backend", "call", "s_min", "s_median", "bare_s_min", "overhead_pct", "gflops",
      "pct_roof"]),
    ("Training step (train.py model, loss, optimizer; unfrozen)", "training",
     ["size", "batch", "precision", "s_min", "s_median", "images_per_s", "gflops", "pct_roof",
      "peak_rss_gib"]),
    ("make demo: arithmetic of its training run, and its unfrozen step", "demo",
     ["shape", "backbone", "batch", "num_train", "num_val", "tflop", "frozen_tflop",
      "unfrozen_tflop", "unfrozen_step_gflop", "step_s_min", "step_gflops", "pct_roof",
      "training_s_estimate", "environment"]),
    ("Val accuracy per backend", "accuracy",
     ["backend", "shape", "images", "mIoU", "mIoU_delta_points", "pixel_agreement",
      "s_per_image"]),
    ("Data-parallel workers on this machine (train.py model, loss, optimizer)", "strategy",
     ["workers", "threads_per_worker", "size", "global_batch", "replicas", "s_min",
      "s_median", "images_per_s", "speed_vs_1_worker"]),
    ("Keras backends (inference batch 1; train.py's training step)", "backends",
     ["backend", "size", "batch", "infer_s_min", "infer_gflops", "infer_pct_roof",
      "infer_speed_vs_first", "train_s_min", "train_gflops", "train_pct_roof",
      "train_speed_vs_first"]),
    ("Targets (ratios from this run)", "targets", TARGET_COLUMNS),
]
GPU_TABLES = [
    ("Training step", "training",
     ["size", "batch", "precision", "xla", "s_min", "s_median", "images_per_s", "tflops",
      "first_step_s", "loss_scaling", "loss_finite"]),
    ("Largest training batch (doubling, capped at {max_batch})", "largest_batch",
     ["precision", "largest_batch", "images_per_s", "capped", "tried"]),
    ("Inference", "inference",
     ["size", "batch", "precision", "xla", "s_min", "s_median", "images_per_s", "tflops",
      "note"]),
    ("Targets (ratios from this run)", "targets", TARGET_COLUMNS),
]


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `columns`; missing and None values are empty cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if row.get(c) is None else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_markdown(results: dict) -> str:
    """The CPU run: machine, roof, then a table per section that ran."""
    machine, settings = results["machine"], results["settings"]
    flags = ", ".join(f for f, present in machine["cpu_flags"].items() if present)
    if machine.get("onednn") is False:
        flags += "; TensorFlow's oneDNN kernels off"
    if machine.get("onednn_max_cpu_isa"):
        flags += f"; oneDNN capped at {machine['onednn_max_cpu_isa']} by ONEDNN_MAX_CPU_ISA"
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
    for title, key, columns in CPU_TABLES:
        if results.get(key):
            rows = results[key]
            rows = [rows] if isinstance(rows, dict) else rows  # a section of one row
            parts.append(f"## {title}\n\n{markdown_table(rows, columns)}")
        if key == "training" and "pipeline" in results:
            pipeline = results["pipeline"]
            parts.append(f"## Input pipeline\n\n{pipeline['input']}: tf.data "
                         f"{pipeline['images_per_s_median']} images/s median "
                         f"({pipeline['images_per_s_min']} min); PyDataset, "
                         f"{pipeline['pydataset_workers']} threads, "
                         f"{pipeline['pydataset_images_per_s_median']} median "
                         f"({pipeline['pydataset_images_per_s_min']} min).")
    return "\n\n".join(parts) + "\n"


def gpu_markdown(results: dict) -> str:
    """The accelerator run: device and settings, then its tables."""
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
    tables = {**results, "largest_batch": [
        {**r, "tried": ", ".join(f"{t['batch']} {'fits' if t['fits'] else 'OOM'}"
                                 for t in r["tried"])}
        for r in results.get("largest_batch", [])]}
    for title, key, columns in GPU_TABLES:
        if tables.get(key):
            parts.append(f"## {title.format(**settings)}\n\n"
                         f"{markdown_table(tables[key], columns)}")
    return "\n\n".join(parts) + "\n"


def to_markdown(results: dict) -> str:
    """The Markdown report of a CPU or a GPU (`settings.device == "gpu"`) run."""
    gpu = results["settings"].get("device") == "gpu"
    return gpu_markdown(results) if gpu else cpu_markdown(results)


def write_results(results: dict, json_path: str | Path, md_path: str | Path) -> str:
    """Write the results as JSON and as Markdown; returns the Markdown."""
    markdown = to_markdown(results)
    Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    Path(md_path).write_text(markdown)
    return markdown
