"""Headers every answer carries, decided in one place rather than route by route (a static
mount or a library's page would otherwise go without them).

- Every answer: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and
  `Cache-Control: no-store` unless the route chose its own: answers carry patient-derived content
  (probabilities, the X-ray itself as a heatmap PNG) that no browser or proxy may keep. Static
  assets are revalidated (`no-cache`) instead: they hold nothing about a patient.
- Every HTML answer (/, /ui/..., /docs, /redoc): a Content-Security-Policy with
  `frame-ancestors 'none'` and `X-Frame-Options: DENY`, so no other site can frame the page.
  The page's own policy loads nothing but this origin; the API docs (Swagger UI, ReDoc) start
  from an inline script and ReDoc runs a blob: worker, so theirs allows those, still from this
  origin only.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
# where files are served from (the page's assets, the docs' scripts): nothing patient-derived
ASSET_PREFIXES = ("/ui/", "/static-offline-docs/", "/docs-assets/")

EVERY_ANSWER = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


def _policy(path: str) -> bytes:
    return (DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY).encode()


class WebHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                added = [header for header in EVERY_ANSWER if header[0] not in names]
                if b"cache-control" not in names:
                    added.append((b"cache-control", b"no-cache" if path.startswith(ASSET_PREFIXES) else b"no-store"))
                content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    if b"content-security-policy" not in names:
                        added.append((b"content-security-policy", _policy(path)))
                    added.append((b"x-frame-options", b"DENY"))
                message["headers"] = headers + added
            await send(message)

        await self.app(scope, receive, with_headers)
