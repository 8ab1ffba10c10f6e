"""benchmark.py's settings checked, and its automatic values filled in for the CPU or GPU run."""

import importlib.util

from benchmarks.keras_backends import KERAS_BACKENDS
from utils.backend import FRAMEWORKS
from utils.config import Config
from utils.settings import BENCHMARK_SECTIONS, SettingsError, check_settings

# Slow or emulated backends left out by --quick.
NOT_QUICK = ("tf_bf16", "tf_fp32_live")


def default_sections(cfg: Config, keras_backends: list[str], variants: list[str]) -> list[str]:
    """--pipeline or --strategy alone; Keras backends alone: the roof and their comparison;
    else every section but strategy and backends, accuracy only with trained weights and a
    dataset, and the backends section when --backends names Keras backends."""
    if cfg.pipeline:
        return ["pipeline"]
    if cfg.strategy:
        return ["strategy"]
    if keras_backends and not variants:
        return ["roof", "backends"]
    scored = bool(cfg.model_path and cfg.VOCdevkit_path)
    return [s for s in BENCHMARK_SECTIONS if s not in ("strategy", "backends")
            and (s != "accuracy" or scored)] + (["backends"] if keras_backends else [])


def resolve(cfg: Config) -> Config:
    """The settings of the run: the choices checked, the automatic values decided."""
    check_settings(cfg)
    quick = cfg.quick
    if cfg.device == "gpu":
        budget = (150 if quick else 400) if cfg.time_budget < 0 else cfg.time_budget
        return cfg.replace(
            size=cfg.size or [512], repeats=cfg.repeats or (3 if quick else 10),
            train_repeats=cfg.train_repeats or (3 if quick else 5), time_budget=budget,
            json=cfg.json or "benchmark_gpu.json", md=cfg.md or "benchmark_gpu.md")
    keras_backends = [b for b in cfg.backends if b in KERAS_BACKENDS]
    backends = [b for b in cfg.backends if b not in KERAS_BACKENDS]
    sections = cfg.sections or default_sections(cfg, keras_backends, backends)
    size = cfg.size or ([256] if quick else [512, 256])
    if quick:
        backends = [b for b in backends if b not in NOT_QUICK] or backends
    if "backends" in sections:
        check_installed(keras_backends)
    return cfg.replace(
        sections=sections, size=size, backends=backends,
        keras_backends=keras_backends or ["tensorflow"], eval_shape=cfg.eval_shape or [size[0]] * 2,
        repeats=cfg.repeats or (2 if quick else 5),
        train_repeats=cfg.train_repeats or (2 if quick else 3),
        json=cfg.json or "benchmark.json", md=cfg.md or "benchmark.md")


def check_installed(keras_backends: list[str]) -> None:
    """Stop before any timing when a Keras backend to compare is not installed here."""
    for name in keras_backends:
        if importlib.util.find_spec(name) is None:
            needs = "requirements.txt" if name == "tensorflow" else f"requirements-{name}.txt"
            raise SettingsError(
                f"--backends {name}: {FRAMEWORKS[name]} is not installed in this environment; "
                f"install it with pip install -r {needs} (make test installs JAX and PyTorch "
                "into .venv), or leave it out of --backends.")
