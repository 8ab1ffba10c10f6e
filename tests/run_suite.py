"""Run the whole test suite (`make test`) in as few pytest processes as memory allows.

TensorFlow keeps some memory of every model it trained or traced until the process ends
(tensorflow/tensorflow#61791), so one process for the suite grows past 10 GB. Here each pytest
process runs modules until it holds more than MAX_GIB after one, then hands the tests still to
run to a fresh process (see `pytest_runtest_protocol` in conftest.py). Arguments go to pytest;
give options as single words (-q, -x, -ra).
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_GIB = 2.5
COUNTS = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def main(argv: list[str]) -> int:
    options = [a for a in argv if a.startswith("-")]
    tests = [a for a in argv if not a.startswith("-")]
    totals: dict[str, int] = {}
    status, runs, start = 0, 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        remaining = Path(work) / "remaining.txt"
        env = {**os.environ, "UNET_TEST_MAX_GIB": str(MAX_GIB),
               "UNET_TEST_REMAINING": str(remaining), "PYTHONUNBUFFERED": "1"}
        while True:
            remaining.unlink(missing_ok=True)
            runs += 1
            last = ""
            with subprocess.Popen([sys.executable, "-m", "pytest", *options, *tests], env=env,
                                  stdout=subprocess.PIPE, text=True) as pytest:
                for line in pytest.stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    last = line if line.strip() else last
            for count, kind in COUNTS.findall(last):
                totals[kind] = totals.get(kind, 0) + int(count)
            if pytest.returncode not in (0, 5):  # 5: no tests collected
                status = pytest.returncode
                if {"-x", "--exitfirst"} & set(options):
                    break
            if not remaining.is_file():
                break
            tests = remaining.read_text().splitlines()
            print(f"--- memory limit of {MAX_GIB} GiB reached: {len(tests)} tests go on in a "
                  "new process ---", flush=True)
    counts = ", ".join(f"{n} {kind}" for kind, n in totals.items())
    print(f"=== suite: {counts} in {time.perf_counter() - start:.0f} s, {runs} pytest "
          f"process(es) ===")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
