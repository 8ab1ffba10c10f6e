"""What this machine offers for speed: CPU model and instruction sets, why no GPU is seen."""

import ctypes
import os
import platform
import sys
from pathlib import Path

# Instruction sets that change which code path is fast: int8 (VNNI) and bfloat16 arithmetic.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    text = _cpuinfo()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), None)
    return None if flags is None else set(flags)


def cpu_name() -> str:
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine())


def onednn_enabled() -> bool | None:
    """Whether the loaded TensorFlow runs its oneDNN kernels; None if it cannot tell.

    TensorFlow turns them on by itself where the CPU has AVX-512 VNNI, bf16 or AMX;
    TF_ENABLE_ONEDNN_OPTS=1 or 0, set before TensorFlow loads, overrides that.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def cpu_has_bfloat16() -> bool | None:
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX); None if unknown.

    Without it oneDNN emulates bfloat16, several times slower than float32.
    """
    flags = cpu_flags()
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_has_vnni() -> bool | None:
    """Whether the CPU has int8 dot products (AVX512_VNNI, AVX_VNNI or AMX); None if unknown.

    Without them, x86 int8 kernels add pairs of uint8 x int8 products in 16 bits, which
    saturate unless the weights use 7 bits.
    """
    flags = cpu_flags()
    return None if flags is None else bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def _loads(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def gpu_missing_reason(built_with_cuda: bool, framework: str = "TensorFlow") -> str:
    """Why `framework` sees no GPU, as far as this machine shows: hidden devices, native
    Windows, a build without CUDA, no NVIDIA driver, or CUDA libraries missing."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    if sys.platform == "win32" and framework == "TensorFlow":
        return ("TensorFlow 2.11 and later has no GPU support on native Windows; train in WSL2 "
                "with tensorflow[and-cuda]")
    if sys.platform == "darwin":
        return f"{framework} has no CUDA GPU support on macOS"
    if not built_with_cuda:
        return f"this {framework} build has no CUDA support (a CPU-only package)"
    if not _loads("libcuda.so.1"):
        return "no NVIDIA driver was found (libcuda.so.1); check that `nvidia-smi` works"
    fix = {"JAX": 'pip install "jax[cuda12]"',
           "PyTorch": "a CUDA build of torch"}.get(framework, 'pip install "tensorflow[and-cuda]"')
    return f"the CUDA libraries were not found; install them with {fix}"
