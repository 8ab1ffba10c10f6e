"""Data-parallel workers on this machine: the same global batch on 1 process and on 2 workers of
a local multi-worker cluster (TF_CONFIG on 127.0.0.1), the cores split between them."""

import os
import statistics
import time
from typing import Any

import keras

from benchmarks.harness import child_result, start_child, synthetic_batch
from benchmarks.training import train_model

# Seconds a worker may take before the run counts as failed.
WORKER_TIMEOUT = 1800


class StepTimes(keras.callbacks.Callback):
    """Seconds between consecutive `fit` steps; the first step (tracing) is not counted."""

    def on_train_begin(self, logs=None):
        self.ends, self.steps = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        if len(self.ends) > 1:
            self.steps.append(self.ends[-1] - self.ends[-2])


def strategy_worker(spec: dict) -> dict:
    """In a child process: `fit` on synthetic batches under the strategy train.py would pick
    (multi-worker when TF_CONFIG is set), and its step times."""
    import tensorflow as tf

    from utils.distribute import distribute_batches, select_strategy

    strategy = select_strategy([0])  # before any other TensorFlow op, as multi-worker needs
    model = train_model(spec, strategy)
    x, y = synthetic_batch(spec["batch"], spec["size"], spec["num_classes"])
    data = distribute_batches(strategy, spec["batch"], lambda per_replica, pipelines, index: (
        tf.data.Dataset.from_tensors((x[:per_replica], y[:per_replica])).repeat()))
    times = StepTimes()
    model.fit(data, steps_per_epoch=spec["repeats"] + 2, epochs=1, verbose=0, callbacks=[times])
    steps = times.steps[1:]  # the second step may still finish tracing on some workers
    return {"s_min": round(min(steps), 4), "s_median": round(statistics.median(steps), 4),
            "replicas": strategy.num_replicas_in_sync}


def bench_strategy(cfg: Any) -> list[dict]:
    """Step times on 1 process and on 2 workers: the cost of the gradient all-reduce."""
    from utils.distribute import local_cluster

    size, batch = (64, 2) if cfg.quick else (256, 4)
    cores = os.cpu_count() or 1
    spec = dict(size=size, batch=batch, repeats=cfg.train_repeats + 1,
                num_classes=cfg.num_classes, backbone=cfg.backbone)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    rows = []
    for workers in (1, 2):
        threads = max(1, cores // workers)
        cluster = local_cluster(workers) if workers > 1 else [None]
        children = [start_child("strategy_worker", spec, {
            **env, "TF_NUM_INTRAOP_THREADS": str(threads),
            **({"TF_CONFIG": tf_config} if tf_config else {})}) for tf_config in cluster]
        try:
            results = [child_result(child, f"{workers}-worker training", WORKER_TIMEOUT)
                       for child in children]
        finally:  # a failed worker leaves its peer waiting for it
            for child in children:
                if child.poll() is None:
                    child.kill()
        row = {"workers": workers, "threads_per_worker": threads, "size": size,
               "global_batch": batch, **results[0]}
        row["images_per_s"] = round(batch / row["s_median"], 2)
        row["speed_vs_1_worker"] = round(rows[0]["s_median"] / row["s_median"], 3) if rows else 1
        rows.append(row)
        print(f"{workers} worker(s) x {threads} thread(s), {size}x{size}, global batch {batch}: "
              f"{row['s_median']} s/step median, {row['images_per_s']} images/s")
    return rows
