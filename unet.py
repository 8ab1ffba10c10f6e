"""The predictor's settings, and `Unet`, the class predict.py and get_miou.py segment with.

`from unet import Unet; Unet().detect_image(image)` works as in the original; any setting can
be overridden by a keyword, e.g. `Unet(model_path="logs/best_epoch_weights.weights.h5")`.
predict.py and get_miou.py read the settings below and accept them as `--name value` too.
"""

from utils.predictor import Predictor

# ---- Predictor --------------------------------------------------------------------------------
# Weights to load: the original's .h5 files or our .weights.h5 checkpoints.
model_path = "model_data/unet_vgg_voc.h5"
# Number of classes + 1 (background), as the model was trained with.
num_classes = 21
# Encoder of the trained model: vgg or resnet50.
backbone = "vgg"
# [height, width] of the network input, multiples of 32.
input_shape = [512, 512]
# 0 blends colours with the image, 1 draws the colours only, 2 keeps the foreground pixels.
mix_type = 0
# float32, or bfloat16 (mixed) on GPUs and CPUs with AVX512_BF16 or AMX.
precision = "float32"
# XLA-compile the model call (slower on CPU, try it on a GPU).
jit_compile = False


class Unet(Predictor):
    """The predictor with the settings above as its defaults."""

    _defaults = {
        "model_path": model_path,
        "num_classes": num_classes,
        "backbone": backbone,
        "input_shape": input_shape,
        "mix_type": mix_type,
        "precision": precision,
        "jit_compile": jit_compile,
    }

    def __init__(self, model=None, forward=None, **kwargs):
        super().__init__(model, forward, **{**self._defaults, **kwargs})
