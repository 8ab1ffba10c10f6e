"""TensorFlow SavedModel and TFLite (LiteRT) exports through Keras' `model.export`, and the
check every export passes: the same numbers and the same class maps as Keras.

The exports need the TensorFlow backend; the check runs on any."""

import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.backend import require_tensorflow
from utils.errors import UserError
from utils.predictor import Forward, Predictor

# What to do on JAX or PyTorch: the exports convert through a TensorFlow graph.
EXPORT_ON_TENSORFLOW = "export with KERAS_BACKEND=tensorflow"
# An exported model may differ from Keras by float rounding only.
MAX_EXPORT_DIFFERENCE = 1e-4
# Share of the fixed image's pixels that must get the same class as with Keras.
MIN_AGREEMENT = 0.999


class ExportError(UserError, ValueError):
    """A model that cannot be exported, or an export file that does not fit the settings."""


def check_float32(model: keras.Model) -> None:
    if any(layer.compute_dtype != "float32" for layer in model.layers):
        raise ExportError("exports need a float32 model: export with --precision float32.")


def fixed_image(seed: int = 0) -> Any:
    """A 500x375 synthetic scene: the same picture for every export check."""
    from PIL import Image

    from utils.demo_data import LARGE_SIZE, make_scene

    return Image.fromarray(make_scene(np.random.default_rng(seed), LARGE_SIZE)[0])


def check_export(model: keras.Model, forward: Forward, what: str) -> dict[str, float]:
    """Compare an exported model's `forward` with Keras: the max abs difference of the
    probabilities on a random batch, and the share of identical classes on a fixed image through
    the predictor. Raises when either is out of bounds; returns both."""
    h, w, _ = model.input_shape[1:]
    x = np.random.default_rng(0).uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    difference = float(np.max(np.abs(forward(x) - expected)))
    settings = {"num_classes": model.output_shape[-1], "input_shape": [h, w]}
    image = fixed_image()
    exported = Predictor(forward=forward, **settings).predict_classes([image])[0]
    reference = Predictor(model=model, **settings).predict_classes([image])[0]
    agreement = float(np.mean(exported == reference))
    print(f"{what} vs Keras: max abs difference {difference:.3g} on a random input, "
          f"{100 * agreement:.3f}% of a fixed image's pixels in the same class.")
    if difference > MAX_EXPORT_DIFFERENCE or agreement < MIN_AGREEMENT:
        raise RuntimeError(f"{what} differs from Keras: max abs difference {difference:.3g} "
                           f"(at most {MAX_EXPORT_DIFFERENCE}), same class on "
                           f"{100 * agreement:.3f}% (at least {100 * MIN_AGREEMENT}%).")
    return {"max_difference": difference, "agreement": agreement}


def savedmodel_forward(path: str | Path) -> Forward:
    """A SavedModel written by `export_savedmodel`, as a predictor forward."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda batch: loaded.serve(tf.convert_to_tensor(batch, tf.float32)).numpy()


def tflite_forward(path: str | Path) -> Forward:
    """A .tflite model as a predictor forward; the batch size follows each call."""
    import tensorflow as tf

    try:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
    except ImportError:  # TensorFlow's own interpreter runs it the same, warning that it is
        with warnings.catch_warnings():  # deprecated in favour of ai-edge-litert
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def forward(batch: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source["index"], list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], batch.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return forward


def export_savedmodel(model: keras.Model, path: str | Path) -> dict[str, float]:
    """A TensorFlow SavedModel with a `serve` endpoint (NHWC float32 probabilities)."""
    require_tensorflow("SavedModel export", EXPORT_ON_TENSORFLOW)
    check_float32(model)
    model.export(str(path), format="tf_saved_model", verbose=False)
    print(f"SavedModel saved as {path}")
    return check_export(model, savedmodel_forward(path), "SavedModel")


def export_tflite(model: keras.Model, path: str | Path) -> dict[str, float]:
    """A float32 TFLite (LiteRT) model for phones and edge devices."""
    require_tensorflow("TFLite export", EXPORT_ON_TENSORFLOW)
    check_float32(model)
    if not str(path).endswith(".tflite"):
        raise ExportError(f"tflite_path = {str(path)!r} must end in .tflite.")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    model.export(str(path), format="litert", verbose=False)
    print(f"TFLite model saved as {path}")
    return check_export(model, tflite_forward(path), "TFLite")
