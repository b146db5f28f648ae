"""Which files to send: images by extension, DICOM also by its preamble (PACS exports often
have no extension); everything else is skipped and counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm", ".dicom"}


def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def is_candidate(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(path)


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def collect(paths: Iterable[str | Path], recursive: bool = False) -> Inputs:
    """Files named directly are sent as they are; folders give their images (walked with
    `recursive`, else only their own files)."""
    found = Inputs()
    for given in map(Path, paths):
        if given.is_dir():
            children = sorted(given.rglob("*") if recursive else given.iterdir())
            for child in children:
                if child.is_file():
                    (found.files if is_candidate(child) else found.skipped).append(child)
        else:
            found.files.append(given)  # named explicitly: the service judges it
    return found
