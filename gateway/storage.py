"""Received instances and result objects on disk: written to a temporary name, flushed to the
disk, then renamed, so a file under its final name is always whole (the C-STORE is acknowledged
after this). File names are hashes of SOP Instance UIDs: no identifier in a file name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

INCOMING, RESULTS = "incoming", "results"  # received instances; a scored job's result objects until sent


def instance_path(state: Path, sop_instance_uid: str) -> Path:
    return _hashed(state / INCOMING, sop_instance_uid)


def result_path(state: Path, sop_instance_uid: str) -> Path:
    return _hashed(state / RESULTS, sop_instance_uid)


def _hashed(folder: Path, sop_instance_uid: str) -> Path:
    return folder / (hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:32] + ".dcm")


def write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    with open(partial, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself on disk
    finally:
        os.close(directory)


def remove(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


def remove_orphans(state: Path, wanted: set[str]) -> int:
    """At start-up: files a crash left behind (a .part never renamed, an instance whose job row
    was never committed, so whose C-STORE was never acknowledged and will come again, or result
    objects whose job was never marked scored, so will be scored again)."""
    removed = 0
    for path in [path for folder in (INCOMING, RESULTS) for path in (state / folder).glob("*")]:
        if str(path) not in wanted:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
