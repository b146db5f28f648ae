"""The Open Inference Protocol (KServe v2 REST, as Triton, Seldon MLServer and KServe speak it)
beside this service's own API, for platforms that script against `tritonclient`:

    GET  /v2                                  server metadata
    GET  /v2/health/live, /v2/health/ready    as /health/live and /health/ready
    GET  /v2/models/{name}[/versions/{v}]     model metadata: its input and outputs
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

`{name}` is the model's name as GET /model reports it. `infer` takes the encoded images (JPEG,
PNG or DICOM) as the BYTES input `image` and answers the numbers /predict answers, as named
outputs of one element per image. It goes through the same scoring as /predict (limits, keys,
input checks, refusals, admission); an error answers with the same status and code, in the
protocol's shape {"error": message} with the code and request id beside it
(service/http/errors.py). Not ready answers 503, as /health/ready does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from cxr_common.model_metadata import VIRAL_OUTPUT
from service.http.deps import ApiKeyDep, ClassifierDep, ScoringDep, SettingsDep
from service.http.errors import ApiError, api_error_for
from service.http.oip_tensors import HEADER_LENGTH, Tensor, encode_response, parse_request
from service.http.routes.health import is_ready
from service.http.routes.predict import until_disconnected
from service.inference.classifier import Classifier
from service.inference.pipeline import Scored

INPUT_NAME = "image"
PLATFORM = "onnxruntime_onnx"
SERVER_NAME = "cxr-pneumonia"
# FP64: the very numbers /predict answers in JSON, not rounded to float32
OUTPUTS = (("pneumonia_probability", "FP64"), ("label", "BYTES"), ("threshold", "FP64"))
TYPE_OUTPUTS = (("pneumonia_type", "BYTES"), ("bacterial_probability", "FP64"), ("viral_probability", "FP64"))

router = APIRouter(tags=["open inference protocol"])
infer_router = APIRouter(tags=["open inference protocol"], dependencies=[ApiKeyDep])


def outputs_of(classifier: Classifier) -> list[tuple[str, str]]:
    """The outputs this model answers: the type ones only with the type head."""
    return [*OUTPUTS, *(TYPE_OUTPUTS if VIRAL_OUTPUT in classifier.outputs else ())]


def _check_model(classifier: Classifier, name: str, version: str | None) -> None:
    metadata = classifier.metadata
    if name != metadata.model_name or version not in (None, metadata.model_version):
        served = f"'{metadata.model_name}' version '{metadata.model_version}'"
        raise ApiError("not_found", f"no model '{name}'{f' version {version!r}' if version else ''}; "
                                    f"this service serves {served}")


def _readiness(request: Request, body: dict[str, Any]) -> JSONResponse:
    ready = is_ready(request.app.state)
    return JSONResponse({**body, "ready": ready}, status_code=200 if ready else 503)


@router.get("/v2")
async def server_metadata(request: Request) -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live")
async def server_live() -> dict[str, bool]:
    """The process is up and answering (as /health/live)."""
    return {"live": True}


@router.get("/v2/health/ready")
async def server_ready(request: Request) -> JSONResponse:
    """200 when this instance takes work, 503 otherwise (as /health/ready)."""
    return _readiness(request, {})


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def model_metadata(classifier: ClassifierDep, name: str, version: str | None = None) -> dict[str, Any]:
    """The model's name, version, platform, input and named outputs (one element per image)."""
    _check_model(classifier, name, version)
    metadata = classifier.metadata
    return {
        "name": metadata.model_name, "versions": [metadata.model_version], "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": output, "datatype": datatype, "shape": [-1]} for output, datatype in outputs_of(classifier)],
    }


@router.get("/v2/models/{name}/ready")
@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, classifier: ClassifierDep, name: str, version: str | None = None) -> JSONResponse:
    """200 when the model is loaded and this instance takes work, 503 otherwise."""
    _check_model(classifier, name, version)
    return _readiness(request, {"name": name})


def _tensors(results: list[Scored], classifier: Classifier, names: list[str]) -> list[Tensor]:
    predictions = [r.prediction for r in results]
    columns: dict[str, list[float] | list[str]] = {
        "pneumonia_probability": [p.probability for p in predictions],
        "label": [p.label for p in predictions],
        "threshold": [classifier.threshold for _ in predictions],
    }
    if VIRAL_OUTPUT in classifier.outputs:  # as /predict's pneumonia_type
        columns["pneumonia_type"] = [p.pneumonia_type or "" for p in predictions]
        columns["bacterial_probability"] = [1.0 - (p.viral or 0.0) for p in predictions]
        columns["viral_probability"] = [p.viral or 0.0 for p in predictions]
    datatypes = dict(outputs_of(classifier))
    return [Tensor(name, datatypes[name], columns[name]) for name in names]


@infer_router.post("/v2/models/{name}/infer")
@infer_router.post("/v2/models/{name}/versions/{version}/infer")
async def infer(request: Request, scoring: ScoringDep, settings: SettingsDep, name: str,
                version: str | None = None) -> Response:
    """Score the encoded X-rays of the BYTES input `image` (one per element)."""
    classifier = scoring.classifier
    _check_model(classifier, name, version)
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise ApiError("unsupported_media_type", "compressed requests are not accepted; send the images as they are")
    names = [output for output, _ in outputs_of(classifier)]
    parsed = parse_request(await request.body(), request.headers.get(HEADER_LENGTH), INPUT_NAME, names,
                           settings.max_batch_files)
    results = await scoring.score(parsed.elements, False, until_disconnected(request))
    scored: list[Scored] = []
    for index, result in enumerate(results):
        if not isinstance(result, Scored):  # the protocol answers a request whole: its first fault
            error = api_error_for(result)
            raise ApiError(error.code, error.message if len(results) == 1 else f"image {index}: {error.message}")
        scored.append(result)
    head = {"model_name": classifier.metadata.model_name, "model_version": classifier.metadata.model_version,
            **({"id": parsed.id} if parsed.id is not None else {})}
    body, header_length = encode_response(head, _tensors(scored, classifier, parsed.outputs or names),
                                          parsed.binary_outputs)
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})
