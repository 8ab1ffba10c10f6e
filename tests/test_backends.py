"""The scripts on JAX and PyTorch: the same losses, class maps and mIoU as on TensorFlow, resume,
mixed precision, every predict mode, and no TensorFlow imported. Each backend runs in its own
process (tests/backend_run.py), since KERAS_BACKEND is read once per process."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import backend_run
import keras
import numpy as np
import pytest
from test_weights import decoder_renamer, write_legacy

from nets.unet import Unet
from utils.augment import SampleReader
from utils.dataloader import SegmentationBatches, make_dataset
from utils.dataset import as_layout
from utils.training import train

RUNNER = Path(backend_run.__file__)
OTHER_BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(
    importlib.util.find_spec(module) is None, reason=f"{module} is not installed"))
    for name, module in (("jax", "jax"), ("torch", "torch"))]
# Share of pixels that must get the same class from the same weights on two backends.
MIN_AGREEMENT = 0.999


def run_backend(backend: str, dataset: Path, out: Path, start: Path, *flags: str,
                env: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    # JAX compiles every fit's steps anew; its persistent cache, shared by the JAX processes,
    # turns the repeated compilations of the same steps into cache hits.
    jax_cache = {"JAX_COMPILATION_CACHE_DIR": str(start.parent / "jax_cache"),
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    done = subprocess.run([sys.executable, str(RUNNER), str(dataset), str(out), str(start),
                           *flags], env={**os.environ, **jax_cache, "KERAS_BACKEND": backend,
                                         **(env or {})},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def reference(make_voc, tmp_path_factory):
    """The TensorFlow side: start weights, their class maps and mIoU, and the training run
    the other backends repeat from them."""
    dataset = make_voc(num_train=4, num_val=2)
    folder = tmp_path_factory.mktemp("tensorflow")
    keras.utils.set_random_seed(3)
    start = folder / "start.weights.h5"
    model = Unet([32, 32, 3], 4, "vgg")
    model.save_weights(start)
    write_legacy(backend_run.legacy_path(start), model, decoder_renamer("vgg", 1))
    layout = as_layout(dataset)
    ids = (dataset / "VOC2007" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    images = [backend_run.read_image(layout.image_path(i)) for i in ids]
    straight = train(backend_run.config(dataset, folder / "straight", start))
    backend_run.get_miou.main(["--model_path", str(start), *backend_run.SHAPE,
                               *backend_run.NAMES, "--VOCdevkit_path", str(dataset),
                               "--miou_out_path", str(folder / "miou_out")])
    return {"dataset": dataset, "start": start, "images": images,
            "start_maps": backend_run.class_maps(start, images),
            "loss": straight.history["loss"], "val_loss": straight.history["val_loss"],
            "miou": json.loads((folder / "miou_out" / "metrics.json").read_text())["mIoU"]}


@pytest.fixture(scope="module")
def runs() -> dict:
    """Each backend's (results, folder), run once and shared by the checks below."""
    return {}


def backend_results(backend: str, reference: dict, runs: dict, tmp_path_factory) -> dict:
    """JAX runs with two virtual CPU devices: its training runs are data-parallel, after one
    that compares them with a single device."""
    if backend not in runs:
        out = tmp_path_factory.mktemp(backend)
        flags, env = (("--data-parallel",),
                      {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
                      ) if backend == "jax" else ((), {})
        runs[backend] = (run_backend(backend, reference["dataset"], out, reference["start"],
                                     *flags, env=env), out)
    return runs[backend]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_scripts_match_tensorflow(backend, reference, runs, tmp_path_factory):
    results, out = backend_results(backend, reference, runs, tmp_path_factory)
    assert results["backend"] == backend
    assert not results["tensorflow_imported"]
    # Same start weights, same batches: the losses follow TensorFlow's within float rounding.
    assert results["loss"] == pytest.approx(reference["loss"], rel=2e-3)
    assert results["val_loss"] == pytest.approx(reference["val_loss"], rel=2e-3)
    assert results["interrupted"]
    assert results["resumed_loss"] == pytest.approx(results["loss"], rel=1e-5)
    assert results["resume_difference"] < 1e-5
    assert len(results["bfloat16_loss"]) == 1
    assert results["bfloat16_loss"][0] == pytest.approx(reference["loss"][0], rel=0.05)
    assert results["miou"] == pytest.approx(reference["miou"], abs=0.01)
    for maps in ("start_maps", "legacy_maps"):  # the original's Keras 2 file gives the same
        assert np.mean(np.load(out / f"{maps}.npy") == reference["start_maps"]) >= MIN_AGREEMENT
    images = reference["dataset"] / "VOC2007" / "JPEGImages"
    assert results["dir_predict"] == sorted(p.name for p in images.iterdir())
    assert results["video_frames"] == 3
    onnx, cluster = results["refusals"]
    assert onnx.startswith("--mode export_onnx needs the TensorFlow backend, and KERAS_BACKEND "
                           f"is {backend}: export with KERAS_BACKEND=tensorflow")
    assert "Training on several machines (TF_CONFIG) needs the TensorFlow backend" in cluster
    assert not (out / "never").exists() and not (out / "never.onnx").exists()
    assert (out / "predict").is_dir() and len(list((out / "predict").iterdir())) == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_checkpoint_trained_there_predicts_the_same_here(backend, reference, runs,
                                                         tmp_path_factory):
    """A checkpoint trained on JAX or PyTorch gives TensorFlow the same class maps."""
    _, out = backend_results(backend, reference, runs, tmp_path_factory)
    here = backend_run.class_maps(out / "straight" / "last_epoch_weights.weights.h5",
                                  reference["images"])
    assert np.mean(here == np.load(out / "own_maps.npy")) >= MIN_AGREEMENT


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
@pytest.mark.slow
def test_jax_data_parallel_on_two_devices_equals_one(reference, runs, tmp_path_factory):
    results, _ = backend_results("jax", reference, runs, tmp_path_factory)
    assert results["devices"] == 2
    assert results["losses"][0] == pytest.approx(results["losses"][1], rel=1e-5)
    assert results["data_parallel_difference"] < 1e-5


def test_both_feeders_give_identical_batches(make_voc):
    """tf.data (TensorFlow) and the PyDataset (JAX, PyTorch) read the same samples, augmented
    the same, across an epoch boundary and from a resumed epoch."""
    dataset = make_voc(num_train=5, num_val=1)
    ids = (dataset / "VOC2007" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for initial_epoch in (0, 3):
        tf_batches = iter(make_dataset(dataset, ids, (32, 32), 2, 4, train=True, seed=5,
                                       initial_epoch=initial_epoch))
        reader = SampleReader(as_layout(dataset), ids, (32, 32), train=True, seed=5,
                              per_epoch=4)
        feeder = SegmentationBatches(reader, 2, 4, first_sample=initial_epoch * 4, workers=1)
        for index in range(5):  # two epochs of two batches, and one more
            images, targets = next(tf_batches)
            np.testing.assert_array_equal(images.numpy(), feeder[index][0])
            np.testing.assert_array_equal(targets.numpy(), feeder[index][1])
