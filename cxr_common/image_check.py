"""Is this a frontal chest X-ray? A distance in the model's own pooled features.

The model's `features` output (what its classifier sees) is modelled on the training images as
a Gaussian: mean and a shrunk covariance (Ledoit-Wolf). An input's score is its Mahalanobis
distance from that mean; inputs farther than the threshold, set on training images only, are
not what the model has learned to read (a CT, a photograph, a blank page). Fitted by
model_export.image_check_fit, stored in the model's metadata as 'image_check', scored by the
service for every input.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

METADATA_KEY = "image_check"
METHOD = "mahalanobis-features"


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode()


def _decode(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape).astype(np.float64)


@dataclass(frozen=True)
class ImageCheck:
    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D): inverse of the shrunk covariance
    threshold: float  # scores above it are refused
    rule: str = ""  # how the threshold was set, for /model and the card

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) Mahalanobis distances."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        squared = np.einsum("nd,de,ne->n", centred, self.precision, centred)
        distances: np.ndarray = np.sqrt(np.maximum(squared, 0.0))
        return distances

    def to_json(self) -> str:
        return json.dumps({
            "method": METHOD, "dimensions": len(self.mean), "threshold": self.threshold, "rule": self.rule,
            "mean": _encode(self.mean), "precision": _encode(self.precision),
        })

    @classmethod
    def from_json(cls, text: str) -> ImageCheck:
        """Raises ValueError for a malformed or unknown check."""
        try:
            found = json.loads(text)
            if found.get("method") != METHOD:
                raise ValueError(f"unknown image check method {found.get('method')!r}")
            size = int(found["dimensions"])
            return cls(_decode(found["mean"], (size,)), _decode(found["precision"], (size, size)),
                       float(found["threshold"]), str(found.get("rule", "")))
        except (KeyError, TypeError, json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"model metadata 'image_check' is invalid: {exc}") from exc
