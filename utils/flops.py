"""FLOPs of a Keras model, counted the way the original's `net_flops` does: convolutions and
batch norm only, x2 for multiply plus add."""

import math

import keras


def _layer_macs(layer: keras.layers.Layer) -> float:
    """Multiply-accumulates of one layer; layers without arithmetic worth counting give 0."""
    if isinstance(layer, keras.Model):
        return sum(_layer_macs(inner) for inner in layer.layers)
    if isinstance(layer, keras.layers.Conv2D):
        _, out_h, out_w, _ = layer.output.shape
        kernel_h, kernel_w, channels_in, filters = layer.kernel.shape
        return filters * out_h * out_w * (kernel_h * kernel_w * channels_in + layer.use_bias)
    if isinstance(layer, keras.layers.BatchNormalization):
        return 2 * math.prod(layer.input.shape[1:])
    return 0  # padding, pooling, activation, add, concatenate, upsampling


def layer_flops(layer: keras.layers.Layer) -> float:
    """FLOPs of one layer (a nested model counts its layers) for one image."""
    return 2.0 * _layer_macs(layer)


def count_flops(model: keras.Model) -> float:
    """FLOPs of one forward pass of one image: 2 x multiply-accumulates of convs and BN."""
    return 2.0 * _layer_macs(model)
