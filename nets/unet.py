"""U-Net with a VGG16 or ResNet50 encoder, as in the original repository."""

from collections.abc import Sequence

import keras
from keras import layers

from nets.resnet50 import ResNet50
from nets.vgg16 import VGG16

# Per backbone: the encoder builder and the layers the original leaves trainable when it
# "freezes the first 17 (vgg) / 172 (resnet50) layers".
BACKBONES = {
    "vgg": {"encoder": VGG16, "trainable_when_frozen": ("block5_conv3",)},
    "resnet50": {
        "encoder": ResNet50,
        "trainable_when_frozen": ("conv5_block3_3_bn", "conv5_block3_add", "conv5_block3_out"),
    },
}
DECODER_CHANNELS = (64, 128, 256, 512)
HEAD_NAME = "final_conv"


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"Unsupported backbone - `{backbone}`, Use vgg, resnet50.")


def check_num_classes(num_classes: int) -> None:
    if int(num_classes) < 2:
        raise ValueError(f"num_classes = {num_classes}, but it counts the background too: use "
                         "the number of object classes + 1 (at least 2).")


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    """Return (h, w) or raise a ValueError suggesting the nearest multiples of 32."""
    if len(input_shape) not in (2, 3) or (len(input_shape) == 3 and input_shape[2] != 3):
        raise ValueError(
            f"input_shape {list(input_shape)} must be [height, width], e.g. [512, 512]."
        )
    h, w = (int(v) for v in input_shape[:2])
    for name, size in (("height", h), ("width", w)):
        if size < 32 or size % 32:
            lower, upper = max(32, size // 32 * 32), max(32, (size + 31) // 32 * 32)
            hint = f"{lower}" if lower == upper else f"{lower} or {upper}"
            raise ValueError(
                f"input_shape {h}x{w}: {name} {size} is not a multiple of 32 (at least 32); "
                f"use {hint}."
            )
    return h, w


def _conv(filters: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        3,
        padding="same",
        activation="relu",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        name=name,
    )


def decoder_conv_names(backbone: str) -> list[str]:
    """Decoder conv names in build order (the order legacy auto-named checkpoints use)."""
    stages = [4, 3, 2, 1] + ([0] if backbone == "resnet50" else [])
    return [f"up{s}_conv{i}" for s in stages for i in (1, 2)] + [HEAD_NAME]


def Unet(
    input_shape: Sequence[int] = (512, 512, 3), num_classes: int = 21, backbone: str = "vgg"
) -> keras.Model:
    """Build the U-Net; the output is per-pixel softmax probabilities of shape (B, H, W, C)."""
    check_backbone(backbone)
    check_num_classes(num_classes)
    h, w = check_input_shape(input_shape)

    inputs = keras.Input((h, w, 3), name="input_layer")
    feat1, feat2, feat3, feat4, feat5 = BACKBONES[backbone]["encoder"](inputs)

    x = feat5
    for stage, skip, channels in zip(
        (4, 3, 2, 1), (feat4, feat3, feat2, feat1), DECODER_CHANNELS[::-1], strict=True
    ):
        up = layers.UpSampling2D((2, 2), name=f"up{stage}_upsample")(x)
        x = layers.Concatenate(axis=3, name=f"up{stage}_concat")([skip, up])
        x = _conv(channels, f"up{stage}_conv1")(x)
        x = _conv(channels, f"up{stage}_conv2")(x)

    if backbone == "resnet50":  # feat1 is at stride 2: one more upsampling to full resolution
        x = layers.UpSampling2D((2, 2), name="up0_upsample")(x)
        x = _conv(64, "up0_conv1")(x)
        x = _conv(64, "up0_conv2")(x)

    outputs = layers.Conv2D(
        int(num_classes), 1, activation="softmax", dtype="float32", name=HEAD_NAME
    )(x)
    return keras.Model(inputs, outputs, name=f"unet_{backbone}")


def backbone_layer_names(model: keras.Model) -> list[str]:
    """Names of the encoder layers, i.e. every layer that is neither input, decoder nor head."""
    return [
        layer.name
        for layer in model.layers
        if not (layer.name.startswith("up") or layer.name == HEAD_NAME
                or isinstance(layer, keras.layers.InputLayer))
    ]


def freeze_backbone(model: keras.Model, backbone: str, *, frozen: bool = True) -> int:
    """Set the original's frozen set (the encoder but its last layer(s)); return how many froze."""
    keep = set(BACKBONES[backbone]["trainable_when_frozen"])
    count = 0
    for name in backbone_layer_names(model):
        layer = model.get_layer(name)
        layer.trainable = not frozen or name in keep
        count += not layer.trainable
    return count
