"""Response bodies, as the OpenAPI page documents them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.http.errors import status_of


class Probabilities(BaseModel):
    normal: float = Field(..., ge=0, le=1, examples=[0.07])
    pneumonia: float = Field(..., ge=0, le=1, examples=[0.93])


class TypeProbabilities(BaseModel):
    bacterial: float = Field(..., ge=0, le=1, examples=[0.81])
    viral: float = Field(..., ge=0, le=1, examples=[0.19])


class PneumoniaType(BaseModel):
    """Bacterial vs viral, given pneumonia (b + v = 1), whatever the pneumonia label says."""

    label: Literal["bacterial", "viral"]
    probabilities: TypeProbabilities


class ModelRef(BaseModel):
    name: str = Field(..., examples=["cxr-pneumonia-gapnet"])
    version: str = Field(..., examples=["1.0.0"])
    sha256: str


class InputInfo(BaseModel):
    format: Literal["jpeg", "png", "dicom"]
    width: int = Field(..., description="of the upload, before resizing", examples=[1857])
    height: int = Field(..., examples=[1317])


class HeatmapOut(BaseModel):
    """Where the model found evidence for pneumonia (see service/inference/heatmap.py)."""

    values: list[list[float]] = Field(
        ..., description="the pneumonia map at the network's resolution, in 0..1 (1: the strongest "
        "evidence in this image; 0: none), row 0 at the top, covering the whole upload as it was sent "
        "(after EXIF orientation and MONOCHROME1 inversion, before squashing)")
    png: str = Field(..., description="base64 PNG: the map in colour over the grayscale X-ray, "
                     "at most 512 px on its longest side")
    xray_png: str = Field(..., description="base64 PNG: the X-ray alone as the service read it, "
                          "the same size as `png` (to fade or hide the map)")


class PredictResponse(BaseModel):
    label: Literal["normal", "pneumonia"] = Field(..., description="by the model's threshold")
    probabilities: Probabilities
    threshold: float = Field(..., description="pneumonia when its probability >= threshold")
    model: ModelRef
    input: InputInfo
    pneumonia_type: PneumoniaType | None = Field(
        None, description="for models with the type head: bacterial vs viral, given pneumonia")
    warning: str | None = Field(
        None, description="CXR_INPUT_CHECK=flag only: why this may not be a frontal chest X-ray")
    heatmap: HeatmapOut | None = Field(None, description="with ?heatmap=true only")
    request_id: str
    elapsed_ms: float


class ErrorDetail(BaseModel):
    code: str = Field(..., examples=["undecodable_image"])
    message: str = Field(..., examples=["cannot decode this JPEG file: image file is truncated"])


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


class BatchItem(BaseModel):
    index: int = Field(..., description="position of the file in the request")
    result: PredictResponse | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    request_id: str
    elapsed_ms: float


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str
    input_size: int
    labels: list[str]
    threshold: float
    threshold_rule: str | None
    preprocessing_version: str
    execution_provider: str = Field(..., examples=["CPUExecutionProvider"])
    created_at: str
    training_data_sha256: str
    metrics: dict[str, Any] = Field(..., description="the model card's validation metrics")
    outputs: list[str] = Field(..., description="the model outputs the service reads")
    input_check: dict[str, Any] = Field(..., description="the image check: mode, method, threshold, rule")
    reference_check: dict[str, Any] = Field(..., description="the start-up self-check: images, largest difference, tolerance")
    api_key_required: bool = Field(..., description="whether /predict asks for an API key")


class Health(BaseModel):
    status: Literal["ok", "ready", "not_ready"]


def error_examples(*cases: tuple[str, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries: (code, message) -> its status (service.http.errors) and an example body."""
    return {
        status_of(code): {
            "model": ErrorResponse,
            "description": message,
            "content": {"application/json": {"example": {
                "error": {"code": code, "message": message}, "request_id": "3f2c9a7e0b..."}}},
        }
        for code, message in cases
    }
