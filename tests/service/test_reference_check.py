"""Models check themselves at start-up: the shipped ones pass on this machine, a damaged copy
is refused with one line that names it, the largest difference and the tolerance, and a model
without reference data still loads, with a warning."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from cxr_common.reference_check import METADATA_KEY
from service.inference.classifier import Classifier, ModelLoadError
from tests.conftest import BUNDLED_INT8_MODEL, REPO_ROOT
from tests.servers import free_port


def _first_conv_negated(source, target) -> None:
    model = onnx.load(str(source))
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    weights = next(i for i in model.graph.initializer if i.name == first.input[1])
    weights.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(weights), weights.name))
    onnx.save(model, str(target))  # metadata untouched


@pytest.mark.parametrize("model", ["float", "int8"])
def test_shipped_models_pass_their_reference_check_here(bundled_model, model):
    classifier = Classifier(bundled_model if model == "float" else BUNDLED_INT8_MODEL)
    assert classifier.reference.images >= 8 and classifier.reference.passed
    assert classifier.reference.largest_difference <= classifier.reference.tolerance


def test_a_model_with_its_first_convolution_negated_is_refused(bundled_model, tmp_path):
    damaged = tmp_path / "damaged.onnx"
    _first_conv_negated(bundled_model, damaged)
    with pytest.raises(ModelLoadError, match="fails its reference check"):
        Classifier(damaged)
    result = subprocess.run([sys.executable, "-m", "service", "--model", str(damaged), "--port", str(free_port())],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "reference check" in line]
    assert len(lines) == 1
    assert "damaged.onnx" in lines[0] and "largest difference" in lines[0] and "tolerance" in lines[0]


def test_a_model_without_reference_data_loads_with_a_warning(bundled_model, tmp_path, caplog):
    model = onnx.load(str(bundled_model))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with caplog.at_level(logging.WARNING):
        classifier = Classifier(bare)
    assert classifier.reference.passed is None and "no reference inputs" in caplog.text
    assert np.isfinite(classifier.predict(np.zeros((1, 300, 300), np.uint8))[0].probability)


def test_model_route_reports_the_checks(client):
    body = client.get("/model").json()
    assert body["reference_check"]["passed"] is True and body["reference_check"]["images"] >= 8
    assert body["input_check"]["mode"] == "refuse"
    assert body["input_check"]["image_check"]["threshold"] > 0
    assert "features" in body["outputs"] and "viral_probability" in body["outputs"]


def test_a_model_with_only_the_old_single_output_still_serves(bundled_model, tmp_path, val_images):
    from fastapi.testclient import TestClient

    from service.config import Settings
    from service.http.app import create_app

    model = onnx.load(str(bundled_model))
    keep = model.graph.output[0]
    del model.graph.output[:]
    model.graph.output.extend([keep])  # pneumonia_probability alone, as v1 models have
    kept = [p for p in model.metadata_props if p.key not in (METADATA_KEY, "image_check", "outputs")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = tmp_path / "single-output.onnx"
    onnx.save(model, str(old))
    with TestClient(create_app(Settings(model_path=old)), base_url="http://localhost") as client:
        body = client.post("/predict", content=val_images[-1].read_bytes(), headers={"Content-Type": "image/jpeg"}).json()
        assert body["label"] == "pneumonia" and body["pneumonia_type"] is None and body["warning"] is None
        info = client.get("/model").json()
        assert info["outputs"] == ["pneumonia_probability"] and info["input_check"]["image_check"] is None
