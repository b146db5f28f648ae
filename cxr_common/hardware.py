"""What the machine offers this process, and how to start more of them."""

from __future__ import annotations

import multiprocessing
import os

SPAWN = multiprocessing.get_context("spawn")  # never fork a process that holds onnxruntime threads


def available_cores() -> int:
    """The cores this process may run on (a container's cpuset, not the whole host)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_features() -> list[str]:
    """The int8-relevant instruction sets this CPU reports (Linux /proc/cpuinfo; [] elsewhere)."""
    text = _cpuinfo()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [name for name in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if name in flags]


def cpu_description() -> str:
    """Model name and int8-relevant features, e.g. 'AMD EPYC 7B13 (avx2)'."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name"))
    except StopIteration:
        import platform

        model = platform.processor() or platform.machine()
    return f"{model} ({', '.join(cpu_features()) or 'no AVX2'})"
