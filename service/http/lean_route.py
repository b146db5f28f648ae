"""A route served without FastAPI's per-request machinery, for the hot path (POST /predict).

FastAPI, for each request to an ordinary route, solves the dependency graph, validates the
parameters through pydantic, opens two exit stacks and gathers telemetry and error context:
measured in-process, about a fifth of the event loop's Python per /predict. A LeanRoute's
endpoint is called with the Request alone and reads its own parameters (`query_flag`) and runs
its own checks. Its declared signature still documents it in OpenAPI exactly as before, and
Starlette's exception handlers still turn what it raises into the error contract.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

_FLAG = TypeAdapter(bool)


class LeanRoute(APIRoute):
    """Serves `endpoint(request)`. Its parameters are documented through `openapi_extra`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any):
        super().__init__(path, endpoint, **options)
        # nothing FastAPI would have run for it may be declared and then silently skipped
        dependant = self.dependant
        if (self.dependencies or dependant.dependencies or dependant.query_params or dependant.path_params
                or dependant.header_params or dependant.cookie_params or dependant.body_params):
            raise TypeError(f"LeanRoute {path}: the endpoint takes the Request alone and checks its own "
                            "parameters, keys and limits; none may be declared")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


def query_flag(request: Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter read as FastAPI would (`true`, `1`, `yes`, `on`, ...), and the
    same 400 bad_request when it is none of those."""
    value: Any = request.query_params.get(name)
    if value is None:
        return default
    try:
        return _FLAG.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", name)} for error in exc.errors(include_url=False)]) from None
