"""Static int8 quantization of the exported model, for CPU hosts.

Calibrated on training images (never validation), QDQ format with per-channel weights, so
onnxruntime runs the convolutions in int8 (VNNI where the CPU has it). The quantized model keeps
the float model's threshold and metadata; its own validation metrics replace the float ones.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from cxr_common.model_metadata import INPUT_NAME, ModelMetadata
from cxr_common.preprocessing import to_model_input
from model_export import metrics
from model_export.evaluate import predict_onnx

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 16


class PixelsReader(CalibrationDataReader):
    """Feeds calibration images (N, S, S) uint8 to the calibrator in batches."""

    def __init__(self, pixels: np.ndarray):
        self._batches = iter([pixels[i : i + CALIBRATION_BATCH] for i in range(0, len(pixels), CALIBRATION_BATCH)])

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: to_model_input(batch)}


def quantize(float_model: Path, out: Path, calibration_pixels: np.ndarray,
             validation_pixels: np.ndarray, validation_labels: np.ndarray, float_metrics: dict) -> dict:
    """Write the int8 model to `out`; returns its validation metrics (`float_metrics`: the
    float model's on the same images, kept in the int8 model's metadata for comparison)."""
    session = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX shape inference + graph optimisation (shapes are static but for the batch)
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), PixelsReader(calibration_pixels),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    quantized = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    int8_metrics = metrics.classification_metrics(
        validation_labels, predict_onnx(quantized, validation_pixels), metadata.threshold)
    props = metadata.to_props() | {
        "model_name": f"{metadata.model_name}-int8",
        "validation_metrics": json.dumps(int8_metrics),
        "quantization": f"static int8 (QDQ, per-channel weights, MinMax) calibrated on "
                        f"{len(calibration_pixels)} training images",
        "float_model_validation_metrics": json.dumps(float_metrics),
    }
    model = onnx.load(str(out))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(out))
    log.info("int8 model %s: validation accuracy %.4f (float %.4f), ROC AUC %.4f (float %.4f)",
             out, int8_metrics["accuracy"], float_metrics["accuracy"],
             int8_metrics["roc_auc"], float_metrics["roc_auc"])
    return int8_metrics
