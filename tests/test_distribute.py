"""Scale-out: two worker processes on 127.0.0.1 train exactly like one process; chief-only
writes; resume after a restart of every worker; TF_CONFIG and batch-size errors."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import h5py
import keras
import numpy as np
import pytest
from conftest import REPO

import train as train_script
from utils.config import load_config
from utils.distribute import (
    DistributeError,
    check_batch_sizes,
    clean_worker_dir,
    local_cluster,
    read_tf_config,
    worker_dir,
)
from utils.keras_patches import PATCHED_KERAS, patch_keras_for_multi_worker
from utils.training import train

# VGG has no batch norm, so the per-replica batch statistics cannot differ from one process.
# Dice on top of CE exercises the statistics all-reduced over replicas.
ARGS = ("--num_classes", "4", "--backbone", "vgg", "--model_path", "", "--input_shape", "32",
        "32", "--Freeze_batch_size", "4", "--Unfreeze_batch_size", "4", "--Freeze_Epoch", "1",
        "--optimizer_type", "sgd", "--Init_lr", "1e-2", "--dice_loss", "True",
        "--eval_period", "2", "--save_period", "2")
# Resuming needs the training states, not the checkpoints (100 MB each) beside them.
STATES_ONLY = shutil.ignore_patterns("*_weights.weights.h5", "ep*.weights.h5")
# One TensorFlow thread per worker: two workers share the two cores of a CI machine.
WORKER_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


def argv(dataset: Path, save_dir: Path, *extra: str) -> list[str]:
    return [*ARGS, "--VOCdevkit_path", str(dataset), "--save_dir", str(save_dir), *extra]


def config(words: list[str]):
    return load_config(train_script.__file__, words)


def run_workers(args: list[str], expect: int = 0, timeout: int = 400) -> list[str]:
    """train.py in two worker processes of one local cluster; returns their outputs."""
    env = {**os.environ, **WORKER_ENV}
    workers = [subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, text=True,
                                env={**env, "TF_CONFIG": tf_config}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
               for tf_config in local_cluster(2)]
    try:
        outputs = [worker.communicate(timeout=timeout)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == expect, output[-4000:]
    return outputs


def read_weights(path: Path) -> dict[str, np.ndarray]:
    weights = {}
    with h5py.File(path) as file:
        file.visititems(lambda name, item: weights.__setitem__(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
    return weights


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.fixture(scope="module")
def dataset(make_voc):
    return make_voc(8, 4)


@pytest.fixture(scope="module")
def two_workers(dataset, tmp_path_factory):
    """Two epochs (frozen, then unfrozen) on 2 workers, 2 steps each, global batch 4."""
    save_dir = tmp_path_factory.mktemp("cluster") / "logs"
    outputs = run_workers(argv(dataset, save_dir, "--UnFreeze_Epoch", "2"))
    return save_dir, outputs


@pytest.mark.slow
def test_two_workers_equal_one_process(dataset, two_workers, tmp_path):
    save_dir, outputs = two_workers
    for index, output in enumerate(outputs):
        assert f"TF_CONFIG: worker {index} of 2 workers." in output
        assert "Number of devices: 2" in output
        assert "4 (global, split over 2 devices)" in output

    single = train(config(argv(dataset, tmp_path / "single", "--UnFreeze_Epoch", "2")))
    chief = read_weights(save_dir / "training_state" / "model.weights.h5")
    worker = read_weights(save_dir / ".worker1" / "training_state" / "model.weights.h5")
    alone = read_weights(tmp_path / "single" / "training_state" / "model.weights.h5")
    assert max_difference(chief, worker) == 0.0  # the replicas stay bit-identical
    assert max_difference(chief, alone) < 1e-6  # measured 3.5e-8 (CE only, same data)
    # the comparison means something: training moved the weights far more than that
    initial = {k: v for k, v in alone.items() if k.startswith("layers/conv2d_21/")}
    assert max(np.abs(v).max() for v in initial.values()) > 1e-4
    losses = [float(x) for x in next(save_dir.glob("loss_*/epoch_loss.txt")).read_text().split()]
    np.testing.assert_allclose(losses, single.history["loss"], rtol=1e-5)


@pytest.mark.slow
def test_only_the_chief_keeps_outputs(two_workers):
    save_dir, _ = two_workers
    written = {p.name for p in save_dir.iterdir()}
    assert {"last_epoch_weights.weights.h5", "best_epoch_weights.weights.h5",
            "training_state", ".worker1"} <= written
    assert any(name.startswith("ep002-") for name in written)
    log_dir = next(save_dir.glob("loss_*"))
    assert {"epoch_loss.txt", "epoch_loss.png", "training_log.csv"} <= {
        p.name for p in log_dir.iterdir()}
    # the other worker wrote the same files privately; only its resumable state is left
    assert [p.name for p in (save_dir / ".worker1").iterdir()] == ["training_state"]


@pytest.mark.slow
def test_all_workers_resume_after_a_restart(dataset, two_workers, tmp_path):
    save_dir, _ = two_workers
    resumed = tmp_path / "resumed"
    shutil.copytree(save_dir, resumed, ignore=STATES_ONLY)
    outputs = run_workers(argv(dataset, resumed, "--UnFreeze_Epoch", "3", "--resume", "True"))
    for output in outputs:
        assert "Resumed weights from" in output and "Epoch 3/3" in output
    state = json.loads((resumed / "training_state" / "state.json").read_text())
    assert state["epoch"] == 3

    straight = tmp_path / "straight"
    train(config(argv(dataset, straight, "--UnFreeze_Epoch", "3")))
    chief = read_weights(resumed / "training_state" / "model.weights.h5")
    worker = read_weights(resumed / ".worker1" / "training_state" / "model.weights.h5")
    assert max_difference(chief, worker) == 0.0
    assert max_difference(chief, read_weights(straight / "training_state" /
                                              "model.weights.h5")) < 1e-6


@pytest.mark.slow
def test_workers_resuming_from_different_epochs_stop_with_a_message(dataset, two_workers,
                                                                    tmp_path):
    save_dir, _ = two_workers
    mixed = tmp_path / "mixed"
    shutil.copytree(save_dir, mixed, ignore=STATES_ONLY)
    state_file = mixed / ".worker1" / "training_state" / "state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "epoch": 1}))
    outputs = run_workers(argv(dataset, mixed, "--UnFreeze_Epoch", "3", "--resume", "True"),
                          expect=2, timeout=300)
    for output in outputs:
        assert "the workers start at epochs [1, 2]" in output
        assert "Traceback" not in output


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpus_equals_one_device(dataset, tmp_path):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import train
        from utils.config import load_config
        from utils.training import train as run
        cfg = load_config(train.__file__, {argv(dataset, tmp_path / "mirrored",
                                                "--UnFreeze_Epoch", "2")!r})
        run(cfg, strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **WORKER_ENV})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Number of devices: 2" in done.stdout
    assert "4 (global, split over 2 devices)" in done.stdout

    train(config(argv(dataset, tmp_path / "single", "--UnFreeze_Epoch", "2")))
    mirrored, single = (read_weights(tmp_path / name / "training_state" / "model.weights.h5")
                        for name in ("mirrored", "single"))
    assert max_difference(mirrored, single) < 1e-6


def fake_strategy(replicas: int = 1, chief: bool = True, task: tuple = ("worker", 0)):
    return SimpleNamespace(
        num_replicas_in_sync=replicas,
        extended=SimpleNamespace(should_checkpoint=chief),
        cluster_resolver=SimpleNamespace(task_type=task[0], task_id=task[1]))


def test_batch_sizes_must_split_over_replicas():
    check_batch_sizes(fake_strategy(4), {"Unfreeze_batch_size": 8})
    with pytest.raises(DistributeError, match=r"Unfreeze_batch_size = 6 is the global batch and "
                                              r"must split evenly over the 4 replicas; use 4 or 8"):
        check_batch_sizes(fake_strategy(4), {"Freeze_batch_size": 8, "Unfreeze_batch_size": 6})
    with pytest.raises(DistributeError, match="replicas; use 4\\.$"):
        check_batch_sizes(fake_strategy(4), {"Freeze_batch_size": 2})


def test_tf_config_is_read_and_checked(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert read_tf_config() is None
    good = {"cluster": {"worker": ["host1:2222", "host2:2222"]},
            "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(good))
    assert read_tf_config() == good
    bad = [("{not json", "JSONDecodeError"),
           (json.dumps({"cluster": {"worker": ["h:1"]}}), "KeyError: 'task'"),
           (json.dumps({**good, "task": {"type": "worker", "index": 2}}), "IndexError")]
    for text, error in bad:
        monkeypatch.setenv("TF_CONFIG", text)
        with pytest.raises(DistributeError, match=f"TF_CONFIG is not valid \\({error}.*unset it"):
            read_tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({**good, "cluster": {"worker": ["h", "h:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(DistributeError, match="address 'h' needs host:port"):
        read_tf_config()


def test_non_chief_workers_write_privately_and_clean_up(tmp_path):
    chief, other = fake_strategy(chief=True), fake_strategy(chief=False, task=("worker", 2))
    assert worker_dir(tmp_path, chief) == tmp_path
    private = worker_dir(tmp_path, other)
    assert private == tmp_path / ".worker2"
    (private / "training_state").mkdir(parents=True)
    (private / "loss_x").mkdir()
    (private / "last_epoch_weights.weights.h5").write_bytes(b"x")
    clean_worker_dir(private, other, keep="training_state")
    assert [p.name for p in private.iterdir()] == ["training_state"]
    (tmp_path / "last.weights.h5").write_bytes(b"x")
    clean_worker_dir(tmp_path, chief, keep="training_state")  # the chief keeps everything
    assert (tmp_path / "last.weights.h5").is_file()


FIT_ON_TWO_WORKERS = """
import sys
import keras, numpy as np, tensorflow as tf
if sys.argv[1] == "patched":
    from utils.keras_patches import patch_keras_for_multi_worker
    patch_keras_for_multi_worker()
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
data = tf.data.Dataset.from_tensors((np.ones((4, 2), "float32"), np.ones((4, 1), "float32")))
model.fit(data.repeat(), steps_per_epoch=2, epochs=1, verbose=0)
print("FIT WORKED")
"""


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["unpatched", "patched"])
def test_keras_still_needs_the_multi_worker_patch(variant):
    """A plain `fit` on two workers. When the unpatched case stops failing, Keras has fixed
    MultiWorkerMirroredStrategy: delete utils/keras_patches.py and its call in distribute.py."""
    env = {**os.environ, **WORKER_ENV, "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([sys.executable, "-c", FIT_ON_TWO_WORKERS, variant], cwd=REPO,
                                text=True, env={**env, "TF_CONFIG": tf_config},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for tf_config in local_cluster(2)]
    try:
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    if variant == "patched":
        assert all("FIT WORKED" in output for output in outputs), outputs[0][-3000:]
    else:
        assert all(worker.returncode != 0 for worker in workers), outputs[0][-3000:]
        assert "Attempt to convert a value (PerReplica" in outputs[0], outputs[0][-3000:]


def test_patch_refuses_another_keras_version(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    with pytest.raises(DistributeError, match=rf"Keras {PATCHED_KERAS[-1]}.*this is Keras 3\.99"):
        patch_keras_for_multi_worker()


# ---- a GPU that train_gpu asks for but TensorFlow does not see ----------------------------


GPU_PROBE = ("from utils.distribute import select_strategy; import sys; "
             "select_strategy(eval(sys.argv[1]))")


@pytest.mark.parametrize("train_gpu,warned", [("[0]", True), ("[]", False)])
def test_hidden_gpus_give_one_warning_unless_train_gpu_is_empty(train_gpu, warned):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run([sys.executable, "-c", GPU_PROBE, train_gpu], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    if warned:
        assert done.stdout.count("[Warning]") == 1
        assert "train_gpu = [0], but TensorFlow sees no GPU" in done.stdout
        assert "CUDA_VISIBLE_DEVICES='-1' hides every GPU" in done.stdout
        assert "train_gpu = [] trains on the CPU" in done.stdout
    else:
        assert "[Warning]" not in done.stdout + done.stderr


@pytest.mark.parametrize("platform,built_with_cuda,driver,expected", [
    ("win32", True, True, "native Windows"),
    ("darwin", False, False, "macOS"),
    ("linux", False, True, "no CUDA support"),
    ("linux", True, False, "no NVIDIA driver"),
    ("linux", True, True, "tensorflow[and-cuda]"),
])
def test_the_reason_for_a_missing_gpu(monkeypatch, platform, built_with_cuda, driver, expected):
    from utils import machine

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(machine.sys, "platform", platform)
    monkeypatch.setattr(machine, "_loads", lambda library: driver)
    assert expected in machine.gpu_missing_reason(built_with_cuda)


def test_several_gpus_without_any_is_an_error_that_names_the_cpu_setting():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run([sys.executable, "-c", GPU_PROBE, "[0, 1]"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "lists 2 GPUs, but TensorFlow sees none: CUDA_VISIBLE_DEVICES" in done.stderr
    assert "Use train_gpu = [] to train on the CPU" in done.stderr


def test_jax_and_pytorch_runs_choose_devices_like_tensorflow(monkeypatch, capsys):
    """The same rules off TensorFlow (here PyTorch, made up): no warning with train_gpu = [],
    one warning for a missing GPU, a stop for several, and TF_CONFIG refused in one line."""
    import utils.backend
    import utils.distribute as distribute

    for module in (utils.backend, distribute):
        monkeypatch.setattr(module, "backend", lambda: "torch")
    monkeypatch.setattr(distribute, "is_tensorflow", lambda: False)
    monkeypatch.setattr(distribute, "accelerators", list)
    monkeypatch.setattr(distribute, "compute_devices", list)
    monkeypatch.setattr(distribute, "gpu_missing_reason", lambda: "no driver")
    capsys.readouterr()
    assert distribute.select_strategy([]).num_replicas_in_sync == 1
    assert capsys.readouterr().out == ""
    assert distribute.select_strategy([0]).num_replicas_in_sync == 1
    assert capsys.readouterr().out.startswith(
        "[Warning] train_gpu = [0], but PyTorch sees no GPU: no driver. Training runs on the CPU.")
    with pytest.raises(DistributeError, match=r"lists 2 GPUs, but PyTorch sees none: no driver"):
        distribute.select_strategy([0, 1])
    monkeypatch.setattr(distribute, "accelerators", lambda: ["cuda:0", "cuda:1"])
    with pytest.raises(DistributeError, match=r"GPU \[3\] is not visible; PyTorch sees 2 GPU"):
        distribute.select_strategy([3])
    with pytest.raises(DistributeError, match="several GPUs train on the TensorFlow or JAX "
                                              "backend, not on PyTorch; use train_gpu = \\[0\\]"):
        distribute.select_strategy([0, 1])
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(utils.backend.BackendError, match=r"Training on several machines "
                                                         r"\(TF_CONFIG\) needs the TensorFlow "
                                                         r"backend, and KERAS_BACKEND is torch"):
        distribute.select_strategy([])
