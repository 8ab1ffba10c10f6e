"""ONNX export (predict.py export_onnx) and the same predictor running on onnxruntime."""

import io
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

import predict
from unet import Unet, onnx_forward

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

SETTINGS = ["--num_classes", "3", "--input_shape", "64", "64"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 64x64 random-weight model exported once through predict.py; (weights, onnx path)."""
    folder = tmp_path_factory.mktemp("onnx")
    keras_unet = Unet(model_path="", num_classes=3, input_shape=[64, 64])
    head = keras_unet.model.get_layer("final_conv")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(0).normal(0, 3, kernel.shape), bias])
    weights = folder / "model.weights.h5"
    keras_unet.model.save_weights(weights)
    onnx_path = folder / "models.onnx"
    predict.main(["--mode", "export_onnx", "--model_path", str(weights), *SETTINGS,
                  "--onnx_save_path", str(onnx_path)])
    return weights, onnx_path


def test_export_matches_keras(exported, capsys):
    weights, onnx_path = exported
    model = onnx.load(str(onnx_path))
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["output"]

    keras_unet = Unet(model_path=str(weights), num_classes=3, input_shape=[64, 64])
    forward = onnx_forward(onnx_path, [64, 64])
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    probabilities = forward(x)
    assert probabilities.shape == (2, 64, 64, 3)  # NHWC probabilities, batch not fixed
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
    max_diff = np.abs(probabilities - keras_unet.forward(x)).max()
    print(f"ONNX vs Keras max abs difference: {max_diff:.3g}")
    assert max_diff < 1e-4

    onnx_unet = Unet(forward=forward, num_classes=3, input_shape=[64, 64])
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (45, 70, 3), np.uint8))
    same = np.mean(np.asarray(onnx_unet.get_miou_png(image)) ==
                   np.asarray(keras_unet.get_miou_png(image)))
    assert same >= 0.999


def test_predict_onnx_mode(exported, tmp_path, monkeypatch, capsys):
    _, onnx_path = exported
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    Image.new("RGB", (30, 50), (0, 90, 0)).save(tmp_path / "leaf.png")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tmp_path / 'leaf.png'}\n"))
    predict.main(["--mode", "predict_onnx", *SETTINGS, "--onnx_save_path", str(onnx_path),
                  "--dir_save_path", str(tmp_path / "out")])
    assert f"{onnx_path} model loaded." in capsys.readouterr().out
    assert Image.open(tmp_path / "out" / "leaf.png").size == (30, 50)


def test_onnx_errors(exported, tmp_path):
    _, onnx_path = exported
    with pytest.raises(ValueError, match=r"exported for input \[64, 64\].*--input_shape 64 64"):
        onnx_forward(onnx_path, [64, 96])
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        onnx_forward(tmp_path / "none.onnx", [64, 64])
