"""A private network namespace with only a loopback interface, for this test process and the
processes it starts: Orthanc 1.10 listens on every interface, and here it can reach nothing
but the service and the gateway started beside it."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why a namespace cannot be made here (None when it can)."""
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "needs root to make a network namespace"
    return None


@contextmanager
def private_network() -> Iterator[None]:
    """The calling thread (and what it starts from now on) in a new network namespace with
    loopback up; the old namespace restored on exit."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original network namespace failed")
    finally:
        os.close(original)
