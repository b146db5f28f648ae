"""Counts the scoring requests a worker holds, for the autoscaler (cxr_requests_in_flight).

A request counts from its first byte reaching the app until its answer is sent, upload
included: a pod busy receiving slow uploads is as busy as one scoring, and CPU alone does not
show it. The scoring routes are the POST routes (/predict, /predict/batch and the Open
Inference Protocol's /v2/models/{name}/infer); probes, /metrics and the pages are not work.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.metrics import ServiceMetrics


class InFlightMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.gauge = app, metrics.requests_in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        self.gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gauge.dec()
