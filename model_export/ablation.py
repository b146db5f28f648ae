"""What was tried for model v2, measured on the validation sets, for the card's ablation table.

Inference-only comparisons on a finished run (the training runs themselves are compared by
their run records): the shipped v1 model on the validation images it never trained on,
test-time augmentation (horizontal flip), and the threshold rules. Writes ablation.json into
the run folder; `publish` puts it in the model card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cxr_common.model_metadata import RUN_MODEL_FILE, ModelMetadata
from model_export import dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.evaluate import predict_onnx
from model_export.run_record import read_run
from model_export.train import Arrays

log = logging.getLogger(__name__)

V1_VALIDATION_FRACTION, V1_SEED = 0.2, 42  # how gapnet 1.1.0 split the same data


def _summary(found: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "accuracy", "sensitivity", "specificity", "roc_auc", "brier")
    return {key: found[key] for key in keys}


def _evaluate(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    return _summary(metrics.classification_metrics(labels, probabilities, threshold))


def run_rows(runs: list[Path]) -> list[dict[str, Any]]:
    """Other training runs on the same splits, each at its own threshold, from their run records."""
    rows = []
    for run in runs:
        record = read_run(run)
        what = f"run {run.name} ({record['config']['architecture']}, label smoothing " \
               f"{record['config'].get('label_smoothing', 0)}, threshold {record['threshold']:.3f})"
        for name, found in record["onnx_metrics"].items():
            rows.append({"what": what, "set": name, **_summary(found),
                         "type_roc_auc": found.get("pneumonia_type", {}).get("roc_auc")})
    return rows


def run_ablation(run_dir: Path, baseline: Path | None = None, compare: Sequence[Path] = ()) -> dict[str, Any]:
    run = read_run(run_dir)
    config = run["config"]
    labels_csv = Path(config["labels_csv"]) if config.get("labels_csv") else None
    found = dataset.discover(Path(config["data"]), labels_csv, split="train")
    splits = dataset.from_file_lists(found.examples, run["splits"])
    session = ort.InferenceSession(str(run_dir / RUN_MODEL_FILE), providers=["CPUExecutionProvider"])
    threshold = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map).threshold
    sets = splits.validation_sets()
    held = {name: Arrays.of(examples, load_or_preprocess(examples, config["image_size"]))
            for name, examples in sets.items()}
    plain = {name: predict_onnx(session, a.pixels).pneumonia for name, a in held.items()}
    flipped = {name: predict_onnx(session, a.pixels[:, :, ::-1].copy()).pneumonia for name, a in held.items()}
    own = metrics.choose_threshold(held["validation"].labels, plain["validation"])
    result: dict[str, Any] = {"threshold_across_sets": threshold, "threshold_random_split_only": own, "rows": []}
    for name, arrays in held.items():
        result["rows"].append({"what": "v2, worst-case-J threshold (kept)", "set": name,
                               **_evaluate(arrays.labels, plain[name], threshold)})
        result["rows"].append({"what": "v2, Youden-1SE on the random split only (v1's rule)", "set": name,
                               **_evaluate(arrays.labels, plain[name], own)})
        result["rows"].append({"what": "v2 + flip test-time augmentation", "set": name,
                               **_evaluate(arrays.labels, (plain[name] + flipped[name]) / 2, threshold)})
    result["rows"] += run_rows([run_dir, *compare])
    if baseline is not None:
        result["rows"] += _baseline_rows(baseline, found.examples, sets, session, threshold, config["image_size"])
    (run_dir / "ablation.json").write_text(json.dumps(result, indent=2))
    for row in result["rows"]:
        log.info("%-55s %-11s n=%4d acc %.4f sens %.4f spec %.4f auc %.4f", row["what"], row["set"], row["n"],
                 row["accuracy"], row["sensitivity"], row["specificity"], row["roc_auc"])
    return result


def _baseline_rows(baseline: Path, examples: list[dataset.Example], sets: dict[str, list[dataset.Example]],
                   session: ort.InferenceSession, threshold: float, size: int) -> list[dict[str, Any]]:
    """v1 and v2 on the part of each v2 validation set that v1 never trained on either."""
    _, v1_validation = dataset.split_by_patient(examples, V1_VALIDATION_FRACTION, V1_SEED)
    unseen = {e.path for e in v1_validation}
    v1 = ort.InferenceSession(str(baseline), providers=["CPUExecutionProvider"])
    v1_threshold = ModelMetadata.from_props(v1.get_modelmeta().custom_metadata_map).threshold
    rows = []
    for name, members in sets.items():
        common = [e for e in members if e.path in unseen]
        if len({e.label for e in common}) < 2:
            continue
        arrays = Arrays.of(common, load_or_preprocess(common, size))
        rows.append({"what": "v1 (gapnet 1.1.0, shipped), its threshold", "set": f"{name} (unseen by v1)",
                     **_evaluate(arrays.labels, predict_onnx(v1, arrays.pixels).pneumonia, v1_threshold)})
        rows.append({"what": "v2, same images", "set": f"{name} (unseen by v1)",
                     **_evaluate(arrays.labels, predict_onnx(session, arrays.pixels).pneumonia, threshold)})
    return rows
