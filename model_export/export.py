"""Keras -> ONNX with tf2onnx, metadata attached, and a parity check that must pass."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from cxr_common.model_metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |onnx - keras| probability on real images
BATCH_DIM = "batch"


class ExportParityError(RuntimeError):
    """ONNX and Keras disagree on real images: the export is not trusted."""


def to_onnx(model: keras.Model, size: int) -> onnx.ModelProto:
    """Convert with an explicit signature (tf2onnx needs one for Keras 3): (batch, S, S, 1)."""
    signature = (tf.TensorSpec((None, size, size, 1), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    graph = proto.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    old_output = graph.output[0].name
    for node in graph.node:  # rename the output tensor everywhere it is produced or used
        node.output[:] = [OUTPUT_NAME if name == old_output else name for name in node.output]
        node.input[:] = [OUTPUT_NAME if name == old_output else name for name in node.input]
    graph.output[0].name = OUTPUT_NAME
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.checker.check_model(proto)
    return proto


def check_parity(proto: onnx.ModelProto, model: keras.Model, images: np.ndarray) -> float:
    """Max |difference| of the probabilities on `images` (N, S, S, 1); raises above tolerance."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_probabilities = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    keras_probabilities = model.predict(images, batch_size=32, verbose=0)
    difference = float(np.max(np.abs(onnx_probabilities - keras_probabilities)))
    if not difference < PARITY_TOLERANCE:
        raise ExportParityError(
            f"ONNX and Keras differ by {difference:.2e} on {len(images)} validation images "
            f"(tolerance {PARITY_TOLERANCE:.0e}); the export was not written"
        )
    log.info("parity: max |onnx - keras| = %.2e on %d validation images", difference, len(images))
    return difference


def export(model: keras.Model, metadata: ModelMetadata, parity_images: np.ndarray, path: Path) -> float:
    """Write `path` (.onnx) with `metadata` after checking parity; returns the max difference."""
    proto = to_onnx(model, metadata.input_size)
    difference = check_parity(proto, model, parity_images)
    props = metadata.to_props() | {"parity_max_abs_diff": f"{difference:.3e}"}
    onnx.helper.set_model_props(proto, props)
    proto.producer_name = "model_export"
    proto.doc_string = (
        f"{metadata.model_name} {metadata.model_version}: pneumonia probability from a frontal "
        f"chest X-ray, input '{INPUT_NAME}' float32 (N, {metadata.input_size}, "
        f"{metadata.input_size}, 1) in 0..1, output '{OUTPUT_NAME}' (N, 1)."
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return difference
