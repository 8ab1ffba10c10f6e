"""What the sections share: timer, peak memory, synthetic batches, train.py's settings, and child
processes: `python -m benchmarks.child <kind> '<json spec>'`, its result one prefixed JSON line."""

import contextlib
import gc
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras

from utils.config import Config, load_config

REPOSITORY = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPOSITORY / "train.py"
_RESULT_PREFIX = "BENCHMARK_RESULT "
# Characters of a failed child's stderr shown in the error.
ERROR_TAIL = 3000


def time_call(call: Callable[[], object], repeats: int, warmup: int = 2) -> dict:
    """Seconds per call, min and median over `repeats` after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"s_min": round(min(times), 4), "s_median": round(statistics.median(times), 4)}


def percent_of(value: float, roof: float | None) -> float | None:
    """`value` as a % of the matmul roof, None when the roof was not measured."""
    return round(100 * value / roof, 1) if roof else None


def peak_rss_gib() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec, whereas
    ru_maxrss keeps the parent's peak across fork + exec; ru_maxrss is the fallback."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        kib = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / 2**20


def synthetic_batch(batch: int, size: int | Sequence[int], num_classes: int) -> tuple:
    """Random images in [-1, 1] and one-hot targets of 16x16-pixel blocks of random classes
    (the last channel is the ignore class, as in the data), made by the Keras backend.
    `size` is a square's side or (height, width)."""
    ops = keras.ops
    height, width = (size, size) if isinstance(size, int) else size
    x = keras.random.uniform((batch, height, width, 3), -1.0, 1.0, seed=0)
    blocks = keras.random.randint((batch, height // 16, width // 16), 0, num_classes + 1,
                                  seed=1)
    labels = ops.repeat(ops.repeat(blocks, 16, axis=1), 16, axis=2)
    return x, ops.one_hot(labels, num_classes + 1)


def train_config(num_classes: int, *overrides: str) -> Config:
    """train.py's parameter block (optimizer, learning rate, loss, weight decay...) for
    `num_classes`, plus `--name value` overrides; reading it imports no TensorFlow."""
    return load_config(TRAIN_SCRIPT, ["--num_classes", str(num_classes), *overrides])


def free_memory() -> None:
    """Drop the Keras graph and models of the last measurement."""
    keras.backend.clear_session()
    gc.collect()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence configuration tables and export messages."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def start_child(kind: str, spec: dict, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A child process measuring `spec` with the `kind` of measurement benchmarks.child runs."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "benchmarks.child", kind, json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def child_result(child: subprocess.Popen, what: str, timeout: float | None = None) -> dict:
    """The result a child printed; a RuntimeError with its stderr when it failed."""
    stdout, stderr = child.communicate(timeout=timeout)
    lines = [line for line in stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if child.returncode or not lines:
        raise RuntimeError(f"{what} failed:\n{stderr[-ERROR_TAIL:]}")
    return json.loads(lines[-1][len(_RESULT_PREFIX):])


def print_result(result: dict) -> None:
    """A child's side: its result, as the one line the parent reads."""
    print(_RESULT_PREFIX + json.dumps(result), flush=True)
