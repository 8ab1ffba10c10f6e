"""SavedModel and TFLite exports through predict.py, each checked against Keras, and the check
itself: it must catch an export that computes something else."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import REPO

import predict
from nets.unet import Unet
from utils.exports import check_export, savedmodel_forward, tflite_forward

SETTINGS = ["--num_classes", "3", "--input_shape", "64", "64"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A 64x64 random-weight model whose head is sharpened, so that classes vary."""
    keras.utils.set_random_seed(1)
    model = Unet((64, 64, 3), 3, "vgg")
    head = model.get_layer("final_conv")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(0).normal(0, 3, kernel.shape), bias])
    path = tmp_path_factory.mktemp("export") / "model.weights.h5"
    model.save_weights(path)
    return model, path


@pytest.mark.parametrize("mode, option, name, forward", [
    ("export_savedmodel", "--savedmodel_path", "saved_model", savedmodel_forward),
    ("export_tflite", "--tflite_path", "model.tflite", tflite_forward),
])
def test_export_matches_keras(weights, tmp_path, mode, option, name, forward):
    model, path = weights
    target = tmp_path / name
    # in its own process: the converters hold gigabytes while they work
    done = subprocess.run([sys.executable, "predict.py", "--mode", mode, "--model_path",
                           str(path), *SETTINGS, option, str(target)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    what = "SavedModel" if mode == "export_savedmodel" else "TFLite"
    assert f"{what} vs Keras: max abs difference" in done.stdout
    assert "100.000% of a fixed image's pixels in the same class" in done.stdout
    x = np.random.default_rng(3).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    probabilities = forward(target)(x)  # any batch size
    assert probabilities.shape == (3, 64, 64, 3)
    assert np.abs(probabilities - model(x, training=False).numpy()).max() < 1e-4


def test_check_catches_an_export_that_differs():
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    assert check_export(model, lambda x: model(x).numpy(), "same")["agreement"] == 1.0
    with pytest.raises(RuntimeError, match="flipped differs from Keras"):
        check_export(model, lambda x: model(x).numpy()[..., ::-1], "flipped")


def test_exports_need_float32(weights, user_error):
    _, path = weights
    message = user_error(predict.main, [
        "--mode", "export_tflite", "--model_path", str(path), *SETTINGS,
        "--precision", "bfloat16"])
    assert "exports need a float32 model" in message
