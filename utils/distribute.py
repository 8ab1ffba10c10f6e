"""Training on several GPUs or machines with TensorFlow's own distribution strategies.

One machine: `train_gpu = [0, 1]` trains under MirroredStrategy. Several machines: set TF_CONFIG
on each (https://www.tensorflow.org/guide/distributed_training#TF_CONFIG) and run the same
train.py everywhere; it then trains under MultiWorkerMirroredStrategy. Batch sizes are global:
every step consumes `batch_size` images in total, split evenly over all replicas.
"""

import json
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import tensorflow as tf

from utils import machine
from utils.errors import UserError


class DistributeError(UserError, ValueError):
    """TF_CONFIG, train_gpu or a batch size that cannot work on this cluster; says the fix."""


def gpu_missing_reason() -> str:
    """Why TensorFlow sees no GPU here, in a few words."""
    return machine.gpu_missing_reason(tf.test.is_built_with_cuda())


def read_tf_config() -> dict | None:
    """The parsed TF_CONFIG, None when unset, a DistributeError naming the problem if invalid."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        address = members[int(task["index"])]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise DistributeError(
            f"TF_CONFIG is not valid ({type(error).__name__}: {error}). It must look like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
            '"index": 0}} with the same cluster on every machine; unset it to train on one '
            "machine.") from None
    if not isinstance(address, str) or ":" not in address:
        raise DistributeError(f"TF_CONFIG: this task's address {address!r} needs host:port.")
    return config


def select_strategy(train_gpu: Sequence[int]) -> tf.distribute.Strategy:
    """The strategy for this process: multi-worker when TF_CONFIG is set, else Mirrored over
    the GPUs in train_gpu when there are several, else the default (one GPU or the CPU).

    Must run before TensorFlow executes anything: the GPUs are hidden and, for several
    workers, the collective ops configured here.
    """
    gpus = tf.config.list_physical_devices("GPU")
    train_gpu = [int(i) for i in train_gpu]
    tf_config = read_tf_config()
    if gpus:
        unknown = [i for i in train_gpu if not 0 <= i < len(gpus)]
        if unknown:
            raise DistributeError(f"train_gpu = {train_gpu}: GPU {unknown} is not visible; "
                                  f"TensorFlow sees {len(gpus)} GPU(s), numbered 0 to "
                                  f"{len(gpus) - 1}.")
        try:
            tf.config.set_visible_devices([gpus[i] for i in train_gpu], "GPU")
        except RuntimeError:
            print(f"train_gpu = {train_gpu} ignored: TensorFlow already initialised its devices "
                  "(set CUDA_VISIBLE_DEVICES instead).")
    elif len(train_gpu) > 1:
        raise DistributeError(f"train_gpu = {train_gpu} lists {len(train_gpu)} GPUs, but "
                              f"TensorFlow sees none: {gpu_missing_reason()}. Use train_gpu = "
                              "[] to train on the CPU.")
    elif train_gpu:
        print(f"[Warning] train_gpu = {train_gpu}, but TensorFlow sees no GPU: "
              f"{gpu_missing_reason()}. Training runs on the CPU. README's Install section "
              "shows the GPU setup; train_gpu = [] trains on the CPU without this warning.")
    if tf_config is not None:
        task = tf_config["task"]
        workers = sum(len(v) for k, v in tf_config["cluster"].items() if k in ("chief", "worker"))
        print(f"TF_CONFIG: {task['type']} {task['index']} of {workers} workers.")
        from utils.keras_patches import patch_keras_for_multi_worker

        patch_keras_for_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if gpus and len(train_gpu) > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{k}" for k in range(len(train_gpu))])
    return tf.distribute.get_strategy()


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    return bool(strategy.extended._in_multi_worker_mode())  # noqa: SLF001 - no public API


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: always, except on non-chief workers."""
    return bool(strategy.extended.should_checkpoint)


def worker_dir(save_dir: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: save_dir on the chief, a private subfolder on other workers.

    Every worker runs the same saves (they may involve collective ops), but only the chief's
    are kept; `clean_worker_dir` removes the others' copies when training ends.
    """
    if is_chief(strategy):
        return Path(save_dir)
    resolver = strategy.cluster_resolver
    return Path(save_dir) / f".{resolver.task_type}{resolver.task_id}"


def clean_worker_dir(folder: Path, strategy: tf.distribute.Strategy, keep: str) -> None:
    """On a non-chief worker, delete everything it wrote except `keep` (its resumable state)."""
    if is_chief(strategy) or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name != keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def check_batch_sizes(strategy: tf.distribute.Strategy, batch_sizes: dict[str, int]) -> None:
    """Each global batch must split evenly over the replicas, or the replicas' steps differ."""
    replicas = strategy.num_replicas_in_sync
    for name, size in batch_sizes.items():
        if size % replicas:
            lower, upper = size // replicas * replicas, (size // replicas + 1) * replicas
            options = f"{lower} or {upper}" if lower else f"{upper}"
            raise DistributeError(f"{name} = {size} is the global batch and must split evenly "
                                  f"over the {replicas} replicas; use {options}.")


def check_same_start(strategy: tf.distribute.Strategy, start_epoch: int) -> None:
    """All workers must start from the same epoch, else their collective steps never match."""
    if in_multi_worker_mode(strategy):
        value = tf.constant([start_epoch], tf.int64)
        starts = strategy.gather(strategy.run(lambda: value), axis=0).numpy()
        if starts.min() != starts.max():
            raise DistributeError(
                f"This worker starts at epoch {start_epoch}, but the workers start at epochs "
                f"{sorted(set(starts.tolist()))}: their training states differ. Resume every "
                "worker from the same state (copy the chief's training_state) or restart all "
                "without resume.")


def distribute_batches(
    strategy: tf.distribute.Strategy,
    global_batch: int,
    make: Callable[[int, int, int], tf.data.Dataset],
) -> tf.data.Dataset | tf.distribute.DistributedDataset:
    """Batches for `model.fit`, each worker reading only its own share of every global batch.

    `make(per_replica_batch, num_pipelines, pipeline_id)` builds one worker's dataset; a single
    replica gets the plain dataset.
    """
    if strategy.num_replicas_in_sync == 1:
        return make(global_batch, 1, 0)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(global_batch)
        return make(per_replica, context.num_input_pipelines, context.input_pipeline_id)

    return strategy.distribute_datasets_from_function(dataset_fn)


def free_ports(count: int) -> list[int]:
    """`count` TCP ports that are free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    with closing(sockets[0]):
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in sockets]
        for s in sockets[1:]:
            s.close()
    return ports


def local_cluster(num_workers: int) -> list[str]:
    """TF_CONFIG values for `num_workers` worker processes on this machine (worker 0 = chief)."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(num_workers)]
