"""The training input pipeline: images/s of augmented batches read from 500x375 JPEGs."""

import statistics
import tempfile
import time

import numpy as np


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

    from utils.dataloader import make_dataset
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

        batches_out = iter(make_dataset(layout, ids, (size, size), batch_size, num_classes,
                                        train=True))
        for _ in range(batches):  # warm-up: thread pools, autotuning, file cache
            next(batches_out)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(batches):
                next(batches_out)
            rates.append(batches * batch_size / (time.perf_counter() - start))
    result = {
        "input": f"{size}x{size}, {num_classes} classes, batch {batch_size}, "
                 f"{LARGE_SIZE[0]}x{LARGE_SIZE[1]} JPEG sources",
        "images_per_s_min": round(min(rates), 1),
        "images_per_s_median": round(statistics.median(rates), 1),
    }
    print(f"pipeline ({result['input']}): {result['images_per_s_median']} images/s median, "
          f"{result['images_per_s_min']} min over {repeats} x {batches} batches")
    return result
