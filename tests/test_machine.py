"""What the benchmark reports about TensorFlow's oneDNN kernels matches what TensorFlow runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("setting, expected", [("1", "True"), ("0", "False")])
def test_onednn_enabled_follows_tf_enable_onednn_opts(setting, expected):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
    code = ("from utils.machine import onednn_enabled\n"
            "import tensorflow as tf\n"
            "print(onednn_enabled())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-1] == expected
