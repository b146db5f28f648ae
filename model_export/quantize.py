"""Static int8 quantization of the exported model, for CPU hosts, exact on every x86-64 CPU.

Calibrated on training images (never validation), QDQ format with per-channel weights, so
onnxruntime runs the convolutions in int8 (VNNI where the CPU has it). The quantized model keeps
the float model's threshold and metadata; its own validation metrics replace the float ones.
The first convolution is left in float (see `quantize`), and so is a combined model's pretrained
member (FLOAT_MEMBERS).

Weights are quantized to 7 bits (`reduce_range`, values in [-64, 63]). Why: without VNNI
(AVX2, AVX-512 without VNNI) onnxruntime's U8S8 kernels multiply with VPMADDUBSW, which adds
two u8 x s8 products into a saturating int16: with full-range weights a pair reaches
2 x 255 x 127 = 64 770 > 32 767 and the result is silently wrong (the v1 int8 model called every
image pneumonia on AMD EPYC). With |w| <= 64, 2 x 255 x 64 = 32 640 cannot saturate, so the
same file computes the same numbers with and without VNNI. `int8_weights_fit_int16_pairs`
checks that invariant on a quantized file.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
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
# Members of a combined model (model_export.combine) that stay float in the int8 twin. The
# EfficientNet member in int8 moved the ensemble's probability by up to 0.61 and changed 1-3 % of
# labels (0.3 and 0.7-1.3 % with its depthwise convolutions kept float); float, the twin agrees
# with the float model on 99.5 % of labels, max |dp| 0.05 (v3's three validation sets).
FLOAT_MEMBERS = ("effnet/",)


class PixelsReader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime.quantization is untyped
    """Feeds calibration images (N, S, S) uint8 to the calibrator in batches."""

    def __init__(self, pixels: np.ndarray):
        self._batches = iter([pixels[i : i + CALIBRATION_BATCH] for i in range(0, len(pixels), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: to_model_input(batch)}


def quantize(float_model: Path, out: Path, calibration_pixels: np.ndarray,
             validation_pixels: np.ndarray, validation_labels: np.ndarray, float_metrics: dict[str, Any]) -> dict[str, Any]:
    """Write the int8 model to `out`; returns its validation metrics (`float_metrics`: the
    float model's on the same images, kept in the int8 model's metadata for comparison)."""
    session = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"])
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX shape inference + graph optimisation (shapes are static but for the batch)
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        nodes = onnx.load(str(prepared)).graph.node
        kept_float = [n.name for n in nodes if n.name.startswith(FLOAT_MEMBERS)]
        first_conv = next(n.name for n in nodes if n.op_type == "Conv" and not n.name.startswith(FLOAT_MEMBERS))
        quantize_static(
            str(prepared), str(out), PixelsReader(calibration_pixels),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=True,  # 7-bit weights: see the module docstring
            # the first convolution stays in float: one input channel at full resolution, about 2%
            # of the FLOPs, and the layer int8 hurts most (validation accuracy -0.62 -> -0.47 points,
            # max |dp| 0.090 -> 0.084 on the random split; shift_high -0.37 -> 0.00)
            nodes_to_exclude=[first_conv, *kept_float],
        )
    quantized = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    int8_metrics = metrics.classification_metrics(
        validation_labels, predict_onnx(quantized, validation_pixels).pneumonia, metadata.threshold)
    props = metadata.to_props() | {
        "model_name": f"{metadata.model_name}-int8",
        "validation_metrics": json.dumps(int8_metrics),
        "quantization": f"static int8 (QDQ, per-channel 7-bit weights, MinMax, first convolution in float"
                        f"{', pretrained member in float' if kept_float else ''}) "
                        f"calibrated on {len(calibration_pixels)} training images",
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


PAIR_SAFE_WEIGHT = 64  # 2 x 255 x 64 = 32 640 <= 32 767: a VPMADDUBSW pair cannot saturate


def int8_weights_fit_int16_pairs(path: Path) -> tuple[bool, int]:
    """(every int8 weight feeding a convolution or matrix product lies in [-64, 64], the largest |w|)."""
    model = onnx.load(str(path))
    initializers = {i.name: i for i in model.graph.initializer}
    dequantized_by = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    largest = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"):
            continue
        for name in node.input:
            source = initializers.get(dequantized_by.get(name, name))
            if source is not None and source.data_type == onnx.TensorProto.INT8:
                largest = max(largest, int(np.abs(onnx.numpy_helper.to_array(source).astype(np.int32)).max()))
    return largest <= PAIR_SAFE_WEIGHT, largest
