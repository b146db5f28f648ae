"""Scoring through the running service with cxr_client (its retries, honouring Retry-After),
heatmap on. A refusal (not_chest_xray) is an answer, not a failure."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

from cxr_client import protocol
from cxr_client.errors import ServiceError
from cxr_client.results import REFUSED_CODE, Prediction
from cxr_client.retry import RetryPolicy


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


class Scorer:
    """POST /predict?heatmap=true through cxr_client's protocol: its headers (API key), its
    judgement of answers (Retry for 429/5xx-busy, ServiceError with the service's code) and its
    retry loop (Retry-After honoured, jittered backoff). Not Client.predict: the gateway needs the
    whole answer (the model's sha256, the type probabilities, the heatmap images)."""

    def __init__(self, service_url: str, api_key: str | None = None, attempts: int = 3,
                 timeout_s: float = protocol.DEFAULT_TIMEOUT_S):
        self._http = httpx.Client(base_url=service_url, timeout=timeout_s, headers=protocol.headers(api_key))
        self._policy = RetryPolicy(attempts=max(1, attempts))

    def close(self) -> None:
        self._http.close()

    def _predict(self, data: bytes) -> tuple[Prediction, dict[str, Any]]:
        response = self._http.post("/predict", params={"heatmap": "true"}, content=data,
                                   headers={"Content-Type": "application/dicom"})
        prediction = protocol.judge(response)  # raises Retry (retried by the loop) or ServiceError
        body: dict[str, Any] = response.json()
        return prediction, body

    def score(self, dicom: bytes) -> Score:
        """Raises Refused, or ServiceError (ServiceUnavailable when it could not be reached)."""
        try:
            # a loop per call: tenacity keeps a loop's state on its object, and workers are threads
            prediction, body = protocol.retrying(self._policy)(self._predict, dicom)
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
