"""Training batches with tf.data: samples read and augmented in parallel, one-hot targets.

Every epoch's order and augmentation are a pure function of (seed, epoch, position), so a run
resumed at epoch k sees exactly the batches an uninterrupted run would have seen.
"""

from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from utils.augment import SampleReader
from utils.dataset import TOO_SMALL, DatasetError, VOCLayout, as_layout


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder is left out, as in the original (N // bs)."""
    return n // batch_size


def make_dataset(
    dataset: str | Path | VOCLayout,
    ids: Sequence[str],
    input_shape: Sequence[int],
    batch_size: int,
    num_classes: int,
    *,
    train: bool,
    seed: int = 11,
    initial_epoch: int = 0,
    pipeline: tuple[int, int] = (1, 0),
    replica_batch: int | None = None,
) -> tf.data.Dataset:
    """Endless batches `(images (B,H,W,3) in [-1,1], targets (B,H,W,C+1) one-hot)`, float32.

    Each epoch is `len(ids) // batch_size` full batches in a shuffled order; labels >= C go to
    the last (ignore) channel. Reading and augmentation run in parallel tf.data workers.
    With several workers, `pipeline = (count, index)` reads only this worker's contiguous share
    of every global batch, in batches of `replica_batch`; together the workers see exactly the
    batches one process would.
    """
    ids = list(ids)
    h, w = (int(v) for v in input_shape[:2])
    per_epoch = steps_per_epoch(len(ids), batch_size) * batch_size
    if per_epoch == 0:
        raise DatasetError(f"{TOO_SMALL} ({len(ids)} images, fewer than one batch of "
                           f"{batch_size}: the dataset is too small to train.)")
    sampler = SampleReader(as_layout(dataset), ids, (h, w), train=train, seed=seed,
                           per_epoch=per_epoch)

    def load(sample):
        image, label = tf.numpy_function(sampler, [sample], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape((h, w, 3))
        label.set_shape((h, w))
        return image, label

    one_hot = tf.eye(num_classes + 1, dtype=tf.float32)  # gather is ~2x faster than tf.one_hot

    def to_targets(images, labels):
        images = tf.cast(images, tf.float32) / 127.5 - 1.0
        labels = tf.minimum(tf.cast(labels, tf.int32), num_classes)
        return images, tf.gather(one_hot, labels)

    pipelines, index = pipeline
    share = batch_size // pipelines  # this worker's images of every global batch
    samples = tf.data.Dataset.counter(initial_epoch * per_epoch // pipelines)
    if pipelines > 1:  # k-th image of this worker -> its sample number in the global stream
        samples = samples.map(lambda k: k // share * batch_size + index * share + k % share)
    batches = samples.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = batches.batch(replica_batch or share, drop_remainder=True)
    batches = batches.map(to_targets, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)
