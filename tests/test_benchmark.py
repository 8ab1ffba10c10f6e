"""benchmark.py: the --quick run writes valid JSON and Markdown; targets are computed right."""

import json

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
