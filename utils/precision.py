"""Precision names of train.py (`mixed_precision`), unet.py (`precision`) and benchmark.py →
Keras dtype policies: variables stay float32, the layers compute in the named type."""

from collections.abc import Iterator
from contextlib import contextmanager

import keras

POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextmanager
def dtype_policy(precision: str | bool) -> Iterator[None]:
    """Build models under `precision`'s policy (False means float32), then restore the previous
    global policy, so one model's precision never leaks into the next."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES["float32" if precision is False else precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
