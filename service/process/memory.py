"""glibc malloc settings for a process that allocates and frees large image buffers all day.

By default glibc hands large freed blocks straight back to the kernel (mmap/munmap above a
threshold of 128 KB to 32 MB, trimming the heap top above twice that), so the next upload's
buffers are new pages that the kernel must fault in and zero. Under load at concurrency 16 on
2 cores that was 13% of all CPU time in the kernel; keeping freed memory for reuse brought it to
4-5% and served 8-12% more images/s. The cost is that the process keeps its high-water mark
(docs/performance.md: flat in the soak run; about 0.3 GB per worker under the mixed load).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 64 * 1024 * 1024  # larger blocks (huge DICOMs) still go back at once
TRIM_THRESHOLD = 256 * 1024 * 1024
ARENAS = 2  # per-thread arenas each keep their own free memory: few threads need few arenas


def keep_freed_memory() -> bool:
    """Apply the settings above; False (and nothing changed) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, ARENAS)))
    if not ok:
        log.warning("mallopt refused a setting; allocator left at its defaults where it did")
    return ok


RELEASE_ABOVE_BYTES = 512 * 1024 * 1024  # resident growth handed back after any request
# growth handed back once the worker has gone idle for IDLE_AFTER_S: what a burst of work left
# behind (buffers of large uploads, the DICOM stack's), not what back-to-back requests reuse
IDLE_RELEASE_ABOVE_BYTES = 32 * 1024 * 1024
# half a second, not the 2 s it was: what a load left is handed back before 1 s after it (two
# workers, 1 s after a load at c=16: 387 MB with 2 s, the release still to come; 303 MB with
# 0.5 s), and a lone JPEG request after the release faults its pages in again unnoticed (median
# 22.4 ms with 0.5 s against 21.7 ms with 2 s, 1 s pauses after bursts; DICOMs not measured)
IDLE_AFTER_S = 0.5


class MemoryWatermark:
    """Keeps the settings above from turning one huge request, or a busy minute, into a
    permanently fat worker: free memory is handed back (malloc_trim) after a request when
    resident memory has grown more than RELEASE_ABOVE_BYTES past what it was at start-up, and
    when the worker has gone idle (`when_idle`) past IDLE_RELEASE_ABOVE_BYTES. Reading RSS costs
    microseconds; a trim of a few hundred MB a few milliseconds, off the event loop."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        # made once start-up is done (model loaded, checked, warmed up): what start-up freed (the
        # session's graph optimisation, the reference check's batch) goes back to the kernel
        # first, so that the baseline is what the worker really holds. Measured: 40 MB of a
        # worker's 183 MB at rest were freed memory that the settings above kept.
        if self._trim is not None:
            self._trim(0)
        self.baseline = resident_bytes()

    def after_request(self) -> bool:
        """True when memory was handed back."""
        return self._release_above(RELEASE_ABOVE_BYTES)

    def when_idle(self) -> bool:
        """For a worker that has had no request for IDLE_AFTER_S; True when memory was handed back."""
        return self._release_above(IDLE_RELEASE_ABOVE_BYTES)

    def _release_above(self, growth: int) -> bool:
        if self._trim is None or resident_bytes() - self.baseline < growth:
            return False
        self._trim(0)
        return True


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def release_freed_memory() -> None:
    """Hand what this process has freed back to the kernel now (a process that is done with a
    part of its memory: the supervisor, before it forks its workers, what start-up freed)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def resident_bytes() -> int:
    """This process's resident set size (Linux; 0 elsewhere). Read from a descriptor kept open:
    in a serving process, Python's open() of /proc/self/statm cost 130 us of CPU per request
    against 40 us for the read alone (measured after every request, docs/performance.md)."""
    try:
        return int(os.pread(_statm(), 64, 0).split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


_STATM: tuple[int, int] | None = None  # (pid, descriptor): a forked child must open its own


def _statm() -> int:
    global _STATM
    if _STATM is None or _STATM[0] != os.getpid():
        _STATM = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
    return _STATM[1]


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
