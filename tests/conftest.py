"""Shared test set-up: quiet TensorFlow, bounded memory, and the fixtures several files use."""

import ctypes
import ctypes.util
import gc
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from utils.cli import USER_ERROR_STATUS, run  # noqa: E402
from utils.demo_data import write_demo_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# A two-phase run that takes seconds: random weights, 32x32 inputs, 4 classes of demo images.
TINY_TRAIN = ("--num_classes", "4", "--model_path", "", "--input_shape", "32", "32",
              "--Freeze_batch_size", "2", "--Unfreeze_batch_size", "2")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None


def write_voc_item(root: Path, image_id: str, image, label, ext: str | None = ".jpg") -> Path:
    """One image and its label PNG under root/VOC2007; returns the label's path.

    `image` is a PIL image, an array, or a (width, height) size for a plain grey image; with
    `ext=None` only the label is written.
    """
    images, labels = root / "VOC2007" / "JPEGImages", root / "VOC2007" / "SegmentationClass"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    if isinstance(image, tuple):
        image = Image.new("RGB", image, (90, 90, 90))
    elif not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    if ext:
        image.save(images / f"{image_id}{ext}")
    Image.fromarray(np.asarray(label, np.uint8)).save(labels / f"{image_id}.png")
    return labels / f"{image_id}.png"


def write_voc(root: Path, num_train: int = 4, num_val: int = 2) -> Path:
    """Demo images (128x128; circle, square, triangle + background) with explicit train/val
    splits: the first num_train ids train, the next num_val validate."""
    dataset = root / "VOCdevkit"
    write_demo_dataset(dataset, num_images=num_train + num_val, img_dir=root / "img")
    ids = [f"demo_{i:04d}" for i in range(num_train + num_val)]
    splits = dataset / "VOC2007" / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("".join(f"{i}\n" for i in ids[:num_train]))
    (splits / "val.txt").write_text("".join(f"{i}\n" for i in ids[num_train:]))
    return dataset


@pytest.fixture(scope="session")
def make_voc(tmp_path_factory) -> Callable[..., Path]:
    """`make_voc(num_train=4, num_val=2)`: a new demo dataset in its own folder."""
    return lambda num_train=4, num_val=2: write_voc(tmp_path_factory.mktemp("voc"), num_train,
                                                    num_val)


@pytest.fixture(scope="session")
def voc_item() -> Callable[..., Path]:
    """`voc_item(root, image_id, image, label, ext=".jpg")`: see write_voc_item."""
    return write_voc_item


@pytest.fixture(scope="session")
def train_argv() -> Callable[..., list[str]]:
    """`train_argv(dataset, save_dir, *extra)`: train.py's words for a tiny run."""
    return lambda dataset, save_dir, *extra: [
        *TINY_TRAIN, "--VOCdevkit_path", str(dataset), "--save_dir", str(save_dir), *extra]


@pytest.fixture
def user_error(capsys) -> Callable[[Callable, Sequence[str]], str]:
    """`user_error(script.main, argv)`: runs the script as the command line does, checks it
    stops with the user-error status, and returns the message it printed."""

    def fails(main: Callable, argv: Sequence[str]) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run(main, list(argv))
        assert exit_info.value.code == USER_ERROR_STATUS
        err = "\n" + capsys.readouterr().err  # progress bars may come before the message
        assert "\nerror: " in err and "Traceback" not in err
        return err[err.rindex("\nerror: ") + 1:]

    return fails


def _resident_gib() -> float:
    try:
        status = Path("/proc/self/status").read_text().splitlines()
    except OSError:  # not Linux: never split the run
        return 0.0
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS:"))) / 2**20


# Under tests/run_suite.py, several pytest processes share the modules: each claims a module
# (a file in this folder) before running it, and leaves the modules others claimed.
_CLAIMS = os.environ.get("UNET_TEST_CLAIMS")


def _claim(path: Path) -> bool:
    marker = Path(_CLAIMS) / hashlib.sha1(str(path).encode()).hexdigest()
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def _keep_next_unclaimed(items: list, start: int) -> None:
    """From `start` on, drop the modules another process claimed; claim the next free one."""
    while start < len(items):
        path = items[start].path
        if _claim(path):
            return
        end = start
        while end < len(items) and items[end].path == path:
            end += 1
        del items[start:end]


# The slowest modules, slowest first (about 275 s down to 60 s on 2 cores): claimed before
# the rest, the parallel processes end at nearly the same time instead of one waiting for
# the other's last long module.
SLOWEST_MODULES = ("test_benchmark.py", "test_backends.py", "test_distribute.py",
                   "test_demo_data.py", "test_readme.py", "test_bad_inputs.py", "test_resume.py",
                   "test_precise_bn.py")


def _slowest_first(item) -> int:
    name = item.path.name
    return SLOWEST_MODULES.index(name) if name in SLOWEST_MODULES else len(SLOWEST_MODULES)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if _CLAIMS:
        items.sort(key=_slowest_first)  # stable: each module keeps its own order
        _keep_next_unclaimed(items, 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under tests/run_suite.py, after each module: stop if this process holds more than the
    memory limit (a fresh one goes on), else claim the next module no other process has.
    TensorFlow keeps memory of every trained model for the life of the process
    (tensorflow/tensorflow#61791), so one process for the whole suite grows past 10 GB."""
    yield
    if not _CLAIMS or nextitem is None or nextitem.path == item.path:
        return
    items = item.session.items  # pytest's run loop ends where this list ends
    index = items.index(item)
    if _resident_gib() > float(os.environ["UNET_TEST_MAX_GIB"]):
        del items[index + 1:]
    else:
        _keep_next_unclaimed(items, index + 1)


@pytest.fixture(autouse=True, scope="module")
def _fresh_keras_session():
    """Each test module starts with fresh Keras name counters and an empty graph, and hands
    the memory of its models back to the system when it ends."""
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
