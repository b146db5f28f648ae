"""Shared fixtures: the real shared X-rays, real DICOM samples, the bundled model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxr_common.model_metadata import INT8_MODEL_FILE, MODEL_FILE

REPO_ROOT = Path(__file__).resolve().parent.parent
# CI and sessions lay shared/ beside the repository; CXR_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("CXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data" / "chest_xray"))
BUNDLED_MODEL = REPO_ROOT / "models" / MODEL_FILE
BUNDLED_INT8_MODEL = REPO_ROOT / "models" / INT8_MODEL_FILE


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "train").is_dir():
        pytest.fail(f"the shared chest X-ray data is missing at {SHARED_DATA} (set CXR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def val_images(shared_data) -> list[Path]:
    """The 16 official val images: full-resolution originals, 8 normal then 8 pneumonia."""
    return sorted((shared_data / "val" / "NORMAL").iterdir()) + sorted((shared_data / "val" / "PNEUMONIA").iterdir())


@pytest.fixture(scope="session")
def normal_jpeg(val_images) -> Path:
    return val_images[0]


@pytest.fixture(scope="session")
def pneumonia_jpeg(val_images) -> Path:
    return val_images[-1]


def dicom_sample(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"DICOM sample {name} not found: install the dev extra (pydicom-data)")
    return Path(path)


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    assert BUNDLED_MODEL.is_file(), f"the bundled model {BUNDLED_MODEL} is missing"
    return BUNDLED_MODEL
