"""A child process of the benchmark, `python -m benchmarks.child <kind> '<json spec>'`: one
measurement in a fresh process (own peak memory, caches, TF_CONFIG), its result printed."""

import importlib
import json
import sys

from benchmarks.harness import print_result

# kind -> "module:function" taking the spec dict and returning the result dict
KINDS = {"train_step": "benchmarks.training:train_step",
         "strategy_worker": "benchmarks.strategy:strategy_worker",
         "onnx_export": "benchmarks.inference:onnx_export",
         "backend_step": "benchmarks.keras_backends:backend_step"}


def main(argv: list[str]) -> None:
    """Run the measurement `argv` names and print its result line."""
    if len(argv) != 2 or argv[0] not in KINDS:
        raise SystemExit(f"usage: python -m benchmarks.child {{{','.join(KINDS)}}} '<json spec>'")
    module, function = KINDS[argv[0]].split(":")
    measure = getattr(importlib.import_module(module), function)
    print_result(measure(json.loads(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
