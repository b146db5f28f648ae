"""The model the project ships: loads, carries complete metadata and every declared output,
reproduces its card on the card's own validation sets, and does on the official 16 val images
at least what its card says; its int8 twin stays within half a point of it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from cxr_common.model_metadata import (
    CAM_OUTPUT,
    EXPORT_OUTPUTS,
    INPUT_NAME,
    LABELS,
    OUTPUT_NAME,
    REQUIRED_KEYS,
    ModelMetadata,
)
from cxr_common.preprocessing import PREPROCESSING_VERSION, load_pixels, to_model_input
from tests.conftest import BUNDLED_INT8_MODEL, REPO_ROOT

CARD_JSON = REPO_ROOT / "models" / "model_card.json"
SETS = ("validation", "shift_low", "shift_high")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD_JSON.read_text())


@pytest.fixture(scope="module")
def session(bundled_model) -> ort.InferenceSession:
    return ort.InferenceSession(str(bundled_model), providers=["CPUExecutionProvider"])


def test_card_describes_this_file(bundled_model, card):
    assert card["model"]["sha256"] == hashlib.sha256(bundled_model.read_bytes()).hexdigest()
    assert bundled_model.stat().st_size < 20 * 1024 * 1024  # a few MB, not the seed's 320 MB
    assert card["model"]["gflops_per_image"] <= 2.0  # the budget for everything the model computes
    markdown = (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    for section in ("## Intended use", "## Population", "## Data", "## Training", "## Threshold",
                    "## Metrics", "## Input check", "## Reference check", "## Known limits",
                    "doi:10.17632/rscbjbr9sj.2", "CC BY 4.0"):
        assert section in markdown, section


def test_metadata_is_complete_and_every_declared_output_is_there(session, card, val_images):
    props = session.get_modelmeta().custom_metadata_map
    assert set(REQUIRED_KEYS) | {"outputs", "image_check", "reference_check"} <= set(props)
    metadata = ModelMetadata.from_props(props)
    assert metadata.labels == LABELS and metadata.input_size == 300
    assert metadata.preprocessing_version == PREPROCESSING_VERSION
    assert metadata.threshold == pytest.approx(card["threshold"]["value"])
    assert {"accuracy", "roc_auc", "sensitivity", "specificity"} <= set(metadata.validation_metrics)
    (image,) = session.get_inputs()
    assert image.name == INPUT_NAME and image.shape[1:] == [300, 300, 1] and isinstance(image.shape[0], str)
    declared = json.loads(props["outputs"])
    assert list(declared) == [o.name for o in session.get_outputs()] == list(EXPORT_OUTPUTS)
    pixels = to_model_input(np.stack([load_pixels(p) for p in val_images[:3]]))
    found = dict(zip(declared, session.run(None, {INPUT_NAME: pixels})))
    for name, shape in declared.items():
        assert found[name].shape == (3, *shape[1:]), name
    # a GAP head: the CAM's spatial mean is the pneumonia logit
    p = found[OUTPUT_NAME][:, 0].astype(np.float64)
    assert np.allclose(found[CAM_OUTPUT].mean(axis=(1, 2)), np.log(p / (1 - p)), atol=1e-3)


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
def validation_sets(card, shared_data):
    """The shipped model's own validation sets, from the file lists its card records."""
    from model_export import dataset
    from model_export.cache import load_or_preprocess
    from model_export.train import Arrays

    found = dataset.discover(shared_data, split="train")
    splits = dataset.from_file_lists(found.examples, card["data"]["splits"])
    assert dataset.fingerprint(splits.train) == card["data"]["training_data_sha256"]
    return {name: Arrays.of(examples, load_or_preprocess(examples, 300))
            for name, examples in splits.validation_sets().items()}


def _metrics(model_path, arrays, threshold):
    from model_export.evaluate import predict_onnx
    from model_export.train import set_metrics

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outputs = predict_onnx(session, arrays.pixels)
    return set_metrics(arrays, outputs.pneumonia, outputs.viral, threshold)


def test_card_metrics_reproduce_on_every_validation_set(bundled_model, validation_sets, card):
    assert set(validation_sets) == set(SETS)
    for name, arrays in validation_sets.items():
        measured = _metrics(bundled_model, arrays, card["threshold"]["value"])
        claimed = card["metrics"]["sets"][name]
        for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
            assert measured[key] == pytest.approx(claimed[key], abs=1e-6), (name, key)
        assert measured["pneumonia_type"]["roc_auc"] == pytest.approx(claimed["pneumonia_type"]["roc_auc"], abs=1e-6)


@pytest.mark.slow  # scores every validation image twice
def test_int8_model_is_within_half_a_point_of_float_on_every_set(bundled_model, validation_sets, card):
    assert card["int8"]["sha256"] == hashlib.sha256(BUNDLED_INT8_MODEL.read_bytes()).hexdigest()
    threshold = card["threshold"]["value"]
    for name, arrays in validation_sets.items():
        ours, theirs = _metrics(BUNDLED_INT8_MODEL, arrays, threshold), _metrics(bundled_model, arrays, threshold)
        assert abs(ours["accuracy"] - theirs["accuracy"]) <= 0.005, name
        assert abs(ours["roc_auc"] - theirs["roc_auc"]) <= 0.005, name


def test_int8_weights_cannot_saturate_on_cpus_without_vnni():
    from model_export.quantize import int8_weights_fit_int16_pairs

    safe, largest = int8_weights_fit_int16_pairs(BUNDLED_INT8_MODEL)
    assert safe, f"an int8 weight of magnitude {largest} feeds a convolution: AVX2 kernels would saturate"
