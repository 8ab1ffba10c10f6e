"""U-Net structure against the original's: parameter counts, layer names, shapes, frozen set,
errors."""

import keras
import numpy as np
import pytest

from nets.unet import Unet, backbone_layer_names, decoder_conv_names, freeze_backbone

VGG_BACKBONE = [
    name
    for block, convs in enumerate([2, 2, 3, 3, 3], 1)
    for name in [f"block{block}_conv{i}" for i in range(1, convs + 1)]
    + ([f"block{block}_pool"] if block < 5 else [])
]
APPLICATIONS = {"vgg": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def weighted(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if layer.weights]


@pytest.fixture(scope="module")
def models_512():
    return {backbone: Unet((512, 512, 3), 21, backbone) for backbone in ("vgg", "resnet50")}


@pytest.mark.parametrize(
    "backbone, total, trainable, layers, weighted_layers, frozen_trainable",
    [
        ("vgg", 24_892_437, 24_892_437, 35, 22, 12_537_557),
        ("resnet50", 44_013_781, 43_960_661, 195, 117, 20_430_165),
    ],
)
def test_parameter_and_layer_counts(models_512, backbone, total, trainable, layers,
                                    weighted_layers, frozen_trainable):
    model = models_512[backbone]
    assert model.count_params() == total
    assert trainable_count(model) == trainable
    assert len(model.layers) == layers
    assert len(weighted(model)) == weighted_layers

    frozen = freeze_backbone(model, backbone)
    try:
        assert trainable_count(model) == frozen_trainable
        assert frozen == {"vgg": 16, "resnet50": 171}[backbone]  # the original's 17/172 - input
        assert model.get_layer({"vgg": "block5_conv3", "resnet50": "conv5_block3_3_bn"}[backbone]
                               ).trainable
        assert not model.get_layer({"vgg": "block5_conv2", "resnet50": "conv5_block3_3_conv"}
                                   [backbone]).trainable
        assert all(model.get_layer(n).trainable for n in decoder_conv_names(backbone))
    finally:
        freeze_backbone(model, backbone, frozen=False)
    assert trainable_count(model) == trainable


def test_decoder_and_head_parameters(models_512):
    """Decoder + head: 10,177,749 (vgg) / 20,426,069 (resnet50) parameters; head 64*C + C."""
    for backbone, expected in [("vgg", 10_177_749), ("resnet50", 20_426_069)]:
        model = models_512[backbone]
        layers = [model.get_layer(n) for n in decoder_conv_names(backbone)]
        assert sum(layer.count_params() for layer in layers) == expected
        assert model.get_layer("final_conv").count_params() == 64 * 21 + 21


def test_vgg_layer_names_in_order():
    model = Unet((64, 64, 3), 3, "vgg")
    assert model.name == "unet_vgg"
    assert model.layers[0].name == "input_layer"
    assert [layer.name for layer in model.layers[1:18]] == VGG_BACKBONE
    assert backbone_layer_names(model) == VGG_BACKBONE
    assert [layer.name for layer in weighted(model)] == (
        [n for n in VGG_BACKBONE if "conv" in n] + decoder_conv_names("vgg"))
    assert decoder_conv_names("vgg") == [
        "up4_conv1", "up4_conv2", "up3_conv1", "up3_conv2", "up2_conv1", "up2_conv2",
        "up1_conv1", "up1_conv2", "final_conv"]


def test_resnet50_layer_names():
    model = Unet((64, 64, 3), 3, "resnet50")
    assert model.name == "unet_resnet50"
    names = [layer.name for layer in weighted(model)]
    assert names[:4] == ["conv1_conv", "conv1_bn", "conv2_block1_1_conv", "conv2_block1_1_bn"]
    assert {"conv2_block1_0_conv", "conv2_block1_0_bn", "conv4_block6_3_conv",
            "conv5_block3_3_bn"} <= set(names)
    assert names[-11:] == decoder_conv_names("resnet50")
    assert decoder_conv_names("resnet50")[-3:] == ["up0_conv1", "up0_conv2", "final_conv"]


@pytest.mark.parametrize("backbone", ["vgg", "resnet50"])
def test_backbone_matches_keras_applications(backbone):
    """Same weighted layer names and weight shapes as keras.applications (weights=None).

    The order differs for resnet50: like the original, the shortcut conv comes after the main
    path, while keras.applications builds it first; loading goes by name, so order is free.
    """
    app = APPLICATIONS[backbone](weights=None, include_top=False, input_shape=(64, 64, 3))
    model = Unet((64, 64, 3), 3, backbone)
    ours = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in weighted(model)}
    theirs = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in weighted(app)}
    assert {name: ours[name] for name in backbone_layer_names(model) if name in ours} == theirs
    assert set(ours) - set(theirs) == set(decoder_conv_names(backbone))


@pytest.mark.parametrize("backbone", ["vgg", "resnet50"])
@pytest.mark.parametrize("height, width", [(64, 64), (64, 96)])
def test_output_shape_and_softmax(backbone, height, width):
    model = Unet((height, width, 3), 4, backbone)
    assert model.output_shape == (None, height, width, 4)
    x = np.random.default_rng(0).uniform(-1, 1, (1, height, width, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (1, height, width, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_skip_features_reach_the_decoder():
    model = Unet((64, 96, 3), 3, "resnet50")
    assert model.get_layer("up4_concat").output.shape == (None, 4, 6, 1024 + 2048)
    assert model.get_layer("up1_concat").output.shape == (None, 32, 48, 64 + 128)
    assert model.get_layer("up0_upsample").output.shape == (None, 64, 96, 64)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="Unsupported backbone - `mobilenet`, Use vgg, resnet50"):
        Unet((64, 64, 3), 3, "mobilenet")


@pytest.mark.parametrize(
    "shape, hint",
    [((500, 512, 3), "height 500 .*use 480 or 512"), ((64, 100, 3), "width 100 .*use 96 or 128"),
     ((16, 64, 3), "height 16 .*use 32"), ((64, 64, 1), r"must be \[height, width\]")],
)
def test_bad_input_shapes(shape, hint):
    with pytest.raises(ValueError, match=hint):
        Unet(shape, 3, "vgg")


def test_too_few_classes():
    with pytest.raises(ValueError, match="num_classes = 1, but it counts the background"):
        Unet((64, 64, 3), 1, "vgg")
