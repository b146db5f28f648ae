"""The int8 twin of a published model: quantized on training images, given its own image check
and the float model's reference outputs, and compared with the float model on every validation
set and in speed, for the model card."""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cxr_common import reference_check
from cxr_common.hardware import cpu_description
from cxr_common.reference_check import ReferenceCheck
from model_export import checks, dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.evaluate import predict_onnx
from model_export.quantize import int8_weights_fit_int16_pairs, quantize
from model_export.speed import best_images_per_second, paired_speedup
from model_export.train import set_metrics

CALIBRATION_IMAGES = 1024  # training images the int8 model is calibrated on (256: 0.94 points of accuracy lost, 1024: 0.32)


def quantized_twin(float_path: Path, int8_path: Path, train: list[dataset.Example], train_pixels: np.ndarray, held: dict[str, Any],
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
        "sha256": hashlib.sha256(int8_path.read_bytes()).hexdigest(),
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
