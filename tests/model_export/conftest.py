"""A small, real subset of the shared X-rays in both layouts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

PER_CLASS = 24
CSV_MISSING_IMAGES = 5  # CSV rows we add whose images are not in the folder
CSV_UNLISTED_IMAGES = 3  # images we put in the folder without a CSV row


def _pick(folder: Path, count: int) -> list[Path]:
    """Consecutive files (sorted by name), so patients with several images are included."""
    files = sorted(folder.iterdir())
    return files[:count]


@pytest.fixture(scope="session")
def subset_class_folders(shared_data, tmp_path_factory) -> Path:
    """ROOT/train/{NORMAL,PNEUMONIA} with 24 + 24 real images, ROOT/val = the official 16."""
    root = tmp_path_factory.mktemp("class_folders")
    for name in ("NORMAL", "PNEUMONIA"):
        target = root / "train" / name
        target.mkdir(parents=True)
        for path in _pick(shared_data / "train" / name, PER_CLASS):
            shutil.copy(path, target / path.name)
    shutil.copytree(shared_data / "val", root / "val")
    return root


@pytest.fixture(scope="session")
def subset_csv_layout(shared_data, subset_class_folders, tmp_path_factory) -> tuple[Path, Path]:
    """A flat folder of the same images plus a metadata CSV in the Coronahack format."""
    root = tmp_path_factory.mktemp("csv_layout")
    images = root / "images"
    images.mkdir()
    for path in sorted((subset_class_folders / "train").rglob("*.jpeg")):
        shutil.copy(path, images / path.name)
    present = sorted(p.name for p in images.iterdir())
    listed = set(present[CSV_UNLISTED_IMAGES:])
    csv_path = root / "metadata.csv"
    with open(shared_data / "Chest_xray_Corona_Metadata.csv", newline="") as source, \
            open(csv_path, "w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, reader.fieldnames)
        writer.writeheader()
        missing = 0
        for row in reader:
            if row["X_ray_image_name"] in listed:
                writer.writerow(row)
            elif missing < CSV_MISSING_IMAGES and row["X_ray_image_name"] not in present:
                writer.writerow(row)
                missing += 1
    return images, csv_path
