"""Throughput benchmarks, one section per flag: `python benchmark.py --pipeline`.

Each section prints its figures and, with `--json benchmark.json`, merges them into that file.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from utils.dataloader import make_dataset
from utils.dataset_audit import image_dir, label_dir, save_label
from utils.demo_data import LARGE_SIZE, make_scene


def bench_pipeline(
    size: int = 512,
    num_classes: int = 21,
    batch_size: int = 8,
    num_images: int = 32,
    batches: int = 8,
    repeats: int = 5,
) -> dict:
    """Training pipeline images/s at size x size with full augmentation, from 500x375 JPEGs."""
    with tempfile.TemporaryDirectory() as root:
        image_dir(root).mkdir(parents=True)
        label_dir(root).mkdir(parents=True)
        ids = [f"{i:04d}" for i in range(num_images)]
        for i, image_id in enumerate(ids):
            image, label = make_scene(np.random.default_rng(i), LARGE_SIZE)
            Image.fromarray(image).save(image_dir(root) / f"{image_id}.jpg", quality=90)
            save_label(label, label_dir(root) / f"{image_id}.png")

        batches_out = iter(make_dataset(ids, (size, size), batch_size, num_classes, True, root))
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", action="store_true", help="input pipeline images/s")
    parser.add_argument("--size", type=int, default=512, help="square input size")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="", help="merge the results into this JSON file")
    args = parser.parse_args(argv)
    if not args.pipeline:
        parser.error("choose at least one section, e.g. --pipeline")

    results = {}
    if args.pipeline:
        results["pipeline"] = bench_pipeline(args.size, batch_size=args.batch_size,
                                             repeats=args.repeats)
    if args.json:
        path = Path(args.json)
        merged = json.loads(path.read_text()) if path.is_file() else {}
        merged.update(results)
        path.write_text(json.dumps(merged, indent=2) + "\n")
        print(f"Results merged into {path}")


if __name__ == "__main__":
    main()
