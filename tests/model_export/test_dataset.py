"""Discovery in both layouts, patient ids and the patient-level split, on real file names."""

from __future__ import annotations

import numpy as np
import pytest

from model_export.dataset import (
    class_counts,
    discover,
    fingerprint,
    patient_id,
    split_by_patient,
)
from tests.model_export.conftest import CSV_MISSING_IMAGES, CSV_UNLISTED_IMAGES, PER_CLASS


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("person447_virus_921_1.jpeg", "person447"),
        ("IM-0429-0001-0002.jpeg", "im-0429"),
        ("NORMAL2-IM-1427-0001.jpeg", "normal2-im-1427"),
        ("scan.png", "scan"),
    ],
)
def test_patient_id_from_file_name(name, patient):
    assert patient_id(name) == patient


def test_class_folders(subset_class_folders):
    found = discover(subset_class_folders, split="train")
    assert class_counts(found.examples) == (PER_CLASS, PER_CLASS)
    assert found.skipped_images_without_row == found.skipped_rows_without_image == 0


def test_csv_layout_counts_what_it_skips(subset_csv_layout):
    images, csv_path = subset_csv_layout
    found = discover(images, labels_csv=csv_path)
    assert len(found.examples) == 2 * PER_CLASS - CSV_UNLISTED_IMAGES
    assert found.skipped_rows_without_image == CSV_MISSING_IMAGES
    assert found.skipped_images_without_row == CSV_UNLISTED_IMAGES
    assert "skipped 5 CSV rows without an image, 3 images without a CSV row" in found.summary()


def test_both_layouts_label_alike(subset_class_folders, subset_csv_layout):
    by_folder = {e.path.name: e.label for e in discover(subset_class_folders, split="train").examples}
    images, csv_path = subset_csv_layout
    by_csv = {e.path.name: e.label for e in discover(images, labels_csv=csv_path).examples}
    assert by_csv and all(by_folder[name] == label for name, label in by_csv.items())


def test_full_training_split_keeps_patients_apart(shared_data):
    examples = discover(shared_data, split="train").examples
    train, validation = split_by_patient(examples, 0.2, seed=7)
    assert not {e.patient for e in train} & {e.patient for e in validation}
    assert len(train) + len(validation) == len(examples) == 5216
    assert 0.18 < len(validation) / len(examples) < 0.22
    # stratified: both sides keep the ~26 % normal share
    for side in (train, validation):
        normal, pneumonia = class_counts(side)
        assert 0.23 < normal / (normal + pneumonia) < 0.29
    # seeded: the same seed gives the same split, another seed another
    assert split_by_patient(examples, 0.2, seed=7)[1] == validation
    assert split_by_patient(examples, 0.2, seed=8)[1] != validation
    assert fingerprint(train) != fingerprint(validation)


def test_the_pixel_cache_keeps_each_order_apart(shared_data, tmp_path):
    from model_export.cache import load_or_preprocess
    from model_export.dataset import discover

    examples = discover(shared_data / "val").examples
    forward = load_or_preprocess(examples, 64, tmp_path)
    backward = load_or_preprocess(examples[::-1], 64, tmp_path)  # same images, other order
    assert np.array_equal(backward, forward[::-1])
