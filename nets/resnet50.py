"""ResNet50 v1 encoder (stride on the first 1x1 conv, as in the original) returning skip features.

Layers carry keras.applications names (`conv1_conv`, `conv2_block1_1_conv`, ...); the
Caffe-style names of older files (`conv1`, `res2a_branch2a`, `bn2a_branch2a`) are mapped onto
these by `utils.weights`. Batch norm keeps Keras defaults (epsilon 1e-3) like the original.
"""

import keras
from keras import layers


def _conv_bn(x, filters: int, kernel_size: int, name: str, strides: int = 1, *,
             relu: bool = True):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same" if kernel_size > 1
                      else "valid", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _bottleneck(x, filters: int, name: str, strides: int = 1, *, projection: bool = False):
    """1x1 -> 3x3 -> 1x1 bottleneck; `projection` adds the strided 1x1 shortcut of a conv block."""
    shortcut = x
    y = _conv_bn(x, filters, 1, f"{name}_1", strides=strides)
    y = _conv_bn(y, filters, 3, f"{name}_2")
    y = _conv_bn(y, 4 * filters, 1, f"{name}_3", relu=False)
    if projection:
        shortcut = _conv_bn(x, 4 * filters, 1, f"{name}_0", strides=strides, relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def ResNet50(inputs: keras.KerasTensor) -> list[keras.KerasTensor]:
    """Return [feat1, ..., feat5] at strides 2, 4, 8, 16, 32 (64, 256, 512, 1024, 2048 channels)."""
    x = layers.ZeroPadding2D((3, 3), name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    feat1 = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D((1, 1), name="pool1_pad")(feat1)
    x = layers.MaxPooling2D((3, 3), strides=2, name="pool1_pool")(x)

    features = [feat1]
    for stage, (filters, blocks, strides) in enumerate(
        [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=2
    ):
        for block in range(1, blocks + 1):
            first = block == 1
            x = _bottleneck(x, filters, f"conv{stage}_block{block}",
                            strides=strides if first else 1, projection=first)
        features.append(x)
    return features
