"""Several finished runs on the same splits as one model: `python -m model_export ensemble`.

The members' logit maps are averaged per head (architectures.ensemble), so the ensemble is
one ONNX file with the same outputs as a single model; it gets its own threshold, metrics and
run record from the same code as a training run (train.finish), and `publish` ships it as any run.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path

import keras

from model_export import architectures
from model_export.augment import AugmentConfig
from model_export.run_record import RunRecord, read_run, write_run
from model_export.train import TrainConfig, finish, load_sets

log = logging.getLogger(__name__)


def _config(run: RunRecord) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in run["config"].items() if k in known}
    for key in ("data", "out", "cache_dir"):
        values[key] = Path(values[key])
    if values.get("labels_csv"):
        values["labels_csv"] = Path(values["labels_csv"])
    values["augment"] = AugmentConfig(**values["augment"])
    return TrainConfig(**values)


def build_ensemble(runs: list[Path], out: Path, model_version: str | None = None) -> RunRecord:
    records = [read_run(run) for run in runs]
    if any(r["splits"] != records[0]["splits"] for r in records[1:]):
        raise ValueError("the runs were not trained on the same splits; an ensemble needs one validation")
    first = _config(records[0])
    config = replace(first, out=out, architecture=f"ensemble of {len(runs)} x {first.architecture}",
                     model_version=model_version or first.model_version)
    out.mkdir(parents=True, exist_ok=True)
    members = [keras.models.load_model(run / "best.keras") for run in runs]
    model = architectures.ensemble(members)
    found, splits, held = load_sets(config)
    if splits.file_lists() != records[0]["splits"]:
        raise ValueError("the data on disk does not split as the runs recorded")
    timing = {
        "preprocess_seconds": 0.0, "pixels_from_cache": True,
        "train_seconds": round(sum(r["timing"]["train_seconds"] for r in records), 1),
        "members": {str(run): r["timing"]["train_seconds"] for run, r in zip(runs, records)},
    }
    summary = finish(config, model, found, splits, held, timing,
                     sum(r["epochs_run"] for r in records), None)
    summary["members"] = [{"run": str(run), "config": r["config"], "best_epoch": r["best_epoch"],
                           "onnx_metrics": r["onnx_metrics"]} for run, r in zip(runs, records)]
    write_run(out, summary)
    return summary
