"""Which Keras backend runs (KERAS_BACKEND: tensorflow, jax or torch) and what it can do.

The model, losses, optimizer, input pipeline and predictor run on every backend. A few features
are TensorFlow's own (tf.distribute, frozen graphs, SavedModel/TFLite/ONNX export): on another
backend they stop with one line that says what to use instead, and TensorFlow is never imported.
"""

import sys

import keras

from utils.errors import UserError

# The Keras backends, and how their frameworks call themselves in messages.
FRAMEWORKS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


class BackendError(UserError, RuntimeError):
    """A feature that the running Keras backend does not have; says what to use instead."""


def backend() -> str:
    return keras.backend.backend()


def framework() -> str:
    """The running backend's own name: TensorFlow, JAX or PyTorch."""
    return FRAMEWORKS.get(backend(), backend())


def is_tensorflow() -> bool:
    return backend() == "tensorflow"


def require_tensorflow(feature: str, instead: str) -> None:
    """Stop before `feature` on a backend other than TensorFlow, naming the alternative."""
    if not is_tensorflow():
        raise BackendError(f"{feature} needs the TensorFlow backend, and KERAS_BACKEND is "
                           f"{backend()}: {instead}.")


def accelerators() -> list:
    """The GPUs (or other accelerators) that the running backend sees; empty on a CPU."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.config.list_physical_devices("GPU")
    if name == "jax":
        import jax

        return [device for device in jax.devices() if device.platform != "cpu"]
    if name == "torch":
        import torch

        return [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    return []


def compute_devices() -> list:
    """The devices one training step can be spread over: the accelerators, else (JAX) the
    CPU devices, several of them only when XLA_FLAGS asks for virtual ones."""
    found = accelerators()
    if found or backend() != "jax":
        return found
    import jax

    return jax.devices("cpu")


def keep_tensorflow_out() -> None:
    """On JAX and PyTorch, tell Keras that TensorFlow is absent even where it is installed.

    Keras would otherwise import it (seconds, and hundreds of MB) only to seed it in
    `set_random_seed` or to ask whether a value is a tf.data.Dataset.
    """
    if not is_tensorflow() and "tensorflow" not in sys.modules:
        from keras.src.utils import module_utils

        module_utils.tensorflow._available = False  # noqa: SLF001 - Keras has no public switch


keep_tensorflow_out()
