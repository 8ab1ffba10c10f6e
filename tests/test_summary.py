"""FLOPs counting (the original's net_flops rules) and the summary.py script."""

import keras
import pytest

import summary
from nets.unet import Unet
from utils.flops import count_flops


@pytest.mark.parametrize("backbone, gflops", [("vgg", 451.250), ("resnet50", 181.560)])
def test_spec_gflops_at_512(backbone, gflops):
    assert count_flops(Unet((512, 512, 3), 21, backbone)) / 1e9 == pytest.approx(gflops, abs=0.01)


def small_model() -> keras.Model:
    inputs = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(inputs)  # valid: 4x4 output
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)  # 2x2
    x = keras.layers.Conv2D(2, 1, use_bias=False)(x)
    x = keras.layers.UpSampling2D()(x)
    return keras.Model(inputs, x)


def test_hand_counted_small_model():
    conv1 = 4 * 4 * 4 * (3 * 3 * 3 + 1)  # filters * oh * ow * (kh * kw * cin + bias) = 1792
    batch_norm = 2 * (4 * 4 * 4)  # 2 * prod(input shape) = 128
    conv2 = 2 * 2 * 2 * (1 * 1 * 4 + 0)  # no bias = 32
    assert count_flops(small_model()) == 2 * (conv1 + batch_norm + conv2) == 3904


def test_nested_model_counts_its_layers():
    inner = small_model()
    inputs = keras.Input((9, 9, 3))
    outer = keras.Model(inputs, keras.layers.Activation("softmax")(inner(inputs)))
    assert count_flops(outer) == count_flops(inner) == 3904


def test_summary_main_with_overrides(capsys):
    summary.main(["--backbone", "resnet50", "--num_classes", "3", "--input_shape", "64", "64"])
    out = capsys.readouterr().out
    model = Unet((64, 64, 3), 3, "resnet50")
    assert "final_conv" in out and "conv5_block3_3_bn" in out
    assert f"Total params: {model.count_params():,}" in out
    assert "Non-trainable params: 53,120" in out
    assert out.rstrip().endswith("Total GFLOPs: %.3fG" % (count_flops(model) / 1e9))


def test_summary_defaults_are_the_originals():
    cfg = summary.load_config(summary.__file__, [])
    assert (cfg.input_shape, cfg.num_classes, cfg.backbone) == ([512, 512], 21, "vgg")
