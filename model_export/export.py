"""Keras -> ONNX with tf2onnx, metadata attached, and a parity check on every output that must pass."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from cxr_common.model_metadata import EXPORT_OUTPUTS, INPUT_NAME, ModelMetadata
from model_export.architectures import export_model

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |onnx - keras| of a probability on real images
# CAM logits and features are unbounded: compared relative to their own largest magnitude
RELATIVE_PARITY_TOLERANCE = 1e-4
BATCH_DIM = "batch"


class ExportParityError(RuntimeError):
    """ONNX and Keras disagree on real images: the export is not trusted."""


def to_onnx(model: keras.Model, size: int) -> tuple[onnx.ModelProto, list[str]]:
    """Convert with an explicit signature (tf2onnx needs one for Keras 3): (batch, S, S, 1).
    Outputs are renamed to EXPORT_OUTPUTS in order; returns the proto and the names it has."""
    signature = (tf.TensorSpec((None, size, size, 1), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    graph = proto.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    names = list(EXPORT_OUTPUTS[: len(graph.output)])
    renames = {output.name: name for output, name in zip(graph.output, names)}
    for node in graph.node:  # rename each output tensor everywhere it is produced or used
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    for output, name in zip(graph.output, names):
        output.name = name
        output.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.checker.check_model(proto)
    return proto, names


def check_parity(proto: onnx.ModelProto, model: keras.Model, names: list[str], images: np.ndarray) -> dict[str, float]:
    """Per output, max |onnx - keras| on `images` (N, S, S, 1) (relative for unbounded outputs);
    raises above tolerance."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(names, {INPUT_NAME: images})
    keras_outputs = model.predict(images, batch_size=32, verbose=0)
    keras_outputs = keras_outputs if isinstance(keras_outputs, list) else [keras_outputs]
    differences = {}
    for name, ours, theirs in zip(names, onnx_outputs, keras_outputs):
        bounded = name.endswith("probability")
        scale = 1.0 if bounded else max(1.0, float(np.max(np.abs(theirs))))
        differences[name] = float(np.max(np.abs(ours - np.reshape(theirs, ours.shape)))) / scale
        tolerance = PARITY_TOLERANCE if bounded else RELATIVE_PARITY_TOLERANCE
        if not differences[name] < tolerance:
            raise ExportParityError(
                f"ONNX and Keras differ by {differences[name]:.2e} on output '{name}' over {len(images)} "
                f"validation images (tolerance {tolerance:.0e}); the export was not written"
            )
    log.info("parity on %d validation images: %s", len(images),
             ", ".join(f"{k} {v:.2e}" for k, v in differences.items()))
    return differences


def describe_outputs(session_outputs: Any) -> dict[str, list[int | str]]:
    """{name: shape} as the file declares them (the metadata's 'outputs' key)."""
    return {output.name: [d if isinstance(d, int) else str(d) for d in output.shape] for output in session_outputs}


def export(model: keras.Model, metadata: ModelMetadata, parity_images: np.ndarray, path: Path) -> dict[str, float]:
    """Write `path` (.onnx) with `metadata` after checking parity; returns the max differences."""
    serving = export_model(model)
    proto, names = to_onnx(serving, metadata.input_size)
    differences = check_parity(proto, serving, names, parity_images)
    outputs = describe_outputs(
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).get_outputs())
    props = metadata.to_props() | {
        "parity_max_abs_diff": json.dumps({k: float(f"{v:.3e}") for k, v in differences.items()}),
        "outputs": json.dumps(outputs),
    }
    onnx.helper.set_model_props(proto, props)
    proto.producer_name = "model_export"
    proto.doc_string = (
        f"{metadata.model_name} {metadata.model_version}: from a frontal chest X-ray, input "
        f"'{INPUT_NAME}' float32 (N, {metadata.input_size}, {metadata.input_size}, 1) in 0..1; "
        f"outputs {', '.join(f'{k} {v}' for k, v in outputs.items())}."
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return differences
