"""The ONNX model contract: metadata keys written at export and checked when loading.

The exported model carries what made it (nanoGPT's checkpoint habit): input size, labels,
threshold and preprocessing version, so whatever loads it can refuse a mismatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The published file names, one constant each (training writes RUN_MODEL_FILE into its run folder)
MODEL_FILE = "cxr-pneumonia.onnx"
INT8_MODEL_FILE = "cxr-pneumonia-int8.onnx"
RUN_MODEL_FILE = "model.onnx"

INPUT_NAME = "image"  # float32 (N, S, S, 1) in 0..1, N dynamic
OUTPUT_NAME = "pneumonia_probability"  # float32 (N, 1)
# Optional outputs (model v2 onwards); a model with OUTPUT_NAME alone still serves.
VIRAL_OUTPUT = "viral_probability"  # float32 (N, 1): P(viral | pneumonia); bacterial = 1 - it
CAM_OUTPUT = "pneumonia_cam"  # float32 (N, h, w): pneumonia logit per position, mean = the logit
FEATURES_OUTPUT = "features"  # float32 (N, D): the pooled features the classifier sees
EXPORT_OUTPUTS = (OUTPUT_NAME, VIRAL_OUTPUT, CAM_OUTPUT, FEATURES_OUTPUT)
PNEUMONIA_TYPES = ("bacterial", "viral")
LABELS = ("normal", "pneumonia")
REQUIRED_KEYS = (
    "model_name",
    "model_version",
    "input_size",
    "labels",
    "threshold",
    "preprocessing_version",
    "training_data_sha256",
    "validation_metrics",
    "created_at",
)


class ModelMetadataError(ValueError):
    """The ONNX file lacks a metadata key or carries an invalid value."""


@dataclass(frozen=True)
class ModelMetadata:
    model_name: str
    model_version: str
    input_size: int
    labels: tuple[str, ...]
    threshold: float
    preprocessing_version: str
    training_data_sha256: str
    validation_metrics: dict[str, Any]
    created_at: str
    extra: dict[str, str] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """Flat string key/values for onnx metadata_props."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "input_size": str(self.input_size),
            "labels": json.dumps(list(self.labels)),
            "threshold": repr(self.threshold),
            "preprocessing_version": self.preprocessing_version,
            "training_data_sha256": self.training_data_sha256,
            "validation_metrics": json.dumps(self.validation_metrics),
            "created_at": self.created_at,
            **self.extra,
        }

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise ModelMetadataError(f"model metadata lacks {', '.join(missing)}")
        try:
            threshold = float(props["threshold"])
            labels = tuple(json.loads(props["labels"]))
            metadata = cls(
                model_name=props["model_name"],
                model_version=props["model_version"],
                input_size=int(props["input_size"]),
                labels=labels,
                threshold=threshold,
                preprocessing_version=props["preprocessing_version"],
                training_data_sha256=props["training_data_sha256"],
                validation_metrics=json.loads(props["validation_metrics"]),
                created_at=props["created_at"],
                extra={k: v for k, v in props.items() if k not in REQUIRED_KEYS},
            )
        except (ValueError, TypeError) as exc:
            raise ModelMetadataError(f"model metadata has an invalid value: {exc}") from exc
        if not 0.0 < threshold < 1.0:
            raise ModelMetadataError(f"model threshold {threshold} is not inside 0..1")
        if labels != LABELS:
            raise ModelMetadataError(f"model labels {list(labels)} are not {list(LABELS)}")
        return metadata
