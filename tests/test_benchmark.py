"""benchmark.py and benchmarks/: the --quick run writes valid JSON and Markdown, the settings and
their errors, the child processes, the targets table and the GPU run on any backend."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import benchmark
from benchmarks.gpu import gpu_model, is_out_of_memory, largest_batch
from benchmarks.harness import child_result, start_child, synthetic_batch, time_call
from benchmarks.pipeline import bench_pipeline
from benchmarks.settings import resolve
from benchmarks.targets import CPU_TARGETS, GPU_TARGETS, evaluate
from utils.config import load_config
from utils.errors import UserError

pytest.importorskip("tf2onnx")

ROOT = Path(benchmark.__file__).parent


def settings(*argv: str):
    return resolve(load_config(benchmark.__file__, argv))


def run_script(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmark.py", *argv], capture_output=True,
                          text=True, check=False, cwd=ROOT)


def test_quick_run_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "benchmark.json", tmp_path / "benchmark.md"
    other = "torch" if importlib.util.find_spec("torch") else "tensorflow"
    done = run_script("--quick", "--size", "64", "--num_classes", "3", "--repeats", "1",
                      "--train_repeats", "1", "--backends", "tf_fp32", "tf_fp32_xla", "ort_fp32",
                      other,
                      "--json", str(out_json), "--md", str(out_md))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out_json.read_text())
    assert list(results) == ["machine", "settings", "roof", "inference", "predictor",
                             "training", "pipeline", "demo", "backends", "targets", "seconds"]
    assert {"cpu", "cores", "cpu_flags", "onednn_max_cpu_isa", "onednn", "gpus", "tensorflow",
            "keras", "onnxruntime", "load_average_start",
            "load_average_end"} == set(results["machine"])
    assert results["machine"]["onednn"] in (True, False)
    assert results["settings"] == {"quick": True, "sizes": [64], "repeats": 1,
                                   "train_repeats": 1, "num_classes": 3, "backbone": "vgg",
                                   "weights": "random (seeded)"}
    assert results["roof"]["float32_gflops"] > 0
    backends = [row["backend"] for row in results["inference"]]
    assert backends == ["tf_fp32", "tf_fp32_xla", "ort_fp32"]  # int8: tests/test_onnx.py
    for row in results["inference"]:
        assert row["size"] == 64 and 0 < row["s_min"] <= row["s_median"]
        assert row["gflops"] > 0 and row["agreement_vs_first"] is None  # random weights
    calls = {(row["backend"], row["call"]) for row in results["predictor"]}
    assert ("tf_fp32", "get_miou_png") in calls and ("tf_fp32", "detect_image") in calls
    (train,) = results["training"]  # timed in a child process
    assert (train["size"], train["batch"], train["precision"]) == (64, 4, "float32")
    assert train["images_per_s"] > 0 and 0.1 < train["peak_rss_gib"] < 64
    assert results["pipeline"]["images_per_s_median"] > 0
    assert results["pipeline"]["pydataset_images_per_s_median"] > 0  # the JAX/PyTorch feeder
    (row,) = results["backends"]  # the other Keras backend, in a process of its own
    assert (row["backend"], row["size"], row["batch"]) == (other, 64, 2)
    assert 0 < row["infer_s_min"] <= row["infer_s_median"]
    assert row["train_pct_roof"] == pytest.approx(
        100 * row["train_gflops"] / results["roof"]["float32_gflops"], abs=0.1)
    assert row["train_speed_vs_first"] == row["infer_speed_vs_first"] == 1.0
    demo = results["demo"]  # make demo's settings, whatever --size says
    assert demo["tflop"] == pytest.approx(sum(demo[f"{part}_tflop"] for part in (
        "frozen", "unfrozen", "val_loss", "evaluation", "precise_bn")), abs=0.03)
    assert demo["step_gflops"] == pytest.approx(demo["unfrozen_step_gflop"] / demo["step_s_min"],
                                                rel=0.02)
    assert 0 < demo["pct_roof"] < 150
    # timed in the environment make demo exports
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
    assert demo["environment"] == f"TF_ENABLE_ONEDNN_OPTS={onednn}"
    names = [t["target"] for t in results["targets"]]
    assert "make demo training TFLOP" in names
    assert "fp32 inference 64² % of roof" in names and "input pipeline images/s" in names

    markdown = out_md.read_text()
    assert markdown.startswith("# Benchmark")
    assert "| size | backend | s_min |" in markdown and "| 64 | ort_fp32 |" in markdown
    assert "## Targets" in markdown and "## Keras backends" in markdown
    assert "| 64x64 | resnet50 | 4 |" in markdown  # make demo's row


@pytest.mark.slow
def test_strategy_section_times_one_and_two_workers(tmp_path):
    out_json, out_md = tmp_path / "strategy.json", tmp_path / "strategy.md"
    benchmark.main(["--strategy", "--quick", "--num_classes", "3", "--train_repeats", "1",
                    "--json", str(out_json), "--md", str(out_md)])
    rows = json.loads(out_json.read_text())["strategy"]
    assert [(r["workers"], r["replicas"], r["global_batch"]) for r in rows] == [(1, 1, 2),
                                                                              (2, 2, 2)]
    for row in rows:
        assert 0 < row["s_min"] <= row["s_median"]
        assert row["threads_per_worker"] >= 1 and row["images_per_s"] > 0
    assert rows[1]["speed_vs_1_worker"] == pytest.approx(
        rows[0]["s_median"] / rows[1]["s_median"], rel=1e-2)
    assert "## Data-parallel workers on this machine" in out_md.read_text()


def test_pipeline_section_reports_images_per_second(capsys):
    result = bench_pipeline(size=32, batch_size=2, num_images=2, batches=1, repeats=2)
    assert result["images_per_s_min"] > 0
    assert result["images_per_s_median"] >= result["images_per_s_min"]
    assert "images/s" in capsys.readouterr().out


# A hand-made run: two sizes, two training configurations, three backends in the accuracy.
CPU_RESULTS = {
    "inference": [
        {"size": 512, "backend": "tf_fp32", "s_min": 2.0, "pct_roof": 96.0},
        {"size": 512, "backend": "ort_int8", "s_min": 0.7, "pct_roof": 274.3},
        {"size": 256, "backend": "tf_fp32", "s_min": 0.5, "pct_roof": 90.0},
        {"size": 256, "backend": "ort_int8", "s_min": 0.2, "pct_roof": 225.0},
        {"size": 128, "backend": "tf_fp32", "s_min": 0.1, "pct_roof": None},  # no roof
    ],
    "predictor": [
        {"size": 512, "backend": "tf_fp32", "call": "get_miou_png", "s_min": 2.1,
         "pct_roof": 91.4, "overhead_pct": 5.0},
        {"size": 512, "backend": "tf_fp32", "call": "detect_image", "s_min": 2.3,
         "pct_roof": 83.0, "overhead_pct": 15.0},
        {"size": 512, "backend": "tf_bf16", "call": "get_miou_png", "s_min": 1.0},
        {"size": 512, "backend": "ort_int8", "call": "get_miou_png", "s_min": 0.8},
    ],
    "training": [
        {"size": 256, "batch": 4, "precision": "float32", "s_min": 3.0, "pct_roof": 80.0,
         "peak_rss_gib": 2.0},
        {"size": 256, "batch": 4, "precision": "bfloat16", "s_min": 1.5},
        {"size": 512, "batch": 2, "precision": "float32", "s_min": 9.0, "pct_roof": 86.0,
         "peak_rss_gib": 4.6},
        {"size": 512, "batch": 2, "precision": "bfloat16", "s_min": 6.0},
    ],
    "pipeline": {"images_per_s_median": 61.0},
    "accuracy": [
        {"backend": "tf_fp32", "mIoU_delta_points": 0.0, "pixel_agreement": 1.0},
        {"backend": "ort_fp32", "mIoU_delta_points": 0.01, "pixel_agreement": 0.9999},
        {"backend": "tf_bf16", "mIoU_delta_points": -1.5, "pixel_agreement": 0.995},
    ],
}


def gpu_row(precision, batch, images_per_s, *, xla=True):
    return {"size": 512, "precision": precision, "batch": batch, "xla": xla,
            "images_per_s": images_per_s}


GPU_RESULTS = {"settings": {"common_batch": 16}, "training": [
    gpu_row("float32", 16, 100.0), gpu_row("float16", 16, 150.0), gpu_row("bfloat16", 16, 250.0),
    gpu_row("float32", 16, 90.0, xla=False), gpu_row("bfloat16", 16, 200.0, xla=False),
    gpu_row("float32", 32, 110.0), gpu_row("float16", 64, 190.0),
    gpu_row("bfloat16", 128, 330.0)],
    "largest_batch": [{"precision": p, "row": gpu_row(p, b, ips)} for p, b, ips in (
        ("float32", 32, 110.0), ("float16", 64, 190.0), ("bfloat16", 128, 330.0))]}


def target_rows(*rows: tuple) -> list[dict]:
    return [dict(zip(("target", "goal", "measured", "met"), row, strict=True)) for row in rows]


def test_targets_table_gives_the_rows_the_coded_checks_gave():
    """Every row, in order, as the targets written as code computed them on these results."""
    assert evaluate(CPU_RESULTS, CPU_TARGETS) == target_rows(
        ("fp32 inference 512² % of roof", ">= 95", 96.0, True),
        ("int8 inference 512² speed-up vs fp32", ">= 2.5", 2.857, True),
        ("fp32 inference 256² % of roof", ">= 95", 90.0, False),
        ("int8 inference 256² speed-up vs fp32", ">= 2.5", 2.5, True),
        ("predictor end to end 512² % of roof", ">= 92", 91.4, False),
        ("pre/post-processing 512² % of model time", "<= 5", 5.0, True),
        ("tf_bf16 end to end speed-up vs fp32", ">= 1.9", 2.1, True),
        ("ort_int8 end to end speed-up vs fp32", ">= 2.5", 2.625, True),
        ("fp32 training 256² batch 4 % of roof", ">= 85", 80.0, False),
        ("bf16 training 256² batch 4 speed-up", ">= 1.8", 2.0, True),
        ("fp32 training 512² batch 2 % of roof", ">= 85", 86.0, True),
        ("bf16 training 512² batch 2 speed-up", ">= 1.8", 1.5, False),
        ("fp32 training 512² batch 2 peak RSS GiB", "<= 4.5", 4.6, False),
        ("input pipeline images/s", ">= 60", 61.0, True),
        ("ort_fp32 val mIoU points vs tf_fp32", "within 1", 0.01, True),
        ("tf_bf16 val mIoU points vs tf_fp32", "within 1", -1.5, False),
        ("tf_bf16 class maps agreeing with fp32 %", ">= 99", 99.5, True),
    )
    assert evaluate(GPU_RESULTS, GPU_TARGETS) == target_rows(
        ("float16 training 512² images/s vs float32, batch 16", ">= 2.0", 1.5, False),
        ("float16 training 512² images/s vs float32, largest batch each", ">= 2.0", 1.727,
         False),
        ("bfloat16 training 512² images/s vs float32, batch 16", ">= 2.0", 2.5, True),
        ("bfloat16 training 512² images/s vs float32, largest batch each", ">= 2.0", 3.0,
         True),
    )


def test_targets_are_ratios_of_this_run():
    """A target needs the rows it is measured on; a ratio needs both of its rows."""
    results = {**CPU_RESULTS, "inference": CPU_RESULTS["inference"][2:],  # no int8 at 512²
               "predictor": CPU_RESULTS["predictor"][:3], "training": [], "accuracy": []}
    targets = {t["target"]: (t["measured"], t["met"]) for t in evaluate(results, CPU_TARGETS)}
    assert targets == {
        "fp32 inference 256² % of roof": (90.0, False),
        "int8 inference 256² speed-up vs fp32": (2.5, True),
        "predictor end to end 512² % of roof": (91.4, False),
        "pre/post-processing 512² % of model time": (5.0, True),
        "tf_bf16 end to end speed-up vs fp32": (2.1, True),
        "input pipeline images/s": (61.0, True),
    }
    assert evaluate({}, CPU_TARGETS) == [] and evaluate({"settings": {}}, GPU_TARGETS) == []


def test_gpu_targets_compare_mixed_precision_with_float32():
    largest = [r for r in GPU_RESULTS["largest_batch"] if r["precision"] != "float16"]
    results = {**GPU_RESULTS, "largest_batch": largest}
    targets = {t["target"]: (t["measured"], t["met"]) for t in evaluate(results, GPU_TARGETS)}
    assert targets == {
        "float16 training 512² images/s vs float32, batch 16": (1.5, False),
        "bfloat16 training 512² images/s vs float32, batch 16": (2.5, True),
        "bfloat16 training 512² images/s vs float32, largest batch each": (3.0, True),
    }
    results["settings"] = {"common_batch": 8}  # no float32 row at that batch
    assert [t["target"] for t in evaluate(results, GPU_TARGETS)] == [
        "bfloat16 training 512² images/s vs float32, largest batch each"]


def test_training_arithmetic_counts_each_phase():
    from benchmarks.demo import training_arithmetic
    from benchmarks.harness import train_config
    from nets.unet import Unet, freeze_backbone
    from utils.flops import count_flops, layer_flops

    cfg = train_config(4, "--backbone", "vgg", "--input_shape", "32", "32", "--Freeze_Epoch",
                       "1", "--UnFreeze_Epoch", "3", "--Freeze_batch_size", "2",
                       "--Unfreeze_batch_size", "4", "--eval_period", "2")
    model = Unet((32, 32, 3), 4, "vgg")
    forward = count_flops(model)
    freeze_backbone(model, "vgg")
    decoder = sum(layer_flops(layer) for layer in model.layers if layer.trainable)
    assert 0 < decoder < forward
    flops = training_arithmetic(cfg, num_train=11, num_val=3)
    assert flops == pytest.approx({
        "frozen": 10 * (forward + 2 * decoder),  # 5 steps of 2 images, 1 left over
        "unfrozen": 2 * 8 * 3 * forward,  # 2 epochs of 2 steps of 4
        "val_loss": 3 * 3 * forward, "evaluation": 1 * 3 * forward, "precise_bn": 0,
        "unfrozen_step": 3 * forward * 4})
    with_bn = training_arithmetic(cfg.replace(backbone="resnet50", precise_bn_images=6), 11, 3)
    resnet = count_flops(Unet((32, 32, 3), 4, "resnet50"))
    # every epoch: conv5_block3_3_bn trains in the frozen phase too
    assert with_bn["precise_bn"] == pytest.approx(3 * 6 * resnet)
    no_bn = training_arithmetic(cfg.replace(precise_bn_images=6), 11, 3)
    assert no_bn["precise_bn"] == 0  # VGG has no batch norm to re-estimate


def test_make_demo_spends_at_most_half_the_first_demos_arithmetic():
    from benchmarks.demo import demo_arithmetic, demo_settings

    args, num_images, split_args = demo_settings()
    assert "--backbone" in args and num_images > 0 and "--train_percent" in split_args
    _, demo = demo_arithmetic()
    assert demo["num_train"] + demo["num_val"] == num_images and demo["num_val"] >= 50
    assert demo["tflop"] <= 17.75 and demo["frozen_tflop"] > 0  # a real two-phase run


def test_the_demo_and_its_benchmark_run_with_onednn_unless_the_user_chose(monkeypatch):
    """make demo exports TF_ENABLE_ONEDNN_OPTS=1 (a user's own value wins), and the benchmark
    times the demo's step in the same environment."""
    from benchmarks.demo import demo_environment

    def demo_env(**env) -> str:  # make demo with a PY that prints the variable, then stops
        outer = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
        result = subprocess.run(
            ["make", "-s", "-o", "venv", "demo", "PY=printenv TF_ENABLE_ONEDNN_OPTS; false"],
            cwd=ROOT, capture_output=True, text=True, env={**outer, **env})
        return result.stdout.strip()

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert demo_environment() == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    assert demo_env() == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert demo_environment() == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert demo_env() == "0"


def test_time_call_warms_up_then_times():
    calls = []
    timing = time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5
    assert 0 <= timing["s_min"] <= timing["s_median"]


def test_synthetic_batch_is_blocks_of_one_hot_classes():
    x, y = (keras.ops.convert_to_numpy(v) for v in synthetic_batch(2, 32, 3))
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    assert y.shape == (2, 32, 32, 4) and np.all(y.sum(-1) == 1)  # the last channel: ignore
    classes = y.argmax(-1)
    assert np.all(classes[:, :16, :16] == classes[:, :1, :1])


def test_automatic_settings_follow_the_run(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # all installed
    full = settings("--model_path", "w.h5", "--VOCdevkit_path", "VOC")
    assert "accuracy" in full.sections and "strategy" not in full.sections
    assert full.size == [512, 256] and full.eval_shape == [512, 512]
    assert (full.repeats, full.train_repeats, full.json, full.md) == (5, 3, "benchmark.json",
                                                                      "benchmark.md")
    assert "accuracy" not in settings().sections
    assert settings("--pipeline").sections == ["pipeline"]
    assert settings("--strategy", "True").sections == ["strategy"]
    backends = settings("--backends", "tensorflow", "jax", "torch")  # alone: roof + comparison
    assert backends.sections == ["roof", "backends"] and backends.backends == []
    assert backends.keras_backends == ["tensorflow", "jax", "torch"]
    mixed = settings("--backends", "tf_fp32", "jax")
    assert mixed.backends == ["tf_fp32"] and mixed.keras_backends == ["jax"]
    assert mixed.sections[-1] == "backends" and "inference" in mixed.sections
    assert "backends" not in settings().sections
    quick = settings("--quick")
    assert quick.size == [256] and quick.repeats == 2
    assert "tf_bf16" not in quick.backends and "tf_fp32_live" not in quick.backends
    gpu = settings("--device", "gpu", "--quick")
    assert (gpu.size, gpu.repeats, gpu.train_repeats, gpu.time_budget) == ([512], 3, 3, 150)
    assert (gpu.json, gpu.md) == ("benchmark_gpu.json", "benchmark_gpu.md")
    assert settings("--device", "gpu").time_budget == 400
    assert settings("--device", "gpu", "--time_budget", "0").time_budget == 0  # no limit


@pytest.mark.parametrize(("argv", "message"), [
    (["--sections", "accuracy"], "needs --model_path and --VOCdevkit_path"),
    (["--sections", "roof", "bogus"], "sections has 'bogus', which is not supported; use any of "
                                      r"\['roof', 'inference'"),
    (["--device", "tpu"], r"device = 'tpu' is not supported; use one of \['cpu', 'gpu'\]"),
    (["--device", "gpu", "--precisions", "float64"],
     r"precisions has 'float64'.*\['float32', 'float16', 'bfloat16'\]"),
    (["--backbone", "resnet"], "Unsupported backbone - `resnet`, Use vgg, resnet50"),
    (["--backends", "tf_fp16"], r"backends has 'tf_fp16'.*\['tf_fp32', 'tf_fp32_live'"),
    (["--size", "64", "big"], r"size = \[64, 'big'\]; use whole numbers above 0"),
    (["--eval_shape", "64"], "eval_shape = \\[64\\]; give two numbers"),
    (["--train_child", "{}"], "unknown parameter --train_child"),  # no hidden flags
])
def test_wrong_settings_name_the_valid_values(argv, message):
    with pytest.raises(UserError, match=message):
        benchmark.main(argv)


def test_command_line_help_and_errors():
    help_text = run_script("--help")
    assert help_text.returncode == 0 and "--time_budget" in help_text.stdout
    assert "--strategy_child" not in help_text.stdout
    assert max(len(line) for line in help_text.stdout.splitlines()) <= 100
    error = run_script("--sections", "accuracy")
    assert error.returncode == 2
    assert "error: the accuracy section needs --model_path" in error.stderr


def test_a_keras_backend_that_is_not_installed_stops_before_any_timing(monkeypatch):
    installed = {"tensorflow", "jax"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in installed else None)
    with pytest.raises(UserError, match=r"--backends torch: PyTorch is not installed in this "
                                        r"environment; install it with pip install -r "
                                        r"requirements-torch\.txt"):
        settings("--backends", "tensorflow", "torch")
    assert settings("--backends", "tensorflow", "jax").keras_backends == ["tensorflow", "jax"]


def test_a_failed_child_raises_with_its_error():
    broken = start_child("train_step", {"size": 64})  # the spec lacks the batch
    unknown = start_child("no_such_kind", {})
    with pytest.raises(RuntimeError, match=r"(?s)training step failed.*KeyError: 'batch'"):
        child_result(broken, "training step")
    with pytest.raises(RuntimeError, match=r"(?s)failed.*usage: python -m benchmarks.child"):
        child_result(unknown, "unknown child")


def gpu_args(tmp_path, *extra):
    return ["--device", "gpu", "--allow_cpu", "--size", "64", "--precisions", "float32",
            "--infer_batch", "1", "--common_batch", "1", "--max_batch", "2", "--repeats", "1",
            "--train_repeats", "1", "--json", str(tmp_path / "gpu.json"),
            "--md", str(tmp_path / "gpu.md"), *extra]


def test_gpu_path_runs_on_cpu_when_allowed(tmp_path):
    benchmark.main(gpu_args(tmp_path))
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert list(results) == ["machine", "settings", "training", "inference", "largest_batch",
                             "skipped", "targets", "seconds"]
    machine = results["machine"]
    assert machine["backend"] == "tensorflow" and "CPU" in machine["device"]
    assert results["settings"]["size"] == 64 and results["settings"]["gflop_forward"] > 0
    modes = {(row["batch"], row["xla"]) for row in results["training"]}
    assert modes == {(1, True), (1, False), (2, True)}  # common batch XLA on/off, then doubled
    for row in results["training"]:
        assert 0 < row["s_min"] <= row["s_median"] and row["images_per_s"] > 0
        assert row["loss_finite"] and not row["loss_scaling"]  # float32
    assert {(row["xla"], row["batch"]) for row in results["inference"]} == {(True, 1), (False, 1)}
    (largest,) = results["largest_batch"]
    assert largest["largest_batch"] == 2 and largest["capped"]
    assert [t["batch"] for t in largest["tried"]] == [1, 2]
    markdown = (tmp_path / "gpu.md").read_text()
    assert markdown.startswith("# GPU benchmark") and "## Largest training batch" in markdown


def test_gpu_path_needs_a_gpu_unless_allowed(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    args = [a for a in gpu_args(tmp_path) if a != "--allow_cpu"]
    with pytest.raises(UserError, match="no GPU visible to tensorflow"):
        benchmark.main(args)
    assert not (tmp_path / "gpu.json").exists()


# Runs the GPU benchmark with Keras reporting the JAX backend (a stand-in `jax` module without
# GPUs; the arithmetic still runs on TensorFlow) and records every import of a module that a
# JAX machine may lack, made by the project's own code.
JAX_RUN = """
import builtins, json, sys, types
import keras
jax = types.ModuleType("jax")
cpu = types.SimpleNamespace(platform="cpu", device_kind="cpu", memory_stats=lambda: {})
jax.devices, jax.__version__ = (lambda: [cpu]), "stand-in"
jax.config = types.SimpleNamespace(jax_default_matmul_precision=None)
sys.modules["jax"] = jax
keras.backend.backend = lambda: "jax"
OURS = ("benchmark", "benchmarks", "utils", "nets")
FORBIDDEN = ("tensorflow", "onnxruntime", "tf2onnx", "onnx", "PIL", "cv2")
imported, real_import = [], builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__") or ""
    if importer.split(".")[0] in OURS and name.split(".")[0] in FORBIDDEN:
        imported.append(f"{importer}: {name}")
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = spy
import benchmark
benchmark.main(sys.argv[1:])
CPU_ONLY = ("utils.predictor", "utils.onnx_export", "utils.quantize", "utils.dataloader",
            "utils.evaluation", "utils.training", "utils.distribute", "utils.demo_data",
            "benchmarks.inference", "benchmarks.training", "benchmarks.strategy",
            "benchmarks.pipeline", "benchmarks.cpu", "onnxruntime", "tf2onnx")
print(json.dumps({"imported": imported, "cpu_only": [m for m in CPU_ONLY if m in sys.modules]}))
"""


def test_gpu_path_on_jax_imports_no_tensorflow_or_cpu_only_modules(tmp_path):
    """Under JAX the GPU machine has no TensorFlow, onnxruntime, PIL or predictor."""
    out = subprocess.run([sys.executable, "-c", JAX_RUN, *gpu_args(tmp_path, "--quick")],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"imported": [], "cpu_only": []}
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert results["machine"]["backend"] == "jax" and results["machine"]["jax"] == "stand-in"
    assert [row["xla"] for row in results["training"]] == [True]
    assert results["inference"][-1]["note"].startswith("n/a: Keras on JAX")


def test_float16_training_gets_loss_scaling():
    cfg = settings("--device", "gpu", "--size", "64")
    model = gpu_model(cfg, "float16", xla=True, train_batch=2)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.dtype_policy.name == "mixed_float16"
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)  # train.py's Adam LR
    assert gpu_model(cfg, "bfloat16", xla=True, train_batch=2).dtype_policy.name == \
        "mixed_bfloat16"


def test_largest_batch_doubles_until_out_of_memory_or_cap():
    def fits_up_to(limit):
        return lambda batch: {"batch": batch} if batch <= limit else None

    never = lambda: False  # noqa: E731
    best, tried = largest_batch(fits_up_to(40), 8, {"batch": 8}, 128, never)
    assert best == {"batch": 32} and [(t["batch"], t["fits"]) for t in tried] == [
        (8, True), (16, True), (32, True), (64, False)]
    best, tried = largest_batch(fits_up_to(999), 8, {"batch": 8}, 32, never)
    assert best == {"batch": 32} and [t["batch"] for t in tried] == [8, 16, 32]
    best, tried = largest_batch(fits_up_to(5), 16, None, 128, never)  # halves
    assert best == {"batch": 4} and [t["batch"] for t in tried] == [16, 8, 4]
    best, tried = largest_batch(fits_up_to(999), 8, {"batch": 8}, 128, lambda: True)
    assert best == {"batch": 8} and len(tried) == 1  # out of time


def test_only_out_of_memory_errors_count():
    import tensorflow as tf

    class XlaRuntimeError(RuntimeError):
        pass

    assert is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert is_out_of_memory(XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory"))
    assert not is_out_of_memory(XlaRuntimeError("INVALID_ARGUMENT: shapes"))
    assert not is_out_of_memory(ValueError("RESOURCE_EXHAUSTED"))


@pytest.mark.parametrize("cap", [None, "SSE41"])
def test_a_capped_onednn_is_reported_beside_the_cpu_flags(monkeypatch, cap):
    """ONEDNN_MAX_CPU_ISA lowers the roof below what the flags suggest: the report says so."""
    from benchmarks.cpu import machine_info
    from benchmarks.report import cpu_markdown

    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    machine = machine_info()
    assert machine["onednn_max_cpu_isa"] == cap
    heading = cpu_markdown({"machine": machine, "settings": {
        "backbone": "vgg", "num_classes": 3, "weights": "random (seeded)"}}).splitlines()[2]
    assert heading.startswith(f"{machine['cpu']}, {machine['cores']} cores (")
    assert ("oneDNN capped at SSE41 by ONEDNN_MAX_CPU_ISA" in heading) == (cap is not None)


@pytest.mark.parametrize("onednn", [True, False])
def test_tensorflows_onednn_kernels_off_are_reported(onednn):
    """Without TensorFlow's oneDNN kernels convolutions run slower than the flags suggest."""
    from benchmarks.cpu import machine_info
    from benchmarks.report import cpu_markdown

    machine = {**machine_info(), "onednn": onednn}
    heading = cpu_markdown({"machine": machine, "settings": {
        "backbone": "vgg", "num_classes": 3, "weights": "random (seeded)"}}).splitlines()[2]
    assert ("TensorFlow's oneDNN kernels off" in heading) == (not onednn)
