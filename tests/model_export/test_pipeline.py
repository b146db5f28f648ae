"""End to end on real images: train a tiny network, export with parity check, evaluate, resume.

Small input (64 px) and a ~1k-weight network keep this to seconds; CI never trains for real.
"""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import onnxruntime as ort
import pytest

from cxr_common.model_metadata import INPUT_NAME, OUTPUT_NAME, REQUIRED_KEYS
from model_export.__main__ import main

SIZE = 64
METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "brier", "ece")


def _train(data, out, *extra):
    args = ["train", "--data", str(data), "--out", str(out), "--arch", "tiny", "--image-size",
            str(SIZE), "--epochs", "2", "--val-fraction", "0.25", "--cache-dir", str(out.parent / "cache")]
    assert main(args + list(extra)) == 0


@pytest.fixture(scope="module")
def trained_run(subset_class_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    _train(subset_class_folders, out)
    return out


def test_training_writes_a_complete_run(trained_run):
    for name in ("model.onnx", "best.keras", "history.csv", "history.png", "run.json"):
        assert (trained_run / name).is_file(), name
    with open(trained_run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_auc"} <= set(rows[0])
    run = json.loads((trained_run / "run.json").read_text())
    assert run["parity_max_abs_diff"] < 1e-4
    assert run["official_val_metrics"]["n"] == 16
    assert 0 < run["threshold"] < 1


def test_split_has_no_shared_patient(trained_run):
    run = json.loads((trained_run / "run.json").read_text())["data"]
    assert run["train_images"] + run["validation_images"] == 48
    # the split itself is checked on the full data in test_dataset; here: both sides non-empty
    assert run["train_patients"] > 0 and run["validation_patients"] > 0


def test_exported_model_contract(trained_run):
    session = ort.InferenceSession(str(trained_run / "model.onnx"), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert image.name == INPUT_NAME and image.type == "tensor(float)"
    assert image.shape[1:] == [SIZE, SIZE, 1] and isinstance(image.shape[0], str)  # dynamic batch
    assert session.get_outputs()[0].name == OUTPUT_NAME
    props = session.get_modelmeta().custom_metadata_map
    assert set(REQUIRED_KEYS) <= set(props)
    for batch in (1, 5):
        out = session.run(None, {INPUT_NAME: np.random.rand(batch, SIZE, SIZE, 1).astype(np.float32)})[0]
        assert out.shape == (batch, 1) and ((0 <= out) & (out <= 1)).all()


def test_evaluate_prints_every_metric(trained_run, subset_class_folders, tmp_path, caplog):
    caplog.set_level("INFO")
    assert main(["evaluate", "--model", str(trained_run / "model.onnx"), "--data",
                 str(subset_class_folders), "--split", "val", "--out", str(tmp_path)]) == 0
    table = caplog.text
    for name in METRIC_NAMES + ("confusion matrix",):
        assert name in table, name
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["n"] == 16 and all(np.isfinite(result[m]) for m in METRIC_NAMES)
    assert sum(map(sum, result["confusion_matrix"])) == 16
    assert (tmp_path / "roc.png").stat().st_size > 5000
    assert (tmp_path / "samples.png").stat().st_size > 5000


def test_csv_layout_trains_too(subset_csv_layout, tmp_path):
    images, csv_path = subset_csv_layout
    _train(images, tmp_path / "csv_run", "--labels", str(csv_path), "--epochs", "1")
    run = json.loads((tmp_path / "csv_run" / "run.json").read_text())
    assert "skipped 5 CSV rows without an image, 3 images without a CSV row" in run["data"]["discovery"]
    assert run["official_val_metrics"] is None  # no val/ folder in this layout


def test_resume_continues_from_the_last_checkpoint(subset_class_folders, tmp_path, caplog):
    out = tmp_path / "resumed"
    _train(subset_class_folders, out, "--epochs", "1")
    # Make the run look as if it had been killed after epoch 1 (the state every epoch writes)
    state_path = out / "checkpoints" / "state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps(state | {"finished": False}))
    caplog.set_level("INFO")
    _train(subset_class_folders, out, "--epochs", "3")
    assert "resuming from epoch 1" in caplog.text
    with open(out / "history.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2"]


def test_publish_ships_float_and_int8_models_with_a_card(trained_run, tmp_path):
    from model_export.card import build_card
    from service.classifier import Classifier

    card = build_card(trained_run, tmp_path, speed_seconds=0.2)
    int8 = card["int8"]
    assert (tmp_path / "MODEL_CARD.md").is_file() and (tmp_path / "model_card.json").is_file()
    assert int8["validation_int8"]["n"] == int8["validation_float"]["n"] > 0
    assert abs(int8["accuracy_difference_points"]) <= 100
    assert len(int8["speedup_per_pair"]) == 5 and all(r > 0 for r in int8["speedup_per_pair"])
    assert int8["speedup"] == pytest.approx(statistics.median(int8["speedup_per_pair"]))
    assert "int8" in (tmp_path / "MODEL_CARD.md").read_text()
    # the service loads the int8 model as it does the float one, with the same threshold
    float_model, int8_model = Classifier(tmp_path / "cxr-pneumonia.onnx"), Classifier(tmp_path / int8["file"])
    assert int8_model.threshold == float_model.threshold
    pixels = np.zeros((2, SIZE, SIZE), dtype=np.uint8)
    assert len(int8_model.predict(pixels)) == 2
