"""ONNX export (predict.py export_onnx) and the same predictor running on onnxruntime."""

import io
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import REPO
from PIL import Image

import predict
from unet import Unet
from utils.onnx_export import onnx_forward

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

SETTINGS = ["--num_classes", "3", "--input_shape", "64", "64"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 64x64 random-weight model exported once by `python predict.py`, in its own process
    (tf2onnx needs about 4 GB for a VGG U-Net); (weights, onnx path)."""
    folder = tmp_path_factory.mktemp("onnx")
    keras_unet = Unet(model_path="", num_classes=3, input_shape=[64, 64])
    head = keras_unet.model.get_layer("final_conv")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(0).normal(0, 3, kernel.shape), bias])
    weights = folder / "model.weights.h5"
    keras_unet.model.save_weights(weights)
    onnx_path = folder / "models.onnx"
    done = subprocess.run([sys.executable, "predict.py", "--mode", "export_onnx", "--model_path",
                           str(weights), *SETTINGS, "--onnx_save_path", str(onnx_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Onnx model save as {onnx_path}" in done.stdout
    assert "ONNX vs Keras: max abs difference" in done.stdout
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


def smooth_image(rng, size=(48, 40)):
    return Image.fromarray(rng.integers(0, 256, (4, 4, 3), np.uint8)).resize(size, Image.BILINEAR)


@pytest.fixture(scope="module")
def voc_val(tmp_path_factory):
    """A VOCdevkit with 10 val images (the labels are not needed for calibration)."""
    root = tmp_path_factory.mktemp("voc") / "VOCdevkit"
    images = root / "VOC2007" / "JPEGImages"
    images.mkdir(parents=True)
    split = root / "VOC2007" / "ImageSets" / "Segmentation"
    split.mkdir(parents=True)
    rng = np.random.default_rng(3)
    ids = [f"v{i}" for i in range(10)]
    for image_id in ids:
        smooth_image(rng).save(images / f"{image_id}.jpg")
    (split / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def test_calibration_files_spread_over_the_val_split(voc_val, tmp_path):
    from utils.dataset import DatasetError
    from utils.quantize import calibration_files

    assert [p.stem for p in calibration_files(voc_val, 4)] == ["v0", "v3", "v6", "v9"]
    assert len(calibration_files(voc_val, 50)) == 10
    with pytest.raises(DatasetError, match="voc_annotation"):
        calibration_files(tmp_path, 4)


def test_export_int8_then_predict_onnx(exported, voc_val, tmp_path, monkeypatch, capsys):
    weights, fp32_path = exported
    # the float32 export itself is tested above: reuse its file instead of converting again
    monkeypatch.setattr("utils.predict_modes.export_onnx",
                        lambda model, path, simplify: shutil.copy(fp32_path, path))
    int8_path = tmp_path / "int8.onnx"
    predict.main(["--mode", "export_onnx", "--model_path", str(weights), *SETTINGS,
                  "--onnx_save_path", str(int8_path), "--quantize", "int8",
                  "--VOCdevkit_path", str(voc_val), "--calibration_images", "4"])
    printed = capsys.readouterr().out
    assert "calibrated on 4 images" in printed
    agreement = float(re.search(r"agree on ([\d.]+)% of the pixels", printed).group(1))
    assert agreement >= 95

    model = onnx.load(str(int8_path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_kernels = [t for t in model.graph.initializer
                    if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_kernels) == 21  # every conv but the head: 13 VGG + 8 decoder
    head = next(n for n in model.graph.node if n.op_type == "Conv" and "final_conv" in n.name)
    initializers = {t.name: t for t in model.graph.initializer}
    assert initializers[head.input[1]].data_type == onnx.TensorProto.FLOAT  # head stays float
    assert model.graph.node[-1].op_type == "Softmax"

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    smooth_image(np.random.default_rng(9), (30, 50)).save(tmp_path / "leaf.png")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tmp_path / 'leaf.png'}\n"))
    predict.main(["--mode", "predict_onnx", *SETTINGS, "--onnx_save_path", str(int8_path),
                  "--dir_save_path", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "leaf.png").size == (30, 50)


@pytest.mark.parametrize(("flags", "bits"), [({"avx2", "fma"}, 7), ({"avx2", "avx512_vnni"}, 8),
                                            (None, 7)])
def test_int8_weights_use_7_bits_unless_the_cpu_has_vnni(exported, voc_val, tmp_path,
                                                           monkeypatch, capsys, flags, bits):
    """Without VNNI, onnxruntime's int8 convolutions saturate on 8-bit weights (the class maps
    of the model above agreed on 94.6% of the pixels on an AVX2-only EPYC)."""
    from utils.quantize import calibration_files, quantize_int8

    monkeypatch.setattr("utils.machine.cpu_flags", lambda: flags)
    _, fp32_path = exported
    path = quantize_int8(fp32_path, tmp_path / "q.onnx", calibration_files(voc_val, 2), [64, 64])
    assert f"int8 weights: {bits} bits" in capsys.readouterr().out
    kernels = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    peak = max(int(np.abs(k.astype(np.int32)).max()) for k in kernels)
    assert peak == (64 if bits == 7 else 127)


def test_int8_export_errors(exported, tmp_path, user_error):
    weights, _ = exported
    message = user_error(predict.main, ["--mode", "export_onnx", "--quantize", "int4",
                                        *SETTINGS])
    assert "quantize = 'int4' is not supported; use one of ['', 'int8']" in message
    message = user_error(predict.main, ["--mode", "export_onnx", "--quantize", "int8",
                                        "--model_path", str(weights), *SETTINGS,
                                        "--VOCdevkit_path", str(tmp_path)])
    assert re.search(r"(?s)val\.txt.*--VOCdevkit_path", message)


def test_export_graph_is_onnxruntime_friendly(exported):
    """UpSampling2D became Resize (no Tile chains) and softmax runs on the last axis."""
    _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Resize") == 4 and "Tile" not in ops and ops.count("Transpose") == 2
    softmax = model.graph.node[-1]
    assert softmax.op_type == "Softmax" and softmax.output[0] == "output"
    assert onnx.helper.get_attribute_value(softmax.attribute[0]) == -1
