"""What `--resume True` continues from: save_dir/training_state, rewritten after every epoch.

It holds the weights (without the optimizer), the optimizer's variables once in optimizer.npz,
and `state.json` (epoch, phase, the settings a resumed run must share, and each stateful
callback's counters and histories). Every write goes
to a temporary folder first and replaces the previous state by renames, so an interruption at
any point leaves one complete state.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np

from utils.weights import CheckpointWriteError, save_model_weights

STATE_DIR = "training_state"


@runtime_checkable
class Stateful(Protocol):
    """A callback whose counters or histories a resumed run must continue."""

    state_key: str  # its entry in state.json

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


def _state_dirs(save_dir: Path) -> tuple[Path, Path, Path]:
    return save_dir / STATE_DIR, save_dir / f"{STATE_DIR}.tmp", save_dir / f"{STATE_DIR}.old"


def save_training_state(save_dir: str | Path, model: keras.Model, state: dict[str, Any]) -> None:
    """Write weights, optimizer variables and `state` to save_dir/training_state atomically.

    `find_training_state` falls back to training_state.old if the write stopped between the
    two renames.
    """
    final, tmp, old = _state_dirs(Path(save_dir))
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_model_weights(model, tmp / "model.weights.h5")
        store: dict[str, np.ndarray] = {}
        model.optimizer.save_own_variables(store)
        np.savez(tmp / "optimizer.npz", **store)
        (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(
            f"{tmp} could not be written ({error}). Free disk space or set save_dir to another "
            f"folder; {final} keeps the previous epoch's state."
        ) from error
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def find_training_state(save_dir: str | Path) -> Path | None:
    """The folder of the latest complete training state in save_dir, or None."""
    final, _, old = _state_dirs(Path(save_dir))
    for folder in (final, old):
        if (folder / "state.json").is_file():
            return folder
    return None


def load_training_state(folder: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read state.json and the stored optimizer variables of a training-state folder."""
    folder = Path(folder)
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    with np.load(folder / "optimizer.npz") as optimizer_store:
        return state, dict(optimizer_store)


def callback_states(callbacks: list[keras.callbacks.Callback]) -> dict[str, dict[str, Any]]:
    """The state of every stateful callback, by its key."""
    return {c.state_key: c.get_state() for c in callbacks if isinstance(c, Stateful)}


def restore_callback_states(callbacks: list[keras.callbacks.Callback],
                            states: dict[str, dict[str, Any]]) -> None:
    for callback in callbacks:
        if isinstance(callback, Stateful):
            callback.set_state(states[callback.state_key])


def describe_interrupt(save_dir: str | Path) -> str:
    """What Ctrl-C / SIGTERM left behind: the last complete state, and how to continue."""
    folder = find_training_state(save_dir)
    if folder is None:
        return "Training interrupted before the first epoch ended; nothing was saved."
    epoch = load_training_state(folder)[0]["epoch"]
    return (f"Training interrupted. The state after epoch {epoch} is in {folder}: "
            "rerun with --resume True to continue from there.")
