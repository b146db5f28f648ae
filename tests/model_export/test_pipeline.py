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

from cxr_common.model_metadata import EXPORT_OUTPUTS, INPUT_NAME, REQUIRED_KEYS
from model_export.__main__ import main

SIZE = 64
SETS = ("validation", "shift_low", "shift_high")
METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "brier", "ece")

pytestmark = pytest.mark.slow  # trains small models


def _defined(found: dict, metric: str) -> bool:
    """Finite, except precision where nothing was called pneumonia (undefined, as it should be:
    a 2-epoch tiny network on 48 images may call every image normal)."""
    (_, false_positives), (_, true_positives) = found["confusion_matrix"]
    if metric == "precision" and true_positives + false_positives == 0:
        return bool(np.isnan(found[metric]))
    return bool(np.isfinite(found[metric]))


def _train(data, out, *extra):
    args = ["train", "--data", str(data), "--out", str(out), "--arch", "tiny", "--image-size",
            str(SIZE), "--epochs", "2", "--val-fraction", "0.25", "--shift-block", "0.15",
            "--cache-dir", str(out.parent / "cache")]
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
    assert {"loss", "pneumonia_auc", "viral_auc", "validation_auc", "shift_low_auc", "shift_high_auc",
            "validation_type_auc", "val_worst_auc"} <= set(rows[0])
    assert float(rows[0]["val_worst_auc"]) == min(float(rows[0][f"{s}_auc"]) for s in SETS)
    run = json.loads((trained_run / "run.json").read_text())
    assert set(run["parity_max_abs_diff"]) == set(EXPORT_OUTPUTS)
    assert all(v < 1e-4 for v in run["parity_max_abs_diff"].values())
    assert run["official_val_metrics"]["n"] == 16
    assert 0 < run["threshold"] < 1
    assert set(run["onnx_metrics"]) == set(SETS)
    for found in run["onnx_metrics"].values():  # every set: every metric, and the type's
        assert all(_defined(found, m) for m in METRIC_NAMES)
        assert {"accuracy", "roc_auc", "confusion_matrix"} <= set(found["pneumonia_type"])


def _sets(run) -> dict[str, list[str]]:
    return run["splits"]


def test_splits_share_no_patient_and_hold_the_id_blocks(trained_run):
    from model_export.dataset import id_series, patient_id, type_from_file_name

    run = json.loads((trained_run / "run.json").read_text())
    splits = _sets(run)
    assert set(splits) == {"train", *SETS}
    patients = {name: {patient_id(f) for f in files} for name, files in splits.items()}
    names = list(patients)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not patients[a] & patients[b], (a, b)
    assert sum(map(len, splits.values())) == 48
    # per series (bacterial and viral apart), the low block's ids lie below everything else, the high above
    def ids(name):
        found = {}
        for f in splits[name]:
            prefix, number = id_series(patient_id(f))
            found.setdefault(prefix + (type_from_file_name(f) or ""), set()).add(number)
        return found
    low, high = ids("shift_low"), ids("shift_high")
    rest = {}
    for name in ("train", "validation"):
        for key, numbers in ids(name).items():
            rest.setdefault(key, set()).update(numbers)
    for key in rest:
        if key in low:
            assert max(low[key]) < min(rest[key]), key
        if key in high:
            assert min(high[key]) > max(rest[key]), key
    assert low and high


def test_exported_model_contract(trained_run, val_images):
    from cxr_common.preprocessing import load_pixels, to_model_input

    session = ort.InferenceSession(str(trained_run / "model.onnx"), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert image.name == INPUT_NAME and image.type == "tensor(float)"
    assert image.shape[1:] == [SIZE, SIZE, 1] and isinstance(image.shape[0], str)  # dynamic batch
    assert [o.name for o in session.get_outputs()] == list(EXPORT_OUTPUTS)
    props = session.get_modelmeta().custom_metadata_map
    assert set(REQUIRED_KEYS) <= set(props)
    declared = json.loads(props["outputs"])
    assert list(declared) == list(EXPORT_OUTPUTS)
    pixels = to_model_input(np.stack([load_pixels(p, SIZE) for p in val_images[:5]]))
    probability, viral, cam, features = session.run(None, {INPUT_NAME: pixels})
    assert probability.shape == viral.shape == (5, 1) and ((0 <= probability) & (probability <= 1)).all()
    assert cam.ndim == 3 and cam.shape[0] == 5 and features.shape[0] == 5
    assert [len(declared[name]) for name in EXPORT_OUTPUTS] == [2, 2, 3, 2]
    # a GAP head: the CAM's spatial mean is the pneumonia logit
    logit = np.log(probability[:, 0] / (1 - probability[:, 0]))
    assert np.allclose(cam.mean(axis=(1, 2)), logit, atol=1e-4)


def test_evaluate_prints_every_metric(trained_run, subset_class_folders, tmp_path, caplog):
    caplog.set_level("INFO")
    assert main(["evaluate", "--model", str(trained_run / "model.onnx"), "--data",
                 str(subset_class_folders), "--split", "val", "--out", str(tmp_path)]) == 0
    table = caplog.text
    for name in METRIC_NAMES + ("confusion matrix", "pneumonia type", "bacterial_recall", "viral_recall"):
        assert name in table, name
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["n"] == 16 and all(_defined(result, m) for m in METRIC_NAMES)
    assert sum(map(sum, result["confusion_matrix"])) == 16
    assert (tmp_path / "roc.png").stat().st_size > 5000
    assert (tmp_path / "samples.png").stat().st_size > 5000


def test_csv_layout_trains_too(subset_csv_layout, tmp_path):
    images, csv_path = subset_csv_layout
    _train(images, tmp_path / "csv_run", "--labels", str(csv_path), "--epochs", "1")
    run = json.loads((tmp_path / "csv_run" / "run.json").read_text())
    assert "skipped 5 CSV rows without an image, 3 images without a CSV row" in run["data"]["discovery"]
    # the type comes from Label_1_Virus_category in this layout
    train_types = run["data"]["sets"]["train"]["type_counts"]
    assert train_types["bacterial"] > 0 and train_types["viral"] > 0
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
    from model_export.quantize import int8_weights_fit_int16_pairs
    from service.inference.classifier import Classifier

    card = build_card(trained_run, tmp_path, speed_seconds=0.2)
    int8 = card["int8"]
    assert (tmp_path / "MODEL_CARD.md").is_file() and (tmp_path / "model_card.json").is_file()
    assert set(int8["per_set"]) == set(SETS)
    for found in int8["per_set"].values():
        assert found["int8"]["n"] == found["float"]["n"] > 0
        assert found["max_abs_difference"] < 0.05  # a tiny network sits near its threshold: compare p
    assert int8_weights_fit_int16_pairs(tmp_path / int8["file"]) == (True, int8["largest_abs_int8_weight"])
    assert len(int8["speedup_per_pair"]) == 5 and all(r > 0 for r in int8["speedup_per_pair"])
    assert int8["speedup"] == pytest.approx(statistics.median(int8["speedup_per_pair"]))
    markdown = (tmp_path / "MODEL_CARD.md").read_text()
    for section in ("int8", "## Input check", "## Reference check", "shift: lowest ids", "Pneumonia type"):
        assert section in markdown, section
    ood = card["input_check"]["out_of_distribution"]
    assert sum(s["n"] for s in ood.values()) >= 40
    # the service loads both, each passing its own reference check, with the same threshold
    float_model, int8_model = Classifier(tmp_path / "cxr-pneumonia.onnx"), Classifier(tmp_path / int8["file"])
    assert float_model.reference.passed and int8_model.reference.passed
    assert int8_model.threshold == float_model.threshold
    assert float_model.image_check is not None and int8_model.image_check is not None
    pixels = np.zeros((2, SIZE, SIZE), dtype=np.uint8)
    assert len(int8_model.predict(pixels)) == 2


def test_cross_validation_interrupted_and_resumed_gives_the_same_table(subset_class_folders, tmp_path):
    def cv(out):
        assert main(["cv", "--data", str(subset_class_folders), "--out", str(out), "--folds", "2", "--arch", "tiny",
                     "--image-size", str(SIZE), "--epochs", "2", "--cache-dir", str(tmp_path / "cache")]) == 0
        return json.loads((out / "cv.json").read_text())

    whole = cv(tmp_path / "whole")
    assert len(whole["per_fold"]) == 2 and {"mean", "std"} <= set(whole["mean_std"]["roc_auc"])
    assert all(f["minutes"] >= 0 and f["epochs_run"] == 2 for f in whole["per_fold"])
    # interrupted after the first fold: the second fold's folder is gone, the first is kept
    interrupted = tmp_path / "interrupted"
    cv(interrupted)
    import shutil
    shutil.rmtree(interrupted / "fold-2")
    (interrupted / "cv.json").unlink()
    resumed = cv(interrupted)
    def strip(table):
        return [{k: v for k, v in fold.items() if k != "minutes"} for fold in table["per_fold"]]

    assert strip(resumed) == strip(whole)
    validation = [set(json.loads((tmp_path / "whole" / f"fold-{k}" / "result.json").read_text())["validation_files"])
                  for k in (1, 2)]
    assert not validation[0] & validation[1] and len(validation[0] | validation[1]) == 48
    assert "| mean +- std |" in (tmp_path / "whole" / "cv.md").read_text()


def test_ensemble_of_runs_is_one_model_with_the_same_outputs(trained_run, subset_class_folders, tmp_path):
    other = tmp_path / "other"
    _train(subset_class_folders, other, "--epochs", "1", "--seed", "42", "--label-smoothing", "0.1")
    out = tmp_path / "ensemble"
    assert main(["ensemble", "--runs", str(trained_run), str(other), "--out", str(out)]) == 0
    run, single = (json.loads((path / "run.json").read_text()) for path in (out, trained_run))
    assert run["model"]["gflops_per_image"] == pytest.approx(2 * single["model"]["gflops_per_image"], rel=1e-6)
    assert all(v < 1e-4 for v in run["parity_max_abs_diff"].values()) and len(run["members"]) == 2
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(EXPORT_OUTPUTS)
    probability, _, cam, features = session.run(None, {INPUT_NAME: np.random.rand(3, SIZE, SIZE, 1).astype(np.float32)})
    p = probability[:, 0].astype(np.float64)
    assert np.allclose(cam.mean(axis=(1, 2)), np.log(p / (1 - p)), atol=1e-4)  # still a GAP head
    assert features.shape[1] == 2 * 16  # both members' features
    with pytest.raises(ValueError, match="same splits"):
        third = tmp_path / "third"
        _train(subset_class_folders, third, "--epochs", "1", "--seed", "7")
        main(["ensemble", "--runs", str(trained_run), str(third), "--out", str(tmp_path / "bad")])
