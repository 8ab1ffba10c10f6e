"""What this machine offers for speed: CPU model and instruction sets, GPUs TensorFlow sees."""

import platform
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


def cpu_has_bfloat16() -> bool | None:
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX); None if unknown.

    Without it oneDNN emulates bfloat16, several times slower than float32.
    """
    flags = cpu_flags()
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & flags)
