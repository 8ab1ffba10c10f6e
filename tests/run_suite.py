"""Run the whole test suite (`make test`): parallel pytest processes, each below a memory limit.

TensorFlow keeps some memory of every model it trained or traced until the process ends
(tensorflow/tensorflow#61791), so one process for the suite grows past 10 GB. Here JOBS chains
of pytest processes share the test modules (each claims a module before running it, see
conftest.py); a process that holds more than MAX_GIB after a module ends, and the next one of
its chain goes on with the modules nobody claimed yet. Arguments go to pytest; give options as
single words (-q, -x, -ra).
"""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MAX_GIB = 4.0
JOBS = min(2, os.cpu_count() or 1)
COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
NO_TESTS_RAN = 5  # pytest's exit status when every module was claimed by another process


def run_chain(job: int, argv: list[str], env: dict[str, str], lock: threading.Lock) -> dict:
    """Start pytest processes one after another until one finds no module left to run."""
    totals: dict[str, int] = {"status": 0, "processes": 0}
    while True:
        done = subprocess.run([sys.executable, "-m", "pytest", *argv], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode == NO_TESTS_RAN:
            return totals
        totals["processes"] += 1
        lines = done.stdout.strip().splitlines() or [""]
        for count, kind in COUNTS.findall(lines[-1]):
            totals[kind] = totals.get(kind, 0) + int(count)
        with lock:
            print(f"--- pytest process {totals['processes']} of job {job} ---")
            print(done.stdout, flush=True)
        if done.returncode != 0:
            totals["status"] = done.returncode
        # 1: tests failed, the chain goes on; anything else (interrupted, collection or usage
        # error, a crash) would recur in the next process
        if done.returncode not in (0, 1) or (done.returncode and {"-x", "--exitfirst"} & set(argv)):
            return totals


def main(argv: list[str]) -> int:
    start, lock = time.perf_counter(), threading.Lock()
    with tempfile.TemporaryDirectory() as claims:
        env = {**os.environ, "UNET_TEST_CLAIMS": claims, "UNET_TEST_MAX_GIB": str(MAX_GIB)}
        with ThreadPoolExecutor(JOBS) as pool:
            chains = list(pool.map(lambda job: run_chain(job, argv, env, lock), range(1, JOBS + 1)))
    kinds = sorted({k for chain in chains for k in chain} - {"status", "processes"})
    counts = ", ".join(f"{sum(c.get(k, 0) for c in chains)} {k}" for k in kinds)
    processes = sum(chain["processes"] for chain in chains)
    print(f"=== suite: {counts} in {time.perf_counter() - start:.0f} s, {processes} pytest "
          f"processes in {JOBS} parallel jobs ===")
    return next((chain["status"] for chain in chains if chain["status"]), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
