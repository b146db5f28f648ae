"""Find labelled X-rays in either layout and split them by patient.

Layouts (one code path after discovery: both yield a list of `Example`):
  * class folders: DIR/{NORMAL,PNEUMONIA}/* (or DIR/<split>/{NORMAL,PNEUMONIA}/* with `split`);
  * a folder of images plus a metadata CSV mapping image name to label (the "Coronahack" CSV:
    column X_ray_image_name, label column Label with values Normal / Pnemonia, sic).
Label convention, fixed here once: 1 = pneumonia, 0 = normal. Pneumonia cases may also carry
their type (bacterial or viral), from the file name (`*_bacteria_*`, `*_virus_*`) or from the
CSV's `Label_1_Virus_category`; datasets without it still train (the type is then not learned).

Splits: `split_by_patient` is the random patient split; `split_with_shift` also holds out
contiguous blocks of patient ids at both ends of each id series, which stand in for patients
from another period (the official test split's ids lie below the training ids).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# the label conventions (index = class id: 1 = pneumonia; for the type head 1 = viral), fixed
# once for training and serving
from cxr_common.model_metadata import PNEUMONIA_TYPES

log = logging.getLogger(__name__)

CLASS_FOLDERS = {"NORMAL": 0, "PNEUMONIA": 1}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
CSV_NAME_COLUMN = "X_ray_image_name"
CSV_LABEL_COLUMN = "Label"
CSV_LABELS = {"normal": 0, "pnemonia": 1, "pneumonia": 1}  # 'Pnemonia' is the CSV's spelling
CSV_TYPE_COLUMN = "Label_1_Virus_category"
CSV_TYPES = {"bacteria": "bacterial", "virus": "viral"}
FILE_NAME_TYPES = (("_bacteria_", "bacterial"), ("_virus_", "viral"))

# Patient ids from Kermany file names: person123_bacteria_456.jpeg, IM-0115-0001.jpeg,
# NORMAL2-IM-1427-0001.jpeg. NORMAL2-IM-N and IM-N are different series, so they stay apart.
PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-", re.IGNORECASE),
)
SERIES_PATTERN = re.compile(r"^(.*?)(\d+)$")  # 'normal2-im-0383' -> ('normal2-im-', 383)


@dataclass(frozen=True)
class Example:
    path: Path
    label: int  # 1 = pneumonia
    patient: str
    pneumonia_type: str | None = None  # 'bacterial' or 'viral' where known, else None


@dataclass(frozen=True)
class Discovery:
    examples: list[Example]
    skipped_rows_without_image: int = 0
    skipped_images_without_row: int = 0
    skipped_unreadable_labels: int = 0

    def summary(self) -> str:
        counts = class_counts(self.examples)
        text = f"{len(self.examples)} images ({counts[0]} normal, {counts[1]} pneumonia)"
        skipped = (
            f"; skipped {self.skipped_rows_without_image} CSV rows without an image, "
            f"{self.skipped_images_without_row} images without a CSV row, "
            f"{self.skipped_unreadable_labels} rows with an unknown label"
        )
        has_csv_counts = self.skipped_rows_without_image or self.skipped_images_without_row
        return text + (skipped if has_csv_counts or self.skipped_unreadable_labels else "")


def patient_id(file_name: str) -> str:
    """Patient id from a Kermany file name; an unknown pattern counts as its own patient."""
    for pattern in PATIENT_PATTERNS:
        match = pattern.match(file_name)
        if match:
            return match.group(1).lower()
    return Path(file_name).stem.lower()


def type_from_file_name(file_name: str) -> str | None:
    lowered = file_name.lower()
    return next((kind for marker, kind in FILE_NAME_TYPES if marker in lowered), None)


def type_counts(examples: list[Example]) -> dict[str, int]:
    return {kind: sum(e.pneumonia_type == kind for e in examples) for kind in PNEUMONIA_TYPES}


def class_counts(examples: list[Example]) -> tuple[int, int]:
    positives = sum(e.label for e in examples)
    return len(examples) - positives, positives


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def from_class_folders(folder: Path) -> Discovery:
    examples = [
        Example(path, label, patient_id(path.name), type_from_file_name(path.name) if label else None)
        for name, label in CLASS_FOLDERS.items()
        if (folder / name).is_dir()
        for path in _images_under(folder / name)
    ]
    return Discovery(examples)


def from_csv(folder: Path, csv_path: Path) -> Discovery:
    """Images anywhere under `folder`, labelled by name from the metadata CSV."""
    images = {path.name: path for path in _images_under(folder)}
    examples, rows_without_image, unknown_labels, seen = [], 0, 0, set()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = (row.get(CSV_NAME_COLUMN) or "").strip()
            label = CSV_LABELS.get((row.get(CSV_LABEL_COLUMN) or "").strip().lower())
            if label is None:
                unknown_labels += 1
            elif name not in images:
                rows_without_image += 1
            elif name not in seen:
                seen.add(name)
                kind = CSV_TYPES.get((row.get(CSV_TYPE_COLUMN) or "").strip().lower())
                examples.append(Example(images[name], label, patient_id(name), kind if label else None))
    return Discovery(
        examples,
        skipped_rows_without_image=rows_without_image,
        skipped_images_without_row=len(images) - len(seen),
        skipped_unreadable_labels=unknown_labels,
    )


def discover(folder: Path, labels_csv: Path | None = None, split: str | None = None) -> Discovery:
    """Labelled images in `folder`, in whichever layout it has.

    With `labels_csv` (or a single *.csv with an X_ray_image_name column directly in `folder`
    and no class folders) the CSV layout is used; otherwise class folders, looked for in
    `folder/split` when `split` is given and that folder exists, else in `folder` itself.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder '{folder}' does not exist")
    if labels_csv is None and not _has_class_folders(folder):
        if split and _has_class_folders(folder / split):
            folder = folder / split
        else:
            labels_csv = _find_metadata_csv(folder)
    if labels_csv is not None:
        found = from_csv(folder, Path(labels_csv))
    else:
        found = from_class_folders(folder)
    if not found.examples:
        raise ValueError(f"no labelled images found in '{folder}'")
    log.info("%s: %s", folder, found.summary())
    return found


def _has_class_folders(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in CLASS_FOLDERS)


def _find_metadata_csv(folder: Path) -> Path | None:
    for candidate in sorted(folder.glob("*.csv")):
        with open(candidate, newline="", encoding="utf-8") as handle:
            if CSV_NAME_COLUMN in (csv.DictReader(handle).fieldnames or []):
                return candidate
    return None


def split_by_patient(
    examples: list[Example], validation_fraction: float = 0.2, seed: int = 42
) -> tuple[list[Example], list[Example]]:
    """Stratified, seeded split in which every patient's images fall on one side only.

    Per class, patients are shuffled and moved to validation until that class has
    `validation_fraction` of its images there, so both sides keep the class ratio.
    """
    by_class_patient: dict[int, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for example in examples:
        by_class_patient[example.label][example.patient].append(example)
    rng = random.Random(seed)
    train: list[Example] = []
    validation: list[Example] = []
    for label in sorted(by_class_patient):
        patients = sorted(by_class_patient[label])
        rng.shuffle(patients)
        target = validation_fraction * sum(len(v) for v in by_class_patient[label].values())
        taken = 0
        for patient in patients:
            group = by_class_patient[label][patient]
            side = validation if taken < target else train
            taken += len(group) if side is validation else 0
            side.extend(group)
    return sorted(train, key=_key), sorted(validation, key=_key)


def id_series(patient: str) -> tuple[str, int] | None:
    """('person', 123) for 'person123'; None for a patient id that is not a numbered series."""
    match = SERIES_PATTERN.match(patient)
    return (match.group(1), int(match.group(2))) if match else None


def shift_blocks(examples: list[Example], block_fraction: float) -> tuple[list[Example], list[Example]]:
    """The patients with the lowest and the highest ids of each id series, each block holding
    about `block_fraction` of that series' images; whole patients only. Bacterial and viral
    cases count as separate series (their id ranges differ), so both blocks hold both types."""
    by_series: dict[str, dict[int, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for example in examples:
        series = id_series(example.patient)
        if series is not None:
            by_series[series[0] + (example.pneumonia_type or "")][series[1]].append(example)
    low_patients: set[str] = set()
    high_patients: set[str] = set()
    for patients in by_series.values():
        ids = sorted(patients)
        target = block_fraction * sum(len(group) for group in patients.values())
        used: set[int] = set()
        for block, ordered in ((low_patients, ids), (high_patients, ids[::-1])):
            taken = 0
            for number in ordered:
                if taken >= target or number in used:  # full, or met the other block
                    break
                used.add(number)
                block.add(patients[number][0].patient)
                taken += len(patients[number])
    high_patients -= low_patients  # a patient in both series' blocks stays in one
    low = [e for e in examples if e.patient in low_patients]
    high = [e for e in examples if e.patient in high_patients]
    return sorted(low, key=_key), sorted(high, key=_key)


@dataclass(frozen=True)
class Splits:
    """Disjoint by patient: what training sees, and the validation sets it never sees."""

    train: list[Example]
    validation: list[Example]  # random patients from the middle of the id ranges
    shift_low: list[Example]  # lowest ids of each series (the test split's side)
    shift_high: list[Example]  # highest ids of each series

    def validation_sets(self) -> dict[str, list[Example]]:
        sets = {"validation": self.validation, "shift_low": self.shift_low, "shift_high": self.shift_high}
        return {name: examples for name, examples in sets.items() if examples}

    def file_lists(self) -> dict[str, list[str]]:
        return {name: [e.path.name for e in examples]
                for name, examples in {"train": self.train, **self.validation_sets()}.items()}


def split_with_shift(examples: list[Example], validation_fraction: float, block_fraction: float,
                     seed: int) -> Splits:
    """Shift blocks first (`block_fraction` of each series at each end; 0 for none), then the
    random patient split of what is left."""
    low, high = shift_blocks(examples, block_fraction) if block_fraction else ([], [])
    held = {e.path for e in low + high}
    rest = [e for e in examples if e.path not in held]
    train, validation = split_by_patient(rest, validation_fraction, seed)
    return Splits(train, validation, low, high)


def from_file_lists(examples: list[Example], lists: dict[str, list[str]]) -> Splits:
    """The splits a run recorded, rebuilt from its file names (no split recomputed)."""
    by_name = {e.path.name: e for e in examples}
    missing = [name for names in lists.values() for name in names if name not in by_name]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the run's splits are not in the data, e.g. {missing[0]}")
    pick = {key: sorted((by_name[n] for n in lists.get(key, [])), key=_key)
            for key in ("train", "validation", "shift_low", "shift_high")}
    return Splits(**pick)


def _key(example: Example) -> str:
    return str(example.path)


def fingerprint(examples: list[Example]) -> str:
    """sha256 over the labelled file list (names, labels, sizes): names the training data."""
    digest = hashlib.sha256()
    for example in sorted(examples, key=lambda e: e.path.name):
        digest.update(f"{example.path.name}\t{example.label}\t{example.path.stat().st_size}\n".encode())
    return digest.hexdigest()
