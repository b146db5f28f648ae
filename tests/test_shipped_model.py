"""The model the project ships: loads, carries complete metadata, and does on the official
16 val images at least what its model card says."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from cxr_common.model_metadata import INPUT_NAME, LABELS, OUTPUT_NAME, REQUIRED_KEYS, ModelMetadata
from cxr_common.preprocessing import PREPROCESSING_VERSION, load_pixels, to_model_input
from tests.conftest import REPO_ROOT

CARD_JSON = REPO_ROOT / "models" / "model_card.json"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD_JSON.read_text())


@pytest.fixture(scope="module")
def session(bundled_model) -> ort.InferenceSession:
    return ort.InferenceSession(str(bundled_model), providers=["CPUExecutionProvider"])


def test_card_describes_this_file(bundled_model, card):
    assert card["model"]["sha256"] == hashlib.sha256(bundled_model.read_bytes()).hexdigest()
    assert bundled_model.stat().st_size < 20 * 1024 * 1024  # a few MB, not the seed's 320 MB
    markdown = (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    for section in ("## Intended use", "## Population", "## Data", "## Training", "## Threshold",
                    "## Metrics", "## Known limits", "doi:10.17632/rscbjbr9sj.2", "CC BY 4.0"):
        assert section in markdown, section


def test_metadata_is_complete(session, card):
    props = session.get_modelmeta().custom_metadata_map
    assert set(REQUIRED_KEYS) <= set(props)
    metadata = ModelMetadata.from_props(props)
    assert metadata.labels == LABELS and metadata.input_size == 300
    assert metadata.preprocessing_version == PREPROCESSING_VERSION
    assert metadata.threshold == pytest.approx(card["threshold"]["value"])
    assert {"accuracy", "roc_auc", "sensitivity", "specificity"} <= set(metadata.validation_metrics)
    (image,) = session.get_inputs()
    assert image.name == INPUT_NAME and image.shape[1:] == [300, 300, 1] and isinstance(image.shape[0], str)
    assert session.get_outputs()[0].name == OUTPUT_NAME


def test_official_val_images_as_good_as_the_card_says(session, val_images, card):
    expected = card["metrics"]["official_val_16"]
    threshold = card["threshold"]["value"]
    labels = np.array([1 if p.parent.name == "PNEUMONIA" else 0 for p in val_images])
    pixels = np.stack([load_pixels(p) for p in val_images])
    probabilities = session.run([OUTPUT_NAME], {INPUT_NAME: to_model_input(pixels)})[0][:, 0]
    accuracy = float(((probabilities >= threshold) == labels).mean())
    assert accuracy >= expected["accuracy"] - 1e-9
    assert accuracy >= 0.75  # and the card does not claim little


@pytest.fixture(scope="module")
def validation_split(card, shared_data):
    """The shipped model's own patient-level validation split, rebuilt from its seed."""
    from model_export import dataset
    from model_export.cache import load_or_preprocess

    split = card["data"]["split"]
    found = dataset.discover(shared_data, split="train")
    train, val = dataset.split_by_patient(found.examples, split["validation_fraction"], split["seed"])
    assert dataset.fingerprint(train) == card["data"]["training_data_sha256"]
    return load_or_preprocess(val, 300), np.array([e.label for e in val])


def _validation_metrics(model_path, validation_split, threshold):
    from model_export.evaluate import predict_onnx
    from model_export.metrics import classification_metrics

    pixels, labels = validation_split
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return classification_metrics(labels, predict_onnx(session, pixels), threshold)


def test_card_validation_metrics_reproduce(bundled_model, validation_split, card):
    measured = _validation_metrics(bundled_model, validation_split, card["threshold"]["value"])
    claimed = card["metrics"]["validation_patient_split"]
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        assert measured[key] == pytest.approx(claimed[key], abs=1e-6), key


def test_int8_model_is_close_to_float(bundled_model, validation_split, card):
    int8_path = bundled_model.parent / card["int8"]["file"]
    assert card["int8"]["sha256"] == hashlib.sha256(int8_path.read_bytes()).hexdigest()
    threshold = card["threshold"]["value"]
    float_metrics = _validation_metrics(bundled_model, validation_split, threshold)
    int8_metrics = _validation_metrics(int8_path, validation_split, threshold)
    assert abs(int8_metrics["accuracy"] - float_metrics["accuracy"]) <= 0.005
    assert abs(int8_metrics["roc_auc"] - float_metrics["roc_auc"]) <= 0.005
    # and the service loads it
    from service.classifier import Classifier
    from service.config import Device

    classifier = Classifier(int8_path, Device.cpu)
    assert classifier.metadata.model_name.endswith("-int8") and classifier.threshold == pytest.approx(threshold)
