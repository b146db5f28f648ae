"""What the machine offers this process."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (a container's cpuset, not the whole host)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
