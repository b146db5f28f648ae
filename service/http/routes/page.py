"""GET /: the page for clinicians and integrators trying the service (service/http/static/).

Plain HTML, CSS and JavaScript served from the package: no build step, nothing from another
host. Its Content-Security-Policy lets the browser load nothing but this origin (and the
heatmaps' data: URLs), so a page that tried to reach another host would fail visibly.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS_PATH = "/ui"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


def install(app: FastAPI) -> None:
    page = (STATIC / "index.html").read_text()

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                           "X-Content-Type-Options": "nosniff"})

    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC), name="page-assets")
