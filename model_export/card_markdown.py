"""The model card as Markdown (models/MODEL_CARD.md), rendered from model_card.json's record."""

from __future__ import annotations

import json
from typing import Any

from model_export.cv import render_table

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
        f"{int8['calibration_images']} training images; the first convolution and a combined model's pretrained "
        "member left in float, see `model_export/quantize.py`), same threshold. Load it with "
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
