"""POST /predict and /predict/batch."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from service.batching import DirectRunner
from service.classifier import Classifier
from service.deps import ApiKeyDep, RunnerDep, SettingsDep
from service.errors import ApiError, api_error_for
from service.input_errors import DeadlineExceededError
from service.schemas import (
    BatchItem, BatchResponse, ErrorDetail, InputInfo, ModelRef, PneumoniaType, PredictResponse, Probabilities,
    TypeProbabilities, error_examples,
)
from service.scoring import Scored

router = APIRouter(tags=["predict"], dependencies=[ApiKeyDep])

RAW_TYPES = {"image/jpeg", "image/png", "application/dicom", "application/octet-stream"}
ERRORS = error_examples(
    (400, "missing_file", "send the image as multipart field 'file' or as the raw body"),
    (401, "unauthorized", "an API key is required (X-API-Key header)"),
    (413, "payload_too_large", "the upload is larger than the 50 MB allowed (CXR_MAX_UPLOAD_MB)"),
    (415, "unsupported_media_type", "the file is not a JPEG, PNG or DICOM image"),
    (422, "not_chest_xray", "DICOM Modality is 'CT'; this service takes CR, DX"),
    (503, "deadline_exceeded", "decoding and scoring took longer than the 15 s allowed per request"),
)
SINGLE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "JPEG, PNG or DICOM"}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/dicom": {"schema": {"type": "string", "format": "binary"}},
}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
}}}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_raw_upload(request: Request) -> bool:
    """The image is the body itself (no Content-Type counts as raw: curl --data-binary)."""
    kind = media_type(request)
    return kind in RAW_TYPES or not kind


async def _read_form_files(request: Request, field: str, max_files: int) -> list[bytes]:
    form = await request.form(max_files=max_files, max_fields=100)
    try:
        uploads = [item for item in form.getlist(field) if isinstance(item, UploadFile)]
        return [await upload.read() for upload in uploads]
    finally:
        await form.close()


async def score_or_error(runner: DirectRunner, files: list[bytes]) -> list:
    """The runner's results; a whole-request failure (the deadline) as the ApiError that answers it."""
    try:
        return await runner.score(files)
    except DeadlineExceededError as exc:
        raise api_error_for(exc) from None


def _type(prediction) -> PneumoniaType | None:
    if prediction.viral is None:
        return None
    return PneumoniaType(label=prediction.pneumonia_type, probabilities=TypeProbabilities(
        bacterial=1.0 - prediction.viral, viral=prediction.viral))


def _response(result: Scored, classifier: Classifier, request_id: str, elapsed_ms: float) -> PredictResponse:
    p = result.prediction.probability
    return PredictResponse(
        pneumonia_type=_type(result.prediction),
        warning=result.warning,
        label=result.prediction.label,
        probabilities=Probabilities(normal=1.0 - p, pneumonia=p),
        threshold=classifier.threshold,
        model=ModelRef(name=classifier.metadata.model_name, version=classifier.metadata.model_version,
                       sha256=classifier.sha256),
        input=InputInfo(format=result.decoded.format, width=result.decoded.width,
                        height=result.decoded.height),
        request_id=request_id,
        elapsed_ms=round(elapsed_ms, 2),
    )


async def predict_upload(data: bytes, request: Request, started: float) -> PredictResponse:
    """The answer to POST /predict for one uploaded file, however it was sent; raises the ApiError
    that says why when the file cannot be scored."""
    state = request.app.state
    runner: DirectRunner = state.runner
    (result,) = await score_or_error(runner, [data])
    if isinstance(result, ApiError):
        raise result
    return _response(result, runner.classifier, request.state.request_id, (time.perf_counter() - started) * 1000)


@router.post("/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=SINGLE_BODY)
async def predict(request: Request):
    """Score one X-ray (multipart field `file`, or the raw body as image/jpeg, image/png or application/dicom)."""
    # A raw body never gets here: service/raw_predict.py answers it before routing. This route
    # documents /predict and takes multipart uploads.
    started = time.perf_counter()
    kind = media_type(request)
    if kind != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type '{kind}' is not accepted; send multipart/form-data, "
                       "image/jpeg, image/png or application/dicom")
    files = await _read_form_files(request, "file", max_files=1)
    if not files:
        raise ApiError(400, "missing_file", "multipart request has no file in field 'file'")
    return await predict_upload(files[0], request, started)


@router.post("/predict/batch", response_model=BatchResponse, responses=ERRORS, openapi_extra=BATCH_BODY)
async def predict_batch(request: Request, runner: RunnerDep, settings: SettingsDep):
    """Score several X-rays (multipart field `files`); one result or error per file, in order."""
    started = time.perf_counter()
    if media_type(request) != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the files as multipart/form-data field 'files'")
    files = await _read_form_files(request, "files", max_files=settings.max_batch_files)
    if not files:
        raise ApiError(400, "missing_file", "multipart request has no file in field 'files'")
    results = await score_or_error(runner, files)
    elapsed_ms = (time.perf_counter() - started) * 1000
    request_id = request.state.request_id
    items = [
        BatchItem(index=i, error=ErrorDetail(code=r.code, message=r.message))
        if isinstance(r, ApiError)
        else BatchItem(index=i, result=_response(r, runner.classifier, request_id, elapsed_ms))
        for i, r in enumerate(results)
    ]
    return BatchResponse(results=items, request_id=request_id, elapsed_ms=round(elapsed_ms, 2))
