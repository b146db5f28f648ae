"""GET /metrics in the Prometheus text format (switch off with CXR_METRICS_ENABLED=false)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.http.deps import ApiKeyDep, MetricsDep

# behind the API key when keys are set: the counters describe other users' requests
router = APIRouter(tags=["operations"], dependencies=[ApiKeyDep])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Requests by route and status, latency histogram, inference batch sizes, model info."""
    return Response(generate_latest(metrics.scrape_registry()), media_type=CONTENT_TYPE_LATEST)
