"""Builds the FastAPI app; the model is loaded in the lifespan, never at import time."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.batching import DirectRunner, DynamicBatcher
from service.classifier import CUDA, Classifier
from service.config import Settings
from service.errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from service.peers import PeerLoad
from service.raw_predict import RawPredictMiddleware
from service.routes import health, metrics, model, predict

log = logging.getLogger(__name__)

DESCRIPTION = """
Tells whether a frontal chest X-ray looks **normal** or shows **pneumonia**.

An aid for clinicians, never a diagnosis on its own. Trained on pediatric chest X-rays
(children aged 1-5, one hospital); see the model card in the README for its limits.

Errors always answer `{"error": {"code", "message"}, "request_id"}` with a 4xx status.
"""


def create_app(settings: Settings | None = None, classifier: Classifier | None = None,
               peers: PeerLoad | None = None) -> FastAPI:
    """The app for `settings` (default: from CXR_* variables); `classifier` skips loading;
    `peers`: the load of the other worker processes, when there are several."""
    settings = settings or Settings()
    service_metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = classifier or Classifier(
            settings.model_path, settings.device, settings.onnx_thread_count, settings.solo_thread_count)
        loaded.warm_up()
        app.state.classifier = loaded
        batching = settings.batching if settings.batching is not None else loaded.provider == CUDA
        threads = settings.decode_thread_count
        limits, deadline = settings.limits(), settings.request_deadline_s
        app.state.runner = (
            DynamicBatcher(loaded, service_metrics, threads, settings.batch_max_size, settings.batch_max_wait_ms,
                           limits=limits, deadline_s=deadline)
            if batching else DirectRunner(loaded, service_metrics, threads, peers, limits=limits, deadline_s=deadline)
        )
        await app.state.runner.start()
        meta = loaded.metadata
        service_metrics.model_info.labels(
            meta.model_name, meta.model_version, loaded.sha256, loaded.provider).set(1)
        app.state.ready = True
        log.info("model loaded and warmed up",
                 extra={"provider": loaded.provider, "model_version": meta.model_version})
        yield
        app.state.ready = False
        await app.state.runner.stop()

    app = FastAPI(title="Chest X-ray pneumonia classifier", version="1.0.0",
                  description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = service_metrics
    app.state.api_keys = settings.all_api_keys()
    app.state.ready = False
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(model.router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    # added last = outermost: the request id exists before the size limit answers, and both
    # apply to the raw uploads answered ahead of routing
    predict_route = next(r for r in predict.router.routes if isinstance(r, APIRoute) and r.path == "/predict")
    app.add_middleware(RawPredictMiddleware, route=predict_route)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=service_metrics)
    return app
