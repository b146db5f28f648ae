"""Liveness and readiness: open to all, no API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import State

from service.http.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(request: Request) -> Health | JSONResponse:
    """200 once the model is loaded and a warm-up inference ran and while this worker takes
    more work; 503 before, while it drains after SIGTERM (CXR_DRAIN_S) and shuts down, and while
    its scoring queue is full."""
    if is_ready(request.app.state):
        return Health(status="ready")
    return JSONResponse(Health(status="not_ready").model_dump(), status_code=503)


def is_ready(state: State) -> bool:
    """The readiness rule, for /health/ready and the Open Inference Protocol's ready routes."""
    return (bool(getattr(state, "ready", False)) and not getattr(state, "draining", False)
            and not state.scoring.full and not state.uploads.full)
