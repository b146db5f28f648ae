"""Response bodies, as the OpenAPI page documents them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Probabilities(BaseModel):
    normal: float = Field(..., ge=0, le=1, examples=[0.07])
    pneumonia: float = Field(..., ge=0, le=1, examples=[0.93])


class ModelRef(BaseModel):
    name: str = Field(..., examples=["cxr-pneumonia-gapnet"])
    version: str = Field(..., examples=["1.0.0"])
    sha256: str


class InputInfo(BaseModel):
    format: Literal["jpeg", "png", "dicom"]
    width: int = Field(..., description="of the upload, before resizing", examples=[1857])
    height: int = Field(..., examples=[1317])


class PredictResponse(BaseModel):
    label: Literal["normal", "pneumonia"] = Field(..., description="by the model's threshold")
    probabilities: Probabilities
    threshold: float = Field(..., description="pneumonia when its probability >= threshold")
    model: ModelRef
    input: InputInfo
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
    metrics: dict = Field(..., description="the model card's validation metrics")


class Health(BaseModel):
    status: Literal["ok", "ready", "not_ready"]


def error_examples(*cases: tuple[int, str, str]) -> dict:
    """OpenAPI `responses` entries: status -> an example error body."""
    return {
        status: {
            "model": ErrorResponse,
            "description": message,
            "content": {"application/json": {"example": {
                "error": {"code": code, "message": message}, "request_id": "3f2c9a7e0b..."}}},
        }
        for status, code, message in cases
    }
