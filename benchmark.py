"""Speed of the U-Net on this machine: `python benchmark.py`, or `--quick` for a one-minute run.

Sections: the float32 matmul roof; bare-model inference at batch 1 (TensorFlow graph, XLA,
onnxruntime float32, bfloat16, onnxruntime int8); the predictor end to end against the bare
model; one training step of train.py's model, loss and optimizer (each configuration in its own
process, which also gives its peak RSS); the training input pipeline; make demo's arithmetic
(TFLOP) and its training step as a share of the roof; with --model_path and
--VOCdevkit_path, the val mIoU and class-map agreement of each precision; with --strategy,
training steps on 1 and on 2 worker processes of a local multi-worker cluster; with --backends
tensorflow jax torch, inference and a training step on each Keras backend, each in a process of
its own. Every figure is the min and median over repeats after warm-up. Results go to
benchmark.json and benchmark.md.

`--device gpu` instead measures a GPU on any Keras backend (TensorFlow, or JAX without
TensorFlow or onnxruntime installed): training images/s at 512² for float32, float16 and
bfloat16 at a common batch and at the largest batch that fits, inference at batch 1 and 8, XLA
on and off; results go to benchmark_gpu.json and benchmark_gpu.md (`--allow_cpu` runs the same
code on a CPU, for tests).
"""

from benchmarks.settings import resolve
from utils.cli import run
from utils.config import load_config

# ---- What to run ------------------------------------------------------------------------------
# Empty values ([], 0, "") and time_budget = -1 mean "automatic": the value the help names.

# About a minute: 256² only (or --size), 2 repeats, no bfloat16, tf_fp32_live or 512² training;
# with --device gpu about 3 minutes: 3 repeats, no largest-batch search.
quick = False
# Any of roof inference predictor training pipeline demo accuracy strategy. [] = all but
# strategy, and accuracy only with model_path and VOCdevkit_path.
sections = []
# Only the input pipeline (same as --sections pipeline).
pipeline = False
# Only the multi-worker section: training steps on 1 process vs 2 workers of a local TF_CONFIG
# cluster (same global batch).
strategy = False

# ---- Model and sizes --------------------------------------------------------------------------
# Square inference sizes. [] = 512 256; --quick 256 (then also the training and pipeline size);
# --device gpu 512.
size = []
# Inference backends, any of tf_fp32 tf_fp32_live tf_fp32_xla ort_fp32 tf_bf16 ort_int8.
# tf_fp32 freezes the weights into the graph, tf_fp32_live reads them on every call. The Keras
# backends tensorflow jax torch (e.g. --backends tensorflow jax torch) compare inference and a
# training step on each, in its own process.
backends = ["tf_fp32", "tf_fp32_live", "tf_fp32_xla", "ort_fp32", "tf_bf16", "ort_int8"]
# Timed calls. 0 = 5; --quick 2; --device gpu 10 (--quick 3).
repeats = 0
# Timed training steps. 0 = 3; --quick 2; --device gpu 5 (--quick 3).
train_repeats = 0
# Batch size of the input-pipeline section.
batch_size = 8
# Number of classes + 1 (background).
num_classes = 21
# Backbone: "vgg" or "resnet50".
backbone = "vgg"
# Trained weights ("" = seeded random weights).
model_path = ""
# With model_path: the dataset whose val split the accuracy section scores.
VOCdevkit_path = ""
# Accuracy section input [h, w]. [] = the first size.
eval_shape = []
# int8 calibration images. 0 = 8 for speed (4 with --quick), 32 for accuracy, as predict.py.
calibration_images = 0

# ---- Output -----------------------------------------------------------------------------------
# Results file. "" = benchmark.json (--device gpu: benchmark_gpu.json).
json = ""
# Markdown file. "" = benchmark.md (--device gpu: benchmark_gpu.md).
md = ""

# ---- GPU run (--device gpu) ----------------------------------------------------------------------
# The accelerator benchmark on any Keras backend (KERAS_BACKEND=jax or tensorflow; needs neither
# TensorFlow nor onnxruntime under JAX): training images/s at a common batch and at the largest
# batch that fits, and inference, each for float32 / float16 / bfloat16 with XLA on and off.

# "cpu": the sections above; "gpu": the accelerator benchmark.
device = "cpu"
# With --device gpu: run its code on the CPU when no GPU is visible (for tests) instead of
# exiting with an error.
allow_cpu = False
# Precisions to measure, in this order.
precisions = ["float32", "float16", "bfloat16"]
# Inference batch sizes.
infer_batch = [1, 8]
# Training batch every precision is timed at.
common_batch = 16
# Cap of the largest-batch search, which doubles the batch from common_batch until out of
# memory (--quick: no search).
max_batch = 128
# Seconds after which no new measurement starts. -1 = 400 (--quick 150); 0 = no limit.
time_budget = -1.0


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark the parameters describe; returns the results written to `json`."""
    cfg = resolve(load_config(__file__, argv))
    if cfg.device == "gpu":
        from benchmarks.gpu import run_gpu

        return run_gpu(cfg)
    from benchmarks.cpu import run_cpu

    return run_cpu(cfg)


if __name__ == "__main__":
    run(main)
