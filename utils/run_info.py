"""What a run was: every resolved setting, the library versions and the project's commit,
written beside its outputs (save_dir/config.json, metrics.json) so results can be traced."""

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def git_commit() -> str | None:
    """The checked-out commit of this repository (with "+changes" when the tree differs from
    it), or None outside a git checkout."""
    if not (REPOSITORY / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=REPOSITORY, text=True, capture_output=True, timeout=10,
                                 check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # git missing or failing: the description says so by its null
    return commit + ("+changes" if changes else "")


def versions() -> dict[str, str]:
    """Python and the libraries whose versions change results."""
    import keras

    found = {"python": platform.python_version(), "keras": keras.__version__,
             "keras_backend": keras.backend.backend(), "numpy": np.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        found["tensorflow"] = tf.__version__
    return found


def describe_run(cfg: Any, **facts: Any) -> dict[str, Any]:
    """Settings (as resolved), versions, commit, and `facts` such as dataset sizes."""
    settings = {name: _json_value(value) for name, value in vars(cfg).items()}
    return {"settings": settings, "versions": versions(), "commit": git_commit(), **facts}


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write through a temporary file, so the JSON is never half-written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
