"""benchmark.py: the --quick run writes valid JSON and Markdown; targets are computed right."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import benchmark

pytest.importorskip("tf2onnx")


def test_quick_run_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "benchmark.json", tmp_path / "benchmark.md"
    benchmark.main(["--quick", "--size", "64", "--num_classes", "3", "--repeats", "1",
                    "--train_repeats", "1", "--calibration_images", "2",
                    "--json", str(out_json), "--md", str(out_md)])
    results = json.loads(out_json.read_text())
    assert {"machine", "settings", "roof", "inference", "predictor", "training", "pipeline",
            "targets"} <= set(results)
    assert results["roof"]["float32_gflops"] > 0
    backends = [row["backend"] for row in results["inference"]]
    assert backends == ["tf_fp32", "tf_fp32_xla", "ort_fp32", "ort_int8"]  # quick: no bf16
    for row in results["inference"]:
        assert row["size"] == 64 and 0 < row["s_min"] <= row["s_median"]
        assert row["gflops"] > 0 and row["agreement_vs_first"] is None  # random weights
    calls = {(row["backend"], row["call"]) for row in results["predictor"]}
    assert ("tf_fp32", "get_miou_png") in calls and ("tf_fp32", "detect_image") in calls
    (train,) = results["training"]
    assert (train["size"], train["batch"], train["precision"]) == (64, 4, "float32")
    assert train["images_per_s"] > 0 and 0.1 < train["peak_rss_gib"] < 64
    assert results["pipeline"]["images_per_s_median"] > 0
    names = [t["target"] for t in results["targets"]]
    assert "fp32 inference 64² % of roof" in names and "input pipeline images/s" in names

    markdown = out_md.read_text()
    assert markdown.startswith("# Benchmark")
    assert "| size | backend | s_min |" in markdown and "| 64 | ort_int8 |" in markdown
    assert "## Targets" in markdown


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


def test_targets_are_ratios_of_this_run():
    results = {
        "inference": [
            {"size": 512, "backend": "tf_fp32", "s_min": 2.0, "pct_roof": 96.0},
            {"size": 512, "backend": "ort_int8", "s_min": 1.0, "pct_roof": 192.0},
        ],
        "predictor": [
            {"size": 512, "backend": "tf_fp32", "call": "get_miou_png", "s_min": 2.1,
             "pct_roof": 91.4, "overhead_pct": 5.0},
            {"size": 512, "backend": "tf_bf16", "call": "get_miou_png", "s_min": 1.0},
        ],
        "training": [
            {"size": 512, "batch": 2, "precision": "float32", "s_min": 9.0, "pct_roof": 86.0,
             "peak_rss_gib": 4.6},
            {"size": 512, "batch": 2, "precision": "bfloat16", "s_min": 6.0},
        ],
        "pipeline": {"images_per_s_median": 61.0},
        "accuracy": [
            {"backend": "tf_fp32", "mIoU_delta_points": 0.0, "pixel_agreement": 1.0},
            {"backend": "tf_bf16", "mIoU_delta_points": -1.5, "pixel_agreement": 0.995},
        ],
    }
    targets = {t["target"]: (t["measured"], t["met"]) for t in benchmark.check_targets(results)}
    assert targets == {
        "fp32 inference 512² % of roof": (96.0, True),
        "int8 inference 512² speed-up vs fp32": (2.0, False),
        "predictor end to end 512² % of roof": (91.4, False),
        "pre/post-processing 512² % of model time": (5.0, True),
        "tf_bf16 end to end speed-up vs fp32": (2.1, True),
        "fp32 training 512² batch 2 % of roof": (86.0, True),
        "bf16 training 512² batch 2 speed-up": (1.5, False),
        "fp32 training 512² batch 2 peak RSS GiB": (4.6, False),
        "input pipeline images/s": (61.0, True),
        "tf_bf16 val mIoU points vs tf_fp32": (-1.5, False),
        "tf_bf16 class maps agreeing with fp32 %": (99.5, True),
    }


def test_time_call_warms_up_then_times():
    calls = []
    timing = benchmark.time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5
    assert 0 <= timing["s_min"] <= timing["s_median"]


def test_accuracy_section_needs_weights_and_data():
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--sections", "accuracy"])
    args = benchmark.parse_args(["--model_path", "w.h5", "--VOCdevkit_path", "VOC"])
    assert "accuracy" in args.sections and args.size == [512, 256]
    assert benchmark.parse_args(["--pipeline"]).sections == ["pipeline"]


def gpu_args(tmp_path, *extra):
    return ["--device", "gpu", "--allow_cpu", "--size", "64", "--precisions", "float32",
            "--infer_batch", "1", "--common_batch", "1", "--max_batch", "2", "--repeats", "1",
            "--train_repeats", "1", "--json", str(tmp_path / "gpu.json"),
            "--md", str(tmp_path / "gpu.md"), *extra]


def test_gpu_path_runs_on_cpu_when_allowed(tmp_path):
    benchmark.main(gpu_args(tmp_path))
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert {"machine", "settings", "training", "inference", "largest_batch", "targets",
            "skipped", "seconds"} <= set(results)
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
    with pytest.raises(SystemExit, match="no GPU visible to tensorflow"):
        benchmark.main(args)
    assert not (tmp_path / "gpu.json").exists()


def test_gpu_path_imports_no_cpu_only_modules():
    """Under JAX the GPU machine has no TensorFlow, onnxruntime or predictor dependencies."""
    code = ("import sys, benchmark\n"
            "try:\n    benchmark.main(['--device', 'gpu'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('onnxruntime', 'tf2onnx', 'unet', 'utils.dataloader', "
            "'utils.metrics', 'utils.quantize', 'utils.training') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(benchmark.__file__).parent)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_float16_training_gets_loss_scaling():
    args = benchmark.parse_args(["--device", "gpu", "--size", "64"])
    model = benchmark.gpu_model(args, "float16", True, train_batch=2)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.dtype_policy.name == "mixed_float16"
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)  # train.py's Adam LR
    assert benchmark.gpu_model(args, "bfloat16", True, train_batch=2).dtype_policy.name == \
        "mixed_bfloat16"


def test_largest_batch_doubles_until_out_of_memory_or_cap():
    def fits_up_to(limit):
        return lambda batch: {"batch": batch} if batch <= limit else None

    never = lambda: False  # noqa: E731
    best, tried = benchmark.largest_batch(fits_up_to(40), 8, {"batch": 8}, 128, never)
    assert best == {"batch": 32} and [(t["batch"], t["fits"]) for t in tried] == [
        (8, True), (16, True), (32, True), (64, False)]
    best, tried = benchmark.largest_batch(fits_up_to(999), 8, {"batch": 8}, 32, never)
    assert best == {"batch": 32} and [t["batch"] for t in tried] == [8, 16, 32]
    best, tried = benchmark.largest_batch(fits_up_to(5), 16, None, 128, never)  # halves
    assert best == {"batch": 4} and [t["batch"] for t in tried] == [16, 8, 4]
    best, tried = benchmark.largest_batch(fits_up_to(999), 8, {"batch": 8}, 128, lambda: True)
    assert best == {"batch": 8} and len(tried) == 1  # out of time


def test_only_out_of_memory_errors_count():
    import tensorflow as tf

    class XlaRuntimeError(RuntimeError):
        pass

    assert benchmark.is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert benchmark.is_out_of_memory(XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory"))
    assert not benchmark.is_out_of_memory(XlaRuntimeError("INVALID_ARGUMENT: shapes"))
    assert not benchmark.is_out_of_memory(ValueError("RESOURCE_EXHAUSTED"))


def test_gpu_targets_compare_mixed_precision_with_float32():
    def row(precision, batch, images_per_s):
        return {"size": 512, "precision": precision, "batch": batch, "xla": True,
                "images_per_s": images_per_s}

    results = {"settings": {"common_batch": 16}, "training": [
        row("float32", 16, 100.0), row("bfloat16", 16, 250.0), row("float16", 16, 150.0)],
        "largest_batch": [{"precision": "float32", "row": row("float32", 32, 110.0)},
                          {"precision": "bfloat16", "row": row("bfloat16", 128, 330.0)}]}
    targets = {t["target"]: (t["measured"], t["met"]) for t in benchmark.gpu_targets(results)}
    assert targets == {
        "float16 training 512² images/s vs float32, batch 16": (1.5, False),
        "bfloat16 training 512² images/s vs float32, batch 16": (2.5, True),
        "bfloat16 training 512² images/s vs float32, largest batch each": (3.0, True),
    }
