"""run.json: what a training run (or an ensemble, or a combined model) records about itself,
written by model_export.train.finish and read by card, ablation, ensemble and combine. The
record is the contract between them, so it is typed here once; the nested parts (metrics per
set, timing) are open dictionaries, read by key with .get where a run may lack them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

RUN_FILE = "run.json"


class RunRecord(TypedDict):
    config: dict[str, Any]  # TrainConfig as JSON (paths as strings, augment as a dict)
    data: dict[str, Any]  # discovery, shift block, per-set counts, training data hash
    splits: dict[str, list[str]]  # set name -> file list: rebuilds the run's exact splits
    model: dict[str, Any]  # architecture, parameters, GFLOPs per image
    threshold: float
    threshold_rule: str
    per_set_thresholds: dict[str, float]
    type_recalibration: dict[str, Any] | None
    validation_metrics: dict[str, Any]
    onnx_metrics: dict[str, dict[str, Any]]  # set name -> metrics of the exported model
    official_val_metrics: dict[str, Any] | None
    parity_max_abs_diff: dict[str, float]  # per output: ONNX against Keras on validation images
    timing: dict[str, Any]
    epochs_run: int
    best_epoch: int | None
    created_at: str
    members: NotRequired[list[dict[str, Any]]]  # ensembles and combined models: each member's run


def read_run(run_dir: Path) -> RunRecord:
    record: RunRecord = json.loads((run_dir / RUN_FILE).read_text())
    return record


def write_run(run_dir: Path, record: RunRecord) -> None:
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2))
