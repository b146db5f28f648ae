"""A plain server for comparison: FastAPI under `uvicorn --workers 2`, the service's own decoding
(service.inputs.decoding, so the same pixels) and one session.run per request with onnxruntime's
default options; no admission, limits, metrics, logs or image check. What a user would write
instead of this service (the issue 24 table's "FastAPI + uvicorn --workers 2, no extras").

CXR_MODEL_PATH=models/cxr-pneumonia.onnx uvicorn --workers 2 --port 8100 benchmarks.plain_server:app
"""

from __future__ import annotations

import os

import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from cxr_common.model_metadata import INPUT_NAME, OUTPUT_NAME
from cxr_common.preprocessing import to_model_input
from service.inputs.decoding import decode_upload
from service.inputs.shape import DEFAULT_MAX_PIXELS

session = ort.InferenceSession(os.environ.get("CXR_MODEL_PATH", "models/cxr-pneumonia.onnx"),
                               providers=["CPUExecutionProvider"])
size = session.get_inputs()[0].shape[1]
app = FastAPI()


def score(data: bytes) -> float:
    pixels = decode_upload(data, size, DEFAULT_MAX_PIXELS).pixels
    return float(session.run([OUTPUT_NAME], {INPUT_NAME: to_model_input(pixels[None])})[0][0, 0])


@app.post("/predict")
async def predict(request: Request) -> dict[str, float]:
    return {"pneumonia": await run_in_threadpool(score, await request.body())}


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}
