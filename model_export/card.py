"""Publish a training run as the shipped model: copy the ONNX file and write its model card.

Every number in the card is measured here from the exported ONNX file (onnxruntime, as the
service runs it) or read from the run's own record (run.json); nothing is typed in by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from cxr_common.model_metadata import ModelMetadata
from model_export import dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.evaluate import predict_onnx
from model_export.quantize import quantize
from model_export.speed import best_images_per_second, paired_speedup

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 256  # training images the int8 model is calibrated on
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
    "Two classes only: normal vs pneumonia. It does not tell bacterial from viral pneumonia and "
    "knows nothing of COVID-19, tuberculosis, effusions, masses, devices or other findings; an "
    "abnormal but non-pneumonia X-ray may be called either way.",
    "Frontal views only; lateral DICOMs are refused by the service, but a lateral JPEG is not.",
    "The official test split of this dataset is known to differ from the training images (more "
    "normal cases, other exposures); models that look near-perfect on a split of the training "
    "data lose specificity there. Validation numbers below are an upper bound, not a promise.",
    "About 70% of the training images exist only as 224x224 copies; the model looks at 150x150 "
    "internally so that sharp originals and soft copies look alike to it.",
    "Probabilities come from a class-weighted model (both classes weighted equally), so they "
    "are not calibrated to any particular prevalence; see the Brier score and ECE.",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_groups(examples) -> np.ndarray:
    """True where the image file is a low-resolution (<= 256 px) copy."""
    low = []
    for example in examples:
        with Image.open(example.path) as image:
            low.append(max(image.size) <= LOW_RESOLUTION_MAX_SIDE)
    return np.array(low)


def build_card(run_dir: Path, out_dir: Path, model_file: str = "cxr-pneumonia.onnx",
               int8_file: str | None = "cxr-pneumonia-int8.onnx", speed_seconds: float = 3.0) -> dict:
    run = json.loads((run_dir / "run.json").read_text())
    config = run["config"]
    onnx_path = run_dir / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)

    # the run's own validation split, rebuilt from its seed, scored through ONNX
    labels_csv = Path(config["labels_csv"]) if config.get("labels_csv") else None
    found = dataset.discover(Path(config["data"]), labels_csv, split="train")
    train, val = dataset.split_by_patient(found.examples, config["validation_fraction"], config["seed"])
    if dataset.fingerprint(train) != metadata.training_data_sha256:
        raise RuntimeError("the data on disk is not the data this model was trained on")
    pixels = load_or_preprocess(val, metadata.input_size)
    labels = np.array([e.label for e in val])
    probabilities = predict_onnx(session, pixels)
    validation = metrics.classification_metrics(labels, probabilities, metadata.threshold)
    low = _source_groups(val)
    by_source = {
        name: metrics.classification_metrics(labels[mask], probabilities[mask], metadata.threshold)
        for name, mask in (("low_resolution_copies", low), ("full_resolution_originals", ~low))
    }
    official = None
    official_dir = Path(config["data"]) / "val"
    if labels_csv is None and official_dir.is_dir():
        official_examples = dataset.discover(official_dir).examples
        official_pixels = load_or_preprocess(official_examples, metadata.input_size)
        official = metrics.classification_metrics(
            np.array([e.label for e in official_examples]),
            predict_onnx(session, official_pixels), metadata.threshold)

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, out_dir / model_file)
    int8 = None
    if int8_file:
        int8 = _quantized(out_dir / model_file, out_dir / int8_file, train, pixels, labels, validation,
                          config["seed"], metadata.input_size, speed_seconds)
    card = {
        "model": {
            "name": metadata.model_name, "version": metadata.model_version, "file": model_file,
            "sha256": _sha256(out_dir / model_file), "architecture": run["model"]["architecture"],
            "parameters": run["model"]["parameters"], "gflops_per_image": run["model"]["gflops_per_image"],
            "input": f"'image' float32 (N, {metadata.input_size}, {metadata.input_size}, 1) in 0..1",
            "output": "'pneumonia_probability' float32 (N, 1)",
            "preprocessing_version": metadata.preprocessing_version, "created_at": metadata.created_at,
        },
        "data": {"credit": DATA_CREDIT, **run["data"],
                 "split": {"validation_fraction": config["validation_fraction"], "seed": config["seed"]}},
        "training": {
            "optimizer": f"Adam, learning rate {config['learning_rate']}", "loss": "binary cross-entropy",
            "class_weights": config["class_weights"], "batch_size": config["batch_size"],
            "augmentation": config["augment"], "early_stopping": f"validation ROC AUC, patience {config['patience']}",
            "epochs_run": run["epochs_run"], "best_epoch": run["best_epoch"], "max_epochs": config["epochs"],
            **run["timing"],
        },
        "threshold": {"value": metadata.threshold, "rule": metrics.THRESHOLD_RULE},
        "metrics": {
            "validation_patient_split": validation,
            "validation_by_source": by_source,
            "official_val_16": official,
            "official_test_624": "held out; scored by the maintainers",
        },
        "int8": int8,
        "intended_use": INTENDED_USE,
        "population": POPULATION,
        "limits": LIMITS,
    }
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=2))
    (out_dir / "MODEL_CARD.md").write_text(render_markdown(card))
    log.info("published %s with MODEL_CARD.md and model_card.json in %s", model_file, out_dir)
    return card


def _quantized(float_path: Path, int8_path: Path, train, val_pixels, labels, float_metrics: dict,
               seed: int, size: int, speed_seconds: float) -> dict:
    """Quantize on training images; compare with the float model on validation and in speed."""
    chosen = np.random.default_rng(seed).choice(len(train), size=min(CALIBRATION_IMAGES, len(train)), replace=False)
    calibration = load_or_preprocess([train[i] for i in sorted(chosen)], size)
    compared = {"float": float_metrics,
                "int8": quantize(float_path, int8_path, calibration, val_pixels, labels, float_metrics)}
    (_, float_layout), (_, int8_layout) = (best_images_per_second(p, seconds=speed_seconds)
                                           for p in (float_path, int8_path))
    ratios, float_speed, int8_speed = paired_speedup(float_path, float_layout, int8_path, int8_layout,
                                                     seconds=speed_seconds)
    return {
        "file": int8_path.name,
        "sha256": _sha256(int8_path),
        "calibration_images": len(chosen),
        "validation_float": compared["float"],
        "validation_int8": compared["int8"],
        "accuracy_difference_points": 100 * (compared["int8"]["accuracy"] - compared["float"]["accuracy"]),
        "roc_auc_difference_points": 100 * (compared["int8"]["roc_auc"] - compared["float"]["roc_auc"]),
        "throughput_images_per_s": {"float": float_speed, "int8": int8_speed},
        "throughput_measured_at": {"float": str(float_layout), "int8": str(int8_layout)},
        "speedup": statistics.median(ratios),  # of back-to-back pairs: the machine's speed drifts
        "speedup_per_pair": ratios,
    }


def _metric_rows(named: dict[str, dict | None]) -> list[str]:
    keys = ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "brier", "ece")
    rows = ["| data | " + " | ".join(keys) + " | confusion [[TN, FP], [FN, TP]] |",
            "|---" * (len(keys) + 2) + "|"]
    for name, m in named.items():
        if m is None:
            continue
        cells = [str(m[k]) if k == "n" else f"{m[k]:.4f}" for k in keys]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {m['confusion_matrix']} |")
    return rows


def _int8_section(int8: dict | None) -> list[str]:
    if not int8:
        return []
    speed, how = int8["throughput_images_per_s"], int8["throughput_measured_at"]
    return [
        f"## int8 model for CPU hosts (`{int8['file']}`)",
        f"Static quantization (QDQ, per-channel int8 weights, MinMax calibration on "
        f"{int8['calibration_images']} training images), same threshold. Load it with "
        f"`CXR_MODEL_PATH=models/{int8['file']}`.",
        "",
        *_metric_rows({"validation, float": int8["validation_float"], "validation, int8": int8["validation_int8"]}),
        "",
        f"Accuracy {int8['accuracy_difference_points']:+.2f} points, ROC AUC "
        f"{int8['roc_auc_difference_points']:+.2f} points against the float model. Model-only "
        f"throughput on this machine, each at its best batch size and use of the cores: float "
        f"{speed['float']:.0f} images/s ({how['float']}), int8 {speed['int8']:.0f} images/s "
        f"({how['int8']}): {int8['speedup']:.2f}x, the median of {len(int8['speedup_per_pair'])} "
        f"back-to-back pairs ({', '.join(f'{r:.2f}' for r in int8['speedup_per_pair'])}x).",
        "",
    ]


def render_markdown(card: dict) -> str:
    model, data, training, m = card["model"], card["data"], card["training"], card["metrics"]
    lines = [
        f"# Model card: {model['name']} {model['version']}",
        "",
        f"`{model['file']}` (sha256 `{model['sha256']}`), created {model['created_at']}.",
        f"Architecture `{model['architecture']}`: {model['parameters']:,} weights, "
        f"{model['gflops_per_image']:.2f} GFLOPs per image. Input {model['input']}; output {model['output']}. "
        f"Preprocessing version {model['preprocessing_version']} (`cxr_common/preprocessing.py`).",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Population",
        card["population"],
        "",
        "## Data",
        f"- Source: {data['credit']}",
        f"- Discovered: {data['discovery']}.",
        f"- Split by patient (seeded, stratified): {data['train_images']} training images from "
        f"{data['train_patients']} patients, {data['validation_images']} validation images from "
        f"{data['validation_patients']} patients; no patient on both sides.",
        f"- Training data list sha256: `{data['training_data_sha256']}`.",
        "",
        "## Training",
        f"- {training['optimizer']}, {training['loss']}, batch {training['batch_size']}, class weights: "
        f"{training['class_weights']}.",
        f"- Augmentation (training only): {json.dumps(training['augmentation'])}.",
        f"- Early stopping on {training['early_stopping']}: {training['epochs_run']} epochs run "
        f"(of at most {training['max_epochs']}), best weights from epoch {training['best_epoch']} restored.",
        f"- Time: {training['total_seconds'] / 60:.1f} minutes in all (preprocessing "
        f"{training['preprocess_seconds']:.0f} s{' from the cache' if training.get('pixels_from_cache') else ''}) "
        f"on {training['hardware']}, TensorFlow {training['tensorflow']}.",
        "",
        "## Threshold",
        f"{card['threshold']['value']:.4f}: {card['threshold']['rule']}",
        "",
        "## Metrics (at that threshold, measured on the exported ONNX model)",
        *_metric_rows({
            "validation, patient split": m["validation_patient_split"],
            "  of which 224 px copies": m["validation_by_source"]["low_resolution_copies"],
            "  of which full-resolution originals": m["validation_by_source"]["full_resolution_originals"],
            "official val/ (16 images)": m["official_val_16"],
        }),
        "",
        "The official 624-image test split is held out and scored by the maintainers; it is known to "
        "be harder than any split of the training data (see limits).",
        "",
        *_int8_section(card.get("int8")),
        "## Known limits",
        *[f"- {limit}" for limit in card["limits"]],
        "",
    ]
    return "\n".join(lines)
