"""What the machine offers this process, and how to start more of them."""

from __future__ import annotations

import multiprocessing
import os

SPAWN = multiprocessing.get_context("spawn")  # never fork a process that holds onnxruntime threads


def available_cores() -> int:
    """The cores this process may run on (a container's cpuset, not the whole host)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
