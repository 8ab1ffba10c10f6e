"""The predictor: letterbox an image, run the U-Net, crop, resize the probabilities back, argmax.

`Unet()` builds the model, loads `model_path` and freezes those weights into its inference
graph; `Unet(model=...)` wraps an in-memory model whose weights may change (training's
evaluation) and `Unet(forward=...)` any callable, e.g. an ONNX Runtime session, so every backend
shares exactly the same pre- and post-processing.
"""

import colorsys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from nets.unet import Unet as build_unet
from nets.unet import check_input_shape
from utils.precision import dtype_policy
from utils.utils import cvtColor, preprocess_input, resize_image, show_config

# The first num_classes entries colour the classes when num_classes <= 21 (the original's
# 22nd entry, (128, 64, 12), is an unused typo and is dropped).
VOC_PALETTE = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
]
# inference precisions: float16 has no fast CPU path and gains nothing over bfloat16 on GPUs
PRECISIONS = ("float32", "bfloat16")

Forward = Callable[[np.ndarray], np.ndarray]


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: the VOC palette up to 21 classes, else HSV (i/C, 1, 1)."""
    if num_classes <= len(VOC_PALETTE):
        return np.array(VOC_PALETTE[:num_classes], np.uint8)
    hsv = [colorsys.hsv_to_rgb(i / num_classes, 1.0, 1.0) for i in range(num_classes)]
    return np.array([[int(c * 255) for c in rgb] for rgb in hsv], np.uint8)


def cpu_has_bfloat16() -> bool | None:
    """Whether the CPU advertises bfloat16 arithmetic (AVX512_BF16 or AMX); None if unknown.

    Without it oneDNN emulates bfloat16 and runs several times slower than float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_checkpoint(model: keras.Model, model_path: str, backbone: str) -> None:
    """Load prediction weights strictly: a missing or mismatched layer is an error."""
    from utils.weights import load_weights

    load_weights(model, model_path, backbone, strict=True)


def keras_forward(model: keras.Model, jit_compile: bool = False, freeze: bool = False) -> Forward:
    """A compiled inference call with a fixed (None, h, w, 3) signature, so it never retraces.

    `freeze` bakes the current weights into the graph as constants. oneDNN then keeps the conv
    kernels in its blocked layout instead of reading the plain one on every call, about 1.3x
    faster on CPU. Only for weights that will not change afterwards.
    """
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    call = tf.function(
        lambda x: model(x, training=False), input_signature=[spec], jit_compile=jit_compile
    )
    run = call
    if freeze and not jit_compile:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        frozen = convert_variables_to_constants_v2(call.get_concrete_function())
        run = lambda x: frozen(x)[0]  # noqa: E731

    def forward(batch: np.ndarray) -> np.ndarray:
        return run(tf.convert_to_tensor(batch, tf.float32)).numpy()

    forward.tf_function = call  # exposed so tests can check that it traced only once
    return forward


def onnx_forward(onnx_path: str | Path, input_shape: Sequence[int]) -> Forward:
    """An ONNX Runtime session as a forward callable; checks it was exported for `input_shape`."""
    import onnxruntime

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(
            f"{onnx_path}: ONNX model not found; export one first with "
            "`python predict.py --mode export_onnx`."
        )
    session = onnxruntime.InferenceSession(
        str(onnx_path), providers=onnxruntime.get_available_providers()
    )
    exported = session.get_inputs()[0]
    if list(exported.shape[1:3]) != list(input_shape):
        raise ValueError(
            f"{onnx_path} was exported for input {exported.shape[1:3]} but input_shape is "
            f"{list(input_shape)}; pass --input_shape {exported.shape[1]} {exported.shape[2]} "
            "or export again."
        )
    return lambda batch: session.run(None, {exported.name: batch.astype(np.float32)})[0]


def _export_graph(model: keras.Model) -> keras.Model:
    """The same layers and weights with UpSampling2D as a nearest resize, which exports to one
    ONNX Resize instead of a chain of Tile/Reshape/Transpose nodes (same numbers, faster)."""

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.UpSampling2D):
            height, width = layer.output.shape[1:3]
            return keras.layers.Resizing(height, width, "nearest", name=layer.name)
        return layer  # shared, not copied

    return keras.models.clone_model(model, clone_function=swap)


def _tidy_onnx(proto: Any) -> None:
    """Two rewrites of tf2onnx's graph for onnxruntime's fast kernels, exact for this model.

    Resize: TF's half-pixel nearest equals "asymmetric" for the integer x2 scale, the mode
    onnxruntime's NCHWc upsampling takes. Softmax: tf2onnx moves it before the final
    NCHW->NHWC transpose, onto the slow non-last axis; put it back after the transpose.
    """
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.name == "coordinate_transformation_mode" and (
                    attribute.s == b"tf_half_pixel_for_nn"):
                attribute.s = b"asymmetric"
    nodes = list(proto.graph.node)
    transpose = next(n for n in nodes if proto.graph.output[0].name in n.output)
    softmax = next((n for n in nodes if n.output[0] == transpose.input[0]), None)
    if (transpose.op_type != "Transpose" or softmax is None or softmax.op_type != "Softmax"
            or sum(softmax.output[0] in n.input for n in nodes) != 1):
        return
    logits, probabilities = softmax.input[0], transpose.output[0]
    transpose.input[0], transpose.output[0] = logits, softmax.output[0]
    softmax.input[0], softmax.output[0] = softmax.output[0], probabilities
    for attribute in softmax.attribute:
        if attribute.name == "axis":
            attribute.i = -1
    proto.graph.node.remove(softmax)
    proto.graph.node.insert(list(proto.graph.node).index(transpose) + 1, softmax)


def export_onnx(
    model: keras.Model, onnx_save_path: str | Path, simplify: bool = True, opset: int = 13
) -> float:
    """Export the model to ONNX (input `images`, output `output`, NHWC float32 probabilities).

    Returns the max abs difference to Keras on a random input and raises if it exceeds 1e-4.
    """
    import onnx
    import tf2onnx

    if any(layer.compute_dtype != "float32" for layer in model.layers):
        raise ValueError("ONNX export needs a float32 model: export with --precision float32.")
    onnx_save_path = Path(onnx_save_path)
    onnx_save_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Starting export with onnx {onnx.__version__}.")
    graph = _export_graph(model)
    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="images"),)
    call = tf.function(lambda images: {"output": graph(images, training=False)})
    proto, _ = tf2onnx.convert.from_function(call, input_signature=spec, opset=opset)
    _tidy_onnx(proto)
    onnx.checker.check_model(proto)
    if simplify:
        try:
            import onnxsim
        except ImportError:
            print("onnx-simplifier is not installed (pip install onnxsim): export unsimplified.")
        else:
            print(f"Simplifying with onnx-simplifier {onnxsim.__version__}.")
            proto, ok = onnxsim.simplify(proto)
            if not ok:
                raise RuntimeError("onnx-simplifier could not validate the simplified model.")
    onnx.save(proto, str(onnx_save_path))
    print(f"Onnx model save as {onnx_save_path}")

    x = np.random.default_rng(0).uniform(-1, 1, (1, *model.input_shape[1:])).astype(np.float32)
    forward = onnx_forward(onnx_save_path, model.input_shape[1:3])
    max_diff = float(np.max(np.abs(forward(x) - model(x, training=False).numpy())))
    print(f"Max abs difference ONNX vs Keras on a random input: {max_diff:.3g}")
    if max_diff > 1e-4:
        raise RuntimeError(f"ONNX output differs from Keras by {max_diff:.3g} (> 1e-4).")
    return max_diff


class Unet:
    """Segment PIL images with a trained U-Net, exactly as the original predictor does."""

    _defaults = {
        "model_path": "model_data/unet_vgg_voc.h5",  # weights to load (.h5 or .weights.h5)
        "num_classes": 21,  # number of classes + 1 (background)
        "backbone": "vgg",  # encoder of the trained model: vgg or resnet50
        "input_shape": [512, 512],  # [height, width] of the network input, multiples of 32
        "mix_type": 0,  # 0 blend colours with the image, 1 colours only, 2 keep foreground pixels
        "precision": "float32",  # float32, or bfloat16 (mixed): GPUs, CPUs with AVX512_BF16/AMX
        "jit_compile": False,  # XLA-compile the model call (slower on CPU, try it on GPU)
    }

    def __init__(
        self, model: keras.Model | None = None, forward: Forward | None = None, **kwargs: Any
    ):
        unknown = set(kwargs) - set(self._defaults)
        if unknown:
            raise TypeError(
                f"Unknown predictor setting(s) {sorted(unknown)}; valid: {list(self._defaults)}."
            )
        self.config = {**self._defaults, **kwargs}
        for name, value in self.config.items():
            setattr(self, name, value)
        self.input_shape = list(check_input_shape(self.input_shape))
        if self.mix_type not in (0, 1, 2):
            raise ValueError(f"mix_type is {self.mix_type!r}; use 0 (blend), 1 or 2.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision is {self.precision!r}; use one of {list(PRECISIONS)}.")
        self.colors = class_colours(self.num_classes)

        self.model = model
        if forward is None:
            if model is None:
                self.model = self.generate()
            self._check_model(self.model)
            # weights loaded here are fixed: freeze them; a given model (training) keeps changing
            forward = keras_forward(self.model, self.jit_compile, freeze=model is None)
        self.forward = forward

    def generate(self) -> keras.Model:
        """Build the network and load `model_path` (random weights if it is empty)."""
        if (self.precision == "bfloat16" and cpu_has_bfloat16() is False
                and not tf.config.list_physical_devices("GPU")):
            print("Warning: this CPU has no bfloat16 instructions (avx512_bf16 / amx_bf16), so "
                  "bfloat16 is emulated and slower than float32; use --precision float32.")
        with dtype_policy(self.precision):
            model = build_unet([*self.input_shape, 3], self.num_classes, self.backbone)
        if self.model_path:
            load_checkpoint(model, self.model_path, self.backbone)
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

    def detect_image(
        self, image: Image.Image, count: bool = False, name_classes: Sequence[str] | None = None
    ) -> Image.Image:
        """Return the segmentation drawn as `mix_type` says, at the image's own size."""
        image = cvtColor(image)
        pr = self.predict_classes([image])[0]
        if count:
            self.print_class_counts(pr, name_classes)
        if self.mix_type == 0:
            return Image.blend(image, Image.fromarray(self.colors[pr]), 0.7)
        if self.mix_type == 1:
            return Image.fromarray(self.colors[pr])
        return Image.fromarray(np.asarray(image) * (pr != 0)[..., None].astype(np.uint8))

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
