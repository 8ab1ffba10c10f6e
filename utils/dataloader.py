"""Training batches: samples read and augmented in parallel, one-hot targets.

Every epoch's order and augmentation are a pure function of (seed, epoch, position), so a run
resumed at epoch k sees exactly the batches an uninterrupted run would have seen. Two feeders
share the per-sample code (`utils.augment.SampleReader`) and give identical batches: tf.data on
the TensorFlow backend, a `keras.utils.PyDataset` on JAX and PyTorch, which never import
TensorFlow.
"""

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from utils.augment import SampleReader
from utils.backend import is_tensorflow
from utils.dataset import TOO_SMALL, DatasetError, VOCLayout, as_layout


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch; the remainder is left out, as in the original (N // bs)."""
    return n // batch_size


def to_targets(images: np.ndarray, labels: np.ndarray,
               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images to float32 in [-1, 1]; uint8 labels to one-hot float32 with C + 1 channels,
    every label >= C (the ignore value 255 included) in the last one."""
    one_hot = np.eye(num_classes + 1, dtype=np.float32)
    return (images.astype(np.float32) / 127.5 - 1.0,
            one_hot[np.minimum(labels, num_classes)])


class SegmentationBatches(keras.utils.PyDataset):
    """Endless batches for JAX and PyTorch: batch k holds the global samples
    `first + k * batch_size ...`, read in worker threads (OpenCV and PIL release the GIL)."""

    def __init__(self, sampler: SampleReader, batch_size: int, num_classes: int,
                 first_sample: int = 0, workers: int | None = None):
        super().__init__(workers=workers or min(os.cpu_count() or 1, 8), max_queue_size=4)
        self.sampler, self.batch_size, self.num_classes = sampler, batch_size, num_classes
        self.first_sample = first_sample

    @property
    def num_batches(self) -> None:
        return None  # endless: fit takes steps_per_epoch batches an epoch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start = self.first_sample + index * self.batch_size
        images, labels = zip(*(self.sampler(s) for s in range(start, start + self.batch_size)),
                             strict=True)
        return to_targets(np.stack(images), np.stack(labels), self.num_classes)

    def take(self, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The first `count` batches, as tf.data's `take` gives them."""
        return (self[k] for k in range(count))


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
) -> Any:
    """Endless batches `(images (B,H,W,3) in [-1,1], targets (B,H,W,C+1) one-hot)`, float32.

    Each epoch is `len(ids) // batch_size` full batches in a shuffled order; labels >= C go to
    the last (ignore) channel. With several TensorFlow workers, `pipeline = (count, index)`
    reads only this worker's contiguous share of every global batch, in batches of
    `replica_batch`; together the workers see exactly the batches one process would.
    """
    ids = list(ids)
    h, w = (int(v) for v in input_shape[:2])
    per_epoch = steps_per_epoch(len(ids), batch_size) * batch_size
    if per_epoch == 0:
        raise DatasetError(f"{TOO_SMALL} ({len(ids)} images, fewer than one batch of "
                           f"{batch_size}: the dataset is too small to train.)")
    sampler = SampleReader(as_layout(dataset), ids, (h, w), train=train, seed=seed,
                           per_epoch=per_epoch)
    if not is_tensorflow():
        return SegmentationBatches(sampler, batch_size, num_classes, initial_epoch * per_epoch)
    return tf_dataset(sampler, (h, w), batch_size, num_classes, initial_epoch * per_epoch,
                      pipeline, replica_batch)


def tf_dataset(sampler: SampleReader, size: tuple[int, int], batch_size: int, num_classes: int,
               first_sample: int, pipeline: tuple[int, int], replica_batch: int | None):
    """The same batches as `SegmentationBatches`, read by parallel tf.data workers."""
    import tensorflow as tf

    def load(sample):
        image, label = tf.numpy_function(sampler, [sample], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape((*size, 3))
        label.set_shape(size)
        return image, label

    one_hot = tf.eye(num_classes + 1, dtype=tf.float32)  # gather is ~2x faster than tf.one_hot

    def targets(images, labels):
        images = tf.cast(images, tf.float32) / 127.5 - 1.0
        labels = tf.minimum(tf.cast(labels, tf.int32), num_classes)
        return images, tf.gather(one_hot, labels)

    pipelines, index = pipeline
    share = batch_size // pipelines  # this worker's images of every global batch
    samples = tf.data.Dataset.counter(first_sample // pipelines)
    if pipelines > 1:  # k-th image of this worker -> its sample number in the global stream
        samples = samples.map(lambda k: k // share * batch_size + index * share + k % share)
    workers = os.cpu_count() or 1
    batches = samples.map(load, num_parallel_calls=workers, deterministic=True)
    batches = batches.batch(replica_batch or share, drop_remainder=True)
    batches = batches.map(targets, num_parallel_calls=workers)
    # Fixed parallelism instead of AUTOTUNE: tf.data's autotuning thread makes the deletion of
    # an iterator (at every validation and between the phases) stall for up to a minute.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(2).with_options(options)
