"""Shared test set-up: quiet TensorFlow, the repository on sys.path, small helpers."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _fresh_keras_session():
    """Each test module starts with fresh Keras name counters and an empty graph."""
    keras.backend.clear_session()
    yield
