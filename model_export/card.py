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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from cxr_common import reference_check
from cxr_common.hardware import cpu_description
from cxr_common.image_check import ImageCheck
from cxr_common.model_metadata import INT8_MODEL_FILE, MODEL_FILE, RUN_MODEL_FILE, ModelMetadata
from cxr_common.reference_check import ReferenceCheck
from model_export import checks, dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.cv import cv_from_folder, render_table
from model_export.evaluate import predict_onnx
from model_export.ood import ood_sets
from model_export.quantize import int8_weights_fit_int16_pairs, quantize
from model_export.run_record import RunRecord, read_run
from model_export.speed import best_images_per_second, paired_speedup
from model_export.train import Arrays, set_metrics
from service.inputs.shape import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 1024  # training images the int8 model is calibrated on (256: 0.94 points of accuracy lost, 1024: 0.32)
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


def _image_scores(check: ImageCheck, session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    features = predict_onnx(session, pixels).features
    if features is None:
        raise ValueError("the model carries an image check but no features output")
    return check.scores(features)


def _refusal_rate(check: ImageCheck, session: ort.InferenceSession, pixels: np.ndarray) -> dict[str, Any]:
    scores = _image_scores(check, session, pixels)
    return {"n": int(len(scores)), "refused": int((scores > check.threshold).sum()),
            "rate": float((scores > check.threshold).mean()) if len(scores) else 0.0}


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
    refusals = {name: _refusal_rate(image_check, float_session, arrays.pixels) for name, arrays in held.items()}
    if official is not None:
        refusals["official val/ (16)"] = _refusal_rate(image_check, float_session, official.pixels)
    ood = ood_refusals(float_session, image_check, splits.validation[0].path)

    int8 = None
    if int8_file:
        int8 = _quantized(out_dir / model_file, out_dir / int8_file, splits.train, train_pixels, held,
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


def ood_refusals(session: ort.InferenceSession, check: ImageCheck, chest_xray: Path) -> dict[str, dict[str, Any]]:
    """Per out-of-distribution set: refused by the service's whole input check (DICOM attributes,
    shape, image check) and by the image check alone (attributes bypassed)."""
    from cxr_common.preprocessing import load_pixels
    from service.inputs.decoding import decode_upload
    from service.inputs.dicom import DicomPolicy, is_dicom
    from service.inputs.errors import ImageShapeError, NotChestXrayError

    size = session.get_inputs()[0].shape[1]
    result: dict[str, dict[str, Any]] = {}
    for set_name, inputs in ood_sets(chest_xray).items():
        rows: list[dict[str, Any]] = []
        for name, data in inputs.items():
            row: dict[str, Any] = {"input": name}
            try:
                pixels = decode_upload(data, size, DEFAULT_MAX_PIXELS).pixels
                row["refused_by"] = None
            except (NotChestXrayError, ImageShapeError) as exc:
                row["refused_by"] = getattr(exc, "reason", "shape")
                pixels = None
            if pixels is None:  # the image check alone, as if the attributes and shape had passed
                pixels = (decode_upload(data, size, DEFAULT_MAX_PIXELS, DicomPolicy(check=False)).pixels
                          if is_dicom(data) else load_pixels(data, size))
            score = float(_image_scores(check, session, pixels[np.newaxis])[0])
            row["image_check_score"] = score
            row["image_check_refuses"] = score > check.threshold
            if row["refused_by"] is None and row["image_check_refuses"]:
                row["refused_by"] = "image_check"
            rows.append(row)
        result[set_name] = {
            "n": len(rows),
            "refused": sum(r["refused_by"] is not None for r in rows),
            "refused_by_image_check_alone": sum(r["image_check_refuses"] for r in rows),
            "inputs": rows,
        }
    return result


def _quantized(float_path: Path, int8_path: Path, train: list[dataset.Example], train_pixels: np.ndarray, held: dict[str, Any],
               threshold: float, seed: int, size: int, speed_seconds: float) -> dict[str, Any]:
    """Quantize on training images; its own image check and the float model's reference outputs;
    compared with the float model on every validation set and in speed."""
    chosen = np.random.default_rng(seed).choice(len(train), size=min(CALIBRATION_IMAGES, len(train)), replace=False)
    calibration = load_or_preprocess([train[i] for i in sorted(chosen)], size)
    validation = held["validation"]
    float_session = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    float_metrics = metrics.classification_metrics(
        validation.labels, predict_onnx(float_session, validation.pixels).pneumonia, threshold)
    quantize(float_path, int8_path, calibration, validation.pixels, validation.labels, float_metrics)
    int8_session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    image_check, _ = checks.fit_image_check(int8_session, train_pixels)
    float_reference = ReferenceCheck.from_json(
        float_session.get_modelmeta().custom_metadata_map[reference_check.METADATA_KEY])
    reference = replace(float_reference, tolerance=checks.INT8_TOLERANCE)
    checks.update_metadata(int8_path, checks.checks_metadata(image_check, reference))
    int8_session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    per_set = {}
    for name, arrays in held.items():
        ours, theirs = predict_onnx(int8_session, arrays.pixels), predict_onnx(float_session, arrays.pixels)
        per_set[name] = {
            "float": set_metrics(arrays, theirs.pneumonia, theirs.viral, threshold),
            "int8": set_metrics(arrays, ours.pneumonia, ours.viral, threshold),
            "max_abs_difference": float(np.max(np.abs(ours.pneumonia - theirs.pneumonia))),
            "labels_alike": float(np.mean((ours.pneumonia >= threshold) == (theirs.pneumonia >= threshold))),
        }
    safe, largest_weight = int8_weights_fit_int16_pairs(int8_path)
    (_, float_layout), (_, int8_layout) = (best_images_per_second(p, seconds=speed_seconds)
                                           for p in (float_path, int8_path))
    ratios, float_speed, int8_speed = paired_speedup(float_path, float_layout, int8_path, int8_layout,
                                                     seconds=speed_seconds)
    return {
        "file": int8_path.name,
        "sha256": _sha256(int8_path),
        "calibration_images": len(chosen),
        "per_set": per_set,
        "weights_fit_int16_pairs": safe, "largest_abs_int8_weight": largest_weight,
        "reference_difference_here": checks.largest_reference_difference(int8_path, reference),
        "reference_tolerance": reference.tolerance,
        "cpu": cpu_description(),
        "throughput_images_per_s": {"float": float_speed, "int8": int8_speed},
        "throughput_measured_at": {"float": str(float_layout), "int8": str(int8_layout)},
        "speedup": statistics.median(ratios),  # of back-to-back pairs: the machine's speed drifts
        "speedup_per_pair": ratios,
    }


METRIC_KEYS = ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "brier", "ece")
SET_TITLES = {"validation": "random patient split", "shift_low": "shift: lowest ids of each series",
              "shift_high": "shift: highest ids of each series"}


def _metric_rows(named: dict[str, dict[str, Any] | None]) -> list[str]:
    rows = ["| data | " + " | ".join(METRIC_KEYS) + " | confusion [[TN, FP], [FN, TP]] |",
            "|---" * (len(METRIC_KEYS) + 2) + "|"]
    for name, m in named.items():
        if m is None:
            continue
        cells = [str(m[k]) if k == "n" else f"{m[k]:.4f}" for k in METRIC_KEYS]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {m['confusion_matrix']} |")
    return rows


def _type_rows(named: dict[str, dict[str, Any] | None]) -> list[str]:
    rows = ["| data | typed pneumonia cases | accuracy | ROC AUC | bacterial recall | viral recall | "
            "confusion [[B->B, B->V], [V->B, V->V]] |", "|---|---|---|---|---|---|---|"]
    for name, m in named.items():
        kind = (m or {}).get("pneumonia_type")
        if kind:
            rows.append(f"| {name} | {kind['n']} | {kind['accuracy']:.4f} | {kind['roc_auc']:.4f} | "
                        f"{kind['bacterial_recall']:.4f} | {kind['viral_recall']:.4f} | {kind['confusion_matrix']} |")
    return rows


def _set_rows(data: dict[str, Any]) -> list[str]:
    rows = ["| set | images | patients | normal, pneumonia | bacterial, viral |", "|---|---|---|---|---|"]
    for name, found in data["sets"].items():
        kinds = found["type_counts"]
        rows.append(f"| {SET_TITLES.get(name, name)} | {found['images']} | {found['patients']} | "
                    f"{found['class_counts'][0]}, {found['class_counts'][1]} | {kinds['bacterial']}, {kinds['viral']} |")
    return rows


def _input_check_section(check: dict[str, Any]) -> list[str]:
    lines = [
        "## Input check: refusing what is not a frontal chest X-ray",
        f"DICOM attributes first (Modality, SOP class, BodyPartExamined, ViewPosition: see the README), then "
        f"for every input the image check: {check['method']}; threshold {check['threshold']:.2f} = {check['rule']} "
        f"(training distances: median {check['train_distance_quantiles']['0.5']:.2f}, 99th percentile "
        f"{check['train_distance_quantiles']['0.99']:.2f}).",
        "",
        "| real chest X-rays | images | refused | rate |", "|---|---|---|---|",
        *(f"| {SET_TITLES.get(name, name)} | {r['n']} | {r['refused']} | {100 * r['rate']:.2f}% |"
          for name, r in check["refusal_rates"].items()),
        "",
        "| not chest X-rays | inputs | refused by the service | refused by the image check alone |",
        "|---|---|---|---|",
        *(f"| {name} | {r['n']} | {r['refused']} | {r['refused_by_image_check_alone']} |"
          for name, r in check["out_of_distribution"].items()),
        "",
        "Inputs that pass: " + (", ".join(
            f"{row['input']} (score {row['image_check_score']:.1f})"
            for r in check["out_of_distribution"].values() for row in r["inputs"] if row["refused_by"] is None)
            or "none") + ".",
        "",
    ]
    return lines


def _int8_section(int8: dict[str, Any] | None) -> list[str]:
    if not int8:
        return []
    speed, how = int8["throughput_images_per_s"], int8["throughput_measured_at"]
    rows = {}
    for name, found in int8["per_set"].items():
        rows[f"{SET_TITLES.get(name, name)}, float"] = found["float"]
        rows[f"{SET_TITLES.get(name, name)}, int8"] = found["int8"]
    return [
        f"## int8 model for CPU hosts (`{int8['file']}`)",
        f"Static quantization (QDQ, per-channel 7-bit weights, MinMax calibration on "
        f"{int8['calibration_images']} training images, the first convolution left in float), same threshold. Load it with "
        f"`CXR_MODEL_PATH=models/{int8['file']}`. Every int8 weight feeding a convolution lies in "
        f"[-64, 64] (largest |w| = {int8['largest_abs_int8_weight']}): onnxruntime's AVX2 and AVX-512 "
        "kernels without VNNI add two u8 x s8 products in a saturating int16, and 2 x 255 x 64 = 32 640 "
        "cannot saturate, so the file computes the same numbers on every x86-64 CPU.",
        "",
        *_metric_rows(rows),
        "",
        *(f"- {SET_TITLES.get(name, name)}: max |p_int8 - p_float| {found['max_abs_difference']:.4f}, "
          f"labels alike {100 * found['labels_alike']:.2f}%." for name, found in int8["per_set"].items()),
        f"- Reference check on this machine: largest difference {int8['reference_difference_here']:.4f} "
        f"(tolerance {int8['reference_tolerance']:g}).",
        f"- Speed on this machine, {int8['cpu']}: float {speed['float']:.0f} images/s ({how['float']}), "
        f"int8 {speed['int8']:.0f} images/s ({how['int8']}): {int8['speedup']:.2f}x, the median of "
        f"{len(int8['speedup_per_pair'])} back-to-back pairs ({', '.join(f'{r:.2f}' for r in int8['speedup_per_pair'])}x). "
        "Without VNNI (AVX2 only) int8 kernels do about half the work per instruction; expect a smaller "
        "speed-up there (the v1 issue measured 1.33x for 7-bit weights on an AMD EPYC with AVX2).",
        "",
    ]


def _ablation_section(ablation: dict[str, Any] | None) -> list[str]:
    if not ablation:
        return []
    lines = ["## What was tried (ablation)",
             "Measured on the validation sets (`python -m model_export ablation`); kept only where it holds "
             "up on every set, the shift blocks above all.", "",
             "| what | set | n | accuracy | sensitivity | specificity | ROC AUC | Brier | type ROC AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in ablation["rows"]:
        kind = row.get("type_roc_auc")
        lines.append(f"| {row['what']} | {SET_TITLES.get(row['set'], row['set'])} | {row['n']} | {row['accuracy']:.4f} | "
                     f"{row['sensitivity']:.4f} | {row['specificity']:.4f} | {row['roc_auc']:.4f} | {row['brier']:.4f} | "
                     f"{'' if kind is None else f'{kind:.4f}'} |")
    return lines + [""] + [f"- {note}" for note in ablation.get("notes", [])] + [""]


def _borders_section(borders: dict[str, Any] | None) -> list[str]:
    if not borders:
        return []
    lines = ["## Frames, letterboxes and burned-in text",
             f"Each of the {borders['images']} validation images re-encoded as an upload (JPEG 90) with and without "
             "what exports add around the chest (`python -m model_export borders`): how often the label stays the same.",
             "", "| variant | labels agree | pneumonia called normal | normal called pneumonia | mean abs. change of p |",
             "|---|---|---|---|---|"]
    for name, v in borders["variants"].items():
        lines.append(f"| {name} | {v['labels_agree']:.4f} | {v['pneumonia_called_normal']} | "
                     f"{v['normal_called_pneumonia']} | {v['mean_abs_probability_change']:.4f} |")
    return lines + [""] + [f"- {note}" for note in borders.get("notes", [])] + [""]


def _cv_section(cv: dict[str, Any] | None) -> list[str]:
    if not cv:
        return ["## Cross-validation", "Not run for this model: `python -m model_export cv --data DIR --folds 5 "
                "--out runs/NAME` (resumable per fold and epoch), then `publish --cv runs/NAME`.", ""]
    epochs = sorted({fold["epochs_run"] for fold in cv["per_fold"]})
    return ["## Cross-validation", f"{cv['folds']}-fold, grouped by patient, stratified by normal/bacterial/viral "
            f"(seed {cv['seed']}), on all {cv['data']}; each fold trained for {', '.join(map(str, epochs))} "
            "epochs and scored at its own Youden threshold. A short budget when the epochs are few: it shows "
            "the spread between folds, not the accuracy of the shipped model's recipe.", "",
            render_table(cv).strip(), ""]


def render_markdown(card: dict[str, Any]) -> str:
    model, data, training, m = card["model"], card["data"], card["training"], card["metrics"]
    sets = {SET_TITLES.get(k, k): v for k, v in m["sets"].items()} | {"official val/ (16 images)": m["official_val_16"]}
    lines = [
        f"# Model card: {model['name']} {model['version']}",
        "",
        f"`{model['file']}` (sha256 `{model['sha256']}`), created {model['created_at']}.",
        f"Architecture `{model['architecture']}`: {model['parameters']:,} weights, "
        f"{model['gflops_per_image']:.2f} GFLOPs per image. Input {model['input']}; outputs "
        + ", ".join(f"'{k}' {v}" for k, v in model["outputs"].items())
        + f". Preprocessing version {model['preprocessing_version']} (`cxr_common/preprocessing.py`).",
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
        f"- Split by patient, no patient in two sets: first the shift blocks (the patients with the lowest and "
        f"the highest ids of each id series, {100 * (data['split']['shift_block'] or 0):g}% of its images at each "
        f"end; bacterial and viral ids counted as separate series), then a seeded random patient split "
        f"({100 * data['split']['validation_fraction']:g}% of the rest). The official test split's ids lie below "
        "the training ids, so the low block is the closest stand-in for it. Training never sees any of them.",
        "",
        *_set_rows(data),
        "",
        f"- Training data list sha256: `{data['training_data_sha256']}`.",
        "",
        "## Training",
        f"- {training['optimizer']}, {training['loss']}, batch {training['batch_size']}, class weights: "
        f"{training['class_weights']} (both heads; the type head sees only pneumonia cases of known type).",
        f"- Augmentation (training only): {json.dumps(training['augmentation'])}.",
        f"- Checkpoint: {training['early_stopping']}: {training['epochs_run']} epochs run "
        f"(of at most {training['max_epochs']}), best weights from epoch {training['best_epoch']} restored.",
        *([f"- Ensemble: {training['ensemble_rule']} The training lines above are the fine-tuned member's."]
          if training.get("ensemble_rule") else
          [f"- Ensemble of {len(training['members'])} runs on the same splits, their logit maps averaged per head: "
           + "; ".join(f"`{m['run']}` (label smoothing {m['label_smoothing']}, best epoch {m['best_epoch']})"
                       for m in training["members"]) + "."] if training.get("members") else []),
        f"- Time: {training['total_seconds'] / 60:.1f} minutes in all (preprocessing "
        f"{training['preprocess_seconds']:.0f} s{' from the cache' if training.get('pixels_from_cache') else ''}) "
        f"on {training['hardware']}, TensorFlow {training['tensorflow']}.",
        "",
        "## Threshold",
        f"{card['threshold']['value']:.4f}: {card['threshold']['rule']} Each set's own Youden-1SE cut, for "
        "comparison: " + ", ".join(f"{SET_TITLES.get(k, k)} {v:.4f}" for k, v in card["threshold"]["per_set"].items()) + ".",
        "",
        "## Metrics (at that threshold, measured on the exported ONNX model)",
        *_metric_rows(sets | {
            "random split, 224 px copies": m["validation_by_source"]["low_resolution_copies"],
            "random split, full-resolution originals": m["validation_by_source"]["full_resolution_originals"],
        }),
        "",
        "Pneumonia type (bacterial vs viral, at 0.5, among pneumonia cases):",
        "",
        *_type_rows(sets),
        "",
        *([f"Type cut: {card['threshold']['type']['rule']} The cut was {card['threshold']['type']['cut']:.4f} "
           f"on {card['threshold']['type']['cases']} cases; it was chosen on these same sets, so the type "
           "accuracies above are optimistic (the ROC AUCs are not affected).", ""]
          if card["threshold"].get("type") else []),
        "The official 624-image test split is held out and scored by the maintainers; it is known to "
        "be harder than any split of the training data (see limits).",
        "",
        *_ablation_section(card.get("ablation")),
        *_borders_section(card.get("borders")),
        *_cv_section(card.get("cross_validation")),
        *_input_check_section(card["input_check"]),
        "## Reference check",
        f"The file carries {card['reference_check']['images']} validation images (half resolution, PNG) and the "
        f"float model's outputs for them; the service runs them at start-up and refuses to serve a model whose "
        f"outputs differ by more than {card['reference_check']['tolerance']:g} (int8: see below).",
        "",
        *_int8_section(card.get("int8")),
        "## Known limits",
        *[f"- {limit}" for limit in card["limits"]],
        "",
    ]
    return "\n".join(lines)
