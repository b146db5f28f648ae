"""Publish a training run as the shipped model: copy the ONNX file and write its model card.

One job per module: this one gathers the card (build_card); model_export.refusals measures the
input check, model_export.int8_twin makes and measures the int8 twin, model_export.card_markdown
renders the Markdown.

Every number in the card is measured here from the exported ONNX file (onnxruntime, as the
service runs it) or read from the run's own record (run.json); nothing is typed in by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from cxr_common.model_metadata import INT8_MODEL_FILE, MODEL_FILE, RUN_MODEL_FILE, ModelMetadata
from model_export import checks, dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.card_markdown import render_markdown
from model_export.cv import cv_from_folder
from model_export.evaluate import predict_onnx
from model_export.int8_twin import quantized_twin
from model_export.refusals import ood_refusals, refusal_rate
from model_export.run_record import RunRecord, read_run
from model_export.train import Arrays

log = logging.getLogger(__name__)

LOW_RESOLUTION_MAX_SIDE = 256  # the 224 px copies in the shared data; originals are larger
DATA_CREDIT = (
    "Kermany, Daniel; Zhang, Kang; Goldbaum, Michael (2018), \"Labeled Optical Coherence "
    "Tomography (OCT) and Chest X-Ray Images for Classification\", Mendeley Data, v2, "
    "doi:10.17632/rscbjbr9sj.2, CC BY 4.0. Paper: Kermany et al., Cell 172(5):1122-1131, 2018."
)
INTENDED_USE = (
    "Assistance to clinicians: a second reader that flags frontal chest X-rays that look like "
    "pneumonia. Never a diagnosis on its own; every result needs a clinician's review."
)
POPULATION = (
    "Pediatric patients aged 1 to 5 years from one hospital (Guangzhou Women and Children's "
    "Medical Center), anterior-posterior/posterior-anterior chest radiographs, labelled normal or "
    "pneumonia (bacterial or viral) by the dataset's graders."
)
LIMITS = [
    "Trained on children aged 1-5 from a single hospital: adults, other age groups, other "
    "hospitals, devices and acquisition protocols are outside what it has seen.",
    "Normal vs pneumonia, and for pneumonia bacterial vs viral (the dataset graders' labels, from "
    "the file names); it knows nothing of COVID-19, tuberculosis, effusions, masses, devices or other "
    "findings, and an abnormal but non-pneumonia X-ray may be called either way. The type is the "
    "weaker answer: see its metrics, and on the highest-id block it is barely better than chance.",
    "Frontal chest radiographs only: DICOMs of other modalities, body parts or views are refused by "
    "their attributes, and every input by the image check; a lateral chest JPEG looks like a chest "
    "X-ray to that check and is not reliably refused.",
    "The official test split of this dataset is known to differ from the training images (more "
    "normal cases, other exposures); models that look near-perfect on a split of the training "
    "data lose specificity there. Validation numbers below are an upper bound, not a promise.",
    "About 70% of the training images exist only as 224x224 copies; gapnet looks at 150x150 and the "
    "pretrained member at 224x224 internally, so that sharp originals and soft copies look alike to them.",
    "Uniform frames and letterbox bars are removed before the model sees the image (preprocessing "
    "version 2); burned-in text is not removed, only trained against (see the borders table).",
    "The official 16 val images (the newest NORMAL2 ids) score higher as normals than the validation "
    "sets do; the shift blocks held out here are stand-ins for other periods, not a copy of them.",
    "Probabilities come from a class-weighted model (both classes weighted equally), so they "
    "are not calibrated to any particular prevalence; see the Brier score and ECE.",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_groups(examples: list[dataset.Example]) -> np.ndarray:
    """True where the image file is a low-resolution (<= 256 px) copy."""
    low = []
    for example in examples:
        with Image.open(example.path) as image:
            low.append(max(image.size) <= LOW_RESOLUTION_MAX_SIDE)
    return np.array(low)


def _load_run(run_dir: Path) -> tuple[RunRecord, dataset.Splits, Path | None]:
    """The run's record and its splits, rebuilt from the file lists it recorded."""
    run = read_run(run_dir)
    config = run["config"]
    labels_csv = Path(config["labels_csv"]) if config.get("labels_csv") else None
    found = dataset.discover(Path(config["data"]), labels_csv, split="train")
    return run, dataset.from_file_lists(found.examples, run["splits"]), labels_csv


def _official(config: dict[str, Any], labels_csv: Path | None, size: int) -> Arrays | None:
    folder = Path(config["data"]) / "val"
    if labels_csv is not None or not folder.is_dir():
        return None
    examples = dataset.discover(folder).examples
    return Arrays.of(examples, load_or_preprocess(examples, size))



def build_card(run_dir: Path, out_dir: Path, model_file: str = MODEL_FILE,
               int8_file: str | None = INT8_MODEL_FILE, speed_seconds: float = 3.0,
               cv_dir: Path | None = None) -> dict[str, Any]:
    run, splits, labels_csv = _load_run(run_dir)
    config = run["config"]
    session = ort.InferenceSession(str(run_dir / RUN_MODEL_FILE), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    if dataset.fingerprint(splits.train) != metadata.training_data_sha256:
        raise RuntimeError("the data on disk is not the data this model was trained on")
    size = metadata.input_size
    held = {name: Arrays.of(examples, load_or_preprocess(examples, size))
            for name, examples in splits.validation_sets().items()}
    train_pixels = load_or_preprocess(splits.train, size)
    official = _official(config, labels_csv, size)

    # metrics: the ONNX numbers train recorded, plus the validation split by image source
    validation = held["validation"]
    outputs = predict_onnx(session, validation.pixels)
    low = _source_groups(splits.validation)
    by_source = {
        name: metrics.classification_metrics(validation.labels[mask], outputs.pneumonia[mask], metadata.threshold)
        for name, mask in (("low_resolution_copies", low), ("full_resolution_originals", ~low))
    }

    # the checks the model carries
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / RUN_MODEL_FILE, out_dir / model_file)
    image_check, train_distances = checks.fit_image_check(session, train_pixels)
    chosen = checks.reference_indices(validation.labels, outputs.pneumonia, config["seed"])
    reference = checks.make_reference_check(session, validation.pixels[chosen], checks.FLOAT_TOLERANCE)
    checks.update_metadata(out_dir / model_file, checks.checks_metadata(image_check, reference))
    float_session = ort.InferenceSession(str(out_dir / model_file), providers=["CPUExecutionProvider"])
    refusals = {name: refusal_rate(image_check, float_session, arrays.pixels) for name, arrays in held.items()}
    if official is not None:
        refusals["official val/ (16)"] = refusal_rate(image_check, float_session, official.pixels)
    ood = ood_refusals(float_session, image_check, splits.validation[0].path)

    int8 = None
    if int8_file:
        int8 = quantized_twin(out_dir / model_file, out_dir / int8_file, splits.train, train_pixels, held,
                          metadata.threshold, config["seed"], size, speed_seconds)
    card = {
        "model": {
            "name": metadata.model_name, "version": metadata.model_version, "file": model_file,
            "sha256": _sha256(out_dir / model_file), "architecture": run["model"]["architecture"],
            "parameters": run["model"]["parameters"], "gflops_per_image": run["model"]["gflops_per_image"],
            "input": f"'image' float32 (N, {size}, {size}, 1) in 0..1",
            "outputs": json.loads(metadata.extra.get("outputs", "{}")),
            "preprocessing_version": metadata.preprocessing_version, "created_at": metadata.created_at,
        },
        "data": {"credit": DATA_CREDIT, **run["data"], "splits": run["splits"],
                 "split": {"validation_fraction": config["validation_fraction"],
                           "shift_block": config.get("shift_block"), "seed": config["seed"]}},
        "training": {
            "optimizer": f"Adam, learning rate {config['learning_rate']}",
            "loss": f"binary cross-entropy on each head (label smoothing {config.get('label_smoothing', 0)})",
            "class_weights": config["class_weights"], "batch_size": config["batch_size"],
            "augmentation": config["augment"],
            "early_stopping": f"the worst validation ROC AUC across the validation sets, patience {config['patience']}",
            "epochs_run": run["epochs_run"], "best_epoch": run["best_epoch"], "max_epochs": config["epochs"],
            **run["timing"],
            "members": [{"run": m["run"], "label_smoothing": m["config"].get("label_smoothing", 0),
                         "best_epoch": m["best_epoch"], "augment": m["config"]["augment"]}
                        for m in run.get("members", [])],
            "ensemble_rule": run.get("ensemble_rule"),
        },
        "threshold": {"value": metadata.threshold, "rule": run["threshold_rule"],
                      "per_set": run.get("per_set_thresholds", {}), "type": run.get("type_recalibration")},
        "metrics": {
            "sets": run["onnx_metrics"],
            "validation_by_source": by_source,
            "official_val_16": run["official_val_metrics"],
            "official_test_624": "held out; scored by the maintainers",
        },
        "cross_validation": cv_from_folder(cv_dir) if cv_dir else None,
        "ablation": json.loads((run_dir / "ablation.json").read_text()) if (run_dir / "ablation.json").exists() else None,
        "borders": json.loads((run_dir / "borders.json").read_text()) if (run_dir / "borders.json").exists() else None,
        "input_check": {
            "method": "Mahalanobis distance of the pooled features from the training images' mean",
            "threshold": image_check.threshold, "rule": image_check.rule,
            "train_distance_quantiles": {str(q): float(np.quantile(train_distances, q)) for q in (0.5, 0.99, 0.999)},
            "refusal_rates": refusals, "out_of_distribution": ood,
        },
        "reference_check": {"images": len(reference.images), "tolerance": reference.tolerance},
        "int8": int8,
        "intended_use": INTENDED_USE,
        "population": POPULATION,
        "limits": LIMITS,
    }
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=2))
    (out_dir / "MODEL_CARD.md").write_text(render_markdown(card))
    log.info("published %s with MODEL_CARD.md and model_card.json in %s", model_file, out_dir)
    return card
