"""Scoring through the running service with cxr_client (its retries, honouring Retry-After),
heatmap on. A refusal (not_chest_xray) is an answer, not a failure."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cxr_client import protocol
from cxr_client.client import Client
from cxr_client.errors import ServiceError
from cxr_client.results import REFUSED_CODE, Prediction


@dataclass(frozen=True)
class Score:
    prediction: Prediction
    model_name: str
    model_sha256: str
    p_bacterial: float | None
    p_viral: float | None
    heatmap_png: bytes  # the map in colour over the X-ray as the service read it
    xray_png: bytes


class Refused(Exception):
    """The service declined the image as no frontal chest X-ray; `code` is its error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class _HeatmapClient(Client):
    """cxr_client's Client with ?heatmap=true and the whole answer (the model's sha256, the
    type probabilities and the images are not in its Prediction)."""

    def predict_answer(self, data: bytes) -> tuple[Prediction, dict[str, Any]]:
        def attempt() -> tuple[Prediction, dict[str, Any]]:
            response = self._http.post("/predict", params={"heatmap": "true"}, content=data,
                                       headers={"Content-Type": "application/dicom"})
            prediction = protocol.judge(response)  # raises Retry (retried here) or ServiceError
            body: dict[str, Any] = response.json()
            return prediction, body

        return self._with_retries(attempt)


class Scorer:
    def __init__(self, service_url: str, api_key: str | None = None, attempts: int = 3):
        self._client = _HeatmapClient(service_url, api_key=api_key, retries=attempts)

    def close(self) -> None:
        self._client.close()

    def score(self, dicom: bytes) -> Score:
        """Raises Refused, or ServiceError (ServiceUnavailable when it could not be reached)."""
        try:
            prediction, body = self._client.predict_answer(dicom)
        except ServiceError as exc:
            if exc.code == REFUSED_CODE:
                raise Refused(exc.code, str(exc)) from None
            raise
        heatmap = body.get("heatmap") or {}
        if not heatmap.get("png"):
            raise ServiceError("the service answered without a heatmap", 200)
        kind = (body.get("pneumonia_type") or {}).get("probabilities") or {}
        return Score(
            prediction=prediction,
            model_name=str(body["model"]["name"]),
            model_sha256=str(body["model"]["sha256"]),
            p_bacterial=float(kind["bacterial"]) if "bacterial" in kind else None,
            p_viral=float(kind["viral"]) if "viral" in kind else None,
            heatmap_png=base64.b64decode(heatmap["png"]),
            xray_png=base64.b64decode(heatmap["xray_png"]),
        )
