"""Typed results: what one prediction says, and one input's outcome in a batch run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Prediction:
    label: str  # "normal" | "pneumonia"
    p_pneumonia: float
    p_normal: float
    threshold: float
    model_version: str
    request_id: str

    @classmethod
    def from_json(cls, body: dict) -> "Prediction":
        return cls(
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

    @property
    def ok(self) -> bool:
        return self.prediction is not None
