"""The training input pipeline: images/s of augmented batches read from 500x375 JPEGs, by the
tf.data feeder (TensorFlow) and by the PyDataset feeder (JAX, PyTorch) in its worker threads."""

import itertools
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def rates(batches_out: Iterator, batches: int, batch_size: int, repeats: int) -> list[float]:
    """Images/s of `repeats` runs of `batches` batches, after as many batches of warm-up
    (thread pools, autotuning, file cache)."""
    for _ in range(batches):
        next(batches_out)
    found = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next(batches_out)
        found.append(batches * batch_size / (time.perf_counter() - start))
    return found


def pydataset_batches(feeder) -> Iterator:
    """The PyDataset's batches in order, read ahead by `feeder.workers` threads as Keras'
    enqueuer reads them during `fit` (at most max_queue_size batches in flight)."""
    pool = ThreadPoolExecutor(feeder.workers)
    pending = deque(pool.submit(feeder.__getitem__, i) for i in range(feeder.max_queue_size))
    try:
        for index in itertools.count(feeder.max_queue_size):
            yield pending.popleft().result()
            pending.append(pool.submit(feeder.__getitem__, index))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def bench_pipeline(
    size: int = 512,
    num_classes: int = 21,
    batch_size: int = 8,
    num_images: int = 32,
    batches: int = 8,
    repeats: int = 5,
) -> dict:
    """Training pipeline images/s at size x size with full augmentation, from 500x375 JPEGs."""
    from PIL import Image

    from utils.augment import SampleReader
    from utils.dataloader import SegmentationBatches, make_dataset
    from utils.dataset import VOCLayout, save_label
    from utils.demo_data import LARGE_SIZE, make_scene

    with tempfile.TemporaryDirectory() as root:
        layout = VOCLayout(root)
        layout.image_dir.mkdir(parents=True)
        layout.label_dir.mkdir(parents=True)
        ids = [f"{i:04d}" for i in range(num_images)]
        for i, image_id in enumerate(ids):
            image, label = make_scene(np.random.default_rng(i), LARGE_SIZE)
            Image.fromarray(image).save(layout.image_dir / f"{image_id}.jpg", quality=90)
            save_label(label, layout.label_path(image_id))

        tf_data = rates(iter(make_dataset(layout, ids, (size, size), batch_size, num_classes,
                                          train=True)), batches, batch_size, repeats)
        reader = SampleReader(layout, ids, (size, size), train=True, seed=11,
                              per_epoch=len(ids) // batch_size * batch_size)
        feeder = SegmentationBatches(reader, batch_size, num_classes)
        pydataset = rates(pydataset_batches(feeder), batches, batch_size, repeats)
    result = {
        "input": f"{size}x{size}, {num_classes} classes, batch {batch_size}, "
                 f"{LARGE_SIZE[0]}x{LARGE_SIZE[1]} JPEG sources",
        "images_per_s_min": round(min(tf_data), 1),
        "images_per_s_median": round(statistics.median(tf_data), 1),
        "pydataset_images_per_s_min": round(min(pydataset), 1),
        "pydataset_images_per_s_median": round(statistics.median(pydataset), 1),
        "pydataset_workers": feeder.workers,
    }
    print(f"pipeline ({result['input']}): tf.data {result['images_per_s_median']} images/s "
          f"median, {result['images_per_s_min']} min; PyDataset ({feeder.workers} threads) "
          f"{result['pydataset_images_per_s_median']} median, "
          f"{result['pydataset_images_per_s_min']} min, over {repeats} x {batches} batches")
    return result
