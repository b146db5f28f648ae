"""How busy the other worker processes are: one shared count of requests in flight per worker.

The kernel hands each new connection to a worker at random (SO_REUSEPORT), so a client with few
connections often lands on one worker while another has nothing to do: measured with two
connections on two workers, 5 runs in 8 served about 138 images/s against about 215 when the
connections were split. Knowing that its peers are idle, a worker may use the idle cores itself.
Each process writes only its own slot; an aligned int is read and written whole.
"""

from __future__ import annotations

import ctypes

from cxr_common.hardware import SPAWN

Counts = ctypes.Array[ctypes.c_int]


def shared_counts(workers: int) -> Counts:
    """The counts, zeroed, to hand to each worker process at its start."""
    counts: Counts = SPAWN.RawArray(ctypes.c_int, workers)
    return counts


class PeerLoad:
    """This worker's slot in the shared counts, and a look at the others'."""

    def __init__(self, counts: Counts, slot: int):
        self._counts, self._slot = counts, slot
        self._counts[slot] = 0  # a replaced worker starts with nothing in flight

    def add(self, requests: int) -> None:
        self._counts[self._slot] += requests

    def others_idle(self) -> bool:
        return not any(count for i, count in enumerate(self._counts) if i != self._slot)
