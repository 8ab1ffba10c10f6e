"""Training on several GPUs or machines: TensorFlow's distribution strategies, Keras' own
data parallelism on JAX.

One machine: `train_gpu = [0, 1]` trains under MirroredStrategy (TensorFlow) or
`keras.distribution.DataParallel` (JAX). Several machines (TensorFlow only): set TF_CONFIG
on each (https://www.tensorflow.org/guide/distributed_training#TF_CONFIG) and run the same
train.py everywhere; it then trains under MultiWorkerMirroredStrategy. Batch sizes are global:
every step consumes `batch_size` images in total, split evenly over all replicas.
"""

import json
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import Any

import keras

from utils import machine
from utils.backend import (
    accelerators,
    backend,
    compute_devices,
    framework,
    is_tensorflow,
    require_tensorflow,
)
from utils.errors import UserError

Strategy = Any  # a tf.distribute.Strategy, or a KerasDistribution on JAX and PyTorch


class DistributeError(UserError, ValueError):
    """TF_CONFIG, train_gpu or a batch size that cannot work on this cluster; says the fix."""


class KerasDistribution:
    """The strategy of JAX and PyTorch runs: one process, and on JAX with several devices
    Keras' DataParallel, which splits every global batch over them."""

    def __init__(self, devices: Sequence = ()):
        self.devices = list(devices)
        if len(self.devices) > 1:
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=self.devices))

    @property
    def num_replicas_in_sync(self) -> int:
        return max(len(self.devices), 1)

    def scope(self) -> AbstractContextManager:
        return nullcontext()  # the distribution, if any, is set for the whole process


def gpu_missing_reason() -> str:
    """Why the backend sees no GPU here, in a few words."""
    if is_tensorflow():
        import tensorflow as tf

        return machine.gpu_missing_reason(tf.test.is_built_with_cuda())
    if backend() == "torch":
        import torch

        return machine.gpu_missing_reason(torch.version.cuda is not None, framework())
    return machine.gpu_missing_reason(True, framework())


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


def check_gpu_choice(train_gpu: list[int], visible: int) -> None:
    """train_gpu against the `visible` GPUs the backend sees: an unknown index, or several GPUs
    where none is seen, stops with the reason; one GPU where none is seen is a warning, and
    training runs on the CPU."""
    if visible:
        unknown = [i for i in train_gpu if not 0 <= i < visible]
        if unknown:
            raise DistributeError(f"train_gpu = {train_gpu}: GPU {unknown} is not visible; "
                                  f"{framework()} sees {visible} GPU(s), numbered 0 to "
                                  f"{visible - 1}.")
    elif len(train_gpu) > 1:
        raise DistributeError(f"train_gpu = {train_gpu} lists {len(train_gpu)} GPUs, but "
                              f"{framework()} sees none: {gpu_missing_reason()}. Use train_gpu = "
                              "[] to train on the CPU.")
    elif train_gpu:
        print(f"[Warning] train_gpu = {train_gpu}, but {framework()} sees no GPU: "
              f"{gpu_missing_reason()}. Training runs on the CPU. README's Install section "
              "shows the GPU setup; train_gpu = [] trains on the CPU without this warning.")


def keras_strategy(train_gpu: list[int]) -> KerasDistribution:
    """JAX and PyTorch: the GPUs in train_gpu; on JAX several devices train data-parallel,
    virtual CPU devices too (XLA_FLAGS=--xla_force_host_platform_device_count=N)."""
    if os.environ.get("TF_CONFIG", "").strip():
        require_tensorflow("Training on several machines (TF_CONFIG)",
                           "unset TF_CONFIG to train on this machine, or use "
                           "KERAS_BACKEND=tensorflow")
    gpus = accelerators()
    check_gpu_choice(train_gpu, len(gpus))
    if not gpus:
        devices = compute_devices()  # JAX's CPU devices: one unless XLA_FLAGS asks for more
        return KerasDistribution(devices if len(devices) > 1 else ())
    if len(train_gpu) > 1 and backend() != "jax":
        raise DistributeError(f"train_gpu = {train_gpu}: several GPUs train on the TensorFlow "
                              f"or JAX backend, not on {framework()}; use train_gpu = "
                              f"[{train_gpu[0]}] or KERAS_BACKEND=jax.")
    devices = compute_devices()
    return KerasDistribution([devices[i] for i in train_gpu] if len(train_gpu) > 1 else ())


def select_strategy(train_gpu: Sequence[int]) -> Strategy:
    """The strategy for this process: multi-worker when TF_CONFIG is set, else Mirrored over
    the GPUs in train_gpu when there are several, else the default (one GPU or the CPU).
    On JAX and PyTorch, a `KerasDistribution` (see `keras_strategy`).

    Must run before TensorFlow executes anything: the GPUs are hidden and, for several
    workers, the collective ops configured here.
    """
    train_gpu = [int(i) for i in train_gpu]
    if not is_tensorflow():
        return keras_strategy(train_gpu)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    tf_config = read_tf_config()
    check_gpu_choice(train_gpu, len(gpus))
    if gpus:
        try:
            tf.config.set_visible_devices([gpus[i] for i in train_gpu], "GPU")
        except RuntimeError:
            print(f"train_gpu = {train_gpu} ignored: TensorFlow already initialised its devices "
                  "(set CUDA_VISIBLE_DEVICES instead).")
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


def default_strategy() -> Strategy:
    """One device, the backend's default: TensorFlow's default strategy, else a plain
    KerasDistribution."""
    if not is_tensorflow():
        return KerasDistribution()
    import tensorflow as tf

    return tf.distribute.get_strategy()


def in_multi_worker_mode(strategy: Strategy) -> bool:
    if isinstance(strategy, KerasDistribution):
        return False
    return bool(strategy.extended._in_multi_worker_mode())  # noqa: SLF001 - no public API


def is_chief(strategy: Strategy) -> bool:
    """Whether this process writes the run's outputs: always, except on non-chief workers."""
    return isinstance(strategy, KerasDistribution) or bool(strategy.extended.should_checkpoint)


def worker_dir(save_dir: str | Path, strategy: Strategy) -> Path:
    """Where this process writes: save_dir on the chief, a private subfolder on other workers.

    Every worker runs the same saves (they may involve collective ops), but only the chief's
    are kept; `clean_worker_dir` removes the others' copies when training ends.
    """
    if is_chief(strategy):
        return Path(save_dir)
    resolver = strategy.cluster_resolver
    return Path(save_dir) / f".{resolver.task_type}{resolver.task_id}"


def clean_worker_dir(folder: Path, strategy: Strategy, keep: str) -> None:
    """On a non-chief worker, delete everything it wrote except `keep` (its resumable state)."""
    if is_chief(strategy) or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name != keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def check_batch_sizes(strategy: Strategy, batch_sizes: dict[str, int]) -> None:
    """Each global batch must split evenly over the replicas, or the replicas' steps differ."""
    replicas = strategy.num_replicas_in_sync
    for name, size in batch_sizes.items():
        if size % replicas:
            lower, upper = size // replicas * replicas, (size // replicas + 1) * replicas
            options = f"{lower} or {upper}" if lower else f"{upper}"
            raise DistributeError(f"{name} = {size} is the global batch and must split evenly "
                                  f"over the {replicas} replicas; use {options}.")


def check_same_start(strategy: Strategy, start_epoch: int) -> None:
    """All workers must start from the same epoch, else their collective steps never match."""
    if in_multi_worker_mode(strategy):
        import tensorflow as tf

        value = tf.constant([start_epoch], tf.int64)
        starts = strategy.gather(strategy.run(lambda: value), axis=0).numpy()
        if starts.min() != starts.max():
            raise DistributeError(
                f"This worker starts at epoch {start_epoch}, but the workers start at epochs "
                f"{sorted(set(starts.tolist()))}: their training states differ. Resume every "
                "worker from the same state (copy the chief's training_state) or restart all "
                "without resume.")


def distribute_batches(
    strategy: Strategy,
    global_batch: int,
    make: Callable[[int, int, int], Any],
) -> Any:
    """Batches for `model.fit`, each worker reading only its own share of every global batch.

    `make(per_replica_batch, num_pipelines, pipeline_id)` builds one worker's dataset; a single
    replica, and Keras' DataParallel (which splits each global batch itself), get the plain
    dataset.
    """
    if strategy.num_replicas_in_sync == 1 or isinstance(strategy, KerasDistribution):
        return make(global_batch, 1, 0)

    def dataset_fn(context) -> Any:  # a tf.distribute.InputContext
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
