"""/redoc served offline. /docs comes from fastapi-offline as it is (see service/http/app.py); its
ReDoc bundle, unchanged, would still fetch the "API docs by Redocly" logo from cdn.redoc.ly on
every visit, so this serves the same bundle with that one address emptied: the logo hides
itself when its image fails (the bundle's own onError), the link and its text stay.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_JS_PATH = "/docs-assets/redoc.standalone.js"


def install_redoc(app: FastAPI, favicon: str) -> None:
    bundle = (ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    if REDOC_LOGO not in bundle:  # a newer bundle: check it again for other hosts (the browser test does)
        raise RuntimeError(f"the ReDoc bundle of fastapi-offline {ASSETS} no longer names {REDOC_LOGO}")
    offline_bundle = bundle.replace(REDOC_LOGO, "")

    @app.get(REDOC_JS_PATH, include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(offline_bundle, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{REDOC_JS_PATH}", redoc_favicon_url=f"{root}{favicon}",
                              with_google_fonts=False)
