"""The predictor: letterbox an image, run the U-Net, crop, resize the probabilities back, argmax.

`Predictor()` builds the model, loads `model_path` and, once its calls have taken a few seconds,
freezes those weights into its inference graph; `Predictor(model=...)` wraps an in-memory model
whose weights may change (training's evaluation) and `Predictor(forward=...)` any callable, e.g.
an ONNX Runtime session, so every backend shares exactly the same pre- and post-processing.
"""

import colorsys
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import keras
import numpy as np
from PIL import Image

from nets.unet import Unet as build_unet
from utils.backend import accelerators, is_tensorflow
from utils.dataset import voc_palette
from utils.machine import cpu_has_bfloat16
from utils.precision import dtype_policy
from utils.settings import check_settings
from utils.utils import cvtColor, preprocess_input, resize_image, show_config
from utils.weights import load_weights

Forward = Callable[[np.ndarray], np.ndarray]
# The classes keep the VOC colours up to this count; more classes get evenly spread hues.
PALETTE_CLASSES = 21


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: the VOC palette up to 21 classes, else HSV (i/C, 1, 1)."""
    if num_classes <= PALETTE_CLASSES:
        return voc_palette()[:num_classes]
    hsv = [colorsys.hsv_to_rgb(i / num_classes, 1.0, 1.0) for i in range(num_classes)]
    return np.array([[int(c * 255) for c in rgb] for rgb in hsv], np.uint8)


# Freezing the ResNet50 U-Net's weights into its graph took about 11 s on a 2-core CPU (the
# conversion, then the first optimised call), so a predictor freezes only once its calls have
# taken 10 s: a few images are not kept waiting, and a long run spends at most those 10 s on
# the slower, unfrozen calls.
FREEZE_AFTER_S = 10.0


class TensorFlowForward:
    """A compiled inference call with a fixed (None, h, w, 3) signature, so it never retraces.

    With `freeze`, the weights are baked into the graph as constants once the calls have taken
    `freeze_after_s` seconds (0: at once). oneDNN then keeps the conv kernels in its blocked
    layout instead of reading the plain one on every call, about 1.3x faster on CPU. Only for
    weights that will not change afterwards.
    """

    def __init__(self, model: keras.Model, *, jit_compile: bool = False, freeze: bool = False,
                 freeze_after_s: float = 0.0):
        import tensorflow as tf

        self._tf = tf
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                                 jit_compile=jit_compile)
        self._run = self._call
        self._may_freeze = freeze and not jit_compile
        self._freeze_after_s = freeze_after_s
        self._seconds = 0.0
        self.frozen = False

    def freeze_now(self) -> None:
        """Freeze at once if this call freezes at all (before timing it, for example)."""
        if self.frozen or not self._may_freeze:
            return
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        graph = convert_variables_to_constants_v2(self._call.get_concrete_function())
        self._run = lambda x: graph(x)[0]
        self.frozen = True

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self._seconds >= self._freeze_after_s:
            self.freeze_now()
        start = time.perf_counter()
        probabilities = self._run(self._tf.convert_to_tensor(batch, self._tf.float32)).numpy()
        self._seconds += time.perf_counter() - start
        return probabilities


def keras_forward(model: keras.Model, *, jit_compile: bool = False, freeze: bool = False,
                  freeze_after_s: float = 0.0) -> Forward:
    """The model's inference call: `TensorFlowForward` on TensorFlow. On JAX and PyTorch, Keras'
    own predict step (jitted on JAX, eager under no_grad on PyTorch) reads the variables on
    every call; `freeze` and `jit_compile` are TensorFlow's."""
    if not is_tensorflow():
        return lambda batch: np.asarray(model.predict_on_batch(np.asarray(batch, np.float32)))
    return TensorFlowForward(model, jit_compile=jit_compile, freeze=freeze,
                             freeze_after_s=freeze_after_s)


class Predictor:
    """Segment PIL images with a trained U-Net, exactly as the original predictor does."""

    SETTINGS = ("model_path", "num_classes", "backbone", "input_shape", "mix_type", "precision",
                "jit_compile")

    def __init__(
        self,
        model: keras.Model | None = None,
        forward: Forward | None = None,
        *,
        model_path: str = "",
        num_classes: int = 21,
        backbone: str = "vgg",
        input_shape: Sequence[int] = (512, 512),
        mix_type: int = 0,
        precision: str = "float32",
        jit_compile: bool = False,
    ):
        self.config = {"model_path": model_path, "num_classes": num_classes,
                       "backbone": backbone, "input_shape": list(input_shape),
                       "mix_type": mix_type, "precision": precision, "jit_compile": jit_compile}
        check_settings(self.config)
        for name, value in self.config.items():
            setattr(self, name, value)
        self.colors = class_colours(self.num_classes)
        if self.jit_compile and not is_tensorflow():
            print(f"jit_compile is TensorFlow's XLA switch and has no effect on "
                  f"{keras.backend.backend()} (JAX always compiles, PyTorch runs eagerly).")

        self.model = model
        self._owns_weights = model is None
        if forward is not None:
            self.forward = forward  # takes the place of the compiled Keras call
        else:
            if model is None:
                self.model = self.generate()
            self._check_model(self.model)

    @functools.cached_property
    def forward(self) -> Forward:
        """The compiled model call, built on first use (an export never needs it). Weights this
        predictor loaded are frozen into it after FREEZE_AFTER_S seconds of calls; a model it
        was given (training's) is read live."""
        return keras_forward(self.model, jit_compile=self.jit_compile, freeze=self._owns_weights,
                             freeze_after_s=FREEZE_AFTER_S)

    def settle(self) -> None:
        """Bring the model call to its steady state now (frozen, where it freezes), so that
        timing it measures the steady speed."""
        if isinstance(self.forward, TensorFlowForward):
            self.forward.freeze_now()

    @classmethod
    def settings_of(cls, cfg: object) -> dict[str, Any]:
        """The predictor's settings picked by name from a script's config."""
        return {name: getattr(cfg, name) for name in cls.SETTINGS}

    def generate(self) -> keras.Model:
        """Build the network and load `model_path` (random weights if it is empty)."""
        if self.precision == "bfloat16" and cpu_has_bfloat16() is False and not accelerators():
            print("Warning: this CPU has no bfloat16 instructions (avx512_bf16 / amx_bf16), so "
                  "bfloat16 is emulated and slower than float32; use --precision float32.")
        with dtype_policy(self.precision):
            model = build_unet([*self.input_shape, 3], self.num_classes, self.backbone)
        if self.model_path:
            load_weights(model, self.model_path, self.backbone, strict=True)
            print(f"{self.model_path} model loaded.")
        else:
            print("model_path is empty: the model has RANDOM weights, predictions are noise.")
        show_config(**self.config)
        return model

    def _check_model(self, model: keras.Model) -> None:
        expected = (None, *self.input_shape, self.num_classes)
        if tuple(model.output_shape) != expected:
            raise ValueError(
                f"The model outputs {model.output_shape} but the predictor expects {expected} "
                "(input_shape, num_classes)."
            )

    def _preprocess(self, image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """RGB, letterbox and scale to [-1, 1]; returns the array and (orig_h, orig_w, nh, nw)."""
        h, w = self.input_shape
        boxed, nw, nh = resize_image(image, (w, h))
        x = preprocess_input(np.asarray(boxed, np.float32))
        return x, (image.height, image.width, nh, nw)

    def _crop(self, pr: np.ndarray, nh: int, nw: int) -> np.ndarray:
        """Cut the letterbox padding off an (h, w, C) probability map."""
        h, w = self.input_shape
        top, left = (h - nh) // 2, (w - nw) // 2
        return pr[top : top + nh, left : left + nw]

    def predict_classes(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Class-index maps (orig_h, orig_w) for a batch of images, run in one model call."""
        inputs = [self._preprocess(cvtColor(image)) for image in images]
        probabilities = self.forward(np.stack([x for x, _ in inputs]))
        maps = []
        for pr, (_, (orig_h, orig_w, nh, nw)) in zip(probabilities, inputs, strict=True):
            pr = cv2.resize(self._crop(pr, nh, nw), (orig_w, orig_h),
                            interpolation=cv2.INTER_LINEAR)
            maps.append(pr.reshape(orig_h, orig_w, -1).argmax(axis=-1))
        return maps

    def detect_image(self, image: Image.Image, *, count: bool = False,
                     name_classes: Sequence[str] | None = None) -> Image.Image:
        """Return the segmentation drawn as `mix_type` says, at the image's own size."""
        image = cvtColor(image)
        pr = self.predict_classes([image])[0]
        if count:
            self.print_class_counts(pr, name_classes)
        return self.draw(image, pr)

    def draw(self, image: Image.Image, classes: np.ndarray) -> Image.Image:
        """A class map drawn as `mix_type` says: 0 blended 70% over the image, 1 the colours
        alone, 2 the image's pixels where the class is not background."""
        image = cvtColor(image)
        if self.mix_type == 0:
            return Image.blend(image, Image.fromarray(self.colors[classes]), 0.7)
        if self.mix_type == 1:
            return Image.fromarray(self.colors[classes])
        return Image.fromarray(np.asarray(image) * (classes != 0)[..., None].astype(np.uint8))

    def print_class_counts(self, pr: np.ndarray, name_classes: Sequence[str] | None) -> None:
        """The original's per-class pixel table (class indices when no names are given)."""
        if name_classes is not None and len(name_classes) < self.num_classes:
            raise ValueError(
                f"name_classes has {len(name_classes)} names but num_classes is "
                f"{self.num_classes}; give one name per class."
            )
        names = name_classes or [str(i) for i in range(self.num_classes)]
        classes_nums = np.bincount(pr.ravel(), minlength=self.num_classes).astype(np.float64)
        print("-" * 63)
        print("|%25s | %15s | %15s|" % ("Key", "Value", "Ratio"))
        print("-" * 63)
        for i, num in enumerate(classes_nums.astype(np.int64)):
            if num > 0:
                ratio = num / pr.size * 100
                print("|%25s | %15s | %14.2f%%|" % (str(names[i]), str(num), ratio))
                print("-" * 63)
        print("classes_nums:", classes_nums)

    def get_FPS(self, image: Image.Image, test_interval: int) -> float:
        """Mean seconds per image for the model call, crop and argmax (as the original times)."""
        x, (_, _, nh, nw) = self._preprocess(cvtColor(image))
        batch = x[None]
        self.settle()
        self._crop(self.forward(batch)[0], nh, nw).argmax(axis=-1)  # warm-up (traces once)
        start = time.perf_counter()
        for _ in range(test_interval):
            self._crop(self.forward(batch)[0], nh, nw).argmax(axis=-1)
        return (time.perf_counter() - start) / max(test_interval, 1)

    def get_miou_png(self, image: Image.Image) -> Image.Image:
        """An "L" image of class indices at the original size, for get_miou.py."""
        return self.get_miou_pngs([image])[0]

    def get_miou_pngs(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """`get_miou_png` for a batch of images, in one model call."""
        return [Image.fromarray(pr.astype(np.uint8)) for pr in self.predict_classes(images)]
