"""VGG16 encoder with keras.applications layer names, returning the five skip features."""

import keras
from keras import layers


def VGG16(inputs: keras.KerasTensor) -> list[keras.KerasTensor]:
    """Return [feat1, ..., feat5], the last conv output of each block (strides 1, 2, 4, 8, 16).

    Names match keras.applications.VGG16, so ImageNet "notop" weights load by name.
    """
    x = inputs
    features = []
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        if block > 1:
            x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block - 1}_pool")(x)
        for conv in range(1, convs + 1):
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                name=f"block{block}_conv{conv}",
            )(x)
        features.append(x)
    return features
