"""Typed results: what one prediction says, and one input's outcome in a batch run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Prediction:
    label: str  # "normal" | "pneumonia"
    p_pneumonia: float
    p_normal: float
    threshold: float
    model_version: str
    request_id: str
    pneumonia_type: str | None = None  # "bacterial" | "viral", for models with the type head
    p_viral: float | None = None  # P(viral | pneumonia)
    warning: str | None = None  # the service's CXR_INPUT_CHECK=flag warning

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Prediction:
        kind = body.get("pneumonia_type") or {}
        return cls(
            pneumonia_type=kind.get("label"),
            p_viral=float(kind["probabilities"]["viral"]) if kind else None,
            warning=body.get("warning"),
            label=body["label"],
            p_pneumonia=float(body["probabilities"]["pneumonia"]),
            p_normal=float(body["probabilities"]["normal"]),
            threshold=float(body["threshold"]),
            model_version=str(body["model"]["version"]),
            request_id=str(body["request_id"]),
        )


@dataclass(frozen=True)
class ItemResult:
    """One input of predict_many: a prediction or an error, never both."""

    path: Path
    prediction: Prediction | None = None
    error: str | None = None
    code: str | None = None  # the service's error code, e.g. not_chest_xray

    @property
    def ok(self) -> bool:
        return self.prediction is not None

    @property
    def refused(self) -> bool:
        """The service declined it as not a frontal chest X-ray (not a failure to retry)."""
        return self.code == REFUSED_CODE


REFUSED_CODE = "not_chest_xray"
