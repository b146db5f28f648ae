"""Builds the FastAPI app; the model is loaded in the lifespan, never at import time."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from cxr_common.hardware import available_cores
from service.config import Settings
from service.http.errors import install_error_handlers
from service.http.host_origin import HostOriginMiddleware
from service.http.in_flight import InFlightMiddleware
from service.http.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from service.http.routes import docs, health, metrics, model, oip, page, predict
from service.http.throttle import FailedKeys, KeyRate
from service.http.upload_limits import UploadBudget, UploadLimitsMiddleware
from service.http.web_headers import WebHeadersMiddleware
from service.inference.classifier import CPU, Classifier
from service.inference.runners import BatchingRunner, DirectRunner, Runner
from service.inference.scoring import ScoringService
from service.inputs.limits import Limits
from service.metrics import ServiceMetrics
from service.process.peers import PeerLoad
from service.process.plan import ServingPlan, single_process_plan

log = logging.getLogger(__name__)

DESCRIPTION = """
Tells whether a frontal chest X-ray looks **normal** or shows **pneumonia**.

An aid for clinicians, never a diagnosis on its own. Trained on pediatric chest X-rays
(children aged 1-5, one hospital); see the model card (models/MODEL_CARD.md) for its limits.

Errors always answer `{"error": {"code", "message"}, "request_id"}`: a 4xx status for what
the client can fix, 503 with Retry-After when this instance cannot take the work now, 500 for a
bug (logged with the request id).
"""


def load_classifier(settings: Settings, plan: ServingPlan | None = None) -> Classifier:
    """The model with `plan`'s thread counts (without a plan: those of one process on every core
    of a CPU; on CUDA, onnxruntime's CPU threads matter little: the GPU runs the model)."""
    threads = plan or single_process_plan(settings, CPU, available_cores())
    return Classifier(settings.model_path, settings.device, threads.onnx_threads, threads.solo_threads)


def make_runner(classifier: Classifier, settings: Settings, plan: ServingPlan, limits: Limits,
                metrics: ServiceMetrics, peers: PeerLoad | None) -> Runner:
    if plan.batching:
        return BatchingRunner(classifier, metrics, plan.decode_threads, limits,
                              settings.batch_max_size, settings.batch_max_wait_ms)
    return DirectRunner(classifier, metrics, plan.decode_threads, limits, peers)


def create_app(settings: Settings | None = None, classifier: Classifier | None = None,
               peers: PeerLoad | None = None, plan: ServingPlan | None = None) -> FastAPI:
    """The app for `settings` (default: from the CXR_* variables); `classifier` skips loading;
    `peers`: the load of the other worker processes, when there are several; `plan`: how this
    process uses the machine (default: resolved here, for one process)."""
    settings = settings or Settings.from_env(os.environ)
    service_metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = classifier or load_classifier(settings, plan)
        loaded.warm_up()
        app.state.classifier = loaded
        resolved = plan or single_process_plan(settings, loaded.provider, available_cores())
        limits = settings.limits()
        runner = make_runner(loaded, settings, resolved, limits, service_metrics, peers)
        app.state.scoring = ScoringService(runner, service_metrics, settings.request_deadline_s,
                                           settings.max_queued_images)
        await runner.start()
        meta = loaded.metadata
        service_metrics.model_info.labels(
            meta.model_name, meta.model_version, loaded.sha256, loaded.provider).set(1)
        app.state.ready = True
        if getattr(app.state, "on_ready", None):  # a worker tells its supervisor
            app.state.on_ready()
        log.info("model loaded and warmed up",
                 extra={"provider": loaded.provider, "model_version": meta.model_version})
        yield
        app.state.ready = False
        await runner.stop()

    # /docs and /redoc with their scripts and styles from the installed fastapi-offline package
    # (FastAPI's own pages load them from a CDN, blank on a hospital network without internet);
    # no validator badge either, which Swagger UI would fetch from validator.swagger.io
    app = FastAPIOffline(title="Chest X-ray pneumonia classifier", version="1.0.0",
                         description=DESCRIPTION, lifespan=lifespan, redoc_url=None,
                         swagger_ui_parameters={"validatorUrl": None})
    docs.install_redoc(app, favicon="/static-offline-docs/favicon.png")
    app.state.settings = settings
    app.state.metrics = service_metrics
    app.state.api_keys = settings.all_api_keys()
    app.state.failed_keys = FailedKeys(settings.auth_failures_per_minute)
    app.state.key_rate = KeyRate(settings.rate_limit_per_key)
    app.state.ready = False
    install_error_handlers(app)
    app.include_router(predict.lean_router)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(model.router)
    app.include_router(oip.router)  # the Open Inference Protocol beside the service's own API
    app.include_router(oip.infer_router)
    page.install(app)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    # added last = outermost: the request id exists before the size limit answers
    app.add_middleware(InFlightMiddleware, metrics=service_metrics)
    app.state.uploads = UploadBudget(int(settings.max_inflight_upload_mb * 2**20))
    app.add_middleware(UploadLimitsMiddleware, budget=app.state.uploads, timeout_s=settings.upload_timeout_s,
                       min_rate_bytes_s=settings.min_upload_rate_kbps * 1024)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(HostOriginMiddleware, allowed_hosts=settings.hosts_allowed(),
                       allowed_origins=settings.allowed_origins)
    app.add_middleware(WebHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=service_metrics)
    return app
