"""POST /predict and /predict/batch: one entry each, for raw bodies and multipart uploads."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service.http.deps import ApiKeyDep, ScoringDep, SettingsDep
from service.http.errors import ApiError, api_error_for
from service.http.lean_route import LeanRoute, query_flag
from service.http.multipart import read_files
from service.http.schemas import (
    BatchItem,
    BatchResponse,
    ErrorDetail,
    HeatmapOut,
    InputInfo,
    ModelRef,
    PneumoniaType,
    PredictResponse,
    Probabilities,
    TypeProbabilities,
    error_examples,
)
from service.http.security import check_api_key
from service.inference.classifier import Classifier, Prediction
from service.inference.heatmap import Heatmap
from service.inference.pipeline import Scored
from service.inference.scoring import ScoringService

router = APIRouter(tags=["predict"], dependencies=[ApiKeyDep])
# POST /predict, the hot path, without FastAPI's per-request machinery (service.http.lean_route):
# its handler checks the key and reads its parameter itself
lean_router = APIRouter(tags=["predict"], route_class=LeanRoute)

RAW_TYPES = {"image/jpeg", "image/png", "application/dicom", "application/octet-stream"}
ERRORS = error_examples(
    ("missing_file", "send the image as multipart field 'file' or as the raw body"),
    ("unauthorized", "an API key is required (X-API-Key header)"),
    ("payload_too_large", "the upload is larger than the 50 MB allowed (CXR_MAX_UPLOAD_MB)"),
    ("unsupported_media_type", "the file is not a JPEG, PNG or DICOM image"),
    ("not_chest_xray", "DICOM Modality is 'CT'; this service takes CR, DX"),
    ("overloaded", "this worker is scoring 64 images, its limit is 64 (CXR_MAX_QUEUED_IMAGES); retry shortly"),
    ("internal_error", "internal error; it was logged with this request id"),
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


HEATMAP_HELP = "add the pneumonia heatmap to each answer (see service/inference/heatmap.py)"
HeatmapQuery = Query(False, description=HEATMAP_HELP)
# /predict's parameter as FastAPI documents HeatmapQuery on /predict/batch
HEATMAP_PARAMETER = {"name": "heatmap", "in": "query", "required": False, "description": HEATMAP_HELP,
                     "schema": {"type": "boolean", "default": False, "title": "Heatmap", "description": HEATMAP_HELP}}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_form_files(request: Request, field: str, max_files: int) -> list[bytes]:
    return await read_files(request, field, max_files)  # in memory, never spooled to disk


async def _read_single_file(request: Request) -> bytes:
    """The image of POST /predict: the raw body (no Content-Type counts as raw: curl
    --data-binary), or multipart field `file`."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        files = await _read_form_files(request, "file", max_files=1)
        if not files:
            raise ApiError("missing_file", "multipart request has no file in field 'file'")
        return files[0]
    if kind and kind not in RAW_TYPES:
        raise ApiError("unsupported_media_type",
                       f"Content-Type '{kind}' is not accepted; send multipart/form-data, "
                       "image/jpeg, image/png or application/dicom")
    data = await request.body()
    if not data:
        raise ApiError("missing_file", "send the image as multipart field 'file' or as the raw body")
    return data


def until_disconnected(request: Request) -> Callable[[], Awaitable[None]]:
    """Resolves when the client goes away. Called once the body is read: the server's next
    message is then the disconnect (or the end of the answer)."""
    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    return wait


def _type(prediction: Prediction) -> PneumoniaType | None:
    if prediction.viral is None:
        return None
    return PneumoniaType(label=prediction.pneumonia_type, probabilities=TypeProbabilities(
        bacterial=1.0 - prediction.viral, viral=prediction.viral))


def _heatmap(heatmap: Heatmap | None) -> HeatmapOut | None:
    if heatmap is None:
        return None
    return HeatmapOut(values=heatmap.values, png=heatmap.png, xray_png=heatmap.xray_png)


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
        heatmap=_heatmap(result.heatmap),
        request_id=request_id,
        elapsed_ms=round(elapsed_ms, 2),
    )


def _error_detail(error: ApiError) -> ErrorDetail:
    return ErrorDetail(code=error.code, message=error.message)


def _json(answer: PredictResponse | BatchResponse, heatmap: bool) -> Response:
    # serialised here rather than by FastAPI's response_model (which validates it again), and
    # without the heatmap key unless it was asked for: the answer is otherwise unchanged
    exclude = None if heatmap else ({"heatmap"} if isinstance(answer, PredictResponse)
                                    else {"results": {"__all__": {"result": {"heatmap"}}}})
    return Response(answer.model_dump_json(exclude=exclude), media_type="application/json")


def _check_heatmap(scoring: ScoringService, heatmap: bool) -> None:
    if heatmap and not scoring.classifier.has_cam:
        raise ApiError("heatmap_unavailable",
                       f"model {scoring.classifier.name} has no CAM output to draw a heatmap from")


@lean_router.post("/predict", response_model=PredictResponse, responses=ERRORS,
                  openapi_extra={**SINGLE_BODY, "parameters": [HEATMAP_PARAMETER]})
async def predict(request: Request) -> Response:
    """Score one X-ray (the raw body as image/jpeg, image/png or application/dicom, or multipart field `file`)."""
    started = time.perf_counter()
    await check_api_key(request)
    heatmap = query_flag(request, "heatmap")
    scoring: ScoringService = request.app.state.scoring
    _check_heatmap(scoring, heatmap)
    data = await _read_single_file(request)
    (result,) = await scoring.score([data], heatmap, until_disconnected(request))
    if not isinstance(result, Scored):
        raise api_error_for(result)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return _json(_response(result, scoring.classifier, request.state.request_id, elapsed_ms), heatmap)


@router.post("/predict/batch", response_model=BatchResponse, responses=ERRORS, openapi_extra=BATCH_BODY)
async def predict_batch(request: Request, scoring: ScoringDep, settings: SettingsDep,
                        heatmap: bool = HeatmapQuery) -> Response:
    """Score several X-rays (multipart field `files`); one result or error per file, in order."""
    started = time.perf_counter()
    _check_heatmap(scoring, heatmap)
    if media_type(request) != "multipart/form-data":
        raise ApiError("unsupported_media_type", "send the files as multipart/form-data field 'files'")
    files = await _read_form_files(request, "files", max_files=settings.max_batch_files)
    if not files:
        raise ApiError("missing_file", "multipart request has no file in field 'files'")
    results = await scoring.score(files, heatmap, until_disconnected(request))
    elapsed_ms = (time.perf_counter() - started) * 1000
    request_id = request.state.request_id
    items = [
        BatchItem(index=i, result=_response(r, scoring.classifier, request_id, elapsed_ms))
        if isinstance(r, Scored) else BatchItem(index=i, error=_error_detail(api_error_for(r)))
        for i, r in enumerate(results)
    ]
    return _json(BatchResponse(results=items, request_id=request_id, elapsed_ms=round(elapsed_ms, 2)), heatmap)
