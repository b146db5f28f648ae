"""k-fold cross-validation, grouped by patient and stratified: `python -m model_export cv`.

Each fold trains in its own folder (out/fold-K) with the training command's machinery, so it
resumes per epoch from its checkpoints; a finished fold leaves fold-K/result.json and is not
trained again. The table (cv.json, cv.md) holds every metric per fold, then mean and standard
deviation, and how long each fold took. Folds are stratified by class (normal, bacterial, viral)
with every patient's images in one fold (scikit-learn's StratifiedGroupKFold).
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from cxr_common.model_metadata import PNEUMONIA_TYPES
from model_export import dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.train import Arrays, TrainConfig, _read_state, fit, predict, set_metrics

log = logging.getLogger(__name__)

TABLE_METRICS = ("accuracy", "sensitivity", "specificity", "roc_auc", "brier", "ece")
TYPE_METRICS = ("accuracy", "roc_auc")


def fold_assignment(examples: list[dataset.Example], folds: int, seed: int) -> np.ndarray:
    """Fold index per example: stratified by normal/bacterial/viral, grouped by patient."""
    strata = [0 if e.label == 0 else 1 + PNEUMONIA_TYPES.index(e.pneumonia_type)
              if e.pneumonia_type else 1 for e in examples]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.empty(len(examples), dtype=int)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(examples)), strata, [e.patient for e in examples])):
        assignment[held] = k
    return assignment


def run_cv(config: TrainConfig, folds: int) -> dict[str, Any]:
    found = dataset.discover(config.data, config.labels_csv, split="train")
    examples = sorted(found.examples, key=lambda e: str(e.path))
    assignment = fold_assignment(examples, folds, config.seed)
    pixels = load_or_preprocess(examples, config.image_size, config.cache_dir)
    config.out.mkdir(parents=True, exist_ok=True)
    results = []
    for k in tqdm(range(folds), desc="folds", unit="fold"):
        fold_dir = config.out / f"fold-{k + 1}"
        result_path = fold_dir / "result.json"
        if result_path.exists():
            results.append(json.loads(result_path.read_text()))
            continue
        held_mask = assignment == k
        train = Arrays.of([e for e, m in zip(examples, held_mask) if not m], pixels[~held_mask])
        held = Arrays.of([e for e, m in zip(examples, held_mask) if m], pixels[held_mask])
        keras.utils.set_random_seed(config.seed + k)  # each fold reproducible on its own, resumed or not
        model = fit(replace(config, out=fold_dir), train, {"validation": held})
        pneumonia, viral = predict(model, held.pixels)
        threshold = metrics.choose_threshold(held.labels, pneumonia)
        result = {
            "fold": k + 1,
            "images": int(held_mask.sum()),
            "patients": len({e.patient for e, m in zip(examples, held_mask) if m}),
            "threshold": threshold,
            "metrics": set_metrics(held, pneumonia, viral, threshold),
            "epochs_run": _read_state(fold_dir).get("epoch"),
            "best_epoch": _read_state(fold_dir).get("best_epoch"),
            "minutes": round(_read_state(fold_dir).get("elapsed_seconds", 0.0) / 60, 1),
            "validation_files": [e.path.name for e, m in zip(examples, held_mask) if m],
        }
        result_path.write_text(json.dumps(result, indent=2))
        results.append(result)
    summary = {"folds": folds, "seed": config.seed, "data": found.summary(), "per_fold": [
        {key: value for key, value in r.items() if key != "validation_files"} for r in results],
        "mean_std": summarise(results)}
    (config.out / "cv.json").write_text(json.dumps(summary, indent=2))
    (config.out / "cv.md").write_text(render_table(summary))
    log.info("\n%s", render_table(summary))
    return summary


def _rows(results: list[dict[str, Any]]) -> list[dict[str, float]]:
    rows = []
    for r in results:
        row = {key: r["metrics"][key] for key in TABLE_METRICS}
        kind = r["metrics"].get("pneumonia_type")
        row |= {f"type_{key}": kind[key] for key in TYPE_METRICS} if kind else {}
        row["threshold"], row["minutes"] = r["threshold"], r["minutes"]
        rows.append(row)
    return rows


def summarise(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    rows = _rows(results)
    keys = rows[0].keys() if rows else []
    return {key: {"mean": statistics.fmean(r[key] for r in rows),
                  "std": statistics.stdev(r[key] for r in rows) if len(rows) > 1 else 0.0}
            for key in keys}


def render_table(summary: dict[str, Any]) -> str:
    rows = _rows([{"metrics": {**r["metrics"]}, "threshold": r["threshold"], "minutes": r["minutes"]}
                  for r in summary["per_fold"]])
    keys = list(rows[0]) if rows else []
    lines = ["| fold | images | patients | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
    for fold, row in zip(summary["per_fold"], rows):
        lines.append(f"| {fold['fold']} | {fold['images']} | {fold['patients']} | "
                     + " | ".join(f"{row[k]:.4f}" if k != "minutes" else f"{row[k]:.1f}" for k in keys) + " |")
    stats = summary["mean_std"]
    lines.append("| mean +- std | | | " + " | ".join(f"{stats[k]['mean']:.4f} +- {stats[k]['std']:.4f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def cv_from_folder(out: Path) -> dict[str, Any] | None:
    path = out / "cv.json"
    return json.loads(path.read_text()) if path.exists() else None
