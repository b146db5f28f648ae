"""The naive baseline the benchmark compares against: the same model, one session.run per
request after a full-resolution decode (no draft decoding, no batching, no tuning).

python -m benchmarks.naive_server --port 8100 --model models/cxr-pneumonia.onnx
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image

from cxr_common.model_metadata import INPUT_NAME
from service.inputs.dicom import is_dicom, read_dicom


def create_app(model: str) -> FastAPI:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[1]
    app = FastAPI()

    def score(data: bytes) -> float:
        image = read_dicom(data)[0] if is_dicom(data) else Image.open(io.BytesIO(data))
        pixels = np.asarray(image.convert("L").resize((size, size), Image.Resampling.BILINEAR), np.float32)
        return float(session.run(None, {INPUT_NAME: (pixels / 255.0)[None, ..., None]})[0][0, 0])

    @app.post("/predict")
    async def predict(request: Request):
        from anyio import to_thread

        return {"pneumonia": await to_thread.run_sync(score, await request.body())}

    @app.get("/health/ready")
    async def ready():
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")
